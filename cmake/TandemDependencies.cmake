# Every external dependency of tandem, found once. All come from the distribution's packages
# (scripts/setup.sh installs them on Debian); nothing is vendored.
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(PkgConfig REQUIRED)

# BLAS: OpenBLAS (the pthread variant on Debian/Ubuntu). cblas.h comes with it.
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)

# libdw (elfutils) is optional: crashrate symbolizes stacks with it where present.
pkg_check_modules(LIBDW IMPORTED_TARGET libdw)

if(TANDEM_BUILD_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
endif()
if(TANDEM_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
