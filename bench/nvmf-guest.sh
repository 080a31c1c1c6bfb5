# Runs inside the test VM (see nvmf.sh): the guest kernel's NVMe/TCP initiator (nvme-tcp) reads through
# (a) udrvd's target over udrv's NVMe driver and (b) the kernel's nvmet-tcp target over the kernel's nvme
# driver (configfs), the same controller in turns, and, for reference, fio on the kernel's nvme driver
# directly. Prints "RESULT device pattern qd engine iops mean_us" lines. fio runs on CPU 0; nvmet-tcp's
# work items run where the data arrives; udrvd runs as configured by default (its workers left to the
# scheduler, polling their sockets for 1 ms after each PDU, waiting for the device by interrupt), told
# to poll sockets and device on CPU 1, and told to poll its sockets on CPU 1 but wait for the device by
# interrupt.
. /udrv/guest-lib.sh
T=${UDRV_BENCH_SECONDS:-5}
ROUNDS=${UDRV_BENCH_ROUNDS:-3}
FILE_DEV=0000:00:04.0 NULL_DEV=0000:00:05.0
HID=0c0d1e1f-0000-4000-8000-0000000000b0
HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:$HID
mkdir -p /run
ip link set lo up
mount -t configfs none /sys/kernel/config 2>/dev/null
run_fio() {  # run_fio FILE QD
  line=$(taskset 1 fio --name=b --filename="$1" --direct=1 --rw=randread --bs=4k --iodepth=$2 --ioengine=io_uring \
             --runtime=$T --time_based --minimal 2>/dev/null)
  echo "$(echo "$line" | cut -d';' -f8) $(echo "$line" | cut -d';' -f40)"
}
name_of() { [ $1 = $FILE_DEV ] && echo file || echo null-co; }
tcp_disk() {  # tcp_disk NQN: the initiator's block device of namespace 1
  for _ in $(seq 50); do
    for b in /sys/block/nvme*n1; do
      [ "$(cat $b/device/subsysnqn 2>/dev/null)" = "$1" ] && [ -b /dev/${b##*/} ] && { echo "${b##*/}"; return 0; }
    done
    sleep 0.2
  done
  return 1
}
connect() { nvme connect -t tcp -a 127.0.0.1 -s "$2" -n "$1" --hostnqn=$HOSTNQN --hostid=$HID >/dev/null; }
measure() {  # measure NQN PORT DEVICE ENGINE
  connect "$1" "$2" || { echo "connect to $1 failed"; dmesg | tail -3; return 1; }
  d=$(tcp_disk "$1") || return 1
  for qd in 1 32; do echo "RESULT $(name_of $3) randread $qd $4 $(run_fio /dev/$d $qd)"; done
  nvme disconnect -n "$1" >/dev/null
}
kernel_round() {
  for dev in $FILE_DEV $NULL_DEV; do
    disk=$(disk_of $dev) || { echo "no kernel disk for $dev"; return 1; }
    for qd in 1 32; do echo "RESULT $(name_of $dev) randread $qd kernel-local $(run_fio /dev/$disk $qd)"; done
    # nvmet-tcp exporting the kernel's /dev/nvmeXn1 on port 4421.
    k=/sys/kernel/config/nvmet NQN=nqn.2026-12.io.kernel:$(name_of $dev)
    mkdir $k/subsystems/$NQN && echo 1 > $k/subsystems/$NQN/attr_allow_any_host &&
      mkdir $k/subsystems/$NQN/namespaces/1 && echo /dev/$disk > $k/subsystems/$NQN/namespaces/1/device_path &&
      echo 1 > $k/subsystems/$NQN/namespaces/1/enable || { echo "nvmet set-up failed"; return 1; }
    [ -d $k/ports/1 ] || { mkdir $k/ports/1 && echo tcp > $k/ports/1/addr_trtype && echo ipv4 > $k/ports/1/addr_adrfam &&
      echo 127.0.0.1 > $k/ports/1/addr_traddr && echo 4421 > $k/ports/1/addr_trsvcid; }
    ln -s $k/subsystems/$NQN $k/ports/1/subsystems/$NQN
    measure $NQN 4421 $dev kernel-nvmet-tcp
    rm $k/ports/1/subsystems/$NQN; echo 0 > $k/subsystems/$NQN/namespaces/1/enable
    rmdir $k/subsystems/$NQN/namespaces/1 $k/subsystems/$NQN
  done
}
# udrvd as configured by default; polling: its target's worker on CPU 1 (fio and the initiator's
# queue are on CPU 0), polling its sockets for 1 ms after each PDU and the device while it works; and
# the same but waiting for the device by interrupt (device_interrupts), the vector directed to CPU 1.
printf '[nvmf]\ncpus = [1]\npoll_us = 1000\ndevice_interrupts = false\n' > /tmp/udrvd-poll.toml
printf '[nvmf]\ncpus = [1]\npoll_us = 1000\ndevice_interrupts = true\n' > /tmp/udrvd-irq.toml
udrvd_pid=
restart_udrvd() {  # restart_udrvd [ARGS]: the running udrvd stopped, one with these arguments started
  [ -n "$udrvd_pid" ] && { kill -TERM $udrvd_pid 2>/dev/null; wait $udrvd_pid; }
  udrvd_start "$@" || exit 1
}
udrv_round() {  # udrv_round ENGINE: with the udrvd that runs
  for dev in $FILE_DEV $NULL_DEV; do
    NQN=nqn.2026-12.io.udrv:$(name_of $dev)
    udrv bind $dev >/dev/null 2>&1 || { echo "bind $dev failed"; tail /tmp/udrvd.log; return 1; }
    udrv rpc nvmf_create_subsystem "{\"nqn\": \"$NQN\"}" >/dev/null &&
      udrv rpc nvmf_subsystem_add_ns "{\"nqn\": \"$NQN\", \"namespace\": {\"bdev_name\": \"$dev/ns1\"}}" >/dev/null &&
      udrv rpc nvmf_subsystem_add_listener "{\"nqn\": \"$NQN\", \"address\": \"127.0.0.1:4420\"}" >/dev/null || { tail /tmp/udrvd.log; return 1; }
    measure $NQN 4420 $dev $1
    udrv rpc nvmf_delete_subsystem "{\"nqn\": \"$NQN\"}" >/dev/null; udrv unbind $dev >/dev/null 2>&1
  done
}
both_udrv() {
  restart_udrvd; udrv_round udrvd-nvmf-tcp
  restart_udrvd --config /tmp/udrvd-poll.toml; udrv_round udrvd-nvmf-tcp-poll
  restart_udrvd --config /tmp/udrvd-irq.toml; udrv_round udrvd-nvmf-tcp-irq
}
T_RUN=$T; T=2
# Not in a pipeline: a subshell's udrvd_pid would be lost, and the next udrvd refused while it runs.
kernel_round > /tmp/warmup.out; both_udrv >> /tmp/warmup.out; sed 's/^RESULT/WARMUP/' /tmp/warmup.out
T=$T_RUN
for r in $(seq $ROUNDS); do
  kernel_round
  both_udrv
done
kill -TERM $udrvd_pid 2>/dev/null; wait $udrvd_pid
exit 0
