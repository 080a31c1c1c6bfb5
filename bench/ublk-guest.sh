# Runs inside the test VM (see ublk.sh): fio on the kernel's nvme driver (/dev/nvmeXn1, io_uring, and
# io_uring polled), then fio on the same controller through udrv and ublk (/dev/ublkb0, io_uring), in
# turns, UDRV_BENCH_ROUNDS times; then the device through udrv alone (udrv block perf) and udrv's ramdisk
# over ublk against the kernel's brd. Prints "RESULT device pattern qd engine iops mean_us" lines. fio runs
# on CPU 0; the ublk server's queue thread (in udrvd's driver host) is left to the scheduler or pinned
# to fio's CPU.
. /udrv/guest-lib.sh
T=${UDRV_BENCH_SECONDS:-5}
ROUNDS=${UDRV_BENCH_ROUNDS:-3}
FILE_DEV=0000:00:04.0 NULL_DEV=0000:00:05.0
mkdir -p /run
echo 1 > /sys/module/nvme/parameters/poll_queues
reprobe $FILE_DEV; reprobe $NULL_DEV
# fio's terse output: read IOPS and mean latency are fields 8 and 40, write's 49 and 81.
run_fio() {  # run_fio FILE PATTERN QD [extra...]
  local f=$1 pat=$2 qd=$3; shift 3
  line=$(taskset 1 fio --name=b --filename="$f" --direct=1 --rw=$pat --bs=4k --iodepth=$qd --ioengine=io_uring "$@" \
             --runtime=$T --time_based --minimal 2>/dev/null)
  if [ $pat = randread ]; then echo "$(echo "$line" | cut -d';' -f8) $(echo "$line" | cut -d';' -f40)"
  else echo "$(echo "$line" | cut -d';' -f49) $(echo "$line" | cut -d';' -f81)"; fi
}
name_of() { [ $1 = $FILE_DEV ] && echo file || echo null-co; }
kernel_round() {
  for dev in $FILE_DEV $NULL_DEV; do
    disk=$(disk_of $dev)
    for pat in randread randwrite; do
      for qd in 1 32; do
        echo "RESULT $(name_of $dev) $pat $qd kernel-io_uring $(run_fio /dev/$disk $pat $qd)"
        echo "RESULT $(name_of $dev) $pat $qd kernel-io_uring-polled $(run_fio /dev/$disk $pat $qd --hipri)"
      done
    done
  done
}
udrvd_start
# The server's threads (the driver host's) on the scheduler's choice of CPU, or on fio's: vCPU 1 shares
# its host CPU with QEMU's device emulation (UDRV_VM_PIN), and a request handed between vCPUs waits for
# a wake-up on each side.
pin_host() {  # pin_host DEVICE MASK: the threads of DEVICE's driver host
  local pid t
  pid=$(host_pid "$1")
  for t in /proc/$pid/task/*; do taskset -p "$2" "${t##*/}" >/dev/null 2>&1; done
}
# The device through udrv alone, with no ublk: udrv block perf in the driver host (polled), what ublk
# adds to it is the export's round trip.
udrv_alone() {  # udrv_alone PATTERN QD -> "iops mean_us"
  udrv block perf nvme0n1 -w "$1" -q "$2" -t "$T" --json 2>/dev/null |
    awk -F'[:,]' '/"iops"/ {i = $2} /"mean"/ && !m {m = $2} END {printf "%d %s\n", i, m}'
}
ublk_round() {
  for dev in $FILE_DEV $NULL_DEV; do
    udrv bind $dev >/dev/null 2>&1 && udrv export ublk $dev/ns1 --depth 64 >/dev/null 2>&1 || { echo "ublk set-up failed on $dev"; tail /tmp/udrvd.log; return 1; }
    for pat in randread randwrite; do
      for qd in 1 32; do
        pin_host $dev 3
        echo "RESULT $(name_of $dev) $pat $qd ublk-udrv $(run_fio /dev/ublkb0 $pat $qd)"
        pin_host $dev 1
        echo "RESULT $(name_of $dev) $pat $qd ublk-udrv-cpu0 $(run_fio /dev/ublkb0 $pat $qd)"
        pin_host $dev 3
        echo "RESULT $(name_of $dev) $pat $qd udrv-alone $(udrv_alone $pat $qd)"
      done
    done
    udrv unexport ublk /dev/ublkb0 >/dev/null 2>&1; udrv unbind $dev >/dev/null 2>&1
  done
}
# RAM disks, to see ublk's own cost without a device's: the kernel's brd against udrv's ramdisk exported
# over ublk. brd copies each request's data once (between the request's pages and its own); ublk over
# the ramdisk twice (ublk_drv between the request's pages and the server's buffer, the ramdisk between
# that buffer and its storage).
printf '[[device]]\nname = "rd"\ncompatible = "udrv,ramdisk"\nmemory = [{ name = "storage", start = 0x1000_0000, size = 0x4000_000 }]\n[device.properties]\nblock-size = 512\n' > /tmp/rd.toml
ram_round() {
  rmmod brd 2>/dev/null; insmod /lib/modules/brd.ko rd_nr=1 rd_size=65536 || { echo "brd: cannot load"; return 1; }
  dd if=/dev/zero of=/dev/ram0 bs=1M count=64 2>/dev/null  # its pages exist before reads (as the ramdisk's do)
  for pat in randread randwrite; do
    for qd in 1 32; do echo "RESULT ram $pat $qd kernel-io_uring $(run_fio /dev/ram0 $pat $qd)"; done
  done
  rmmod brd
  udrv export ublk ram0 --depth 64 >/dev/null 2>&1 ||
    { echo "ublk set-up failed on the ramdisk"; tail /tmp/udrvd.log; return 1; }
  for pat in randread randwrite; do
    for qd in 1 32; do
      pin_host /tmp/rd.toml 3
      echo "RESULT ram $pat $qd ublk-udrv $(run_fio /dev/ublkb0 $pat $qd)"
      pin_host /tmp/rd.toml 1
      echo "RESULT ram $pat $qd ublk-udrv-cpu0 $(run_fio /dev/ublkb0 $pat $qd)"
    done
  done
  udrv unexport ublk ram0 >/dev/null 2>&1
}
udrv rpc platform_add '{"description": "/tmp/rd.toml"}' >/dev/null || { echo "the ramdisk could not be added"; tail /tmp/udrvd.log; }
T_RUN=$T; T=2
kernel_round | sed 's/^RESULT/WARMUP/'; ublk_round | sed 's/^RESULT/WARMUP/'; ram_round | sed 's/^RESULT/WARMUP/'
T=$T_RUN
for r in $(seq $ROUNDS); do
  kernel_round
  ublk_round
  ram_round
done
kill -TERM $udrvd_pid 2>/dev/null; wait $udrvd_pid
exit 0
