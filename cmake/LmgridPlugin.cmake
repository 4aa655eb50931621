# lmgrid_add_plugin(<target> KIND <arch|data|tokenizer|optim> SOURCES <files...>
#                   [LIBRARIES <libs...>] [OUTPUT_DIR <dir>] [NO_INSTALL])
#
# One helper for every plugin kind, in the tree and out of it (installed with the SDK).
# Builds a MODULE library named lmgrid_<kind>_<name>.so into the plugin folder, with the same
# warnings everywhere, linked against what its kind needs:
#   arch               lmgrid::nn (the shared blocks and CausalLM; brings lmgrid::plugin)
#   data               lmgrid::core (data sources: the cache and verified downloads)
#   tokenizer, optim   lmgrid::plugin (the contract and params only)
# Only data plugins see SQLite or curl (through lmgrid::core); LIBRARIES adds more.
# One set of warnings for every lmgrid target, in the tree and in out-of-tree plugins.
if(NOT TARGET lmgrid_warnings)
  add_library(lmgrid_warnings INTERFACE)
  target_compile_options(lmgrid_warnings INTERFACE -Wall -Wextra -Wno-unused-parameter -Werror=return-type)
endif()

function(lmgrid_add_plugin target)
  cmake_parse_arguments(P "NO_INSTALL" "KIND;OUTPUT_DIR" "SOURCES;LIBRARIES" ${ARGN})
  set(_explicit_output_dir ${P_OUTPUT_DIR})
  if(NOT P_KIND)
    message(FATAL_ERROR "lmgrid_add_plugin(${target}): KIND is required")
  endif()
  if(P_KIND STREQUAL "arch")
    set(_base lmgrid::nn)
  elseif(P_KIND STREQUAL "data")
    set(_base lmgrid::core)
  else()
    set(_base lmgrid::plugin)
  endif()
  add_library(${target} MODULE ${P_SOURCES})
  target_link_libraries(${target} PRIVATE ${_base} ${P_LIBRARIES})
  target_link_libraries(${target} PRIVATE lmgrid_warnings)
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
  # `cmake --install` puts the plugin where an installed host looks: <prefix>/lib/lmgrid/plugins.
  # Plugins built into a folder of their own (OUTPUT_DIR: the test plugins) are not installed.
  if(NOT P_NO_INSTALL AND NOT _explicit_output_dir)
    install(TARGETS ${target} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/lmgrid/plugins)
  endif()
endfunction()
