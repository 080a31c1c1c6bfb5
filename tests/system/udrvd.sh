#!/usr/bin/env bash
# udrvd on this machine, with platform devices (RAM disks; no VFIO needed): modules through the daemon,
# a driver host killed and restarted, a driver that crashes (and one that hangs) in every probe given up
# after the limit, two clients at once, an unprivileged client refused, SIGTERM and a restart from the
# saved configuration. PCI devices, hot-unplug and the NVMe/NIC paths are tested in the VM.
# Usage: udrvd.sh BUILD_DIR   (needs root: udrvd manages devices; exits 77 otherwise)
set -uo pipefail
build=$1
[ "$(id -u)" -eq 0 ] || { echo "SKIP: udrvd's test needs root"; exit 77; }
udrv="$build/bin/udrv" udrvd="$build/bin/udrvd"
tmp=$(mktemp -d)
export UDRV_SOCKET="$tmp/udrvd.sock"
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; pkill -9 -f "udrv-host.*--module-dir $build/modules" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
. "$(dirname "$0")/check-lib.sh"
# until SECONDS COMMAND...: retries COMMAND (quietly) until it succeeds.
until_ok() { local t=$1; shift; for _ in $(seq $((t * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; "$@"; }
start() {  # start [udrvd options...]: in the background, ready once its socket answers
  "$udrvd" --socket "$UDRV_SOCKET" --no-uevents --module-dir "$build/modules" --module-dir "$build/test-modules" "$@" >> "$tmp/udrvd.log" 2>&1 &
  pid=$!
  until_ok 10 "$udrv" rpc get_version
}

cat > "$tmp/ram.toml" <<EOF
[[device]]
name = "scratch"
compatible = "udrv,ramdisk"
memory = [{ name = "storage", start = 0x1000_0000, size = 0x100_0000 }]
EOF
printf '[[device]]\nname = "bad"\ncompatible = "udrv,test-crash"\n' > "$tmp/crash.toml"
printf '[[device]]\nname = "stuck"\ncompatible = "udrv,test-hang"\n' > "$tmp/hang.toml"
cat > "$tmp/udrvd.toml" <<EOF
[daemon]
watchdog_ms = 1500
restart_limit = 3
restart_window_s = 60

[[module]]
name = "udrv_sample_params"
params = { count = 2, who = "udrvd" }

[[platform]]
description = "$tmp/ram.toml"
EOF

printf '[daemon]\nwatchdog = 1\n' > "$tmp/bad.toml"
check "a bad configuration is refused with its line" 1 "bad.toml:2: unknown key 'watchdog' in \[daemon\]" \
  "$udrvd" --socket "$tmp/x.sock" --config "$tmp/bad.toml"
start --config "$tmp/udrvd.toml"

# Modules through the daemon.
check "lsmod lists the configured module" 0 "udrv_sample_params +config +0 +\[count=2 who=udrvd\]" "$udrv" lsmod
check "insmod through udrvd" 0 "udrv_sample_hello: loaded into udrvd" "$udrv" insmod udrv_sample_hello
check "its init ran in the modules host" 0 "host modules: udrv_sample_hello: hello from user space" cat "$tmp/udrvd.log"
check "lsmod shows it" 0 "udrv_sample_hello +insmod" "$udrv" lsmod
check "insmod of a loaded module" 1 "module udrv_sample_hello is already loaded" "$udrv" insmod udrv_sample_hello
"$udrv" rmmod udrv_sample_params >/dev/null 2>&1
check "insmod with a bad parameter runs nothing" 1 "count.*expects int64, got 'many'" "$udrv" insmod udrv_sample_params count=many
check "insmod with parameters" 0 "udrv_sample_params: loaded into udrvd" "$udrv" insmod udrv_sample_params count=3
check "... its init saw them" 0 "host modules: udrv_sample_params: \[3/3\] hello, world" cat "$tmp/udrvd.log"
check "insmod of a module that does not exist" 1 "module nope not found" "$udrv" insmod nope
check "insmod whose init fails is forgotten" 1 "simulated hardware fault" "$udrv" insmod test_failinit
check "... and not listed" 1 "^$" sh -c "'$udrv' lsmod 2>/dev/null | grep test_failinit"
check "rmmod of a module in use is refused, naming its user" 1 "module udrv_sample_provider is in use by module udrv_sample_consumer" \
  sh -c "'$udrv' insmod udrv_sample_consumer >/dev/null 2>&1; '$udrv' rmmod udrv_sample_provider"
check "rmmod" 0 "udrv_sample_hello: removed from udrvd" "$udrv" rmmod udrv_sample_hello
check "rmmod of a module not loaded" 1 "module udrv_sample_hello is not loaded" "$udrv" rmmod udrv_sample_hello
check "the exit ran in the modules host" 0 "host modules: udrv_sample_hello: goodbye" cat "$tmp/udrvd.log"

# Devices: the configured RAM disk, used through udrvd.
check "block list through udrvd" 0 "^ram0 +scratch +udrv_ramdisk +32768 blocks of 512 B" "$udrv" block list
check "block perf runs in the device's host" 0 "scratch randread 4096 B, queue depth 8 x 1 thread \(poll\): [0-9]+ IOPS, .* 0 errors" \
  "$udrv" block perf ram0 -q 8 -t 1
# Two clients at once: a 3 s benchmark and, meanwhile, quick calls that must not wait for it.
"$udrv" block perf ram0 -q 4 -t 3 --json > "$tmp/perf.json" 2>&1 &
bench=$!
sleep 0.5
check "a second client is served while a benchmark runs" 0 "udrv_sample_params" "$udrv" lsmod
# ... not after it: the benchmark (3 s) still runs (a bound in ms would time the machine, not udrvd).
check "... before the benchmark ends" 0 "^running$" sh -c "kill -0 $bench 2>/dev/null && echo running"
check "stats shows the job running in its host" 0 "ram0 +block_perf running in host [0-9]+ \(pid [0-9]+\)" "$udrv" stats
wait $bench
check "the benchmark's JSON came back whole" 0 '"errors": 0' cat "$tmp/perf.json"
check "top -b shows devices, hosts and rates" 0 "udrvd: 1 device\(s\), 1 running" "$udrv" top -b -n 2 -d 0.3

# A driver host killed: its device comes back in a new host, under the same name.
hostpid=$("$udrv" rpc device_list | sed -n 's/^ *"pid": \([0-9]*\),*/\1/p' | head -1)
t0=$(date +%s%N)
kill -9 "$hostpid"
until_ok 5 sh -c "'$udrv' rpc device_list | grep -q '\"restarts\": 1' && '$udrv' rpc device_list | grep -q '\"state\": \"running\"'"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "host killed -> device running again in $ms ms"
# The measurement includes this loop's own udrv calls, which a sanitizer build starts several times slower.
limit=2000
grep -q '^UDRV_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null && limit=5000
check "after kill -9 the device is back within $((limit / 1000)) s" 0 "^ok$" sh -c "[ $ms -lt $limit ] && echo ok"
check "... with its name" 0 "^ram0 +scratch" "$udrv" block list
check "... and works" 0 " 0 errors" "$udrv" block perf ram0 -q 4 -t 1
check "udrvd logged why" 0 "died: killed by signal 9 \(SIGKILL\)" cat "$tmp/udrvd.log"

# A driver that crashes in every probe: restarted with back-off, then given up with a clear report.
"$udrv" insmod test_crashprobe >/dev/null 2>&1
check "a probe that crashes fails the call that bound it" 1 "died while starting: killed by signal 6 \(SIGABRT\)" \
  "$udrv" rpc platform_add "{\"description\": \"$tmp/crash.toml\"}"
until_ok 10 sh -c "'$udrv' rpc device_list | grep -q 'gave up'"
check "given up after the restart limit" 0 "gave up after 3 restarts within 60 s; the last failure: killed by signal 6 \(SIGABRT\)" \
  "$udrv" rpc device_list
check "the other device was not disturbed" 0 '"restarts": 1,' sh -c "'$udrv' rpc device_list | grep -A6 '\"device\": \".*ram.toml\"'"
# A probe that hangs: the watchdog kills it (1.5 s here), the same limit applies.
"$udrv" rpc platform_add "{\"description\": \"$tmp/hang.toml\"}" >/dev/null 2>&1 &
until_ok 20 sh -c "'$udrv' rpc device_list | grep -q 'gave up.*watchdog'"
check "a hung probe is killed by the watchdog, then given up" 0 "gave up after 3 restarts.*stopped answering \(watchdog, 1500 ms\)" \
  "$udrv" rpc device_list
check "unbind of a given-up device" 0 '"unbound": true' "$udrv" rpc unbind "{\"address\": \"$tmp/crash.toml\"}"
check "... and of the hung one" 0 '"unbound": true' "$udrv" rpc unbind "{\"address\": \"$tmp/hang.toml\"}"

# Access: anyone may read, only root (or udrvd's group) may change anything.
if id nobody >/dev/null 2>&1 && su -s /bin/sh nobody -c "test -x '$udrv'" 2>/dev/null; then
  chmod 755 "$tmp"
  check "an unprivileged client may read" 0 "udrv_sample_params" su -s /bin/sh nobody -c "UDRV_SOCKET=$UDRV_SOCKET '$udrv' lsmod"
  check "an unprivileged client may not change state" 1 "rmmod changes the system: it needs root \(you are uid [0-9]+\)" \
    su -s /bin/sh nobody -c "UDRV_SOCKET=$UDRV_SOCKET '$udrv' rmmod udrv_sample_params"
fi

# NVMe/TCP: a subsystem on the RAM disk. udrvd listens, answers the ICReq, and would hand a Connect to the host.
port=$((20000 + RANDOM % 20000))
N=nqn.2026-12.io.udrv:system
check "nvmf: a malformed NQN is refused" 1 "NQN 'disk' does not start with 'nqn.'" "$udrv" rpc nvmf_create_subsystem '{"nqn": "disk"}'
check "nvmf: a subsystem waits for a namespace, and says so" 0 "no namespace yet" "$udrv" rpc nvmf_create_subsystem "{\"nqn\": \"$N\"}"
check "nvmf: the same NQN twice" 1 "exists" "$udrv" rpc nvmf_create_subsystem "{\"nqn\": \"$N\"}"
check "nvmf: a namespace that is no block device waits" 0 "nothere is not published" \
  "$udrv" rpc nvmf_subsystem_add_ns "{\"nqn\": \"$N\", \"namespace\": {\"bdev_name\": \"nothere\", \"nsid\": 9}}"
"$udrv" rpc nvmf_subsystem_remove_ns "{\"nqn\": \"$N\", \"nsid\": 9}" >/dev/null 2>&1
check "nvmf: ram0 as namespace 1" 0 "no listener yet" "$udrv" rpc nvmf_subsystem_add_ns "{\"nqn\": \"$N\", \"namespace\": {\"bdev_name\": \"ram0\"}}"
check "nvmf: a listener: served by ram0's host" 0 "\"state\": \"serving\"" \
  "$udrv" rpc nvmf_subsystem_add_listener "{\"nqn\": \"$N\", \"listen_address\": {\"trtype\": \"tcp\", \"traddr\": \"127.0.0.1\", \"trsvcid\": \"$port\"}}"
check "nvmf: another transport is refused" 1 "udrvd serves NVMe/TCP only" \
  "$udrv" rpc nvmf_subsystem_add_listener "{\"nqn\": \"$N\", \"listen_address\": {\"trtype\": \"rdma\", \"traddr\": \"127.0.0.1\"}}"
icresp() {  # an ICReq to udrvd's listener; the first bytes of its answer, in hex
  exec 3<>/dev/tcp/127.0.0.1/$port || return 1
  printf '\x00\x00\x80\x00\x80\x00\x00\x00' >&3; head -c 120 /dev/zero >&3
  timeout 5 head -c 16 <&3 | od -An -tx1 | tr -s ' \n' ' '
  exec 3<&-
}
check "nvmf: udrvd answers an ICReq with an ICResp (MAXH2CDATA 128 KiB)" 0 "^ ?01 00 80 00 80 00 00 00 00 00 00 00 00 00 02 00" icresp
check "nvmf: nvmf_get_subsystems" 0 "\"device\": \"ram0\"" "$udrv" rpc nvmf_get_subsystems

# save_config, SIGTERM, and a restart that reproduces the state.
"$udrv" insmod udrv_sample_hello >/dev/null 2>&1
check "save_config" 0 "\"path\": \"$tmp/saved.json\"" "$udrv" rpc save_config "{\"path\": \"$tmp/saved.json\"}"
kill -TERM "$pid"
wait "$pid"; rc=$?
check "SIGTERM stops udrvd (exit 0)" 0 "^0$" echo "$rc"
check "... and its hosts" 0 "^gone$" sh -c "pgrep -f '[u]drv-host.*$build/modules' >/dev/null || echo gone"
check "the drivers' exit ran" 0 "host modules: udrv_sample_hello: goodbye" cat "$tmp/udrvd.log"
check "the socket is removed" 1 "" test -e "$UDRV_SOCKET"
pid=""
start --config "$tmp/saved.json"
check "restarted from the saved configuration: the same modules" 0 "udrv_sample_hello +config" "$udrv" lsmod
until_ok 5 sh -c "'$udrv' block list 2>/dev/null | grep -q ram0"
check "... and the same devices" 0 "^ram0 +scratch" "$udrv" block list
until_ok 5 sh -c "'$udrv' rpc nvmf_get_subsystems | grep -q serving"
check "... and the NVMe/TCP subsystem, served again" 0 "\"state\": \"serving\"" "$udrv" rpc nvmf_get_subsystems
kill -TERM "$pid"; wait "$pid" 2>/dev/null; pid=""

# Module signatures enforced by udrvd: an unsigned module is refused at insmod, with the reason, before
# any host loads it (the hosts' loaders, which inherit the policy, would refuse it too).
mkdir -p "$tmp/keyring"
openssl req -new -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=udrvd test key" -days 30 \
  -keyout "$tmp/key.pem" -out "$tmp/keyring/cert.pem" 2>/dev/null
mkdir -p "$tmp/signed" && "$udrv" sign sha256 "$tmp/key.pem" "$tmp/keyring/cert.pem" "$build/modules/udrv_sample_params.so" "$tmp/signed/udrv_sample_params.so"
"$udrvd" --socket "$UDRV_SOCKET" --no-uevents --module-dir "$tmp/signed" --module-dir "$build/modules" --module-sig enforce --keyring "$tmp/keyring" >> "$tmp/udrvd.log" 2>&1 &
pid=$!
until_ok 10 "$udrv" rpc get_version
check "udrvd --module-sig enforce: an unsigned module is refused at insmod" 1 "module signatures are enforced: .*udrv_sample_hello.so is not signed" \
  "$udrv" insmod udrv_sample_hello
check "... a signed one loads, into a host that verifies it again" 0 "udrv_sample_params: loaded into udrvd" "$udrv" insmod udrv_sample_params count=1
check "udrvd refuses a policy that is not one" 2 "module signature policy 'maybe': one of off, permissive, enforce" \
  "$udrvd" --socket "$tmp/y.sock" --module-sig maybe
kill -TERM "$pid"; wait "$pid" 2>/dev/null; pid=""
check "without udrvd, udrv says so and works standalone" 0 "udrvd is not running: no modules stay loaded" "$udrv" lsmod

summary
