# Debian packages (make deb; CPack's DEB generator, one package per install component):
#   udrv          the tool, udrvd and its driver host, libudrv, the modules (indexed), udrvd's unit
#   libudrv-dev   the headers, the CMake package and udrv.pc: what building a driver needs
# Installed under /usr: modules in /usr/lib/udrv/modules/VERSION. Dependencies on Debian's libraries
# come from dpkg-shlibdeps; libudrv is the package's own (a private library for dpkg-shlibdeps), and
# its shlibs file (libudrv 0.1 udrv (>= VERSION)) gives the same to packages of out-of-tree drivers.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME udrv)
set(CPACK_PACKAGE_VENDOR "The udrv developers")
set(CPACK_PACKAGE_CONTACT "The udrv developers <udrv@example.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "User-space drivers over VFIO with the Linux driver-core model")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)  # no debug info in the packages (the build's RelWithDebInfo keeps it)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME udrv)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${CMAKE_BINARY_DIR}/lib)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)  # CPack has no per-package switch; only udrv holds a library
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_RECOMMENDS "pciutils, pci.ids")
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION "user-space drivers over VFIO: tool, udrvd, modules
The udrv tool (lspci, bind, nvme, net, block, modinfo, insmod, modprobe, sign), udrvd, the driver
manager that keeps drivers in restartable driver hosts, and the NVMe, virtio-net, e1000e, edu, RAM
and file block driver modules.")
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libudrv-dev)
# What udrv_add_module builds with: cmake only recommends a build tool, and a clean system has none
# (deb_clean_install found it).
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "udrv (= ${PROJECT_VERSION}), libfmt-dev, nlohmann-json3-dev, g++ (>= 4:12), cmake (>= 3.25), make | ninja-build")
set(CPACK_COMPONENT_DEV_DESCRIPTION "the SDK for building udrv drivers
Public headers, the CMake package (find_package(udrv CONFIG): udrv::udrv, udrv_add_module) and
udrv.pc, for drivers built outside udrv's tree.")
include(CPack)
