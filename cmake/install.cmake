# `cmake --install build [--prefix DIR]`: the layer libraries, their headers under
# include/nextvit/<layer>/, and a CMake package, so that another project can
#
#   find_package(nextvit REQUIRED)
#   target_link_libraries(app PRIVATE nextvit::nextvit)
#
# and #include "models/nextvit.h" (tests/consumer/ is such a project, built in CI).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(NEXTVIT_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/nextvit)
install(TARGETS nextvit_core nextvit_kernels nextvit_autograd nextvit_layers nextvit_models
                nextvit_train nextvit_lib
        EXPORT nextvitTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/nextvit)
foreach(layer ${NEXTVIT_LAYERS})
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${layer}/
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/nextvit/${layer}
          FILES_MATCHING PATTERN "*.h" PATTERN "*.cuh")
endforeach()
install(EXPORT nextvitTargets NAMESPACE nextvit:: DESTINATION ${NEXTVIT_INSTALL_CMAKEDIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/nextvitConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/nextvitConfig.cmake
                              INSTALL_DESTINATION ${NEXTVIT_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/nextvitConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/nextvitConfig.cmake
              ${PROJECT_BINARY_DIR}/nextvitConfigVersion.cmake
        DESTINATION ${NEXTVIT_INSTALL_CMAKEDIR})
