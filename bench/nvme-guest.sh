# Runs inside the test VM (see nvme.sh): the kernel's NVMe driver through fio, then udrv nvme perf, on
# the same two controllers in the same boot, UDRV_BENCH_ROUNDS times (the drivers take turns, so a slow
# spell of the host does not land on one of them). Prints "RESULT device qd engine iops mean_us" lines.
# Both run on CPU 0 (taskset), the vCPU that nvme.sh gives a host CPU of its own.
. /udrv/guest-lib.sh
T=${UDRV_BENCH_SECONDS:-5}
ROUNDS=${UDRV_BENCH_ROUNDS:-3}
FILE_DEV=0000:00:04.0 NULL_DEV=0000:00:05.0
# Polled queues for fio's hipri runs (read at probe time, so re-probe both controllers).
echo 1 > /sys/module/nvme/parameters/poll_queues
reprobe $FILE_DEV; reprobe $NULL_DEV
kernel_round() {
  for dev in $FILE_DEV $NULL_DEV; do
    name=$([ $dev = $FILE_DEV ] && echo file || echo null-co)
    disk=$(disk_of $dev)
    for qd in 1 32; do
      for engine in io_uring libaio io_uring-hipri; do
        extra=""; eng=$engine
        [ $engine = io_uring-hipri ] && { eng=io_uring; extra="--hipri"; }
        line=$(taskset 1 fio --name=b --filename=/dev/$disk --direct=1 --rw=randread --bs=4k --iodepth=$qd --ioengine=$eng $extra \
                   --runtime=$T --time_based --minimal 2>/dev/null)
        echo "RESULT $name $qd kernel-$engine $(echo "$line" | cut -d';' -f8) $(echo "$line" | cut -d';' -f40)"
      done
    done
  done
}
# The controller not under test stays with the kernel's driver, as it is during the kernel's runs:
# bound to vfio-pci and idle it leaves QEMU's main loop fewer descriptors to poll, the loop then sleeps
# between commands, and on this host (itself a VM) each wake-up costs more than the polling saved:
# null-co QD1 measured 53-64k with 00:04.0 on vfio-pci against 78-89k with it on nvme, same boot.
udrv_round() {
  for dev in $FILE_DEV $NULL_DEV; do
    name=$([ $dev = $FILE_DEV ] && echo file || echo null-co)
    udrv bind $dev >/dev/null
    for qd in 1 32; do
      for mode in polled interrupt; do
        j=$(taskset 1 udrv nvme perf -s $dev -q $qd -t $T -w randread --mode $mode --json 2>/dev/null)
        iops=$(echo "$j" | sed -n 's/^  "iops": \([0-9.]*\).*/\1/p')
        mean=$(echo "$j" | sed -n 's/^    "mean": \([0-9.]*\).*/\1/p')
        echo "RESULT $name $qd udrv-$mode $iops $mean"
      done
    done
    udrv unbind $dev >/dev/null
  done
}
# A warm-up round first (2 s runs, not reported): in every boot so far the first round was the slowest
# for both drivers (the kernel's null-co QD1 once 6.8k against 13.8k in the next round).
T_RUN=$T; T=2
kernel_round | sed 's/^RESULT/WARMUP/'; udrv_round | sed 's/^RESULT/WARMUP/'
T=$T_RUN
for r in $(seq $ROUNDS); do
  kernel_round
  udrv_round
done
exit 0
