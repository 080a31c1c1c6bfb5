#!/usr/bin/env bash
# Instructions per operation of udrv's drivers, counted by callgrind against the in-RAM device models
# (bench/micro/micro.cpp): machine-independent where VM figures are not. For each operation, the main
# thread's instruction count for N operations minus that for 0 (set-up and warm-up are the same in both)
# over N. The device models' work (their MMIO listeners) and the benchmark's completion callback are not
# counted (they turn callgrind's collection off while they run); the driver's MMIO accesses are, as the
# loads and stores they are on hardware, plus the listener check a model adds to each.
#
# Usage: bench/micro.sh [BUILD_DIR] [--check | --update]
#   (no flag)  print the table and write bench/results/micro-DATE.md
#   --check    fail if an operation costs more than 10% above bench/micro/baseline.tsv (CI)
#   --update   also write the figures to bench/micro/baseline.tsv
# UDRV_MICRO_N: operations per run (default 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
build=build mode=report
for a in "$@"; do
  case "$a" in
    --check) mode=check ;;
    --update) mode=update ;;
    -*) echo "usage: bench/micro.sh [BUILD_DIR] [--check | --update]" >&2; exit 2 ;;
    *) build=$a ;;
  esac
done
micro="$build/bin/udrv-micro"
[ -x "$micro" ] || { echo "bench/micro.sh: $micro is not built (make build)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "bench/micro.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
n=${UDRV_MICRO_N:-2000}
baseline=bench/micro/baseline.tsv
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# count OP N: instructions the main thread executed, from callgrind's totals for thread 1.
count() {
  local out="$tmp/$1.$2"
  LD_LIBRARY_PATH="$build/lib" UDRV_MODULE_PATH="$build/modules" valgrind --tool=callgrind --separate-threads=yes \
    --callgrind-out-file="$out" "$micro" "$1" "$2" > "$tmp/log" 2>&1 || { cat "$tmp/log" >&2; return 1; }
  awk '/^totals:/ {print $2; exit}' "$out"-01
}

rows=() failed=0
printf '%-22s %12s %10s\n' operation instructions baseline
for op in $("$micro" --list); do
  base=$(count "$op" 0) full=$(count "$op" "$n")
  per=$(( (full - base + n / 2) / n ))
  ref=$(awk -v op="$op" '$1 == op {print $2}' "$baseline" 2>/dev/null || true)
  verdict=""
  if [ -n "$ref" ] && [ "$per" -gt $(( ref + ref / 10 )) ]; then verdict="  REGRESSED (> +10%)"; failed=$((failed + 1)); fi
  printf '%-22s %12s %10s%s\n' "$op" "$per" "${ref:--}" "$verdict"
  rows+=("$op $per ${ref:--}")
done

if [ "$mode" = check ]; then
  [ "$failed" -eq 0 ] && echo "PASS: no operation costs more than 10% above $baseline" && exit 0
  echo "FAIL: $failed operation(s) cost more than 10% above $baseline (a deliberate change? bench/micro.sh --update)"; exit 1
fi
if [ "$mode" = update ]; then
  { echo "# operation instructions-per-operation (bench/micro.sh --update, $(date +%Y-%m-%d), $(gcc --version | head -1))"
    for r in "${rows[@]}"; do echo "${r% *}" | tr ' ' '\t'; done; } > "$baseline"
fi
. bench/lib.sh
out=$(results_file micro)
{
  echo "# Instructions per operation, callgrind on the device models ($(date +%Y-%m-%d))"
  echo
  echo "Command: \`bench/micro.sh\` ($n operations per run, minus a run of 0; $(valgrind --version), $(gcc --version | head -1), RelWithDebInfo)"
  echo
  echo "Host: $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $(nproc) CPUs, kernel $(uname -r) (the counts depend on the compiler and libc, hardly on the host)"
  echo
  echo "| operation | instructions per operation | baseline |"
  echo "|---|---|---|"
  for r in "${rows[@]}"; do set -- $r; echo "| $1 | $2 | $3 |"; done
} > "$out"
echo "wrote $out"
