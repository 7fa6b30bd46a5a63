# tandem_target_options(TARGET): the options every tandem target shares.
#  - warnings are errors (-Wall -Wextra -Wpedantic -Werror, plus -Wthread-safety under clang);
#  - the sanitizer chosen by TANDEM_SANITIZER (set by the asan/tsan presets);
#  - C++20.
set(TANDEM_WARNINGS -Wall -Wextra -Wpedantic -Werror -Wno-unused-parameter)
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  list(APPEND TANDEM_WARNINGS -Wthread-safety -Wthread-safety-beta)
endif()

set(TANDEM_SANITIZER_FLAGS "")
if(TANDEM_SANITIZER STREQUAL "address")
  set(TANDEM_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
elseif(TANDEM_SANITIZER STREQUAL "thread")
  set(TANDEM_SANITIZER_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
elseif(NOT TANDEM_SANITIZER STREQUAL "")
  message(FATAL_ERROR "TANDEM_SANITIZER='${TANDEM_SANITIZER}' is not one of: '', address, thread")
endif()
if(TANDEM_SANITIZER_FLAGS)
  # Applied globally so that GoogleTest's and the project's objects agree.
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX,C>:${TANDEM_SANITIZER_FLAGS}>")
  add_link_options(${TANDEM_SANITIZER_FLAGS})
endif()

function(tandem_target_options target)
  target_compile_features(${target} PUBLIC cxx_std_20)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${TANDEM_WARNINGS}>)
endfunction()
