# Runs inside the test VM (see net.sh): the same work through udrv and through DPDK's testpmd, on the
# same NICs, in one boot. Prints "RESULT work batch impl pps [offered]" lines.
#   pktgen-virtio / pktgen-e1000e: 64-byte frames out of 00:07.0 / 00:06.0 (testpmd: txonly)
#   fwd: 00:07.0 (virtio-net, hub 0) -> 00:0b.0 (e1000e, hub 1), both ways (testpmd: io forwarding);
#        the traffic comes from `udrv net pktgen` on 00:06.0 (e1000e, hub 0) in another process
. /udrv/guest-lib.sh
T=${UDRV_BENCH_SECONDS:-5}
V=0000:00:07.0 E=0000:00:06.0 E2=0000:00:0b.0
# No NIC has this address: QEMU's NIC models drop the frames in their MAC filter, so no guest kernel
# spends time on them. The guest kernel's NICs stay up so each hub always has a port that can receive
# (QEMU's hub holds a sender back while no other port can).
PEER=02:00:00:00:00:99
echo 256 > /proc/sys/vm/nr_hugepages
mkdir -p /dev/hugepages /var/run && mount -t hugetlbfs none /dev/hugepages
for slot in 08.0 0a.0; do ip link set "$(ls /sys/bus/pci/devices/0000:00:$slot/virtio*/net)" up; done
udrv bind $V $E $E2 >/dev/null

# median_tx_pps PORT < testpmd output: median of testpmd's per-second Tx-pps for PORT, leaving out idle
# seconds and the first and last busy one (partial seconds).
median_tx_pps() {
  awk -v p="$1" '/NIC statistics for port/ {port = $(NF - 1)} /Tx-pps:/ && port == p && $2 > 0 {print $2}' |
    sed '1d;$d' | sort -n | awk '{v[NR] = $1} END {print (NR ? v[int((NR + 1) / 2)] : 0)}'
}
json_pps() { sed -n 's/^  "pps": \([0-9.e+]*\).*/\1/p' | awk '{printf "%.0f\n", $1}'; }
# median_udrv_pps < udrv pktgen's stderr: the same for udrv's once-a-second "sent N frames (R/s)" lines,
# so both sides are measured alike (a whole-run average would count udrv's start-up second too).
median_udrv_pps() {
  sed -n 's/^sent [0-9]* frames (\([0-9]*\)\/s)$/\1/p' | sed '1d;$d' | sort -n | awk '{v[NR] = $1} END {print (NR ? v[int((NR + 1) / 2)] : 0)}'
}
# testpmd: EAL on vCPUs 0-1 (forwarding on 1), physical addresses as IOVAs (the vIOMMU has 39 bits,
# fewer than user virtual addresses), the rings as large as udrv's (256), statistics every second.
EAL="-l 0-1 -n 1 --iova-mode=pa --file-prefix=bench"
APP="--nb-cores=1 --stats-period=1 --txd=256 --rxd=256 --total-num-mbufs=8192"

# Each figure is measured in ROUNDS rounds (UDRV_BENCH_ROUNDS, default 3), udrv and testpmd taking
# turns; net.sh reports the median. TCG makes single runs swing by a third.
ROUNDS=${UDRV_BENCH_ROUNDS:-3}
for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  for b in 1 8 32 256; do
    for port in virtio:$V e1000e:$E; do
      name=${port%%:*} slot=${port#*:}
      pps=$(taskset -c 1 udrv net pktgen -s "$slot" -t $((T + 2)) -b $b --size 64 --dst $PEER 2>&1 >/dev/null | median_udrv_pps)
      echo "RESULT pktgen-$name $b udrv ${pps:-0}"
      pps=$(timeout -s INT $((T + 4)) dpdk-testpmd $EAL -a "$slot" -- $APP --forward-mode=txonly --burst=$b --txpkts=64 \
              --eth-peer=0,$PEER 2>&1 | median_tx_pps 0)
      echo "RESULT pktgen-$name $b testpmd ${pps:-0}"
    done
  done

  # Forwarding: the generator runs T+2 seconds while the forwarder under test runs, paced at a rate
  # (UDRV_BENCH_FWD_RATE, default 200k frames/s) the same for both. Unpaced, it and the forwarder's vCPU
  # and QEMU's I/O thread contend for the host's cores and the figures say more about the host
  # scheduler than about the forwarder.
  RATE=${UDRV_BENCH_FWD_RATE:-200000}
  generate() { taskset -c 0 udrv net pktgen -s $E -t $((T + 2)) -b 32 --size 64 --dst $PEER --rate $RATE --json 2>/dev/null | json_pps; }
  for b in 1 8 32 256; do
    taskset -c 1 udrv net fwd -s $V -d $E2 -b $b -t $((T + 30)) --json > /tmp/fwd.json 2>/dev/null &
    fpid=$!
    sleep 2
    offered=$(generate)
    sleep 0.5
    kill -INT $fpid; wait $fpid
    echo "RESULT fwd $b udrv $(json_pps < /tmp/fwd.json) ${offered:-0}"
    timeout -s INT $((T + 30)) dpdk-testpmd $EAL -a $V -a $E2 -- $APP --forward-mode=io --burst=$b > /tmp/testpmd.out 2>&1 &
    tpid=$!
    for i in $(seq 100); do grep -q "Port statistics" /tmp/testpmd.out && break; sleep 0.2; done
    offered=$(generate)
    sleep 0.5
    kill -INT $tpid; wait $tpid
    echo "RESULT fwd $b testpmd $(median_tx_pps 1 < /tmp/testpmd.out) ${offered:-0}"
  done
done
udrv unbind $V $E $E2 >/dev/null
