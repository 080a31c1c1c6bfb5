#!/usr/bin/env bash
# NVMe/TCP benchmark: fio 4 KiB random reads at QD1 and QD32 through the guest kernel's nvme-tcp initiator
# against (a) udrvd's target over udrv's NVMe driver and (b) the kernel's nvmet-tcp target over the
# kernel's nvme driver, the same emulated controller in one VM boot (QEMU's file-backed and null-co
# controllers), with fio on the kernel's own driver as the local reference. Threads pinned
# (UDRV_VM_PIN=1), only the NVMe controllers in the VM, medians of UDRV_BENCH_ROUNDS rounds in which the
# targets take turns, after a warm-up round. Writes bench/results/nvmf-DATE.md (a later run that day: nvmf-DATEb.md, ...).
# Usage: bench/nvmf.sh [BUILD_DIR]   (UDRV_BENCH_SECONDS per run, default 5; UDRV_BENCH_ROUNDS, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
. bench/lib.sh
out=$(results_file nvmf)
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
rc=0
UDRV_VM_PIN=1 UDRV_VM_DEVICES=nvme UDRV_VM_TIMEOUT=2400 tests/vm/vm.sh run "$build" bench/nvmf-guest.sh > "$raw" || rc=$?
grep '^RESULT' "$raw" || true
if [ "$rc" -ne 0 ] || ! grep -q '^RESULT' "$raw"; then
  echo "bench/nvmf.sh: the VM run failed (exit $rc); no table written. Its last output:" >&2
  grep -v '^RESULT' "$raw" | tail -n 40 >&2
  exit 1
fi
median() {  # median DEVICE QD ENGINE -> "iops mean_us" of the median round by IOPS
  awk -v d=$1 -v q=$2 -v e=$3 '$1=="RESULT" && $2==d && $4==q && $5==e && $6 != "" {print $6, $7}' "$raw" |
    sort -g | awk '{l[NR] = $0} END {if (NR) print l[int((NR + 1) / 2)]; else print "0 0"}'
}
{
  echo "# NVMe/TCP: udrvd's target against the kernel's nvmet-tcp, $(date +%Y-%m-%d)"
  echo
  echo "Command: \`bench/nvmf.sh\` (fio 4 KiB randread, io_uring, direct, through the guest kernel's nvme-tcp over loopback; ${UDRV_BENCH_SECONDS:-5} s per run, median of ${UDRV_BENCH_ROUNDS:-3} rounds after a warm-up; QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'), TCG, q35 + intel-iommu, 2 vCPUs, guest kernel: Debian 12's 6.12; fio on vCPU 0)"
  echo
  echo "Host: $(host_line)"
  echo
  echo "Built from: $(build_commit "$build")"
  echo
  echo "udrvd runs three times: as configured by default (two workers placed by the scheduler, each polling its"
  echo "sockets for 1 ms after each PDU and sleeping otherwise, waiting for the device by interrupt); polling"
  echo "(\`[nvmf] cpus = [1]\`, \`poll_us = 1000\`, \`device_interrupts = false\`: its worker on vCPU 1, away from"
  echo "fio and the initiator, polling its sockets for 1 ms after each PDU and the device while it works); and"
  echo "the same with \`device_interrupts = true\` (the worker sleeps while the device works and the sockets are"
  echo "quiet, and its queue's interrupt is directed to vCPU 1)."
  echo
  echo "| device | QD | kernel nvme, local | kernel nvmet-tcp | udrvd NVMe/TCP | udrvd, polling on CPU 1 | udrvd, polling sockets, device interrupts | default / nvmet-tcp (IOPS; latency) | polling / nvmet-tcp | device interrupts / nvmet-tcp |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for dev in file null-co; do
    for qd in 1 32; do
      read -r li ll < <(median $dev $qd kernel-local)
      read -r ki kl < <(median $dev $qd kernel-nvmet-tcp)
      read -r ui ul < <(median $dev $qd udrvd-nvmf-tcp)
      read -r pi pl < <(median $dev $qd udrvd-nvmf-tcp-poll)
      read -r ii il < <(median $dev $qd udrvd-nvmf-tcp-irq)
      printf '| %s | %s | %.1fk, %.0f µs | %.1fk, %.0f µs | %.1fk, %.0f µs | %.1fk, %.0f µs | %.1fk, %.0f µs | %.2fx; %.2fx | %.2fx; %.2fx | %.2fx; %.2fx |\n' $dev $qd \
        "$(echo "$li/1000" | bc -l)" "$ll" "$(echo "$ki/1000" | bc -l)" "$kl" "$(echo "$ui/1000" | bc -l)" "$ul" \
        "$(echo "$pi/1000" | bc -l)" "$pl" "$(echo "$ii/1000" | bc -l)" "$il" \
        "$(echo "if ($ki > 0) $ui / $ki else 0" | bc -l)" "$(echo "if ($kl > 0) $ul / $kl else 0" | bc -l)" \
        "$(echo "if ($ki > 0) $pi / $ki else 0" | bc -l)" "$(echo "if ($kl > 0) $pl / $kl else 0" | bc -l)" \
        "$(echo "if ($ki > 0) $ii / $ki else 0" | bc -l)" "$(echo "if ($kl > 0) $il / $kl else 0" | bc -l)"
    done
  done
  echo
  echo "Every round (IOPS):"
  echo
  awk '$1=="RESULT" {k=$2" randread QD"$4" "$5; v[k]=v[k] (v[k]==""?"":", ") sprintf("%.1fk", $6/1000)} END {for (k in v) print "- " k ": " v[k]}' "$raw" | sort
} > "$out"
cat "$out"
