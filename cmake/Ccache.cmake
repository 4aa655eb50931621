# Compiler cache: every C++ (and CUDA) compile goes through ccache when it is installed
# (LMGRID_CCACHE=ON, the default; tools/setup.sh installs it). A clean build of lmgrid is about
# 2,200 CPU-seconds, nearly all of it LibTorch's headers and templates; a build whose sources did
# not change is then mostly cache hits, also in a fresh clone in another folder:
#   CCACHE_BASEDIR   paths under the source tree are hashed relative to the build folder, so a
#                    clone elsewhere hits the same entries;
#   CCACHE_NOHASHDIR the working folder is not hashed (no -g in these builds, so no path in the
#                    objects depends on it);
#   CCACHE_SLOPPINESS what ccache's manual asks for with precompiled headers (the LibTorch PCH,
#                    core/CMakeLists.txt): the PCH's defines and timestamps, and include files'
#                    times (a fresh clone gives every file a new mtime; contents are still hashed).
# The cache is ccache's default (~/.cache/ccache, or CCACHE_DIR), shared by all build folders.
option(LMGRID_CCACHE "Compile through ccache when it is installed" ON)
if(LMGRID_CCACHE)
  find_program(LMGRID_CCACHE_PROGRAM ccache)
  if(LMGRID_CCACHE_PROGRAM)
    set(_launcher ${CMAKE_COMMAND} -E env
        "CCACHE_BASEDIR=${CMAKE_SOURCE_DIR}" CCACHE_NOHASHDIR=1
        "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
        ${LMGRID_CCACHE_PROGRAM})
    set(CMAKE_CXX_COMPILER_LAUNCHER ${_launcher})
    set(CMAKE_CUDA_COMPILER_LAUNCHER ${_launcher})
    message(STATUS "lmgrid: compiling through ${LMGRID_CCACHE_PROGRAM}")
  endif()
endif()
# clang stamps a PCH with its headers' mtimes and refuses it when they differ; ccache's manual
# asks for -fno-pch-timestamp so that a cached PCH is usable in another clone.
if(LMGRID_CCACHE_PROGRAM AND CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  add_compile_options("SHELL:-Xclang -fno-pch-timestamp")
endif()
