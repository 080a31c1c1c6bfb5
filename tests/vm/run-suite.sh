#!/usr/bin/env bash
# ctest entry for the VM suite. Usage: run-suite.sh BUILD_DIR
# Files the guest prints between "UDRV-FILE name" and "UDRV-FILE-END" (base64) are checked here with
# tools the guest does not have: a pcap from `udrv net dump` must read back in tshark, every frame.
set -uo pipefail
[ "${UDRV_SKIP_VM:-0}" = 1 ] && { echo "SKIP: UDRV_SKIP_VM=1"; exit 77; }
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The suite runs for about 5 minutes under TCG (udrvd's hot-plug tests among it).
UDRV_VM_TIMEOUT=${UDRV_VM_TIMEOUT:-600} "$here/vm.sh" run "$1" "$here/guest-tests.sh" | tee "$out/log"
rc=${PIPESTATUS[0]}
awk -v dir="$out" '/^UDRV-FILE-END/ {f=""; next} /^UDRV-FILE / {f=dir "/" $2 ".b64"; next} f {print > f}' "$out/log"
if [ -f "$out/cap.pcap.b64" ]; then
  base64 -d "$out/cap.pcap.b64" > "$out/cap.pcap"
  frames=$(tshark -r "$out/cap.pcap" 2>/dev/null | wc -l)
  icmp=$(tshark -r "$out/cap.pcap" -Y icmp 2>/dev/null | wc -l)
  if [ "$frames" -eq 50 ] && [ "$icmp" -ge 1 ]; then
    echo "=== PASS host: tshark reads all 50 frames of udrv's pcap ($icmp ICMP)"
  else
    echo "=== FAIL host: tshark read $frames frames ($icmp ICMP) from udrv's pcap, expected 50"; [ "$rc" -eq 0 ] && rc=1
  fi
elif [ "$rc" -eq 0 ]; then
  echo "=== FAIL host: the guest produced no pcap to check"; rc=1
fi
# The failed tests by name at the end, where a log cut to its tail still shows them.
if grep -q '^=== FAIL' "$out/log"; then
  echo "failed tests:"; grep '^=== FAIL' "$out/log" | sed 's/^=== FAIL /  /'
fi
exit "$rc"
