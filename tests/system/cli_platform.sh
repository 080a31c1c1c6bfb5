#!/usr/bin/env bash
# `udrv platform` registers devices from a description and binds the built-in ramdisk driver; bad
# descriptions are refused with the line named.
# Usage: cli_platform.sh UDRV_BINARY FIXTURE_DIR
set -uo pipefail
udrv=$(realpath "$1") fixtures=$(realpath "$2")
fails=0 passes=0
check() {
  local name=$1 want_rc=$2 pattern=$3; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne "$want_rc" ] || ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL: $name (exit $rc, wanted $want_rc; output must match: $pattern)"; echo "$out" | sed 's/^/    /'
    fails=$((fails + 1))
  else
    passes=$((passes + 1))
  fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$fixtures/platform/ramdisks.toml" "$tmp/"
head -c 8192 /dev/zero | tr '\0' 'Z' > "$tmp/disk.img"
check "platform binds" 0 "scratch +compatible=udrv,ramdisk +driver=udrv_ramdisk" sh -c "cd '$tmp' && '$udrv' platform ramdisks.toml"
check "platform loads image" 0 "loaded 8192 bytes from disk.img" sh -c "cd '$tmp' && '$udrv' platform ramdisks.toml"
check "platform unknown compatible stays unbound" 0 "sensor0 +compatible=acme,thermo +driver=\(none\)" sh -c "cd '$tmp' && '$udrv' platform ramdisks.toml"
check "platform json" 0 '"driver": "udrv_ramdisk"' sh -c "cd '$tmp' && '$udrv' platform --json ramdisks.toml"
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
check "block perf on a file-backed device" 0 "randrw 4096 B QD8 x1 \(interrupt\): [0-9]+ IOPS, .* 0 errors" \
  "$udrv" block perf "$tmp/disk.toml" disk0 -q 8 -t 1 -w randrw --mode interrupt
# On a file of holes the kernel completes reads at once: the run must still end at -t (it used to spin).
check "block perf on holes ends at -t (polled)" 0 "randread 4096 B QD32 x1 \(polled\): [0-9]+ IOPS, .* 0 errors" \
  timeout 30 "$udrv" block perf "$tmp/disk.toml" disk0 -t 1
check "block perf on holes ends at -t (interrupt)" 0 "randread 4096 B QD32 x1 \(interrupt\): [0-9]+ IOPS, .* 0 errors" \
  timeout 30 "$udrv" block perf "$tmp/disk.toml" disk0 -t 1 --mode interrupt
check "block list shows the file-backed device" 0 "fileblk0 +disk0 +udrv_fileblk +32768 blocks of 512 B \(16.0 MiB\)" \
  "$udrv" block list -p "$tmp/disk.toml"
check "block list --json" 0 '"name": "fileblk0"' "$udrv" block list -p "$tmp/disk.toml" --json
check "block perf by class name" 0 "randread 4096 B QD32 x1 \(polled\): [0-9]+ IOPS, .* 0 errors" \
  timeout 30 "$udrv" block perf "$tmp/disk.toml" fileblk0 -t 1
check "block perf names a missing device" 1 "no block device disk9 in this process; there are: fileblk0 \(disk0\)" "$udrv" block perf "$tmp/disk.toml" disk9
rm -f "/var/tmp/udrv-cli-$$.img"
# pci.ids names that are not UTF-8 or hold control bytes: JSON gets U+FFFD (it used to abort), text \xNN.
printf '1af4  Red Hat, Inc.\n\t1041  Virtio caf\xe9 \033[2J NIC\n' > "$tmp/pci.ids"
check "lspci --json with a Latin-1 pci.ids" 0 $'"device": "Virtio caf\xef\xbf\xbd \\\\u001b\\[2J NIC"' \
  "$udrv" lspci --json --sysfs "$fixtures/sysfs/virtio-vm/devices" --ids "$tmp/pci.ids"
check "lspci text escapes pci.ids control bytes" 0 'Virtio caf\\xe9 \\x1b\[2J NIC \[1af4:1041\]' \
  "$udrv" lspci --sysfs "$fixtures/sysfs/virtio-vm/devices" --ids "$tmp/pci.ids"
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
