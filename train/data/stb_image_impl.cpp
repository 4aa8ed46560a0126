// The one translation unit that compiles stb_image's implementation (every other file includes
// <stb_image.h> for declarations only). Only the formats the image-folder data set reads are
// compiled in; PNG brings the zlib inflater that train/data/gzip.cpp uses for .gz files.
//
// stb keeps its failure reason in a thread_local, so loader workers may decode concurrently.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP

// stb 2.27's PNG reader sets a variable it never reads; that one warning is silenced here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#include <stb_image.h>
#pragma GCC diagnostic pop
