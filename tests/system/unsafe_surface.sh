#!/usr/bin/env bash
# The unsafe surface stays small and documented: every reinterpret_cast, ioctl and mmap in the library
# (src/, include/) has a "SAFETY:" note within the six lines before it, and drivers/ and tools/ have
# none at all (nor volatile): they use the typed MMIO, DMA and VFIO interfaces. And no tool includes a
# driver's header: tools reach devices through their class (udrv/block.hpp, net.hpp, nvme.hpp).
# Usage: unsafe_surface.sh SOURCE_DIR
set -uo pipefail
cd "$1" || exit 2
site='reinterpret_cast|(^|[^A-Za-z_.>])ioctl *\(|(^|[^A-Za-z_.>])mmap *\('
bad=0
for f in $(find src include -name '*.cpp' -o -name '*.hpp' | sort); do
  while IFS=: read -r ln _; do
    lo=$((ln > 6 ? ln - 6 : 1))
    if ! sed -n "${lo},${ln}p" "$f" | grep -q 'SAFETY:'; then echo "FAIL: $f:$ln: no SAFETY: note for this site"; bad=$((bad + 1)); fi
  done < <(sed -E 's://.*$::' "$f" | grep -nE "$site")
done
for f in $(find drivers tools -name '*.cpp' -o -name '*.hpp' | sort); do
  while IFS=: read -r ln text; do
    echo "FAIL: $f:$ln: raw device access belongs in the low layer: $text"; bad=$((bad + 1))
  done < <(sed -E 's://.*$::' "$f" | grep -nE "$site|(^|[^A-Za-z_])volatile([^A-Za-z_]|$)")
done
while IFS=: read -r f ln text; do
  echo "FAIL: $f:$ln: a tool includes a driver header ($text): use the device's class instead"; bad=$((bad + 1))
done < <(grep -rnE '#include "(nvme|e1000e|virtio_net|fileblk|ramdisk|edu)/' tools)
[ "$bad" -eq 0 ] && echo "PASS: every unsafe site in src/ and include/ has its SAFETY note; drivers/ and tools/ have none; no tool includes a driver header"
[ "$bad" -eq 0 ]
