#!/usr/bin/env bash
# NVMe benchmark: the kernel driver (fio: io_uring, libaio, io_uring polled) against udrv (polled and
# interrupt), 4 KiB random reads at QD1 and QD32, on QEMU's file-backed and null-co NVMe controllers,
# all in one VM boot so the ratios compare like with like. TCG is slow and noisy: read the ratios, not
# the absolute figures. Two boots: QEMU's nvme device as it comes, then with ioeventfd=on (doorbell
# writes signal an eventfd that QEMU's main loop handles, instead of running QEMU's doorbell code in the
# vCPU thread; it needs shadow doorbells, which both drivers use). QEMU's threads are pinned (UDRV_VM_PIN=1), the VM has only the two controllers under test
# (UDRV_VM_DEVICES=nvme: every other device's file descriptors would be polled by the same QEMU main
# loop that emulates NVMe), and the guest runs both drivers on vCPU 0. Each figure is the median of
# UDRV_BENCH_ROUNDS rounds (default 3) in which the two drivers take turns, after a warm-up round.
# Writes bench/results/nvme-DATE.md (a later run that day: nvme-DATEb.md, ...).
# Usage: bench/nvme.sh [BUILD_DIR]   (UDRV_BENCH_SECONDS per run, default 5; UDRV_BENCH_ROUNDS, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
. bench/lib.sh
out=$(results_file nvme)
raw=$(mktemp)
trap 'rm -f "$raw" "$raw".*' EXIT
for cfg in default ioeventfd; do
  opts=""; [ $cfg = ioeventfd ] && opts=",ioeventfd=on"
  rc=0
  UDRV_VM_PIN=1 UDRV_VM_DEVICES=nvme UDRV_VM_NVME_OPTS="$opts" UDRV_VM_TIMEOUT=1800 tests/vm/vm.sh run "$build" bench/nvme-guest.sh > "$raw.$cfg" || rc=$?
  grep '^RESULT' "$raw.$cfg" || true
  if [ "$rc" -ne 0 ]; then  # partial medians (and vm.sh's failure report repeats RESULT lines): no table
    echo "bench/nvme.sh: the VM run ($cfg) failed (exit $rc); no table written. Its last output:" >&2
    grep -v '^RESULT' "$raw.$cfg" | tail -n 40 >&2
    exit 1
  fi
done
table() {  # table RAWFILE
  echo "| device | QD | kernel io_uring | kernel libaio | kernel io_uring polled | udrv polled | udrv interrupt | udrv best / kernel best |"
  echo "|---|---|---|---|---|---|---|---|"
  for dev in null-co file; do
    for qd in 1 32; do
      row="| $dev | $qd"
      kbest=0 ubest=0
      for e in kernel-io_uring kernel-libaio kernel-io_uring-hipri udrv-polled udrv-interrupt; do
        # the median round by IOPS, with that round's mean latency
        read -r iops mean < <(awk -v d=$dev -v q=$qd -v e=$e '$1=="RESULT" && $2==d && $3==q && $4==e && $5 != "" {print $5, $6}' "$1" |
                              sort -g | awk '{l[NR] = $0} END {if (NR) print l[int((NR + 1) / 2)]}')
        iops=${iops:-0}; mean=${mean:-0}
        row="$row | $(printf '%.1fk IOPS, %.0f µs' "$(echo "$iops / 1000" | bc -l)" "$mean")"
        case $e in
          kernel-*) kbest=$(echo "if ($iops > $kbest) $iops else $kbest" | bc -l) ;;
          udrv-*) ubest=$(echo "if ($iops > $ubest) $iops else $ubest" | bc -l) ;;
        esac
      done
      ratio=$(echo "if ($kbest > 0) $ubest / $kbest else 0" | bc -l)
      echo "$row | $(printf '%.2f' "$ratio")x |"
    done
  done
}
{
  echo "# NVMe: kernel driver vs udrv, one VM boot per table ($(date -u +%Y-%m-%d))"
  echo
  echo "Command: \`bench/nvme.sh\` (4 KiB random reads, ${UDRV_BENCH_SECONDS:-5} s per run, median of ${UDRV_BENCH_ROUNDS:-3} rounds after a warm-up round; QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'), TCG, q35 + intel-iommu, 2 vCPUs, only the two nvme controllers; vCPU 0 pinned to a host CPU of its own, QEMU's other threads to the other; fio and udrv on vCPU 0)"
  echo
  echo "Host: $(host_line)"
  echo
  echo "## QEMU's nvme device as it comes"
  echo
  table "$raw.default"
  echo
  echo "## nvme device with ioeventfd=on"
  echo
  table "$raw.ioeventfd"
  echo
  echo "## Every round (IOPS, in the order run; the warm-up round is not counted)"
  echo
  echo "| device | QD | engine | device as it comes | ioeventfd=on |"
  echo "|---|---|---|---|---|"
  rounds() {  # rounds RAWFILE DEVICE QD ENGINE: that run's IOPS in every round
    awk -v d="$2" -v q="$3" -v e="$4" '$1=="RESULT" && $2==d && $3==q && $4==e {printf "%s%.1fk", sep, $5 / 1000; sep=", "}' "$1"
  }
  for dev in null-co file; do
    for qd in 1 32; do
      for e in kernel-io_uring kernel-libaio kernel-io_uring-hipri udrv-polled udrv-interrupt; do
        echo "| $dev | $qd | $e | $(rounds "$raw.default" $dev $qd $e) | $(rounds "$raw.ioeventfd" $dev $qd $e) |"
      done
    done
  done
} > "$out"
cat "$out"
