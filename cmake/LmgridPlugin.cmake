# lmgrid_add_plugin(<target> KIND <arch|data|tokenizer|optim|test> SOURCES <files...>)
#
# One helper for every plugin kind, in the tree and out of it (installed with the SDK).
# Builds a MODULE library named lmgrid_<kind>_<name>.so into the plugin folder, linked
# against lmgrid::core, with the same warnings everywhere.
function(lmgrid_add_plugin target)
  cmake_parse_arguments(P "" "KIND;OUTPUT_DIR" "SOURCES;LIBRARIES" ${ARGN})
  if(NOT P_KIND)
    message(FATAL_ERROR "lmgrid_add_plugin(${target}): KIND is required")
  endif()
  add_library(${target} MODULE ${P_SOURCES})
  if(TARGET lmgrid_core)
    target_link_libraries(${target} PRIVATE lmgrid_core ${P_LIBRARIES})
  else()
    target_link_libraries(${target} PRIVATE lmgrid::core ${P_LIBRARIES})
  endif()
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter -Werror=return-type)
  if(NOT P_OUTPUT_DIR)
    if(DEFINED LMGRID_PLUGIN_OUTPUT_DIR)
      set(P_OUTPUT_DIR ${LMGRID_PLUGIN_OUTPUT_DIR})
    else()
      set(P_OUTPUT_DIR ${CMAKE_BINARY_DIR}/plugins)
    endif()
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX "" OUTPUT_NAME "lmgrid_${P_KIND}_${target}" DEFINE_SYMBOL ""
    LIBRARY_OUTPUT_DIRECTORY ${P_OUTPUT_DIR})
  if(COMMAND lmgrid_plugin_pch)
    lmgrid_plugin_pch(${target})
  endif()
endfunction()
