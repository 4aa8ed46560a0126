# JPEG and PNG through libjpeg-turbo and libpng (Debian: libjpeg62-turbo-dev, libpng-dev)
# instead of stb_image; see train/data/system_decoders.h. Included by the top-level
# CMakeLists.txt (cmake/layers.cmake) after nextvit_train is defined. Off: stb_image decodes everything, behind the
# checks of train/data/image_guard.h.
option(NEXTVIT_LIBJPEG_PNG "Decode JPEG and PNG with libjpeg-turbo and libpng" ON)
if(NEXTVIT_LIBJPEG_PNG)
  find_package(JPEG REQUIRED)
  find_package(PNG REQUIRED)
  target_compile_definitions(nextvit_train PRIVATE NEXTVIT_WITH_LIBJPEG_PNG=1)
  target_link_libraries(nextvit_train PRIVATE JPEG::JPEG PNG::PNG)
endif()
message(STATUS "nextvit: JPEG/PNG via libjpeg-turbo and libpng: ${NEXTVIT_LIBJPEG_PNG}")
