# udrv_add_module(NAME SOURCES... [LINK targets...])
# Builds a loadable udrv module NAME.so into ${UDRV_MODULE_DIR}. The module links against libudrv (the
# core it registers with) and finds sibling modules it depends on through $ORIGIN.
function(udrv_add_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LINK" ${ARGN})
  add_library(${name} SHARED ${ARG_SOURCES} ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE udrv ${ARG_LINK})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    LIBRARY_OUTPUT_DIRECTORY ${UDRV_MODULE_DIR}
    BUILD_RPATH "$ORIGIN;$ORIGIN/../lib"
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
endfunction()
