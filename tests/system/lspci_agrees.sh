#!/usr/bin/env bash
# `udrv lspci -v` must agree with pciutils' `lspci -D -nn -vvv` on every device of this machine:
# the header line (address, class name and code, vendor and device names and ids, revision, prog-if),
# the Subsystem line and every capability (offset and what it is). Needs root to read full config space.
# Usage: lspci_agrees.sh UDRV_BINARY
set -euo pipefail
udrv=$1
command -v lspci >/dev/null || { echo "SKIP: pciutils' lspci is not installed"; exit 77; }
[ -d /sys/bus/pci/devices ] && [ -n "$(ls /sys/bus/pci/devices)" ] || { echo "SKIP: no PCI devices on this machine"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (lspci shows capabilities only to root)"; exit 77; }

# Keep the lines both tools print, normalised where pciutils versions differ in wording:
#  - PCIe capability: the "(vN) type" part is compared; the interrupt-message suffix changed across versions.
#  - Extended capabilities: offset, version and the name up to its first ':' / '(' / '<'.
normalise() {
  grep -E '^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7] |^	Subsystem: |^	Capabilities: \[' |
    grep -v 'Capabilities: <access denied>' |
    sed -E -e 's/^(	Capabilities: \[[0-9a-f]+\] Express \(v[0-9]+\) [^,]*),.*/\1/' \
           -e 's/^(	Capabilities: \[[0-9a-f]+ v[0-9]+\] [^:(<]*[^:(< ]).*/\1/'
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
lspci -D -nn -vvv 2>/dev/null | normalise > "$tmp/lspci"
"$udrv" lspci -v | normalise > "$tmp/udrv"
devices=$(grep -c '^[0-9a-f]' "$tmp/lspci")
caps=$(grep -c 'Capabilities:' "$tmp/lspci" || true)
if ! diff -u "$tmp/lspci" "$tmp/udrv"; then
  echo "FAIL: udrv lspci disagrees with lspci -nn -vvv (- lspci, + udrv)"
  exit 1
fi
[ "$devices" -gt 0 ] || { echo "FAIL: no devices compared"; exit 1; }
echo "PASS: $devices devices, $caps capabilities agree with lspci -nn -vvv"
