#!/usr/bin/env bash
# `udrv lspci -v` must agree with pciutils' `lspci -D -nn -vvv`, line for line, on every device:
#   - every line udrv prints for a device is one lspci prints for it, in the same order (udrv may print
#     fewer: it decodes less), apart from the lines only udrv has ("IOMMU group: none (...)", warnings);
#   - every Subsystem and Capabilities line lspci prints, udrv prints too.
# Lines where pciutils versions differ in wording are compared up to where they differ: the PCIe
# capability's "(vN) type" part, extended capability names up to their first ':' '(' '<'.
# Usage: lspci_agrees.sh UDRV_BINARY                       this machine (needs root for full config space)
#        lspci_agrees.sh UDRV_BINARY --fixture DIR         DIR/devices (a captured sysfs tree), DIR/pci.ids,
#                                                          and DIR/lspci-nn-vvv.txt captured with it
set -euo pipefail
udrv=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "${2:-}" = --fixture ]; then
  dir=$3
  cp "$dir/lspci-nn-vvv.txt" "$tmp/lspci"
  "$udrv" lspci -v --sysfs "$dir/devices" --ids "$dir/pci.ids" > "$tmp/udrv"
else
  command -v lspci >/dev/null || { echo "SKIP: pciutils' lspci is not installed"; exit 77; }
  [ -d /sys/bus/pci/devices ] && [ -n "$(ls /sys/bus/pci/devices)" ] || { echo "SKIP: no PCI devices on this machine"; exit 77; }
  [ "$(id -u)" = 0 ] || { echo "SKIP: needs root (lspci shows capabilities only to root)"; exit 77; }
  lspci -D -nn -vvv > "$tmp/lspci" 2>/dev/null
  "$udrv" lspci -v > "$tmp/udrv"
fi

awk '
function norm(l,   p, head) {
  if (l ~ /^\tCapabilities: \[[0-9a-f]+\] Express \(v[0-9]+\) /) { p = index(l, ", "); if (p) l = substr(l, 1, p - 1) }
  if (l ~ /^\tCapabilities: \[[0-9a-f]+ v[0-9]+\] /) {
    p = index(l, "] "); head = substr(l, 1, p + 1); l = substr(l, p + 2)
    if (match(l, /[:(<]/)) l = substr(l, 1, RSTART - 1)
    sub(/ +$/, "", l); l = head l
  }
  return l
}
FNR == 1 { file++ }
/^[0-9a-f]+:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]\.[0-7] / { dev = $1; if (file == 1) { order[++ndev] = dev; L[dev, 0] = 0 } else U[dev, 0] = 0 }
/^$/ || /^lspci: / || /^\tKernel modules: / { next }
file == 2 && (/^\tIOMMU group: none / || /^\tWarning: /) { next }
{ if (file == 1) L[dev, ++L[dev, 0]] = norm($0); else U[dev, ++U[dev, 0]] = norm($0) }
END {
  bad = 0; lines = 0
  for (i = 1; i <= ndev; i++) {
    d = order[i]
    if (!((d, 0) in U)) { print "FAIL " d ": udrv lists no such device"; bad++; continue }
    at = 1
    for (u = 1; u <= U[d, 0]; u++) {
      for (k = at; k <= L[d, 0] && L[d, k] != U[d, u]; k++) ;
      if (k > L[d, 0]) { print "FAIL " d ": udrv prints a line lspci does not (or not here):\n    " U[d, u]; bad++ } else { at = k + 1; lines++ }
    }
    for (k = 1; k <= L[d, 0]; k++) {
      if (L[d, k] !~ /^\t(Subsystem|Capabilities): /) continue
      found = 0
      for (u = 1; u <= U[d, 0]; u++) if (U[d, u] == L[d, k]) { found = 1; break }
      if (!found) { print "FAIL " d ": lspci prints a line udrv does not:\n    " L[d, k]; bad++ }
    }
  }
  for (k in U) { split(k, p, SUBSEP); if (p[2] == 0 && !((p[1], 0) in L)) { print "FAIL " p[1] ": lspci lists no such device"; bad++ } }
  if (bad) { print bad " disagreement(s) between udrv lspci -v and lspci -nn -vvv"; exit 1 }
  print "PASS: " ndev " devices, " lines " lines of udrv lspci -v agree with lspci -nn -vvv"
}' "$tmp/lspci" "$tmp/udrv"
