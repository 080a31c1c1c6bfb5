# NVMe/TCP in the VM (sourced by guest-tests.sh after udrvd-tests.sh): udrvd serves the QEMU NVMe through
# udrv as an NVMe/TCP subsystem, and the guest kernel's own initiator (nvme-tcp, nvme-cli) is the
# remote host, over loopback: discover, connect, identify, a file system, fio verify, two hosts at once,
# a host that is not allowed, disconnect and a target that goes away under load (errors, not a hang),
# and the bytes read back through the kernel's nvme driver afterwards.
if ! grep -q nvme_tcp /proc/modules; then
  echo "SKIP: NVMe/TCP tests: this kernel has no nvme-tcp module"
  return 0 2>/dev/null || exit 0
fi
UNVME=${UNVME:-0000:00:04.0}
MULTI=${MULTI:-0000:00:09.0}
NQN=nqn.2026-12.io.udrv:vm
NQN2=nqn.2026-12.io.udrv:two
# Two initiator identities of this one kernel: host IDs are the UUIDs in their NQNs.
HID1=0c0d1e1f-0000-4000-8000-000000000001 HID2=0c0d1e1f-0000-4000-8000-000000000002 HID3=0c0d1e1f-0000-4000-8000-000000000003
H1=nqn.2014-08.org.nvmexpress:uuid:$HID1 H2=nqn.2014-08.org.nvmexpress:uuid:$HID2 H3=nqn.2014-08.org.nvmexpress:uuid:$HID3
ip link set lo up
rpc() { udrv rpc "$@"; }
# tcp_connect NQN HOSTID [SOURCE]: the kernel connects as host HOSTID (from address SOURCE, default
# 127.0.0.1); gives up on a lost target after 2 s. A second host has its own source address: the kernel
# takes two controllers of one subsystem from one address for duplicates, whatever their host NQNs.
tcp_connect() { nvme connect -t tcp -a 127.0.0.1 -s 4420 -n "$1" --hostnqn="nqn.2014-08.org.nvmexpress:uuid:$2" --hostid="$2" \
  --host-traddr="${3:-127.0.0.1}" --ctrl-loss-tmo=2 --reconnect-delay=1; }
# tcp_disk NQN [NSID]: the kernel's block device of that subsystem's namespace (multipath head or not).
tcp_disk() {
  for _ in $(seq 50); do
    for b in /sys/block/nvme*n*; do
      case ${b##*/} in *c*n*) continue ;; esac
      [ "$(cat $b/device/subsysnqn 2>/dev/null)" = "$1" ] && [ "$(cat $b/nsid 2>/dev/null)" = "${2:-1}" ] && [ -b /dev/${b##*/} ] &&
        { echo "${b##*/}"; return 0; }
    done
    sleep 0.2
  done
  return 1
}
# tcp_ctrl NQN HOSTNQN: the kernel's controller (nvmeX) of that subsystem for that host.
tcp_ctrl() {
  for c in /sys/class/nvme/nvme*; do
    [ "$(cat $c/subsysnqn 2>/dev/null)" = "$1" ] && [ "$(cat $c/hostnqn 2>/dev/null)" = "$2" ] && { echo "${c##*/}"; return 0; }
  done
  return 1
}

# The target as configured for latency: a worker pinned to each vCPU, polling its sockets after a PDU,
# waiting for the device by interrupt (device_interrupts; the bench runs it polling the device as well).
printf '[nvmf]\ncpus = [0, 1]\npoll_us = 200\ndevice_interrupts = true\n' > /tmp/udrvd-nvmf.toml
udrvd_start --log-level info --config /tmp/udrvd-nvmf.toml || return 1

nvmf_setup() {
  udrv bind "$UNVME" >/dev/null || return 1
  rpc nvmf_create_subsystem "{\"nqn\": \"$NQN\", \"serial_number\": \"UDRVVM01\", \"model_number\": \"udrv test subsystem\"}" >/dev/null &&
  rpc nvmf_subsystem_add_ns "{\"nqn\": \"$NQN\", \"namespace\": {\"bdev_name\": \"nvme0n1\"}}" >/dev/null &&
  rpc nvmf_subsystem_add_listener "{\"nqn\": \"$NQN\", \"listen_address\": {\"trtype\": \"tcp\", \"traddr\": \"127.0.0.1\", \"trsvcid\": \"4420\"}}" >/dev/null &&
  rpc nvmf_subsystem_add_listener "{\"nqn\": \"nqn.2014-08.org.nvmexpress.discovery\", \"listen_address\": {\"traddr\": \"127.0.0.1\", \"trsvcid\": \"8009\"}}" >/dev/null || return 1
  rpc nvmf_get_subsystems | grep -q '"state": "serving"' || { rpc nvmf_get_subsystems; return 1; }
  out=$(nvme discover -t tcp -a 127.0.0.1 -s 8009 --hostnqn="$H1" --hostid="$HID1") || { echo "$out"; return 1; }
  echo "$out" | grep -E "subnqn|trsvcid|traddr"
  echo "$out" | grep -q "subnqn: *$NQN" && echo "$out" | grep -q "trsvcid: *4420"
}
vm_test "nvmf: udrvd serves nvme0n1 as an NVMe/TCP subsystem; nvme discover (port 8009) lists it" nvmf_setup

nvmf_connect_identify() {
  tcp_connect "$NQN" "$HID1" || return 1
  d=$(tcp_disk "$NQN") || { dmesg | tail -5; return 1; }
  c=$(tcp_ctrl "$NQN" "$H1") || return 1
  echo "the kernel's initiator: /dev/$d (controller $c)"
  nvme id-ctrl /dev/$c -o json > /tmp/tcp-ctrl.json && nvme id-ns /dev/$d -o json > /tmp/tcp-ns.json || return 1
  blocks=$(udrv block list --json | tr -d ' \n' | grep -o '{[^}]*"name":"nvme0n1"[^}]*}' | sed -n 's/.*"blocks":\([0-9]*\).*/\1/p')
  grep -q '"sn" *: *"UDRVVM01' /tmp/tcp-ctrl.json && grep -q '"mn" *: *"udrv test subsystem' /tmp/tcp-ctrl.json &&
    grep -q "\"subnqn\" *: *\"$NQN\"" /tmp/tcp-ctrl.json || { cat /tmp/tcp-ctrl.json | head -20; return 1; }
  nsze=$(tr -d ' \n' < /tmp/tcp-ns.json | sed -n 's/.*"nsze":\([0-9]*\).*/\1/p')
  echo "id-ctrl: sn UDRVVM01, subnqn $NQN; id-ns: nsze $nsze (udrv's nvme0n1: ${blocks:-?} blocks)"
  [ -n "$nsze" ] && [ "$nsze" = "$blocks" ]
}
vm_test "nvmf: nvme connect: a /dev/nvmeXnY appears; id-ctrl and id-ns agree with the subsystem's configuration" nvmf_connect_identify
pinned_workers() {  # the host serving the subsystem has a worker on each CPU [nvmf] cpus names
  hp=$(host_pid "$UNVME"); [ -n "$hp" ] || return 1
  lists=$(for t in /proc/$hp/task/*; do awk '/^Cpus_allowed_list/ {print $2}' $t/status; done | sort | uniq -c | tr -s ' ')
  echo "driver host $hp, threads by allowed CPUs:" $lists
  echo "$lists" | grep -qx " 1 0" && echo "$lists" | grep -qx " 1 1"
}
vm_test "nvmf: with [nvmf] cpus = [0, 1], the driver host runs one worker pinned to each CPU" pinned_workers
# device_interrupts: the I/O queues' MSI-X vectors fire, and each worker directed its queue's vector to
# its own CPU: /proc/interrupts counts them there and nowhere else.
io_vectors() {  # "IRQ count-on-CPU0 count-on-CPU1 name" of the controller's vfio I/O queue vectors
  grep -F "($UNVME)" /proc/interrupts | grep 'vfio-msix\[[1-9]' | awk '{sub(":", "", $1); print $1, $2, $3, $NF}'
}
device_interrupts() {
  d=$(tcp_disk "$NQN") || return 1
  io_vectors > /tmp/irq-before
  dd if=/dev/$d of=/dev/null bs=4k count=300 iflag=direct 2>/dev/null || return 1
  io_vectors > /tmp/irq-after
  total=0
  while read -r irq c0 c1 name; do
    b0=$(awk -v i=$irq '$1 == i {print $2}' /tmp/irq-before) b1=$(awk -v i=$irq '$1 == i {print $3}' /tmp/irq-before)
    d0=$((c0 - ${b0:-0})) d1=$((c1 - ${b1:-0})) aff=$(cat /proc/irq/$irq/smp_affinity_list)
    [ $((d0 + d1)) -gt 0 ] && echo "IRQ $irq ($name): +$d0 on CPU 0, +$d1 on CPU 1 during 300 reads; smp_affinity_list $aff"
    total=$((total + d0 + d1))
    { [ $d0 -gt 0 ] && [ "$aff" != 0 ]; } && return 1
    { [ $d1 -gt 0 ] && [ "$aff" != 1 ]; } && return 1
  done < /tmp/irq-after
  echo "I/O queue interrupts during the reads: $total"
  [ $total -ge 100 ]
}
vm_test "nvmf: with device_interrupts, the I/O queues' MSI-X vectors fire during reads, each on its worker's CPU" device_interrupts

nvmf_fs() {
  d=$(tcp_disk "$NQN") || return 1
  mkfs.ext4 -q -F /dev/$d && mount /dev/$d /mnt || return 1
  for i in 1 2 3; do head -c $((i * 400000)) /dev/urandom > /mnt/tcp$i; done
  (cd /mnt && md5sum tcp*) > /tmp/tcpsums
  sync && umount /mnt && mount /dev/$d /mnt && (cd /mnt && md5sum -c /tmp/tcpsums) && umount /mnt
}
vm_test "nvmf: ext4 over NVMe/TCP: files written, unmounted, mounted again, checksums match" nvmf_fs

nvmf_fio() {
  d=$(tcp_disk "$NQN") || return 1
  # Past the file system's first 16 MiB (its files are checked again at the end).
  fio --name=tcpverify --filename=/dev/$d --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --bsrange=4k-128k --iodepth=16 \
    --offset=32m --size=16m --verify=crc32c --do_verify=1 --output-format=terse > /tmp/fio-tcp.out 2>&1; rc=$?
  echo "fio exit $rc, errors: $(cut -d';' -f5 /tmp/fio-tcp.out | head -1)"
  [ $rc -eq 0 ] && ! grep -qi "verify.*bad\|error" /tmp/fio-tcp.out
}
vm_test "nvmf: fio randwrite 4k-128k with verify=crc32c over NVMe/TCP (in-capsule data and R2T): no error" nvmf_fio
# Writes that each ask for their data with an R2T, 128 at a time against the target's 64 device
# buffers. (The kernel sends each write's data as soon as its R2T comes, so here the buffers did not run
# out even before the target learned to read on while commands wait for one; the unit test
# NvmfTarget.MoreWritesAwaitingDataThanDeviceBuffersAllComplete makes them run out.)
nvmf_deep_writes() {
  d=$(tcp_disk "$NQN") || return 1
  timeout 120 fio --name=deep --filename=/dev/$d --direct=1 --ioengine=libaio --rw=write --bs=128k --iodepth=128 \
    --offset=32m --size=16m --loops=4 --verify=crc32c --do_verify=1 --output-format=terse > /tmp/fio-deep.out 2>&1; rc=$?
  echo "fio exit $rc, errors: $(cut -d';' -f5 /tmp/fio-deep.out | head -1), IOPS $(cut -d';' -f49 /tmp/fio-deep.out | head -1)"
  [ $rc -eq 0 ] && ! grep -qi "verify.*bad\|error" /tmp/fio-deep.out
}
vm_test "nvmf: fio 128 KiB writes (R2T) at queue depth 128 complete and verify" nvmf_deep_writes

nvmf_two_hosts() {
  # A second subsystem with two namespaces (00:09.0's, 512 B and 4 KiB blocks), two hosts at once, each on its own namespace.
  udrv bind "$MULTI" >/dev/null || return 1
  names=$(udrv block list | awk -v a="$MULTI" '$0 ~ a {print $1}' | tr '\n' ' ')
  set -- $names
  rpc nvmf_create_subsystem "{\"nqn\": \"$NQN2\", \"hosts\": [\"$H1\", \"$H2\"]}" >/dev/null &&
  rpc nvmf_subsystem_add_ns "{\"nqn\": \"$NQN2\", \"namespace\": {\"bdev_name\": \"$1\", \"nsid\": 1}}" >/dev/null &&
  rpc nvmf_subsystem_add_ns "{\"nqn\": \"$NQN2\", \"namespace\": {\"bdev_name\": \"$2\", \"nsid\": 2}}" >/dev/null &&
  rpc nvmf_subsystem_add_listener "{\"nqn\": \"$NQN2\", \"address\": \"127.0.0.1:4420\"}" >/dev/null || { tail -5 /tmp/udrvd.log; return 1; }
  echo "a host not in the list:"
  if tcp_connect "$NQN2" "$HID3" 2>&1; then echo "host 3 was let in"; return 1; fi
  dmesg | grep -m1 "is not allowed" || dmesg | tail -2
  tcp_connect "$NQN2" "$HID1" && tcp_connect "$NQN2" "$HID2" 127.0.0.2 || return 1
  a=$(tcp_disk "$NQN2" 1) && b=$(tcp_disk "$NQN2" 2) || return 1
  echo "two hosts: $(tcp_ctrl "$NQN2" "$H1") and $(tcp_ctrl "$NQN2" "$H2"); namespaces /dev/$a (512 B blocks) and /dev/$b (4 KiB)"
  head -c 4194304 /dev/urandom > /tmp/twoA; head -c 4194304 /dev/urandom > /tmp/twoB
  dd if=/tmp/twoA of=/dev/$a bs=64k oflag=direct 2>/dev/null & pa=$!
  dd if=/tmp/twoB of=/dev/$b bs=64k oflag=direct 2>/dev/null & pb=$!
  wait $pa && wait $pb || return 1
  dd if=/dev/$a of=/tmp/backA bs=64k count=64 iflag=direct 2>/dev/null && dd if=/dev/$b of=/tmp/backB bs=64k count=64 iflag=direct 2>/dev/null &&
    cmp /tmp/backA /tmp/twoA && cmp /tmp/backB /tmp/twoB || return 1
  n=$(udrv rpc stats | grep -c "\"subnqn\": \"$NQN2\"")
  echo "the target counts $n controllers of $NQN2"
  [ "$n" -ge 2 ]
}
vm_test "nvmf: two hosts at once on one subsystem with two namespaces; a host NQN that is not allowed is refused" nvmf_two_hosts

nvmf_disconnect_under_load() {
  a=$(tcp_disk "$NQN2" 1) || return 1
  fio --name=dl --filename=/dev/$a --direct=1 --ioengine=libaio --rw=randread --bs=4k --iodepth=8 --time_based --runtime=60 \
    --output-format=terse > /tmp/fio-dl.out 2>&1 & pf=$!
  sleep 2
  nvme disconnect -n "$NQN2" >/dev/null
  for _ in $(seq 150); do kill -0 $pf 2>/dev/null || break; sleep 0.1; done
  if kill -0 $pf 2>/dev/null; then echo "fio still runs 15 s after the disconnect"; kill -9 $pf; return 1; fi
  wait $pf; echo "fio ended (exit $?) when its subsystem was disconnected"
  ! tcp_ctrl "$NQN2" "$H1" >/dev/null
}
vm_test "nvmf: nvme disconnect under load: the workload ends with errors, nothing hangs" nvmf_disconnect_under_load

nvmf_host_crash() {  # kill -9 of the driver host that serves the subsystem, under a verifying writer
  d=$(tcp_disk "$NQN") || return 1
  # The initiator of this test waits up to 30 s for its target to come back (the others give up after 2).
  nvme disconnect -n "$NQN" >/dev/null
  nvme connect -t tcp -a 127.0.0.1 -s 4420 -n "$NQN" --hostnqn="$H1" --hostid="$HID1" --ctrl-loss-tmo=30 --reconnect-delay=1 >/dev/null || return 1
  d=$(tcp_disk "$NQN") || return 1
  # The sanitizer build's host takes longer to come back.
  local size=24m bound=60
  [ -n "${ASAN_OPTIONS:-}" ] && bound=240
  fio --name=crash --filename=/dev/$d --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=8 --offset=32m --size=$size \
    --verify=crc32c --do_verify=1 --output-format=terse > /tmp/fio-crash.out 2>&1 & pf=$!
  sleep 1
  old=$(host_pid "$UNVME")
  kill -0 $pf 2>/dev/null || { echo "fio ended before the kill: nothing was tested"; return 1; }
  kill -9 "$old"
  for _ in $(seq $((bound * 10))); do kill -0 $pf 2>/dev/null || break; sleep 0.1; done
  if kill -0 $pf 2>/dev/null; then
    # What the target and the initiator were doing, for a run that fails here.
    echo "fio still runs $bound s after the host was killed (host $old; now: $(host_pid "$UNVME"))"
    udrv rpc nvmf_get_subsystems 2>&1 | tr -d ' \n' | head -c 600; echo
    tail -15 /tmp/udrvd.log; dmesg | grep -E "nvme" | tail -8; kill -9 $pf; return 1
  fi
  wait $pf; rc=$?
  wait_for 15 sh -c "udrv rpc nvmf_get_subsystems | tr -d ' \n' | grep -q '\"nqn\":\"$NQN\",\"serial\":\"[^\"]*\",\"state\":\"serving\"'"
  echo "host $old killed; host $(host_pid "$UNVME") serves now; fio exit $rc, errors: $(cut -d';' -f5 /tmp/fio-crash.out | head -1)"
  dmesg | grep -E "nvme.*(reconnect|Reconnect|reset)" | tail -2
  nvme disconnect -n "$NQN" >/dev/null; tcp_connect "$NQN" "$HID1" >/dev/null  # back to giving up after 2 s
  [ $rc -eq 0 ] && ! grep -qi "verify.*bad\|error" /tmp/fio-crash.out && [ "$(host_pid "$UNVME")" != "$old" ]
}
vm_test "nvmf: kill -9 of the driver host under fio --verify: the initiator reconnects to the new host, no I/O error" nvmf_host_crash

nvmf_target_gone() {
  d=$(tcp_disk "$NQN") || return 1
  fio --name=tg --filename=/dev/$d --direct=1 --ioengine=libaio --rw=randread --bs=4k --iodepth=8 --time_based --runtime=60 \
    --offset=32m --size=16m --output-format=terse > /tmp/fio-tg.out 2>&1 & pf=$!
  sleep 2
  # The subsystem goes (its connections close under the initiator); the kernel retries for 2 s (ctrl-loss-tmo), then fails the I/O.
  rpc nvmf_delete_subsystem "{\"nqn\": \"$NQN\"}" >/dev/null || return 1
  for _ in $(seq 300); do kill -0 $pf 2>/dev/null || break; sleep 0.1; done
  if kill -0 $pf 2>/dev/null; then echo "fio still runs 30 s after the target went away"; kill -9 $pf; return 1; fi
  wait $pf; echo "fio ended (exit $?) once the target was gone"
  for _ in $(seq 100); do tcp_ctrl "$NQN" "$H1" >/dev/null || break; sleep 0.1; done
  dmesg | grep -E "nvme.*(Removing ctrl|reconnect|failed)" | tail -2
  ! tcp_ctrl "$NQN" "$H1" >/dev/null
}
vm_test "nvmf: the target deletes the subsystem under load: the initiator gets errors, then removes the controller; nothing hangs" nvmf_target_gone

nvmf_kernel_reads_it() {  # what NVMe/TCP wrote is on the medium: the kernel's own nvme driver reads the same files
  udrv unbind "$MULTI" >/dev/null; udrv unbind "$UNVME" >/dev/null || return 1
  d=$(disk_of "$UNVME") || return 1
  mount /dev/$d /mnt && (cd /mnt && md5sum -c /tmp/tcpsums); rc=$?
  umount /mnt
  return $rc
}
vm_test "nvmf: after the export, the controller on the kernel's nvme driver: /dev/nvme*n1 has the files written over NVMe/TCP" nvmf_kernel_reads_it

udrvd_nvmf_stop() { kill -TERM $udrvd_pid; wait $udrvd_pid; }
vm_test "nvmf: udrvd stops" udrvd_nvmf_stop
