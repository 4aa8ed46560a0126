#pragma once
// JPEG and PNG decoding with libjpeg-turbo and libpng, the libraries Pillow and torchvision use
// and that OSS-Fuzz fuzzes continuously, instead of stb_image (whose Debian 12 version, 2.27,
// has known memory-safety bugs in both decoders).
//
// Compiled in only when the build defines NEXTVIT_WITH_LIBJPEG_PNG=1 and links libjpeg and
// libpng (Debian: libjpeg62-turbo-dev, libpng-dev); otherwise decode_with_system_libraries
// declines every file and stb_image decodes it, behind the checks of image_guard.h.
#include <cstdint>
#include <string>
#include <vector>

#include "train/data/image.h"

namespace nextvit::data {

// True when this build decodes JPEG and PNG with the system libraries.
bool system_image_decoders_enabled();

// Decodes a JPEG or PNG to RGB uint8 HWC. Returns false with *handled = false for other formats
// (or when not compiled in); false with *handled = true and `reason` set when the file is a
// JPEG/PNG that cannot be decoded, is larger than max_pixels, or is corrupt (libjpeg's warnings,
// such as premature end of data, count as errors: no silently grey images).
bool decode_with_system_libraries(const std::vector<uint8_t>& bytes, int64_t max_pixels, Image& out,
                                  std::string& reason, bool* handled);

}  // namespace nextvit::data
