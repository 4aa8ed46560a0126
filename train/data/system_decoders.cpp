#include "train/data/system_decoders.h"

#ifdef NEXTVIT_WITH_LIBJPEG_PNG
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include <jpeglib.h>
#include <png.h>

#include "core/error.h"
#endif

namespace nextvit::data {

#ifndef NEXTVIT_WITH_LIBJPEG_PNG

bool system_image_decoders_enabled() {
  return false;
}

bool decode_with_system_libraries(const std::vector<uint8_t>&, int64_t, Image&, std::string&,
                                  bool* handled) {
  *handled = false;
  return false;
}

#else

bool system_image_decoders_enabled() {
  return true;
}

namespace {

// libjpeg reports errors through a callback that must not return: it longjmps back to
// decode_jpeg. Only plain C objects live in decode_jpeg's frame between setjmp and longjmp.
struct JpegError {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void jpeg_fail(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings (level -1: corrupt or truncated data) are errors here.
void jpeg_warn(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_fail(cinfo);
}

// A progressive JPEG may hold thousands of tiny scans, each a full pass over the coefficients:
// cap them, as libjpeg-turbo's own fuzzers do.
void jpeg_progress(j_common_ptr cinfo) {
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (cinfo->is_decompressor && d->input_scan_number > 500) {
    std::snprintf(reinterpret_cast<JpegError*>(cinfo->err)->message, JMSG_LENGTH_MAX,
                  "more than 500 progressive scans");
    std::longjmp(reinterpret_cast<JpegError*>(cinfo->err)->jump, 1);
  }
}

bool decode_jpeg(const std::vector<uint8_t>& bytes, int64_t max_pixels, Image& out,
                 std::string& reason) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  jpeg_progress_mgr progress;
  progress.progress_monitor = jpeg_progress;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  err.mgr.emit_message = jpeg_warn;
  err.message[0] = '\0';
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    reason = std::string("libjpeg: ") + err.message;
    return false;
  }
  jpeg_create_decompress(&cinfo);
  cinfo.progress = &progress;
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  if (int64_t(cinfo.image_width) * cinfo.image_height > max_pixels) {
    std::snprintf(err.message, JMSG_LENGTH_MAX, "%ux%u pixels, above the limit of %lld",
                  cinfo.image_width, cinfo.image_height, static_cast<long long>(max_pixels));
    jpeg_destroy_decompress(&cinfo);
    reason = std::string("libjpeg: ") + err.message + " (--max-image-pixels)";
    return false;
  }
  cinfo.out_color_space = JCS_RGB;  // gray and CMYK/YCCK are converted by the library
  jpeg_start_decompress(&cinfo);
  out.height = static_cast<int>(cinfo.output_height);
  out.width = static_cast<int>(cinfo.output_width);
  out.channels = 3;
  out.pixels.resize(size_t(out.height) * out.width * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out.pixels.data() + size_t(cinfo.output_scanline) * out.width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

// libpng's simplified API: errors come back as return values and a message, no longjmp here.
bool decode_png(const std::vector<uint8_t>& bytes, int64_t max_pixels, Image& out,
                std::string& reason) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size())) {
    reason = std::string("libpng: ") + image.message;
    return false;
  }
  if (int64_t(image.width) * image.height > max_pixels) {
    reason = fmt::format("libpng: {}x{} pixels, above the limit of {} (--max-image-pixels)",
                         image.width, image.height, max_pixels);
    png_image_free(&image);
    return false;
  }
  // 16-bit samples without gAMA/sRGB chunks: libpng would assume linear light and apply the sRGB
  // curve on the way to 8 bits (mid-gray 32768 would become 188); like stb_image and PIL, take
  // them as already encoded, so that 16-bit v decodes to round(v / 257).
  image.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;
  image.format = PNG_FORMAT_RGB;  // gray, palette and alpha converted (alpha over black)
  out.height = static_cast<int>(image.height);
  out.width = static_cast<int>(image.width);
  out.channels = 3;
  out.pixels.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, out.pixels.data(), 0, nullptr)) {
    reason = std::string("libpng: ") + image.message;
    out.pixels.clear();
    return false;
  }
  return true;
}

}  // namespace

bool decode_with_system_libraries(const std::vector<uint8_t>& bytes, int64_t max_pixels, Image& out,
                                  std::string& reason, bool* handled) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 13, 10, 26, 10};
  *handled = true;
  if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) {
    return decode_jpeg(bytes, max_pixels, out, reason);
  }
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPng, 8) == 0) {
    return decode_png(bytes, max_pixels, out, reason);
  }
  *handled = false;
  return false;
}

#endif

}  // namespace nextvit::data
