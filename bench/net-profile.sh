#!/usr/bin/env bash
# Where QEMU's time goes while it transmits for udrv and for testpmd: `perf record` on QEMU's main loop
# (the thread that runs virtio-net's transmit) while the guest runs udrv net pktgen and testpmd txonly
# on the virtio-net NIC in turns (bench/net-profile-guest.sh), then, for each run, the main loop's
# samples per second in the symbols that differ most between the two. QEMU exports its symbols, so no
# debug package is needed. A symbol one side makes hot (QEMU's loads from a ring line the driver keeps
# writing, say) shows as a gap in its row. Writes bench/results/net-profile-DATE.md.
# Usage: bench/net-profile.sh [BUILD_DIR]   (UDRV_BENCH_BATCH, default 32; UDRV_BENCH_SECONDS per run,
#                                            default 8; UDRV_BENCH_ROUNDS, default 2; as root: perf
#                                            on another user's QEMU, and Debian's DPDK)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
. bench/lib.sh
need_dpdk net-profile.sh
command -v perf >/dev/null || { echo "net-profile.sh: needs perf (apt-get install linux-perf)" >&2; exit 1; }
out=$(results_file net-profile)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export UDRV_BENCH_BATCH=${UDRV_BENCH_BATCH:-32} UDRV_BENCH_SECONDS=${UDRV_BENCH_SECONDS:-8} UDRV_BENCH_ROUNDS=${UDRV_BENCH_ROUNDS:-2}

# The QEMU this run starts is the one not running before it; its main thread's id is its pid.
before=" $(pgrep -d ' ' qemu-system-x86 || true) "
(
  for _ in $(seq 3000); do  # up to 5 minutes for vm.sh to build the initramfs and start QEMU
    for pid in $(pgrep qemu-system-x86 || true); do
      [[ "$before" == *" $pid "* ]] && continue
      exec perf record -q -e cpu-clock -F 1999 -k CLOCK_REALTIME -t "$pid" -o "$tmp/perf.data" >/dev/null 2>&1
    done
    sleep 0.1
  done
) &
recorder=$!
rc=0
UDRV_VM_DPDK=1 UDRV_VM_MEM=2G UDRV_VM_TIMEOUT=900 tests/vm/vm.sh run "$build" bench/net-profile-guest.sh > "$tmp/guest" || rc=$?
wait "$recorder" || true
if [ "$rc" -ne 0 ] || [ ! -s "$tmp/perf.data" ]; then
  echo "bench/net-profile.sh: the VM run failed (exit $rc) or perf recorded nothing; its last output:" >&2
  tail -n 30 "$tmp/guest" >&2
  exit 1
fi

# Per run: samples per second of each symbol, leaving out each run's first 2 s and last second. Rows
# are run, impl, rate, symbol, tab-separated (symbols may hold spaces).
n=0
while read -r _ impl _ start _ _ _ end; do
  n=$((n + 1))
  secs=$((end - start - 3))
  [ "$secs" -gt 0 ] || continue
  perf report -q -i "$tmp/perf.data" --time "$((start + 2)),$((end - 1))" --sort sym -F sample,sym --stdio 2>/dev/null |
    awk -v s="$secs" -v run="$n" -v impl="$impl" '$1 ~ /^[0-9]+$/ {c = $1; $1 = ""; $2 = ""; sub(/^ +/, ""); print run "\t" impl "\t" int(c / s) "\t" $0}' >> "$tmp/rows"
  echo "$n $impl $(sed -n "/PHASE $impl start $start/,/PHASE $impl end/p" "$tmp/guest" | grep -o '[0-9]*/s' | sed 's|/s||' | sed '1d;$d' |
    sort -n | awk '{v[NR] = $1} END {print (NR ? v[int((NR + 1) / 2)] : 0)}')" >> "$tmp/rates"
done < <(grep '^PHASE' "$tmp/guest" | paste -d' ' - -)
built=$(build_commit "$build")
# The symbols whose rate differs most between the udrv and the testpmd runs (sums over the rounds).
top=$(awk -F'\t' '{k = $4; if ($2 == "udrv") u[k] += $3; else t[k] += $3; keys[k] = 1}
           END {for (k in keys) {d = u[k] - t[k]; print (d < 0 ? -d : d) "\t" k}}' "$tmp/rows" | sort -rn | head -12 | cut -f2)
{
  echo "# QEMU's main loop transmitting for udrv and for testpmd ($(date -u +%Y-%m-%d))"
  echo
  echo "Built from: $built"
  echo
  echo "Command: \`bench/net-profile.sh\` (virtio-net, batch $UDRV_BENCH_BATCH, 64-byte frames, $UDRV_BENCH_SECONDS s per run, $UDRV_BENCH_ROUNDS rounds; QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'), TCG; DPDK $(dpkg-query -W -f='${Version}' dpdk-dev); host: $(nproc) CPUs, $(uname -r))"
  echo
  echo "Samples per second of QEMU's main loop (perf, cpu-clock at 1999 Hz) in the symbols that differ most"
  echo "between the two, and in all, per run; frames/s is the run's median per-second rate."
  echo
  printf '| run | frames/s | all |'; while read -r sym; do printf ' %s |' "${sym:0:40}"; done <<< "$top"; echo
  printf '|---|---|---|'; while read -r _; do printf -- '---|'; done <<< "$top"; echo
  while read -r run impl rate; do
    printf '| %s %s | %s | %s |' "$run" "$impl" "$rate" "$(awk -F'\t' -v r="$run" '$1 == r {s += $3} END {print s + 0}' "$tmp/rows")"
    while read -r sym; do
      printf ' %s |' "$(awk -F'\t' -v r="$run" -v k="$sym" '$1 == r && $4 == k {print $3; f = 1} END {if (!f) print 0}' "$tmp/rows")"
    done <<< "$top"
    echo
  done < "$tmp/rates"
} > "$out"
cat "$out"
