#!/usr/bin/env bash
# The SDK as a driver author outside udrv's tree uses it: install the build into a prefix, build the
# out-of-tree sample (samples/out-of-tree, copied to a folder of its own) with find_package(udrv) and
# again with pkg-config, read its modinfo and load it with the installed tool. The module is left in
# BUILD/oot-modules for the VM suite, which loads it into udrvd and binds QEMU's edu device to it.
# Usage: sdk_out_of_tree.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$(cd "$1" && pwd); src=$(cd "$2" && pwd)
. "$(dirname "$0")/check-lib.sh"
work=$build/sdk-test
rm -rf "$work" "$build/oot-modules"; mkdir -p "$work"
prefix=$work/prefix
version=$("$build/bin/udrv" --version | sed -n 's/^udrv \([0-9.]*\) .*/\1/p')

check "cmake --install puts the SDK, the tools and the modules in the prefix" 0 "" sh -c "
  cmake --install '$build' --prefix '$prefix' >/dev/null &&
  for f in include/udrv/pci.hpp include/udrv/module.hpp include/udrv/block.hpp include/udrv/net.hpp lib/libudrv.so \
           lib/cmake/udrv/udrvConfig.cmake lib/cmake/udrv/udrvConfigVersion.cmake lib/cmake/udrv/udrvTargets.cmake \
           lib/cmake/udrv/udrv_module.cmake lib/pkgconfig/udrv.pc bin/udrv bin/udrvd bin/udrv-host \
           lib/udrv/modules/$version/udrv_nvme.so lib/udrv/modules/$version/udrv_edu.so lib/udrv/modules/$version/modules.dep lib/udrv/modules/$version/modules.alias lib/systemd/system/udrvd.service; do
    [ -e '$prefix'/\$f ] || { echo \"missing: \$f\"; exit 1; }
  done"
check "the installed tool runs from the prefix and finds the installed modules by name" 0 "^udrv_sample_hello +[0-9]+ +0" \
  sh -c "'$prefix/bin/udrv' modinfo -F name '$prefix/lib/udrv/modules/$version/udrv_nvme.so' | grep -qx udrv_nvme && '$prefix/bin/udrv' --standalone insmod udrv_sample_hello"

# The driver's folder is outside the tree; the build knows only the prefix.
cp -r "$src/samples/out-of-tree" "$work/edu_factorial"
check "find_package(udrv CONFIG) + udrv_add_module build the out-of-tree driver with -Wall -Wextra -Werror" 0 "" sh -c "
  cmake -S '$work/edu_factorial' -B '$work/edu_factorial/build' -DCMAKE_PREFIX_PATH='$prefix' -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS='-Wall -Wextra -Werror' > '$work/configure.log' 2>&1 || { cat '$work/configure.log'; exit 1; }
  cmake --build '$work/edu_factorial/build' > '$work/build.log' 2>&1 || { cat '$work/build.log'; exit 1; }
  [ -f '$work/edu_factorial/build/modules/edu_factorial.so' ]"
mod=$work/edu_factorial/build/modules/edu_factorial.so
check "modinfo reads the driver's declaration and its ID table's alias without loading it" 0 \
  "alias: +pci:v00001234d000011E8sv\*sd\*bc\*sc\*i\*" "$prefix/bin/udrv" modinfo "$mod"
check "modinfo shows its parameter" 0 "parm: +n:The factorial the device computes at probe .*\(uint32, default 10\)" "$prefix/bin/udrv" modinfo "$mod"
check "the installed tool loads and unloads it" 0 "^edu_factorial +[0-9]+ +0" "$prefix/bin/udrv" --standalone insmod "$mod" n=5
check "a bad parameter is refused before its code runs" 1 "parameter 'n' expects uint32" "$prefix/bin/udrv" --standalone insmod "$mod" n=five
check "its install rule puts it in the installed udrv's module directory; depmod indexes it" 0 \
  "alias pci:v00001234d000011E8sv\*sd\*bc\*sc\*i\* edu_factorial" sh -c "
  cmake --install '$work/edu_factorial/build' --prefix '$prefix' >/dev/null && [ -f '$prefix/lib/udrv/modules/$version/edu_factorial.so' ] &&
  '$prefix/bin/udrv' depmod && cat '$prefix/lib/udrv/modules/$version/modules.alias'"
check "modprobe by the edu device's modalias finds both edu drivers, with modprobe.d's options" 0 \
  "insmod $prefix/lib/udrv/modules/$version/edu_factorial.so n=4 insmod $prefix/lib/udrv/modules/$version/udrv_edu.so $" sh -c "
  mkdir -p '$work/modprobe.d' && echo 'options edu_factorial n=4' > '$work/modprobe.d/edu.conf' &&
  UDRV_MODPROBE_D='$work/modprobe.d' '$prefix/bin/udrv' --standalone modprobe -n pci:v00001234d000011E8sv00001AF4sd00001100bc00scFFi00 | tr '\n' ' '"
check "modprobe loads a module's dependencies first, from the installed index" 0 "udrv_sample_consumer .*udrv_sample_provider .*udrv_sample_consumer" \
  sh -c "'$prefix/bin/udrv' --standalone modprobe udrv_sample_consumer | tr '\n' ' '"
check "find_package refuses an SDK of another minor version" 1 "udrv.*version" sh -c "
  mkdir -p '$work/wrongver' && printf 'cmake_minimum_required(VERSION 3.25)\nproject(x LANGUAGES CXX)\nfind_package(udrv 0.2 CONFIG REQUIRED)\n' > '$work/wrongver/CMakeLists.txt' &&
  cmake -S '$work/wrongver' -B '$work/wrongver/build' -DCMAKE_PREFIX_PATH='$prefix' 2>&1"

# pkg-config, for builds that are not CMake.
check "pkg-config gives the flags: the same driver built with one g++ line" 0 "name: +edu_factorial" sh -c "
  export PKG_CONFIG_PATH='$prefix/lib/pkgconfig'
  g++ -Wall -Wextra -Werror -fPIC -shared -fvisibility=hidden \$(pkg-config --cflags udrv) '$work/edu_factorial/edu_factorial.cpp' \
      \$(pkg-config --libs udrv) -o '$work/edu_factorial_pc.so' &&
  [ \"\$(pkg-config --variable=moduledir udrv)\" -ef '$prefix/lib/udrv/modules/$version' ] &&
  '$prefix/bin/udrv' modinfo '$work/edu_factorial_pc.so'"

# docs/quickstart.md's module, as a reader copies it: its C++ and its CMakeLists.txt blocks.
mkdir -p "$work/my_driver"
awk '/^```cpp/ {f=1; next} /^```/ {f=0} f' "$src/docs/quickstart.md" > "$work/my_driver/my_driver.cpp"
awk '/^```cmake/ {f=1; next} /^```/ {f=0} f' "$src/docs/quickstart.md" > "$work/my_driver/CMakeLists.txt"
check "the quickstart's module builds from its page outside the tree and loads" 0 "my_driver: loaded, answer=7" sh -c "
  cmake -S '$work/my_driver' -B '$work/my_driver/build' -DCMAKE_PREFIX_PATH='$prefix' >/dev/null &&
  cmake --build '$work/my_driver/build' >/dev/null && '$prefix/bin/udrv' --standalone insmod '$work/my_driver/build/modules/my_driver.so' answer=7"

if [ "$fails" -eq 0 ]; then mkdir -p "$build/oot-modules" && cp "$mod" "$build/oot-modules/"; fi
summary
