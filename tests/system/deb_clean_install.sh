#!/usr/bin/env bash
# The Debian packages on a clean Debian 12: a minimal bookworm made with debootstrap in a folder, the
# two packages installed into it with apt (which fetches what they depend on from the Debian mirror, so
# their Depends are what a real install needs, not what this build machine happens to have), then, in
# that system (chroot, in a mount namespace of its own, sysfs read-only): the demo's first part with
# the installed tool and modules, the packaged udrvd answering the tool, and a driver built against
# libudrv-dev with only what apt brought. (The demo's second part, the test VM, runs from the build tree:
# make run.)
# Usage: deb_clean_install.sh BUILD_DIR SOURCE_DIR (after deb_packages.sh, which leaves the packages in
# BUILD_DIR/test-packages)
# Needs root (debootstrap, chroot: exits 77 otherwise) and the Debian mirror: UDRV_DEBIAN_MIRROR, default
# http://deb.debian.org/debian; the host's apt sources and proxy settings are copied in. Downloaded
# packages are kept in BUILD_DIR/debootstrap-cache for the next run.
set -uo pipefail
[ "$(id -u)" -eq 0 ] || { echo "SKIP: debootstrap and chroot need root"; exit 77; }
build=$(cd "$1" && pwd); src=$(cd "$2" && pwd)
. "$(dirname "$0")/check-lib.sh"
mirror=${UDRV_DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d); root=$work/root
# The mounts live in the namespaces of the chrooted commands and end with them: rm sees plain folders.
trap 'pkill -9 -f "^/usr/bin/udrv(d|-host) .*--socket /tmp/udrvd-clean.sock" 2>/dev/null; rm -rf "$work"' EXIT
version=$("$build/bin/udrv" --version | sed -n 's/^udrv \([0-9.]*\) .*/\1/p')

# in_root COMMAND...: COMMAND in the clean system, with /proc, /dev and a read-only /sys of its own.
in_root() {
  unshare --mount --propagation private -- /bin/bash -c '
    r=$1; shift
    mount -t proc proc "$r/proc" && mount --rbind /dev "$r/dev" || exit 99
    mount -t sysfs -o ro sysfs "$r/sys" 2>/dev/null || { mount --rbind /sys "$r/sys" && mount -o remount,bind,ro "$r/sys"; } || exit 99
    exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"' \
    bash "$root" "$@"
}
export -f in_root; export root  # for the checks' bash -c

pkgs=$build/test-packages  # deb_packages.sh made them
for p in udrv libudrv-dev; do
  [ -f "$pkgs/${p}_${version}_amd64.deb" ] || { echo "no $pkgs/${p}_${version}_amd64.deb: the deb_packages test makes it (ctest -R 'deb_')"; exit 1; }
done
mkdir -p "$build/debootstrap-cache"
check "debootstrap makes a minimal Debian 12 (bookworm, minbase) from $mirror" 0 "" bash -c "
  debootstrap --variant=minbase --cache-dir='$build/debootstrap-cache' bookworm '$root' '$mirror' > '$work/debootstrap.log' 2>&1 ||
  { tail -n 20 '$work/debootstrap.log'; echo 'debootstrap failed: is $mirror reachable (UDRV_DEBIAN_MIRROR names another)?'; exit 1; }"
[ -x "$root/bin/sh" ] || { summary; exit 1; }
# This machine's way to the archive (sources, proxy) and its name server.
if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
  cp /etc/apt/sources.list.d/*.sources "$root/etc/apt/sources.list.d/" && rm -f "$root/etc/apt/sources.list"
fi
cp /etc/apt/apt.conf.d/*proxy* "$root/etc/apt/apt.conf.d/" 2>/dev/null || true
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
check "the clean system has no udrv, no compiler and no libfmt" 0 "^clean$" sh -c "
  [ ! -e '$root/usr/bin/udrv' ] && [ ! -e '$root/usr/bin/g++' ] && ! ls '$root'/usr/lib/x86_64-linux-gnu/libfmt* >/dev/null 2>&1 && echo clean"

cp "$pkgs/udrv_${version}_amd64.deb" "$pkgs/libudrv-dev_${version}_amd64.deb" "$root/tmp/" && chmod 644 "$root"/tmp/*.deb
check "apt installs udrv and libudrv-dev with their dependencies from the archive" 0 "" bash -c "
  { in_root apt-get update && in_root apt-get install -y --no-install-recommends /tmp/udrv_${version}_amd64.deb /tmp/libudrv-dev_${version}_amd64.deb; } > '$work/apt.log' 2>&1 ||
  { tail -n 30 '$work/apt.log'; exit 1; }
  in_root dpkg-query -W -f '\${Status}\n' udrv libudrv-dev | grep -c 'install ok installed' | grep -qx 2"

# The demo's first part (scripts/demo.sh), with what the package installed.
check "udrv lspci: this machine's PCI devices, read-only" 0 "" bash -c "
  in_root udrv lspci > '$work/lspci' 2> '$work/lspci.err' && [ \"\$(wc -l < '$work/lspci')\" -eq \"\$(ls /sys/bus/pci/devices | wc -l)\" ] || { cat '$work/lspci' '$work/lspci.err'; exit 1; }"
check "udrv modinfo of an installed module" 0 "^name: +udrv_edu" in_root udrv modinfo /usr/lib/udrv/modules/$version/udrv_edu.so
check "udrv insmod by name from the installed directory, with parameters and a dependency" 0 \
  "udrv_sample_params: \[2/2\] hello, demo" in_root udrv insmod udrv_sample_params count=2 who=demo -- udrv_sample_consumer
cp "$src/docs/examples/ramdisks.toml" "$root/tmp/"
check "udrv platform: RAM disks bound by the installed ramdisk driver" 0 "scratch.*udrv_ramdisk" in_root udrv platform /tmp/ramdisks.toml

# The packaged udrvd, with a RAM disk from its configuration; the tool reaches it through its socket.
cat > "$root/tmp/udrvd.toml" <<EOF
[[platform]]
description = "/tmp/ram.toml"
EOF
cat > "$root/tmp/ram.toml" <<EOF
[[device]]
name = "scratch"
compatible = "udrv,ramdisk"
memory = [{ name = "storage", start = 0x1000_0000, size = 0x100_0000 }]
EOF
cat > "$root/tmp/daemon.sh" <<'EOF'
export UDRV_SOCKET=/tmp/udrvd-clean.sock
/usr/bin/udrvd --socket /tmp/udrvd-clean.sock --no-uevents --config /tmp/udrvd.toml > /tmp/udrvd.log 2>&1 &
for _ in $(seq 100); do udrv rpc get_version > /dev/null 2>&1 && break; sleep 0.1; done
# The configured RAM disk comes up in a host of its own, which may take a moment on a busy machine.
for _ in $(seq 100); do udrv block list 2>/dev/null | grep -q '^ram0 ' && break; sleep 0.1; done
udrv modprobe udrv_sample_hello; udrv lsmod; udrv block list
kill -TERM $!; wait $!; echo "udrvd exit $?"; cat /tmp/udrvd.log
EOF
check "udrvd from the package: modprobe and lsmod through it, its RAM disk listed, SIGTERM ends it" 0 \
  "udrv_sample_hello: loaded into udrvd.*udrv_sample_hello.*ram0 +scratch +udrv_ramdisk.*udrvd exit 0" \
  bash -c "in_root /bin/bash /tmp/daemon.sh | tr '\n' ' '"

# An out-of-tree driver, built in the clean system against libudrv-dev as docs/out-of-tree.md says.
cp -r "$src/samples/out-of-tree" "$root/tmp/drv"
check "a driver builds against libudrv-dev with what apt brought, and its modinfo reads" 0 "name: +edu_factorial" bash -c "
  { in_root cmake -S /tmp/drv -B /tmp/drv/build && in_root cmake --build /tmp/drv/build; } > '$work/drv.log' 2>&1 || { cat '$work/drv.log'; exit 1; }
  in_root udrv modinfo /tmp/drv/build/modules/edu_factorial.so"
summary
