#!/usr/bin/env bash
# ublk benchmark: fio 4 KiB random reads and writes, QD1 and QD32, through /dev/ublkb0 served by udrv
# (udrvd's driver host, udrv's NVMe driver) against fio on /dev/nvme0n1 through the kernel's nvme driver
# (io_uring, and io_uring polled), on QEMU's file-backed and null-co controllers, all in one VM boot so
# the ratios compare like with like. As bench/nvme.sh: threads pinned (UDRV_VM_PIN=1), only the NVMe
# controllers in the VM, medians of UDRV_BENCH_ROUNDS rounds in which the two take turns, after a
# warm-up round; and ublk over udrv's ramdisk against the kernel's brd, which shows ublk's own cost without
# a device's. Writes bench/results/ublk-DATE.md (a later run that day: ublk-DATEb.md, ...).
# Usage: bench/ublk.sh [BUILD_DIR]   (UDRV_BENCH_SECONDS per run, default 5; UDRV_BENCH_ROUNDS, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
. bench/lib.sh
out=$(results_file ublk)
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
rc=0
UDRV_VM_PIN=1 UDRV_VM_DEVICES=nvme UDRV_VM_TIMEOUT=2400 tests/vm/vm.sh run "$build" bench/ublk-guest.sh > "$raw" || rc=$?
grep '^RESULT' "$raw" || true
if [ "$rc" -ne 0 ]; then
  echo "bench/ublk.sh: the VM run failed (exit $rc); no table written. Its last output:" >&2
  grep -v '^RESULT' "$raw" | tail -n 40 >&2
  exit 1
fi
median() {  # median DEVICE PATTERN QD ENGINE -> "iops mean_us" of the median round by IOPS
  awk -v d=$1 -v p=$2 -v q=$3 -v e=$4 '$1=="RESULT" && $2==d && $3==p && $4==q && $5==e && $6 != "" {print $6, $7}' "$raw" |
    sort -g | awk '{l[NR] = $0} END {if (NR) print l[int((NR + 1) / 2)]; else print "0 0"}'
}
{
  echo "# ublk over udrv against the kernel's nvme driver, $(date +%Y-%m-%d)"
  echo
  echo "Command: \`bench/ublk.sh\` (fio 4 KiB, io_uring, direct, ${UDRV_BENCH_SECONDS:-5} s per run, median of ${UDRV_BENCH_ROUNDS:-3} rounds after a warm-up; QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'), TCG, q35 + intel-iommu, 2 vCPUs, guest kernel: Debian 12's 6.12; fio on vCPU 0)"
  echo
  echo "Host: $(host_line)"
  echo
  echo "| device | pattern | QD | kernel io_uring | kernel io_uring polled | ublk over udrv | ublk, server on fio's vCPU | ublk best / kernel best (IOPS) | ublk best / kernel best (latency) | udrv alone, no ublk |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for dev in file null-co; do
    for pat in randread randwrite; do
      for qd in 1 32; do
        read -r ki kl < <(median $dev $pat $qd kernel-io_uring)
        read -r pi pl < <(median $dev $pat $qd kernel-io_uring-polled)
        read -r ui ul < <(median $dev $pat $qd ublk-udrv)
        read -r ci cl < <(median $dev $pat $qd ublk-udrv-cpu0)
        read -r ai al < <(median $dev $pat $qd udrv-alone)
        best=$(echo "if ($pi > $ki) $pi else $ki" | bc -l); bestl=$(echo "if ($pi > $ki) $pl else $kl" | bc -l)
        ubest=$(echo "if ($ci > $ui) $ci else $ui" | bc -l); ubestl=$(echo "if ($ci > $ui) $cl else $ul" | bc -l)
        printf '| %s | %s | %s | %.1fk, %.0f µs | %.1fk, %.0f µs | %.1fk, %.0f µs | %.1fk, %.0f µs | %.2fx | %.2fx | %.1fk, %.0f µs |\n' $dev $pat $qd \
          "$(echo "$ki/1000" | bc -l)" "$kl" "$(echo "$pi/1000" | bc -l)" "$pl" "$(echo "$ui/1000" | bc -l)" "$ul" \
          "$(echo "$ci/1000" | bc -l)" "$cl" "$(echo "if ($best > 0) $ubest / $best else 0" | bc -l)" \
          "$(echo "if ($bestl > 0) $ubestl / $bestl else 0" | bc -l)" "$(echo "$ai/1000" | bc -l)" "$al"
      done
    done
  done
  echo
  echo "ublk's own cost, without a device: the kernel's RAM disk (brd) against udrv's ramdisk exported over ublk"
  echo "(\"udrv alone\" above is \`udrv block perf\` in the driver host, polled: the device through udrv without ublk)."
  echo
  echo "| pattern | QD | kernel brd, io_uring | ublk over udrv's ramdisk | ublk, server on fio's vCPU | ublk best / brd (latency) |"
  echo "|---|---|---|---|---|---|"
  for pat in randread randwrite; do
    for qd in 1 32; do
      read -r ki kl < <(median ram $pat $qd kernel-io_uring)
      read -r ui ul < <(median ram $pat $qd ublk-udrv)
      read -r ci cl < <(median ram $pat $qd ublk-udrv-cpu0)
      ubestl=$(echo "if ($ci > $ui) $cl else $ul" | bc -l)
      printf '| %s | %s | %.1fk, %.0f µs | %.1fk, %.0f µs | %.1fk, %.0f µs | %.2fx |\n' $pat $qd \
        "$(echo "$ki/1000" | bc -l)" "$kl" "$(echo "$ui/1000" | bc -l)" "$ul" "$(echo "$ci/1000" | bc -l)" "$cl" \
        "$(echo "if ($kl > 0) $ubestl / $kl else 0" | bc -l)"
    done
  done
  echo
  echo "Every round (IOPS):"
  echo
  grep '^RESULT' "$raw" | awk '{k=$2" "$3" QD"$4" "$5; v[k]=v[k] (v[k]?", ":"") sprintf("%.1fk", $6/1000)} END {for (k in v) print "- " k ": " v[k]}' | sort
} > "$out"
echo "bench/ublk.sh: wrote $out"
