#!/usr/bin/env bash
# Network benchmark: udrv against DPDK's dpdk-testpmd doing the same work on the same QEMU NICs in one
# VM boot: transmit-only (udrv net pktgen / testpmd txonly) on virtio-net and e1000e, and forwarding
# virtio-net -> e1000e (udrv net fwd / testpmd io) with a udrv pktgen in another process as the
# source, at batch (burst) sizes 1, 8, 32 and 256. TCG is slow and noisy: read the ratios, not the
# absolute figures. Writes bench/results/net-DATE.md (a later run that day: net-DATEb.md, ...).
# Usage: bench/net.sh [BUILD_DIR]   (UDRV_BENCH_SECONDS per run, default 5; UDRV_BENCH_ROUNDS, default 3;
#                                    installs Debian's DPDK as root)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
. bench/lib.sh
need_dpdk net.sh
out=$(results_file net)
raw=$(mktemp)
rc=0
UDRV_VM_DPDK=1 UDRV_VM_MEM=2G UDRV_VM_TIMEOUT=1200 UDRV_VM_LOG="${UDRV_BENCH_SERIAL_LOG:-}" tests/vm/vm.sh run "$build" bench/net-guest.sh > "$raw" || rc=$?
grep '^RESULT' "$raw" || true
# A guest that stopped early: say so instead of a table of partial medians (vm.sh's report of the
# failure repeats the log's last lines, RESULT lines included, so they would be counted twice).
if [ "$rc" -ne 0 ]; then
  echo "bench/net.sh: the VM run failed (exit $rc); no table written. Its last output:" >&2
  grep -v '^RESULT' "$raw" | tail -n 40 >&2
  exit 1
fi
# k WORK BATCH IMPL FIELD: the median over the rounds.
k() {
  awk -v w="$1" -v b="$2" -v i="$3" -v f="$4" '$1=="RESULT" && $2==w && $3==b && $4==i {print $f}' "$raw" | sort -n |
    awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]}'
}
fmt_k() { [ -n "$1" ] && [ "$1" != 0 ] && printf '%.0fk' "$(echo "$1 / 1000" | bc -l)" || printf 'failed'; }
{
  echo "# Network: udrv vs DPDK testpmd, one VM boot ($(date -u +%Y-%m-%d))"
  echo
  echo "Command: \`bench/net.sh\` (64-byte frames, ${UDRV_BENCH_SECONDS:-5} s per run, median of ${UDRV_BENCH_ROUNDS:-3} rounds; QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'), TCG, q35 + intel-iommu, 2 vCPUs; DPDK $(dpkg-query -W -f='${Version}' dpdk-dev))"
  echo
  echo "Host: $(host_line)"
  echo
  echo "Build: $(build_commit "$build")"
  echo
  echo "Frames per second (pktgen: the median of the per-second rates each prints, first and last second left out, for udrv as for testpmd's Tx-pps; fwd: udrv's count over its busy interval; each the median of the"
  echo "rounds, udrv and testpmd taking turns). For fwd, \"offered\" is what the"
  echo "generator (\`udrv net pktgen --rate ${UDRV_BENCH_FWD_RATE:-200000}\` on 00:06.0, another process on the other vCPU) sent during"
  echo "the udrv / the testpmd run: a forwarder that keeps up forwards about that many."
  echo
  echo "| work | batch | udrv | testpmd | udrv / testpmd | offered (fwd) |"
  echo "|---|---|---|---|---|---|"
  for w in pktgen-virtio pktgen-e1000e fwd; do
    for b in 1 8 32 256; do
      u=$(k $w $b udrv 5); t=$(k $w $b testpmd 5)
      ratio=$(echo "if (0${t:-0} > 0) 0${u:-0} / ${t} else 0" | bc -l)
      offered="-"
      [ $w = fwd ] && offered="$(fmt_k "$(k $w $b udrv 6)") / $(fmt_k "$(k $w $b testpmd 6)")"
      echo "| $w | $b | $(fmt_k "$u") | $(fmt_k "$t") | $(printf '%.2f' "$ratio")x | $offered |"
    done
  done
  echo
  echo "Every round (work, batch, implementation, frames/s, offered):"
  echo
  echo '```'
  grep '^RESULT' "$raw" | cut -d' ' -f2-
  echo '```'
} > "$out"
cat "$out"
rm -f "$raw"
