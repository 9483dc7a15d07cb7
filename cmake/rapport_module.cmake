# rapport_module(<name> SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
#
# Builds every module alike: a library rapport_<name> with the alias
# rapport::<name>, public headers under <module>/include (included as
# "rapport/<name>/x.h"), C++20, warnings as errors.
set(RAPPORT_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wimplicit-fallthrough -Werror)

function(rapport_module name)
  cmake_parse_arguments(M "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(rapport_${name} ${M_SOURCES})
  add_library(rapport::${name} ALIAS rapport_${name})
  target_include_directories(rapport_${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
  target_compile_features(rapport_${name} PUBLIC cxx_std_20)
  target_compile_options(rapport_${name} PRIVATE ${RAPPORT_WARNINGS})
  target_link_libraries(rapport_${name} PUBLIC ${M_PUBLIC_DEPS} PRIVATE ${M_PRIVATE_DEPS})
endfunction()
