# Every external dependency of tandem, found once. All come from the distribution's packages
# (scripts/setup.sh installs them on Debian); nothing is vendored.
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(PkgConfig)  # optional: the lookups below fall back to plain find_library

# BLAS: OpenBLAS (the pthread variant on Debian/Ubuntu), with cblas.h. Always available to the
# project as the target PkgConfig::OPENBLAS, however it was found:
#  1. pkg-config `openblas` (Debian/Ubuntu's alternatives link, or OPENBLAS_DIR/lib/pkgconfig);
#  2. else the library and header by name, in the distributions' openblas-* subfolders
#     (images that ship the package without its .pc alternatives link, or without pkg-config).
if(PKG_CONFIG_FOUND)
  pkg_check_modules(OPENBLAS QUIET IMPORTED_TARGET openblas)
endif()
if(NOT TARGET PkgConfig::OPENBLAS)
  set(_tandem_blas_suffixes openblas-pthread openblas-openmp openblas-serial openblas)
  find_library(TANDEM_OPENBLAS_LIBRARY NAMES openblas openblasp
               PATH_SUFFIXES ${_tandem_blas_suffixes}
               PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE} /usr/lib64 /usr/local/lib /opt/OpenBLAS/lib)
  find_path(TANDEM_CBLAS_INCLUDE_DIR cblas.h
            PATH_SUFFIXES ${_tandem_blas_suffixes}
                          ${CMAKE_LIBRARY_ARCHITECTURE}/openblas-pthread
                          ${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp
                          ${CMAKE_LIBRARY_ARCHITECTURE}/openblas-serial
                          ${CMAKE_LIBRARY_ARCHITECTURE}
            PATHS /usr/include /usr/local/include /opt/OpenBLAS/include)
  if(NOT TANDEM_OPENBLAS_LIBRARY OR NOT TANDEM_CBLAS_INCLUDE_DIR)
    message(FATAL_ERROR "OpenBLAS not found (library: '${TANDEM_OPENBLAS_LIBRARY}', cblas.h: "
                        "'${TANDEM_CBLAS_INCLUDE_DIR}'). Install libopenblas-dev (scripts/setup.sh), "
                        "or pass -DTANDEM_OPENBLAS_LIBRARY=... -DTANDEM_CBLAS_INCLUDE_DIR=...")
  endif()
  add_library(PkgConfig::OPENBLAS INTERFACE IMPORTED GLOBAL)
  target_link_libraries(PkgConfig::OPENBLAS INTERFACE ${TANDEM_OPENBLAS_LIBRARY})
  target_include_directories(PkgConfig::OPENBLAS INTERFACE ${TANDEM_CBLAS_INCLUDE_DIR})
  message(STATUS "OpenBLAS (no pkg-config): ${TANDEM_OPENBLAS_LIBRARY}, ${TANDEM_CBLAS_INCLUDE_DIR}")
endif()

# libdw (elfutils) is optional: crashrate symbolizes stacks with it where present.
if(PKG_CONFIG_FOUND)
  pkg_check_modules(LIBDW QUIET IMPORTED_TARGET libdw)
endif()

# The CUDA toolkit (cudart, cuBLAS, cuBLASLt) for the cuda backend only; the default preset never
# looks for it.
if(TANDEM_ENABLE_CUDA)
  find_package(CUDAToolkit REQUIRED)
endif()

if(TANDEM_BUILD_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
endif()
if(TANDEM_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
