# Helpers for guest scripts (sourced inside the VM). Each check prints one line; the summary line at the
# end is "N passed, N failed", and the script's exit status is the number of failures (capped at 100).
export LD_LIBRARY_PATH=/udrv/lib UDRV_MODULE_PATH=/udrv/modules
passed=0 failed=0
# vm_test NAME COMMAND...: runs COMMAND, shows its output, counts the result.
vm_test() {  # each test's time since boot and duration, so that a slow run says where the time went
  local name=$1 t0 t1; shift
  t0=$(cut -d' ' -f1 /proc/uptime)
  echo "=== RUN  $name"
  if "$@"; then echo "=== PASS $name"; passed=$((passed + 1)); else echo "=== FAIL $name (exit $?)"; failed=$((failed + 1)); fi
  t1=$(cut -d' ' -f1 /proc/uptime)
  echo "--- at ${t1%.*} s, took $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s"
}
# find_dev VENDOR DEVICE: the first PCI address with these ids.
find_dev() {
  for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/vendor")" = "0x$1" ] && [ "$(cat "$d/device")" = "0x$2" ] && { basename "$d"; return 0; }
  done
  return 1
}
# disk_of PCI_ADDRESS: the kernel's block device of namespace 1 of the NVMe controller there, once it
# exists (the kernel probes asynchronously).
disk_of() {
  for _ in $(seq 50); do
    d=$(ls /sys/bus/pci/devices/$1/nvme/nvme*/ 2>/dev/null | grep -m1 -E '^nvme[0-9]+n1$') && [ -b "/dev/$d" ] && { echo "$d"; return 0; }
    sleep 0.2
  done
  return 1
}
# reprobe PCI_ADDRESS: its kernel driver lets go and probes it again (to apply changed module parameters).
reprobe() { echo "$1" > /sys/bus/pci/devices/$1/driver/unbind; echo "$1" > /sys/bus/pci/drivers_probe; }
expect_fail() {  # expect_fail "message part" command...: must exit non-zero and print the message
  local want=$1; shift
  local out
  out=$("$@" 2>&1) && { echo "$out"; echo "expected a failure"; return 1; }
  echo "$out"
  echo "$out" | grep -qF -- "$want" || { echo "missing: $want"; return 1; }
}
vm_summary() {
  if [ -n "${ASAN_OPTIONS:-}" ]; then  # a sanitizer build: no process may have reported anything
    echo "=== RUN  sanitizers: no AddressSanitizer, LeakSanitizer or UBSan report from any process"
    if ls /tmp/sanitizer/* >/dev/null 2>&1; then
      for f in /tmp/sanitizer/*; do echo "--- $f"; head -n 40 "$f"; done
      echo "=== FAIL sanitizers: $(ls /tmp/sanitizer | wc -l) report(s)"; failed=$((failed + 1))
    else
      echo "=== PASS sanitizers: none"; passed=$((passed + 1))
    fi
  fi
  echo "$passed passed, $failed failed"
  [ "$failed" -gt 100 ] && failed=100
  return "$failed"
}
