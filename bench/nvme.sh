#!/usr/bin/env bash
# NVMe benchmark: the kernel driver (fio: io_uring, libaio, io_uring polled) against udrv (polled and
# interrupt), 4 KiB random reads at QD1 and QD32, on QEMU's file-backed and null-co NVMe controllers,
# all in one VM boot so the ratios compare like with like. TCG is slow and noisy: read the ratios, not
# the absolute figures. Writes bench/results/nvme-DATE.md.
# Usage: bench/nvme.sh [BUILD_DIR]   (UDRV_BENCH_SECONDS per run, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=bench/results/nvme-$(date +%Y-%m-%d).md
raw=$(mktemp)
UDRV_VM_TIMEOUT=900 tests/vm/vm.sh run "$build" bench/nvme-guest.sh | tee "$raw" | grep '^RESULT' || true
{
  echo "# NVMe: kernel driver vs udrv, one VM boot ($(date -u +%Y-%m-%d))"
  echo
  echo "Command: \`bench/nvme.sh\` (4 KiB random reads, ${UDRV_BENCH_SECONDS:-5} s per run; QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'), TCG, q35 + intel-iommu, 2 vCPUs)"
  echo
  echo "| device | QD | kernel io_uring | kernel libaio | kernel io_uring polled | udrv polled | udrv interrupt | udrv best / kernel best |"
  echo "|---|---|---|---|---|---|---|---|"
  for dev in null-co file; do
    for qd in 1 32; do
      row="| $dev | $qd"
      kbest=0 ubest=0
      for e in kernel-io_uring kernel-libaio kernel-io_uring-hipri udrv-polled udrv-interrupt; do
        read -r iops mean < <(awk -v d=$dev -v q=$qd -v e=$e '$1=="RESULT" && $2==d && $3==q && $4==e {print $5, $6}' "$raw")
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
} > "$out"
cat "$out"
rm -f "$raw"
