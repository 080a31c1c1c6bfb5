#!/usr/bin/env bash
# `udrv platform` registers devices from a description and binds the built-in ramdisk driver; bad
# descriptions are refused with the line named.
# Usage: cli_platform.sh UDRV_BINARY FIXTURE_DIR
set -uo pipefail
udrv=$(realpath "$1") fixtures=$(realpath "$2")
. "$(dirname "$0")/check-lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$fixtures/platform/ramdisks.toml" "$tmp/"
head -c 8192 /dev/zero | tr '\0' 'Z' > "$tmp/disk.img"
# ramdisks.toml also holds a device no driver supports: the command shows what bound and fails, naming it.
check "platform binds" 1 "scratch +compatible=udrv,ramdisk +driver=udrv_ramdisk" sh -c "cd '$tmp' && '$udrv' platform ramdisks.toml"
check "platform loads image" 1 "loaded 8192 bytes from disk.img" sh -c "cd '$tmp' && '$udrv' platform ramdisks.toml"
check "platform unknown compatible stays unbound" 1 "sensor0 +compatible=acme,thermo +driver=\(none\)" sh -c "cd '$tmp' && '$udrv' platform ramdisks.toml"
check "platform says what was not taken" 1 "1 of 3 device\(s\) not taken by a driver: sensor0: no driver matches it" sh -c "cd '$tmp' && '$udrv' platform ramdisks.toml"
check "platform json" 1 '"driver": "udrv_ramdisk"' sh -c "cd '$tmp' && '$udrv' platform --json ramdisks.toml"
printf '[[device]]\nname = "scratch"\ncompatible = "udrv,ramdisk"\nmemory = [{ name = "storage", start = 0x1000_0000, size = 0x10_0000 }]\n' > "$tmp/one.toml"
check "platform all taken" 0 "scratch +compatible=udrv,ramdisk +driver=udrv_ramdisk" "$udrv" platform "$tmp/one.toml"
printf '[[device]]\nname = "nomem"\ncompatible = "udrv,ramdisk"\n' > "$tmp/nomem.toml"
printf '[[device]]\nname = "typo"\ncompatible = "udrv,ramdisk"\nmemory = [{ name = \"storage\", start = 0x1000, size = 0x10000 }]\n[device.properties]\nblock-size = "4k"\n' > "$tmp/typo.toml"
check "platform property of the wrong type" 1 "typo: property 'block-size' has the wrong type: it must be an integer" "$udrv" platform "$tmp/typo.toml"
check "platform probe failure is the command's" 1 "not taken by a driver: nomem: .*udrv,ramdisk needs a memory resource" "$udrv" platform "$tmp/nomem.toml"
check "platform overlap" 1 "bad-overlap.toml:6: memory 'b' .* overlaps 'a'" "$udrv" platform "$fixtures/platform/bad-overlap.toml"
check "platform unknown key" 1 "bad-key.toml:4: unknown key 'compatibel'" "$udrv" platform "$fixtures/platform/bad-key.toml"
check "platform missing file" 1 "cannot open description" "$udrv" platform /nonexistent.toml
rm -f "/var/tmp/udrv-cli-$$.img"  # created below as one hole of 16 MiB
cat > "$tmp/disk.toml" <<EOT
[[device]]
name = "disk0"
compatible = "udrv,file-block"
[device.properties]
path = "/var/tmp/udrv-cli-$$.img"
size = 16777216
EOT
check "block perf on a file-backed device" 0 "randrw 4096 B, queue depth 8 x 1 thread \(interrupt\): [0-9]+ IOPS, .* 0 errors" \
  "$udrv" block perf "$tmp/disk.toml" disk0 -q 8 -t 1 -w randrw --mode interrupt
# On a file of holes the kernel completes reads at once: the run must still end at -t (it used to spin).
check "block perf on holes ends at -t (polled)" 0 "randread 4096 B, queue depth 32 x 1 thread \(poll\): [0-9]+ IOPS, .* 0 errors" \
  timeout 30 "$udrv" block perf "$tmp/disk.toml" disk0 -t 1
check "block perf on holes ends at -t (interrupt)" 0 "randread 4096 B, queue depth 32 x 1 thread \(interrupt\): [0-9]+ IOPS, .* 0 errors" \
  timeout 30 "$udrv" block perf "$tmp/disk.toml" disk0 -t 1 --mode interrupt
check "block list shows the file-backed device" 0 "fileblk0 +disk0 +udrv_fileblk +32768 blocks of 512 B \(16.0 MiB\)" \
  "$udrv" block list -p "$tmp/disk.toml"
check "block list --json" 0 '"name": "fileblk0"' "$udrv" block list -p "$tmp/disk.toml" --json
check "block perf by class name" 0 "randread 4096 B, queue depth 32 x 1 thread \(poll\): [0-9]+ IOPS, .* 0 errors" \
  timeout 30 "$udrv" block perf "$tmp/disk.toml" fileblk0 -t 1
check "block perf names a missing device" 1 "no block device disk9 in this process; there are: fileblk0 \(disk0\)" "$udrv" block perf "$tmp/disk.toml" disk9
rm -f "/var/tmp/udrv-cli-$$.img"
# pci.ids names that are not UTF-8 or hold control bytes: JSON gets U+FFFD (it used to abort), text \xNN.
printf '1af4  Red Hat, Inc.\n\t1041  Virtio caf\xe9 \033[2J NIC\n' > "$tmp/pci.ids"
check "lspci --json with a Latin-1 pci.ids" 0 $'"device": "Virtio caf\xef\xbf\xbd \\\\u001b\\[2J NIC"' \
  "$udrv" lspci --json --sysfs "$fixtures/sysfs/virtio-vm/devices" --ids "$tmp/pci.ids"
check "lspci text escapes pci.ids control bytes" 0 'Virtio caf\\xe9 \\x1b\[2J NIC \[1af4:1041\]' \
  "$udrv" lspci --sysfs "$fixtures/sysfs/virtio-vm/devices" --ids "$tmp/pci.ids"

# lspci's selectors and flags, with lspci's meaning, on the captured q35 tree.
q35=(--sysfs "$fixtures/sysfs/q35-vm/devices" --ids "$fixtures/pci.ids")
check "lspci -s BUS:DEV" 0 '^0000:00:1f\.3 ' "$udrv" lspci -s 00:1f "${q35[@]}"
check "lspci -s .FN" 0 '^0000:00:1f\.2 ' "$udrv" lspci -s .2 "${q35[@]}"
check "lspci -d VENDOR:" 0 '^0000:04:00\.0 .*\[1af4:1110\]' "$udrv" lspci -d 1af4: "${q35[@]}"
check "lspci -d ::CLASS" 0 '^0000:00:0b\.0 Ethernet controller \[0200\]' "$udrv" lspci -d ::0200 "${q35[@]}"
check "lspci -nn -k" 0 $'Kernel driver in use: e1000e' "$udrv" lspci -nn -k -s 00:06 "${q35[@]}"
check "lspci -n alone" 1 "-n \(numbers without names\) is not supported" "$udrv" lspci -n "${q35[@]}"
check "lspci -s no match" 1 "no PCI device under .* matches -s 00:1e" "$udrv" lspci -s 00:1e "${q35[@]}"
check "lspci -s bad" 1 "'00:20': device 20 is too large \(at most 1f\)" "$udrv" lspci -s 00:20 "${q35[@]}"
check "nvme list with nothing to list says so" 0 "no NVMe controllers on this machine|not taken|udrv_nvme" "$udrv" nvme list
check "lspci -t" 2 "udrv: usage: .*-t" "$udrv" lspci -t "${q35[@]}"

# bind --status (dpdk-devbind --status): the devices a udrv driver supports, by who has them, on a tree
# laid out as /sys with the captured q35 devices.
mkdir -p "$tmp/sys/bus/pci" "$tmp/sys/kernel/iommu_groups/1"
ln -s "$fixtures/sysfs/q35-vm/devices" "$tmp/sys/bus/pci/devices"
check "bind --status: kernel-owned NVMe with its udrv driver" 0 $'0000:00:04.0 Non-Volatile memory controller \\[0108\\].*\n +udrv driver: udrv_nvme; kernel driver: nvme; not now: vfio-pci is not loaded' \
  sh -c "'$udrv' bind --status --sysfs '$tmp/sys' | grep -A1 '^0000:00:04.0'"
check "bind --status: edu on no driver" 0 "^0000:00:03.0 .*\[1234:11e8\]" \
  sh -c "'$udrv' bind --status --sysfs '$tmp/sys' | sed -n '/^Devices on no driver/,\$p'"
check "bind --status: IOMMU and vfio-pci facts" 0 "vfio-pci: +not loaded \(modprobe vfio-pci\)" "$udrv" bind --status --sysfs "$tmp/sys"
check "bind --status leaves out what udrv has no driver for" 1 "^$" sh -c "'$udrv' bind --status --sysfs '$tmp/sys' | grep '^0000:00:1f.2'"
check "bind --status with devices" 2 "excludes" "$udrv" bind --status 0000:00:04.0
check "bind with nothing" 1 "bind needs PCI addresses" "$udrv" bind

# The test VM for users: its commands refuse what cannot work before booting anything (the VM suite and
# `make run` boot it; `vm.sh shell` was tried by hand under tmux: docs/test-vm.md).
vm="$fixtures/../vm/vm.sh"
check "vm.sh shell needs a terminal" 2 "shell needs a terminal on stdin \(for scripts: vm.sh run-file SCRIPT\)" sh -c "'$vm' shell < /dev/null"
check "vm.sh run-file needs a file" 2 "usage: .* run-file SCRIPT \[BUILD_DIR\]" "$vm" run-file /nonexistent
check "vm.sh usage" 2 "usage: .*\| shell \[BUILD_DIR\]" "$vm" frob
summary
