# Runs inside the test VM (see net-profile.sh): udrv net pktgen and testpmd txonly on the virtio-net
# NIC 00:07.0, taking turns, each run framed by "PHASE impl start|end EPOCH" lines for the host's
# profile of QEMU, and each followed by its per-second rates.
. /udrv/guest-lib.sh
T=${UDRV_BENCH_SECONDS:-8} B=${UDRV_BENCH_BATCH:-32} ROUNDS=${UDRV_BENCH_ROUNDS:-2}
V=0000:00:07.0
PEER=02:00:00:00:00:99  # as in net-guest.sh: no NIC has it, QEMU's NIC models drop the frames
echo 256 > /proc/sys/vm/nr_hugepages
mkdir -p /dev/hugepages /var/run && mount -t hugetlbfs none /dev/hugepages
for slot in 08.0 0a.0; do ip link set "$(ls /sys/bus/pci/devices/0000:00:$slot/virtio*/net)" up; done
udrv bind $V >/dev/null
EAL="-l 0-1 -n 1 --iova-mode=pa --file-prefix=bench"
APP="--nb-cores=1 --stats-period=1 --txd=256 --rxd=256 --total-num-mbufs=8192"
for round in $(seq "$ROUNDS"); do
  echo "PHASE udrv start $(date +%s)"
  taskset -c 1 udrv net pktgen -s $V -t "$T" -b "$B" --size 64 --dst $PEER 2>&1 >/dev/null | sed 's/^/udrv: /'
  echo "PHASE udrv end $(date +%s)"
  sleep 2
  echo "PHASE testpmd start $(date +%s)"
  timeout -s INT $((T + 2)) dpdk-testpmd $EAL -a $V -- $APP --forward-mode=txonly --burst="$B" --txpkts=64 --eth-peer=0,$PEER 2>&1 |
    awk '/Tx-pps:/ && $2 > 0 {print "testpmd: " $2 "/s"}'
  echo "PHASE testpmd end $(date +%s)"
  sleep 2
done
udrv unbind $V >/dev/null
