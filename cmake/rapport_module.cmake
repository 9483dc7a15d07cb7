# rapport_module(<name> SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
#
# Builds every module alike: a library rapport_<name> with the alias
# rapport::<name>, public headers under <module>/include (included as
# "rapport/<name>/x.h"), C++20, the same warnings (errors with RAPPORT_WERROR).
# Warnings are errors only where rapport's own build checks its code
# (ops/test and CI turn RAPPORT_WERROR on): a user's build type or compiler
# version must never fail on a warning, such as g++ 12's -Warray-bounds
# inside Boost.Math at -O3.
option(RAPPORT_WERROR "Treat compiler warnings as errors (ops/test and CI)" OFF)
set(RAPPORT_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wimplicit-fallthrough)
if(RAPPORT_WERROR)
  list(APPEND RAPPORT_WARNINGS -Werror)
endif()

function(rapport_module name)
  cmake_parse_arguments(M "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(rapport_${name} ${M_SOURCES})
  add_library(rapport::${name} ALIAS rapport_${name})
  target_include_directories(rapport_${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
  target_compile_features(rapport_${name} PUBLIC cxx_std_20)
  target_compile_options(rapport_${name} PRIVATE ${RAPPORT_WARNINGS})
  target_link_libraries(rapport_${name} PUBLIC ${M_PUBLIC_DEPS} PRIVATE ${M_PRIVATE_DEPS})
endfunction()
