#!/usr/bin/env bash
# The test VM: QEMU q35 + intel-iommu under TCG, booting Debian's kernel with an initramfs that holds
# busybox, the VFIO/NVMe/NIC kernel modules and udrv's build. The hardware udrv drives in tests.
#
#   vm.sh prepare                        install QEMU/busybox/cpio, fetch and unpack the kernel (cached)
#   vm.sh run BUILD_DIR GUEST_SCRIPT     boot, run GUEST_SCRIPT as root in the guest, print its output,
#                                        exit with its status (124 if the guest hung past $UDRV_VM_TIMEOUT)
#   vm.sh run-file SCRIPT [BUILD_DIR]    the same for a script of one's own (BUILD_DIR default: build)
#   vm.sh shell [BUILD_DIR]              boot and give an interactive root shell on the guest's console
#                                        (the build in /udrv, its tools on PATH; leave with poweroff -f,
#                                        or Ctrl-A X)
#
# Guest devices (fixed slots, so tests can name them):
#   00:03.0 edu (1234:11e8)      00:04.0 nvme, 64 MiB raw file    00:05.0 nvme, null-co (no data)
#   00:06.0 e1000e (hub 0)       00:07.0 virtio-net modern (hub 0) 00:08.0 virtio-net for the guest kernel (hub 0)
#   00:09.0 nvme with two namespaces: nsid 1 (16 MiB, 512 B blocks), nsid 2 (32 MiB, 4 KiB blocks)
#   00:0a.0 virtio-net for the guest kernel (hub 1)      00:0b.0 e1000e (hub 1): a second segment for fwd
#   00:0e.0 edu whose DMA reaches only 20 bits (dma_mask=0xfffff): the driver must notice, not corrupt memory
#   00:10.0 PCIe root port with qemu-xhci behind it (01:00.0); 00:11.0 root port, a PCIe switch (02:00.0 up,
#           03:00.0 down) and ivshmem-plain (04:00.0); 00:12.0 PCI-PCI bridge with pci-testdev (05:01.0);
#           00:14.0 ich9-intel-hda: a topology for comparing udrv lspci with lspci, and bridges to refuse binding
#   00:0c.0 virtio-net modern with 2 queue pairs (mq=on, on a multi-queue tap) and 00:0d.0 virtio-net for
#           the guest kernel (a tap): both taps on a bridge in a network namespace of QEMU's own, so
#           nothing reaches this machine's network. Needs root and /dev/net/tun; without them these two
#           slots stay empty and the guest tests that need them say so.
# Environment: UDRV_VM_CACHE (default /var/tmp/udrv-vm-cache), UDRV_VM_TIMEOUT (default 300 s),
# UDRV_VM_MEM (default 1G), UDRV_VM_SMP (default 2 vCPUs), UDRV_VM_LOG (also write the serial log here),
# UDRV_VM_DPDK=1 (also put dpdk-testpmd and DPDK's virtio/e1000 PMDs in the guest, for bench/net.sh),
# UDRV_VM_NVME_OPTS (appended to the 00:04.0 and 00:05.0 nvme devices, e.g. ",ioeventfd=on"),
# UDRV_VM_PIN=1 (benchmarks: vCPU 0 gets the last host CPU to itself, every other QEMU thread the first),
# UDRV_VM_DEVICES=nvme (benchmarks: only the 00:04.0 and 00:05.0 controllers; QEMU's main loop, which
# emulates every device, then has about half as many file descriptors to poll on each iteration),
# UDRV_BENCH_* (handed to the guest script as environment variables).
# The modern virtio-net has iommu_platform=on: without it QEMU lets virtio DMA bypass the vIOMMU, and
# bus addresses from VFIO would be wrong for it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${UDRV_VM_CACHE:-/var/tmp/udrv-vm-cache}

# The guest kernel: 6.12 (the newest linux-image-6.12.*+deb12-amd64-unsigned Debian 12 packages: it has
# ublk_drv, nvme-tcp and nvmet-tcp) or 6.1 (what linux-image-amd64 names). UDRV_VM_KERNEL picks.
vm_kernel=${UDRV_VM_KERNEL:-6.12}
# Kernel modules the guest loads (each with what it depends on, found from the modules' own metadata:
# the packages carry no modules.dep). Those marked ? are optional: 6.1 has no ublk.
modules_wanted=(nvme vfio-pci vfio_iommu_type1 virtio_pci virtio_net e1000e ext4 crc32c_generic
  ?ublk_drv ?nvme-tcp ?nvmet-tcp ?veth)

need_pkgs() {
  local missing=()
  for p in qemu-system-x86 busybox-static cpio iproute2 xz-utils e2fsprogs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || { echo "vm: missing packages ${missing[*]}: run as root" >&2; return 1; }
  echo "vm: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Unpacks the kernel package for $vm_kernel (versions move with security updates: never hard-coded).
kernel_package() {
  case "$vm_kernel" in
    6.1) apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}' ;;
    6.12) apt-cache search --names-only '^linux-image-6\.12\.[0-9.]+\+deb12-amd64-unsigned$' 2>/dev/null | awk '{print $1}' | sort -V | tail -n 1 ;;
    *) echo "vm: UDRV_VM_KERNEL is 6.12 or 6.1, not '$vm_kernel'" >&2; return 2 ;;
  esac
}
prepare() {
  need_pkgs
  mkdir -p "$cache"
  local pkg
  pkg=$(kernel_package) || return 2
  if [ -z "$pkg" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    pkg=$(kernel_package)
  fi
  [ -n "$pkg" ] || { echo "vm: no Debian package found for the $vm_kernel kernel" >&2; return 1; }
  local dir="$cache/$pkg"
  if [ ! -f "$dir/.done" ]; then
    echo "vm: fetching $pkg" >&2
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && apt-get download "$pkg" >/dev/null 2>&1 && dpkg-deb -x ./*.deb root && rm -f ./*.deb)
    touch "$dir/.done"
  fi
  ln -sfn "$pkg" "$cache/current-$vm_kernel"
}

# A module file's metadata field (depends=, softdep=), read from the (maybe xz-compressed) file.
module_field() {
  case "$1" in *.xz) xz -dc "$1" ;; *) cat "$1" ;; esac | tr '\0' '\n' | sed -n "s/^$2=//p" | head -n 1
}
# Prints the modules to load, in order (each after what it needs), as paths under the kernel's module
# directory. Cached per kernel and list.
resolve_modules() {
  local mdir=$1 out=$2
  local key; key=$(echo "${modules_wanted[*]}" | md5sum | cut -c1-8)
  [ -f "$out.$key" ] && { cp "$out.$key" "$out"; return 0; }
  declare -A path seen
  local f n
  while read -r f; do
    n=$(basename "$f"); n=${n%.xz}; n=${n%.ko}; path[${n//-/_}]=$f
  done < <(cd "$mdir" && find kernel -name '*.ko' -o -name '*.ko.xz')
  : > "$out.tmp"
  visit() {
    local name=${1//-/_} p deps d soft
    [ -n "${seen[$name]:-}" ] && return 0
    seen[$name]=1
    p=${path[$name]:-}
    if [ -z "$p" ]; then
      grep -qE "/${name//_/[-_]}\.ko$" "$mdir/modules.builtin" 2>/dev/null && return 0  # built into the kernel
      return 1
    fi
    # Dependencies, and soft pre-dependencies (ext4 and nvme-tcp want crc32c before them).
    deps=$(module_field "$mdir/$p" depends)
    soft=$(module_field "$mdir/$p" softdep | sed -n 's/.*pre: *\([^:]*\)\( post:.*\)\?$/\1/p')
    for d in ${deps//,/ } $soft; do visit "$d" || true; done
    echo "$p" >> "$out.tmp"
  }
  local m optional
  for m in "${modules_wanted[@]}"; do
    optional=${m:0:1}; m=${m#\?}
    visit "$m" || { [ "$optional" = "?" ] || echo "vm: warning: no module $m in this kernel" >&2; }
  done
  mv "$out.tmp" "$out.$key"; cp "$out.$key" "$out"
}

# Copies an ELF file and the shared libraries it needs into the rootfs.
copy_elf() {
  local f=$1 dest=$2 root=$3
  mkdir -p "$root/$(dirname "$dest")"
  cp -L "$f" "$root/$dest"
  # Without debug info: the initramfs is unpacked into the guest's RAM, and a sanitizer build's tool
  # alone is over 100 MB with it. Symbols stay; sanitizer reports give module+offset to resolve on the host.
  strip --strip-debug "$root/$dest" 2>/dev/null || true
  ldd "$f" 2>/dev/null | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
    [ -e "$root/$lib" ] || { mkdir -p "$root/$(dirname "$lib")"; cp -L "$lib" "$root/$lib"; }
  done
}

mkinitramfs() {
  local build=$1 script=$2 out=$3
  local kdir="$cache/current-$vm_kernel/root" root
  local kver
  kver=$(ls "$kdir/lib/modules")
  root=$(mktemp -d)
  chmod 755 "$root"  # the guest's / : other users (the not-root test) must be able to traverse it
  mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp,run,lib/modules,udrv,mnt} "$root/lib64"
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  cp /bin/busybox "$root/bin/busybox"
  resolve_modules "$kdir/lib/modules/$kver" "$cache/current-$vm_kernel/modules.load"
  local m n
  while read -r m; do
    n=$(basename "$m"); n=${n%.xz}
    case "$m" in *.xz) xz -dc "$kdir/lib/modules/$kver/$m" > "$root/lib/modules/$n" ;; *) cp "$kdir/lib/modules/$kver/$m" "$root/lib/modules/$n" ;; esac
    echo "${n%.ko}" >> "$root/lib/modules/order"
  done < "$cache/current-$vm_kernel/modules.load"
  # Modules a script loads by hand with its own parameters, not at boot: brd, the kernel's RAM disk
  # (bench/ublk-guest.sh compares it with udrv's ramdisk over ublk).
  for n in brd; do
    m=$(cd "$kdir/lib/modules/$kver" && find kernel -name "$n.ko" -o -name "$n.ko.xz" | head -n 1)
    case "$m" in "") ;; *.xz) xz -dc "$kdir/lib/modules/$kver/$m" > "$root/lib/modules/$n.ko" ;; *) cp "$kdir/lib/modules/$kver/$m" "$root/lib/modules/$n.ko" ;; esac
  done
  # udrv: tools, libraries, modules, test programs (everything under BUILD/{bin,lib,modules,test-modules}),
  # and the out-of-tree sample built against the installed SDK (oot-modules: tests/system/sdk_out_of_tree.sh).
  for d in bin lib modules test-modules oot-modules; do
    [ -d "$build/$d" ] || continue
    for f in "$build/$d"/*; do
      # Links as links (libudrv.so -> libudrv.so.0.1 -> libudrv.so.0.1.0), not three copies.
      if [ -L "$f" ]; then mkdir -p "$root/udrv/$d" && cp -P "$f" "$root/udrv/$d/"; continue; fi
      [ -f "$f" ] || continue
      [ "$(basename "$f")" = udrv_unit_tests ] && continue  # the host runs those
      if file -b "$f" 2>/dev/null | grep -q ELF || head -c 4 "$f" | grep -q ELF; then
        copy_elf "$f" "udrv/$d/$(basename "$f")" "$root"
      else
        mkdir -p "$root/udrv/$d" && cp "$f" "$root/udrv/$d/"
      fi
    done
  done
  for ids in /usr/share/misc/pci.ids /usr/share/hwdata/pci.ids; do
    [ -f "$ids" ] && { mkdir -p "$root/usr/share/misc"; cp "$ids" "$root/usr/share/misc/pci.ids"; break; }
  done
  # pciutils' lspci, so the guest can compare udrv lspci with it on q35's PCIe devices.
  command -v lspci >/dev/null && copy_elf "$(command -v lspci)" usr/bin/lspci "$root"
  # nvme-cli and fio: the kernel driver's side of comparisons and benchmarks.
  command -v nvme >/dev/null && copy_elf "$(command -v nvme)" usr/bin/nvme "$root"
  command -v fio >/dev/null && copy_elf "$(command -v fio)" usr/bin/fio "$root"
  # e2fsprogs: file systems on exported devices (ublk), checked after crashes.
  for t in mkfs.ext4 e2fsck; do
    p=$(command -v "$t" || echo "/usr/sbin/$t"); [ -x "$p" ] && copy_elf "$p" "usr/sbin/$t" "$root"
  done
  [ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/"
  # DPDK (benchmarks only): testpmd dlopen()s the PMDs in its compiled-in plugin directory, by their
  # NAME.so.ABI.MINOR names. Only what the benchmark needs: PCI bus, ring mempool, virtio and e1000.
  if [ "${UDRV_VM_DPDK:-0}" = 1 ]; then
    command -v dpdk-testpmd >/dev/null || { echo "vm: UDRV_VM_DPDK=1 needs dpdk-testpmd (Debian package dpdk-dev)" >&2; return 1; }
    copy_elf "$(command -v dpdk-testpmd)" usr/bin/dpdk-testpmd "$root"
    local f
    for f in /usr/lib/*/dpdk/pmds-*/librte_{bus_pci,bus_vdev,mempool_ring,net_virtio,net_e1000}.so.*.*; do
      copy_elf "$f" "$f" "$root"
    done
    # DPDK's libraries are symlinks into the plugin directory on the host; keep them so in the guest. A
    # library loaded twice under two names (two copies) registers its constructors twice and aborts.
    local lib real
    for lib in $(cd "$root" && find . -name 'librte_*.so.*' -type f); do
      lib=/${lib#./}
      real=$(realpath "$lib")
      [ "$real" = "$lib" ] && continue
      [ -e "$root$real" ] || cp "$real" "$root$real"
      ln -sf "$real" "$root$lib"
    done
  fi
  cp "$here"/nvme_identify_agrees.sh "$here"/udrvd-tests.sh "$here"/ublk-tests.sh "$here"/nvmf-tests.sh "$root/udrv/"
  cp "$here/../system/lspci_agrees.sh" "$root/udrv/"
  cp "$script" "$root/udrv/guest.sh"
  # Benchmark settings (UDRV_BENCH_*) reach the guest script as environment variables.
  env | grep -E '^UDRV_BENCH_[A-Z_]+=[0-9A-Za-z_.,-]*$' | sed 's/^/export /' > "$root/udrv/env.sh" || true
  # A sanitizer build (make asan-vm): every process in the guest writes its AddressSanitizer, LeakSanitizer
  # and UBSan reports to /tmp/sanitizer, and the suite fails if anything is there at the end.
  if grep -qs '^UDRV_SANITIZE:BOOL=ON' "$build/CMakeCache.txt"; then
    echo 'mkdir -p /tmp/sanitizer; export ASAN_OPTIONS=detect_leaks=1:log_path=/tmp/sanitizer/asan UBSAN_OPTIONS=print_stacktrace=1:log_path=/tmp/sanitizer/ubsan' \
      >> "$root/udrv/env.sh"
  fi
  cp -r "$here/guest-lib.sh" "$root/udrv/"
  [ -d "$here/../../docs/examples" ] && cp -r "$here/../../docs/examples" "$root/udrv/examples"
  cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/usr/sbin:/udrv/bin LD_LIBRARY_PATH=/udrv/lib UDRV_MODULE_PATH=/udrv/modules
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko 2>/dev/null || echo "init: insmod $m failed"; done
echo 1 > /proc/sys/kernel/printk
cd /udrv
. /udrv/env.sh
printf "\nUDRV-GUEST-BEGIN\n"
sh /udrv/guest.sh
echo "UDRV-GUEST-EXIT $?"
poweroff -f
INIT
  chmod +x "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet > "$out")
  rm -rf "$root"
}

# For benchmarks (UDRV_VM_PIN=1): once QEMU named NAME is up, its vCPU 0 thread gets the last host CPU
# and all its other threads (the main loop that emulates the devices, vCPU 1, workers) the first, so
# the guest's polling CPU and the device emulation never share a host CPU or migrate.
pin_threads() {
  local name=$1 pid="" t last=$(($(nproc) - 1))
  for _ in $(seq 300); do
    pid=$(pgrep -f -n "^qemu-system-x86_64 -name $name," || true)
    [ -n "$pid" ] && grep -qs "CPU 0/TCG" /proc/"$pid"/task/*/comm && break
    sleep 0.1
  done
  [ -n "$pid" ] || { echo "vm: could not find QEMU to pin its threads" >&2; return 0; }
  for t in /proc/"$pid"/task/*; do
    if [ "$(cat "$t/comm")" = "CPU 0/TCG" ]; then taskset -p -c "$last" "${t##*/}" >/dev/null
    else taskset -p -c 0 "${t##*/}" >/dev/null; fi
  done
}

run() {
  local build script
  build=$(cd "$1" && pwd); script=$2
  prepare
  local work; work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  mkinitramfs "$build" "$script" "$work/initrd"
  truncate -s 64M "$work/disk.img"
  truncate -s 16M "$work/ns1.img"
  truncate -s 32M "$work/ns2.img"
  local log="$work/serial.log" rc=0
  local t0=$SECONDS
  # The multi-queue NIC pair (00:0c.0, 00:0d.0): taps on a bridge in a private network namespace.
  # The set-up is tried once on its own first: where it cannot work, the VM boots without the pair.
  local netns=() tapnics=() setup='for f in all default; do echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; done 2>/dev/null;
      ip link add udrvbr type bridge && ip tuntap add dev udrvmq mode tap multi_queue &&
      ip tuntap add dev udrvk mode tap && ip link set udrvmq master udrvbr && ip link set udrvk master udrvbr &&
      ip link set udrvbr up && ip link set udrvmq up && ip link set udrvk up'
  if [ "${UDRV_VM_DEVICES:-all}" = all ] && [ "$(id -u)" -eq 0 ] && [ -c /dev/net/tun ] && unshare -n sh -c "$setup" >/dev/null 2>&1; then
    netns=(unshare -n -- sh -c "$setup"' && exec "$0" "$@"')
    tapnics=(-netdev tap,id=mq,ifname=udrvmq,script=no,downscript=no,queues=2,vhost=off
      -device virtio-net-pci,disable-legacy=on,iommu_platform=on,mq=on,vectors=6,netdev=mq,addr=0c.0,mac=52:54:00:00:00:0c
      -netdev tap,id=kt,ifname=udrvk,script=no,downscript=no,vhost=off -device virtio-net-pci,netdev=kt,addr=0d.0,mac=52:54:00:00:00:0d)
  fi
  local others=()
  case "${UDRV_VM_DEVICES:-all}" in
    nvme) ;;
    all) others=(-device edu,addr=03.0
      -netdev hubport,hubid=0,id=p0 -device e1000e,netdev=p0,addr=06.0,mac=52:54:00:00:00:06
      -netdev hubport,hubid=0,id=p1 -device virtio-net-pci,disable-legacy=on,iommu_platform=on,netdev=p1,addr=07.0,mac=52:54:00:00:00:07
      -netdev hubport,hubid=0,id=p2 -device virtio-net-pci,netdev=p2,addr=08.0,mac=52:54:00:00:00:08
      -netdev hubport,hubid=1,id=p3 -device virtio-net-pci,netdev=p3,addr=0a.0,mac=52:54:00:00:00:0a
      -netdev hubport,hubid=1,id=p4 -device e1000e,netdev=p4,addr=0b.0,mac=52:54:00:00:00:0b
      -device nvme,id=nvme2,serial=udrvmulti,addr=09.0
      -drive file="$work/ns1.img",if=none,id=ns1,format=raw -device nvme-ns,drive=ns1,bus=nvme2,nsid=1
      -drive file="$work/ns2.img",if=none,id=ns2,format=raw
      -device nvme-ns,drive=ns2,bus=nvme2,nsid=2,logical_block_size=4096,physical_block_size=4096
      -device edu,addr=0e.0,dma_mask=0xfffff
      -device pcie-root-port,id=rp0,bus=pcie.0,addr=10.0,chassis=1,slot=1 -device qemu-xhci,bus=rp0
      -device pcie-root-port,id=rp1,bus=pcie.0,addr=11.0,chassis=2,slot=2 -device x3130-upstream,id=up0,bus=rp1
      -device xio3130-downstream,id=dn0,bus=up0,chassis=3,slot=3
      -object memory-backend-ram,id=shm0,size=1M -device ivshmem-plain,memdev=shm0,bus=dn0
      -device pci-bridge,id=pbr,chassis_nr=4,addr=12.0 -device pci-testdev,bus=pbr,addr=01.0
      -device ich9-intel-hda,addr=14.0
      "${tapnics[@]}") ;;
    *) echo "vm: UDRV_VM_DEVICES must be all or nvme, not '${UDRV_VM_DEVICES}'" >&2; return 2 ;;
  esac
  local nvme_opts=${UDRV_VM_NVME_OPTS:-}
  # Interactive (vm.sh shell): the console on this terminal, no time limit, nothing to collect after.
  local serial=(-monitor none -serial "file:$log") limit=${UDRV_VM_TIMEOUT:-300} out=/dev/null
  if [ "${UDRV_VM_INTERACTIVE:-0}" = 1 ]; then serial=(-serial mon:stdio); limit=0; out=/dev/stdout; fi
  local attempt
  for attempt in 1 2; do
    rc=0
    rm -f "$log"
    if [ "${UDRV_VM_PIN:-0}" = 1 ] && [ "$(nproc)" -ge 2 ]; then pin_threads "udrv-$$" & fi
    timeout --foreground -k 5 "$limit" "${netns[@]}" qemu-system-x86_64 \
      -name "udrv-$$,debug-threads=on" -machine q35,kernel-irqchip=split -accel tcg -cpu max -smp "${UDRV_VM_SMP:-2}" -m "${UDRV_VM_MEM:-1G}" \
      -nographic -vga none -no-reboot "${serial[@]}" \
      -device intel-iommu,intremap=on,caching-mode=on \
      -kernel "$cache/current-$vm_kernel/root/boot/vmlinuz-"* -initrd "$work/initrd" \
      -append "console=ttyS0 intel_iommu=on iommu=pt quiet panic=-1 loglevel=3" \
      -drive file="$work/disk.img",if=none,id=nvm0,format=raw -device nvme,serial=udrv0001,drive=nvm0,addr=04.0"$nvme_opts" \
      -drive driver=null-co,size=1G,if=none,id=nvm1 -device nvme,serial=udrvnull,drive=nvm1,addr=05.0"$nvme_opts" \
      "${others[@]}" ${UDRV_VM_QEMU_ARGS:-} \
      >"$out" 2>"$work/qemu.err" || rc=$?
    # A guest that stopped before its script began ran nothing of udrv's: the guest kernel itself died
    # while booting (under TCG it once panicked at 1.5 s, in enqueue_timer). Booted once more, saying so;
    # a second such stop is reported as a failure below.
    if [ "$attempt" = 1 ] && [ "${UDRV_VM_INTERACTIVE:-0}" != 1 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] &&
       ! grep -qs UDRV-GUEST-BEGIN "$log"; then
      echo "vm: the guest stopped before its script began (qemu exit $rc); booting it once more. Its last lines:"
      tail -n 12 "$log" 2>/dev/null | tr -d '\r'
      continue
    fi
    break
  done
  if [ "${UDRV_VM_INTERACTIVE:-0}" = 1 ]; then cat "$work/qemu.err" >&2; return "$rc"; fi
  [ -n "${UDRV_VM_LOG:-}" ] && cp "$log" "$UDRV_VM_LOG"
  # Print the guest's output without the kernel's boot noise.
  tr -d '\r' < "$log" | sed -n '/UDRV-GUEST-BEGIN/,$p' | sed 1d | grep -v -e '^UDRV-GUEST-EXIT' -e 'reboot: Power down' || true
  local status
  status=$(tr -d '\r' < "$log" | awk '/^UDRV-GUEST-EXIT/ {print $2}' | tail -n 1)
  echo "vm: guest ran for $((SECONDS - t0)) s (boot included)"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "vm: FAIL: the guest did not finish within ${UDRV_VM_TIMEOUT:-300} s; last lines:"; tail -n 20 "$log"
    return 124
  fi
  if [ -z "$status" ]; then
    echo "vm: FAIL: the guest stopped without reporting a status (qemu exit $rc); last lines:"; tail -n 30 "$log"
    cat "$work/qemu.err"
    return 1
  fi
  return "$status"
}

# The guest side of `vm.sh shell`: a login shell with a controlling terminal on the console.
shell_script() {
  cat > "$1" <<'GUEST'
. /udrv/guest-lib.sh 2>/dev/null
cat <<'EOT'
udrv test VM: the project's build is in /udrv (udrv and the test programs on PATH, modules in
/udrv/modules). Devices: edu 00:03.0, NVMe 00:04.0 (64 MiB file) and 00:05.0 (null), e1000e 00:06.0,
virtio-net 00:07.0 (udrv) and 00:08.0 (kernel), more in tests/vm/vm.sh. Try: udrv bind --status;
udrv bind 0000:00:03.0 && udrv-edu-selftest. Leave with: poweroff -f
EOT
export PS1='udrv-vm# '
setsid cttyhack sh -l
GUEST
}

case "${1:-}" in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  run-file)
    [ -f "${2:-}" ] || { echo "usage: $0 run-file SCRIPT [BUILD_DIR] (SCRIPT must be a file)" >&2; exit 2; }
    run "${3:-build}" "$2" ;;
  shell)
    [ -t 0 ] || { echo "vm: shell needs a terminal on stdin (for scripts: vm.sh run-file SCRIPT)" >&2; exit 2; }
    s=$(mktemp); shell_script "$s"; rc=0; UDRV_VM_INTERACTIVE=1 run "${2:-build}" "$s" || rc=$?; rm -f "$s"; exit "$rc" ;;
  *) echo "usage: $0 prepare | run BUILD_DIR GUEST_SCRIPT | run-file SCRIPT [BUILD_DIR] | shell [BUILD_DIR]" >&2; exit 2 ;;
esac
