#!/usr/bin/env bash
# The Debian packages (make deb: CPack from this build): what each holds, their dependencies (from
# dpkg-shlibdeps), and an install with dpkg into an empty root (no udrv anywhere, no dpkg database)
# from which the installed tool runs: lspci, modinfo, modprobe from the packaged index, a module
# loaded; and a driver built against libudrv-dev's SDK in that root. It leaves the packages in
# BUILD/test-packages for deb_clean_install.sh (a clean Debian system).
# Usage: deb_packages.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$(cd "$1" && pwd); src=$(cd "$2" && pwd)
. "$(dirname "$0")/check-lib.sh"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
version=$("$build/bin/udrv" --version | sed -n 's/^udrv \([0-9.]*\) .*/\1/p')

# Kept in BUILD/test-packages for deb_clean_install (one cpack at a time in a build folder).
out=$build/test-packages; rm -rf "$out"
check "cpack makes udrv and libudrv-dev" 0 "" sh -c "cd '$build' && cpack -B '$out' > '$work/cpack.log' 2>&1 || { cat '$work/cpack.log'; exit 1; }
  [ -f '$out/udrv_${version}_amd64.deb' ] && [ -f '$out/libudrv-dev_${version}_amd64.deb' ]"
rt=$out/udrv_${version}_amd64.deb dev=$out/libudrv-dev_${version}_amd64.deb
check "udrv holds the tools, libudrv, the indexed modules and udrvd's unit" 0 "" sh -c "
  dpkg-deb -c '$rt' | awk '{print \$6}' > '$work/rt.list' &&
  for f in ./usr/bin/udrv ./usr/bin/udrvd ./usr/bin/udrv-host ./usr/lib/libudrv.so.0.1 ./usr/lib/libudrv.so.0.1.0 ./usr/lib/systemd/system/udrvd.service \
           ./usr/lib/udrv/modules/$version/udrv_nvme.so ./usr/lib/udrv/modules/$version/modules.dep ./usr/lib/udrv/modules/$version/modules.alias; do
    grep -qx \"\$f\" '$work/rt.list' || { echo \"missing \$f\"; exit 1; }
  done; ! grep -q include '$work/rt.list' && ! grep -qx ./usr/lib/libudrv.so '$work/rt.list'"
check "udrv depends on the Debian libraries it links (dpkg-shlibdeps)" 0 "libfmt9.*libssl3.*liburing2" dpkg-deb -f "$rt" Depends
check "libudrv's SONAME is libudrv.so.0.1, and the tool asks for it" 0 "^libudrv.so.0.1 libudrv.so.0.1$" sh -c "dpkg-deb -x '$rt' '$work/x' &&
  echo \$(readelf -d '$work/x/usr/lib/libudrv.so.0.1.0' | sed -n 's/.*SONAME.*\\[\\(.*\\)\\]/\\1/p') \$(readelf -d '$work/x/usr/bin/udrv' | sed -n 's/.*NEEDED.*\\[\\(libudrv[^]]*\\)\\]/\\1/p')"
check "udrv's shlibs file gives packages of out-of-tree drivers their dependency on it" 0 "^libudrv 0.1 udrv \\(>= $version\\)" dpkg-deb -I "$rt" shlibs
check "udrv's binaries carry no debug info" 0 "^stripped$" sh -c "dpkg-deb -x '$rt' '$work/x' &&
  if readelf -S '$work/x/usr/bin/udrv' '$work/x/usr/lib/libudrv.so.0.1.0' | grep -q debug_info; then echo 'debug info'; else echo stripped; fi"
check "libudrv-dev holds the headers, the CMake package, udrv.pc and the link libudrv.so, and depends on this udrv" 0 "^udrv \(= $version\)" sh -c "
  dpkg-deb -c '$dev' | awk '{print \$6}' > '$work/dev.list' &&
  for f in ./usr/include/udrv/pci.hpp ./usr/lib/cmake/udrv/udrvConfig.cmake ./usr/lib/pkgconfig/udrv.pc ./usr/lib/libudrv.so; do
    grep -qx \"\$f\" '$work/dev.list' || { echo \"missing \$f\"; exit 1; }
  done; dpkg-deb -f '$dev' Depends"

# dpkg into an empty root: its own database, nothing of udrv's build in reach; a static shell and
# ldconfig (the package's postinst runs ldconfig, chrooted) are all the root has.
root=$work/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/bin" "$root/sbin" "$root/etc" && : > "$root/var/lib/dpkg/status"
cp /bin/busybox "$root/bin/sh" && cp /sbin/ldconfig "$root/sbin/ldconfig"
check "dpkg -i installs both into an empty root" 0 "" sh -c "
  dpkg --root='$root' --force-depends --force-not-root -i '$rt' '$dev' > '$work/dpkg.log' 2>&1 || { cat '$work/dpkg.log'; exit 1; }
  dpkg --root='$root' -s udrv libudrv-dev | grep -c '^Status: install ok installed' | grep -qx 2"
U=$root/usr/bin/udrv
check "the installed tool runs: lspci" 0 "" "$U" lspci --sysfs "$src/tests/fixtures/sysfs/q35-vm"
check "... modinfo of an installed module" 0 "^udrv_nvme$" "$U" modinfo -F name "$root/usr/lib/udrv/modules/$version/udrv_nvme.so"
check "... modprobe from the packaged index (dependencies first)" 0 "udrv_sample_provider.so.*udrv_sample_consumer.so" \
  sh -c "'$U' --standalone modprobe -n udrv_sample_consumer | tr '\n' ' '"
check "... and loads a module by name from the installed directory" 0 "udrv_sample_hello: hello from user space" "$U" --standalone insmod udrv_sample_hello
check "a driver builds against libudrv-dev's SDK in that root" 0 "name: +edu_factorial" sh -c "
  cp -r '$src/samples/out-of-tree' '$work/drv' &&
  cmake -S '$work/drv' -B '$work/drv/build' -DCMAKE_PREFIX_PATH='$root/usr' > '$work/drv.log' 2>&1 &&
  cmake --build '$work/drv/build' >> '$work/drv.log' 2>&1 || { cat '$work/drv.log'; exit 1; }
  '$U' modinfo '$work/drv/build/modules/edu_factorial.so'"
summary
