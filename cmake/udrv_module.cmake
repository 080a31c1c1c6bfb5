# udrv_add_module(NAME SOURCES... [LINK targets...] [NO_INSTALL])
# Builds a loadable udrv module NAME.so into ${UDRV_MODULE_DIR} (default: BUILD/modules). The module
# links against libudrv (the core it registers with) and finds sibling modules it depends on through
# $ORIGIN. The same function serves udrv's tree and drivers built against an installed SDK
# (find_package(udrv CONFIG) includes this file; docs/out-of-tree.md).
function(udrv_add_module name)
  cmake_parse_arguments(ARG "NO_INSTALL" "" "SOURCES;LINK" ${ARGN})
  if(NOT DEFINED UDRV_MODULE_DIR)
    set(UDRV_MODULE_DIR ${CMAKE_BINARY_DIR}/modules)
  endif()
  if(NOT DEFINED UDRV_INSTALL_MODULE_DIR)
    set(UDRV_INSTALL_MODULE_DIR lib/udrv/modules)
  endif()
  add_library(${name} SHARED ${ARG_SOURCES} ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE udrv::udrv ${ARG_LINK})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    LIBRARY_OUTPUT_DIRECTORY ${UDRV_MODULE_DIR}
    BUILD_RPATH "$ORIGIN;$ORIGIN/../lib"
    INSTALL_RPATH "$ORIGIN;$ORIGIN/../../.."
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  # Installed where the tools look for modules: PREFIX/lib/udrv/modules/VERSION (PREFIX/lib has libudrv).
  if(NOT ARG_NO_INSTALL)
    install(TARGETS ${name} LIBRARY DESTINATION ${UDRV_INSTALL_MODULE_DIR} COMPONENT runtime)
    set_property(GLOBAL APPEND PROPERTY UDRV_MODULES ${name})  # indexed by depmod (udrv's own build)
  endif()
endfunction()

# udrv_add_driver(NAME INCLUDE DIR SOURCES src... [LINK targets...])
# A driver is built twice from the same sources: NAME_builtin, an object library (objects, so the
# linker never drops the module registration) that programs link in as a built-in module, and the
# loadable module NAME.so. Users include the driver's header relative to DIR.
function(udrv_add_driver name)
  cmake_parse_arguments(ARG "" "INCLUDE" "SOURCES;LINK" ${ARGN})
  add_library(${name}_builtin OBJECT ${ARG_SOURCES})
  target_link_libraries(${name}_builtin PUBLIC udrv::udrv ${ARG_LINK})
  target_include_directories(${name}_builtin PUBLIC ${ARG_INCLUDE})
  udrv_add_module(${name} ${ARG_SOURCES} LINK ${ARG_LINK})
endfunction()
