#!/usr/bin/env bash
# Runs every fuzzer for SECONDS each, starting from its seed corpus in tests/fuzz/corpus/NAME (new inputs
# go to a scratch corpus, not into the tree). Fails on the first finding, printing the input's path.
# Usage: run.sh BUILD_DIR SECONDS [NAME...]
set -uo pipefail
build=$(cd "$1" && pwd); seconds=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
names=("$@")
# By default every harness that was built (tests/fuzz/CMakeLists.txt lists them), so none is left out.
if [ ${#names[@]} -eq 0 ]; then
  for bin in "$build"/bin/fuzz_*; do [ -x "$bin" ] && names+=("${bin##*/fuzz_}"); done
  [ ${#names[@]} -gt 0 ] || { echo "fuzz: no fuzz_* programs in $build/bin: make fuzz builds them"; exit 2; }
fi
out="$build/fuzz-results"; mkdir -p "$out"
# One fuzzer per CPU at a time (each is single-threaded): the wall time is seconds x names / CPUs.
jobs=${FUZZ_JOBS:-$(nproc)}
run_one() {  # writes "$out/NAME.result": the table row, then the exit status
  local n=$1 bin="$build/bin/fuzz_$1" work rc last cov ft runs result
  work=$(mktemp -d)
  mkdir -p "$out/$n"
  "$bin" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2560 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$out/$n/" "$work" "$here/corpus/$n" > "$out/$n.log" 2>&1
  rc=$?
  last=$(grep -E '^#[0-9]+[[:space:]]' "$out/$n.log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last"); ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$n.log")
  if [ $rc -eq 0 ]; then result=ok; else result="FINDING (exit $rc): $(ls "$out/$n"/crash-* "$out/$n"/leak-* "$out/$n"/timeout-* "$out/$n"/oom-* 2>/dev/null | head -1)"; fi
  printf '%-16s %8s %8s %10s %s\n%s\n' "$n" "${cov:-?}" "${ft:-?}" "${runs:-?}" "$result" "$rc" > "$out/$n.result"
  rm -rf "$work"
}
for n in "${names[@]}"; do
  [ -x "$build/bin/fuzz_$n" ] || { echo "fuzz: $build/bin/fuzz_$n is missing: make fuzz builds it"; exit 2; }
done
for n in "${names[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  run_one "$n" &
done
wait
failed=0
printf '%-16s %8s %8s %10s %s\n' fuzzer cov ft runs result
for n in "${names[@]}"; do
  head -n 1 "$out/$n.result"
  if [ "$(sed -n 2p "$out/$n.result")" != 0 ]; then failed=$((failed + 1)); tail -n 40 "$out/$n.log"; fi
done
[ $failed -eq 0 ] && echo "fuzz: ${#names[@]} fuzzers, ${seconds} s each, $jobs at a time, no findings" || echo "fuzz: $failed fuzzer(s) found something (inputs under $out)"
[ $failed -eq 0 ]
