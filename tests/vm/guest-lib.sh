# Helpers for guest scripts (sourced inside the VM). Each check prints one line; the summary line at the
# end is "N passed, N failed", and the script's exit status is the number of failures (capped at 100).
export LD_LIBRARY_PATH=/udrv/lib UDRV_MODULE_PATH=/udrv/modules
passed=0 failed=0
# vm_test NAME COMMAND...: runs COMMAND, shows its output, counts the result. Its variables have names
# no test uses: sh's locals are seen (and set) by the functions a test calls, so a test's own rc or t0
# would otherwise overwrite them (a passing test failed for its rc; durations came out negative).
vm_test() {  # each test's time since boot and duration, so that a slow run says where the time went
  local _vm_name=$1 _vm_t0 _vm_t1 _vm_rc=0; shift
  _vm_t0=$(cut -d' ' -f1 /proc/uptime)
  echo "=== RUN  $_vm_name"
  rm -f /tmp/vm-test.hung; echo "$_vm_t0 $_vm_name" > /tmp/vm-test.running  # for the watchdog below
  "$@" || _vm_rc=$?
  if [ -e /tmp/vm-test.hung ]; then echo "=== FAIL $_vm_name (hung: killed after $(cat /tmp/vm-test.hung) s)"; failed=$((failed + 1))
  elif [ "$_vm_rc" = 0 ]; then echo "=== PASS $_vm_name"; passed=$((passed + 1))
  else echo "=== FAIL $_vm_name (exit $_vm_rc)"; failed=$((failed + 1)); fi
  rm -f /tmp/vm-test.running
  _vm_t1=$(cut -d' ' -f1 /proc/uptime)
  echo "--- at ${_vm_t1%.*} s, took $(awk "BEGIN { printf \"%.1f\", $_vm_t1 - $_vm_t0 }") s"
}

# A test still running after UDRV_VM_TEST_TIMEOUT seconds (default 300; the slowest test takes about
# 90 s under ASan) has hung. The watchdog prints where each of the suite's processes waits (state,
# wchan, kernel stack) and the kernel's log since the test began with its blocked tasks, then kills what the test
# started, so that a hang costs one test and says where it was, instead of the whole run ending at the
# VM's time limit with nothing said (the kernel's own hung-task warnings are below the console's level).
vm_procs() {  # ROOT_PID SKIP_PID: "pid start_ticks" of every process below ROOT_PID and not below SKIP_PID
  local s l p
  for s in /proc/[0-9]*/stat; do
    l=$(cat "$s" 2>/dev/null) || continue
    p=${s#/proc/}; p=${p%/stat}
    echo "$p ${l##*) }"  # after the command name (which may hold spaces): state ppid ...
  done | awk -v root="$1" -v skip="$2" '{ pp[$1] = $3; st[$1] = $21 }
    END { for (p in pp) { if (p == skip) continue; q = pp[p]; while ((q in pp) && q != root && q != skip) q = pp[q]; if (q == root) print p, st[p] } }'
}
vm_hang_report() {  # NAME START SECONDS PIDS...
  local name=$1 start=$2 secs=$3 p; shift 3
  echo "=== HUNG $name: still running after $secs s. The suite's processes, where they wait:"
  for p in "$@"; do
    [ -r "/proc/$p/status" ] || continue
    echo "--- pid $p: $(tr '\0' ' ' < "/proc/$p/cmdline" | cut -c1-160)"
    echo "    state $(awk '/^State/ {print $2}' "/proc/$p/status"), wchan $(cat "/proc/$p/wchan" 2>/dev/null)"
    sed 's/^/    /' "/proc/$p/stack" 2>/dev/null | head -n 24
  done
  echo "--- the kernel's log since the test began, with its blocked tasks (sysrq w):"
  echo w > /proc/sysrq-trigger 2>/dev/null
  dmesg | awk -v t="$start" '{ s = $0; sub(/^\[ */, "", s) } s + 0 >= t + 0' | tail -n 80
}
vm_watchdog() {  # SUITE_PID
  local suite=$1 limit=${UDRV_VM_TEST_TIMEOUT:-300} start name now all
  local hz; hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
  while sleep 5; do
    kill -0 "$suite" 2>/dev/null || return 0
    read -r start name 2>/dev/null < /tmp/vm-test.running || continue  # 2> first: it covers the < that fails
    now=$(cut -d' ' -f1 /proc/uptime)
    [ "$(awk "BEGIN { print ($now - $start >= $limit) }")" = 1 ] || continue
    now=${now%.*}
    all=$(vm_procs "$suite" "$(cat /tmp/vm-watchdog.pid)")
    vm_hang_report "$name" "$start" $((now - ${start%.*})) $(echo "$all" | cut -d' ' -f1)
    echo $((now - ${start%.*})) > /tmp/vm-test.hung
    rm -f /tmp/vm-test.running
    # Only what the test started: daemons an earlier test left running for later ones stay.
    echo "$all" | awk -v hz="$hz" -v t="$start" '$1 != "" && $2 / hz >= t { print $1 }' | xargs -r kill -KILL 2>/dev/null
  done
}
if [ -z "${UDRV_VM_WATCHDOG:-}" ]; then  # one per suite, not one per script it sources this from
  export UDRV_VM_WATCHDOG=1
  vm_watchdog $$ &
  echo $! > /tmp/vm-watchdog.pid
fi
# wait_started PID FILE PATTERN: waits (up to 60 s) until FILE has a line matching PATTERN, the line a
# tool prints once its device is open; fails at once if PID exits first. Traffic for a capture or a
# forwarder starts after it: under the sanitizers a tool has taken over 3 s to open its NIC.
wait_started() {
  for _ in $(seq 600); do
    grep -q "$3" "$2" 2>/dev/null && return 0
    kill -0 "$1" 2>/dev/null || { echo "pid $1 exited before it printed '$3':"; tail -3 "$2"; return 1; }
    sleep 0.1
  done
  echo "pid $1 did not print '$3' in 60 s"; return 1
}
# udrvd_start [OPTIONS]: udrvd in the background (its pid in udrvd_pid, its log appended to
# /tmp/udrvd.log); returns once it answers, or fails with the log, also when it exits first (another
# udrvd answering on the socket is not this one: it refuses to start).
udrvd_start() {
  udrvd "$@" >> /tmp/udrvd.log 2>&1 &
  udrvd_pid=$!
  for _ in $(seq 100); do
    kill -0 $udrvd_pid 2>/dev/null || break
    udrv rpc get_version >/dev/null 2>&1 && return 0; sleep 0.1
  done
  echo "udrvd did not come up:"; cat /tmp/udrvd.log; return 1
}
# host_pid DEVICE: the pid of the udrvd driver host serving DEVICE (a PCI address, or a platform
# description's path), from udrvd's device list.
host_pid() { udrv rpc device_list 2>/dev/null | grep -A8 "\"device\": \"$1\"" | sed -n 's/^ *"pid": \([0-9]*\),*/\1/p' | head -1; }
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
