# The VM test suite, run as root inside the guest by vm.sh (one boot for all of it).
. /udrv/guest-lib.sh
EDU=$(find_dev 1234 11e8)
NVME=0000:00:04.0
KNIC=0000:00:08.0
export UDRV_LOG_LEVEL=info

vm_test "udrv lspci agrees with lspci -nn -vvv on q35's devices" sh /udrv/lspci_agrees.sh /udrv/bin/udrv
vm_test "udrv lspci shows the edu device" sh -c "udrv lspci | grep -F '$EDU Unclassified device [00ff]: Device [1234:11e8] (rev 10)'"
vm_test "edu has an IOMMU group" sh -c "udrv lspci -v -s $EDU | grep -E 'IOMMU group: [0-9]+'"
vm_test "bind edu to vfio-pci" udrv bind "$EDU"
vm_test "edu is on vfio-pci" sh -c "udrv lspci -v -s $EDU | grep -F 'Kernel driver in use: vfio-pci'"
vm_test "edu driver: identification, factorial, MSI, DMA both ways" udrv-edu-selftest
vm_test "edu driver over INTx (intx=1): the same, every interrupt with a cause" sh -c \
  "udrv-edu-selftest intx=1 > /tmp/edu-intx.txt; rc=\$?; cat /tmp/edu-intx.txt; [ \$rc = 0 ] && grep -q 'by INTx interrupt' /tmp/edu-intx.txt"
vm_test "unbind edu" udrv unbind "$EDU"
vm_test "edu has no driver again" sh -c "! udrv lspci -v -s $EDU | grep -q 'Kernel driver in use'"
vm_test "selftest without a bound device says what to do" expect_fail "no edu device bound to vfio-pci (udrv bind <address> first)" udrv-edu-selftest
vm_test "100 x bind, load driver, probe, unload, unbind: no leaks" udrv-vmtest-cycle "$EDU" /udrv/modules/udrv_edu.so 100

# A device whose DMA reaches fewer bits than its driver assumes (edu with dma_mask=0xfffff): refused at
# probe with what to do, and working once told (dma_bits=20: its buffer is placed below 1 MiB).
EDU20=0000:00:0e.0
edu_narrow_dma() {
  udrv bind "$EDU20" >/dev/null || return 1
  udrv-edu-selftest > /tmp/edu20.txt 2>&1; rc1=$?
  udrv-edu-selftest dma_bits=20 > /tmp/edu20b.txt 2>&1; rc2=$?
  udrv unbind "$EDU20" >/dev/null
  grep -E "FAIL|PASS.*below|failed" /tmp/edu20.txt /tmp/edu20b.txt
  [ $rc1 -ne 0 ] && grep -q "DMA round trip through bus address 0x100000 came back wrong: the device reaches fewer than the 28 address bits" /tmp/edu20.txt &&
    grep -q "load udrv_edu with dma_bits=N" /tmp/edu20.txt &&
    [ $rc2 -eq 0 ] && grep -q "PASS $EDU20: DMA round trip preserves every byte" /tmp/edu20b.txt &&
    grep -q "is below 2^20 (device DMA mask)" /tmp/edu20b.txt
}
vm_test "edu with a 20-bit DMA engine: refused at probe naming dma_bits, works with dma_bits=20" edu_narrow_dma

# Devices the machine cannot lose are refused, and a command that names one changes nothing.
vm_test "refuse: host bridge" expect_fail "0000:00:00.0 cannot be given to vfio-pci: it is the host bridge" udrv bind 0000:00:00.0
vm_test "refuse: ISA/LPC bridge" expect_fail "0000:00:1f.0 cannot be given to vfio-pci: it is the ISA/LPC bridge" udrv bind 0000:00:1f.0
vm_test "refuse: PCIe root port, naming what is behind it" expect_fail \
  "0000:00:10.0 cannot be given to vfio-pci: it is a PCIe root port: 0000:01:00.0 depends on it" udrv bind 0000:00:10.0
vm_test "refuse: switch downstream port" expect_fail "it is a downstream port of a PCIe switch: 0000:04:00.0 depends on it" udrv bind 0000:03:00.0
all_or_nothing() {
  out=$(udrv bind "$EDU" 0000:00:00.0 2>&1); rc=$?
  echo "$out"
  [ $rc -ne 0 ] && echo "$out" | grep -q "nothing was changed" && ! udrv lspci -v -s "$EDU" | grep -q "Kernel driver in use"
}
vm_test "bind GOOD BAD changes nothing: the good one stays unbound" all_or_nothing
vm_test "bind of a device already on vfio-pci says so" sh -c \
  "udrv bind $EDU >/dev/null && udrv bind $EDU | grep -F '$EDU: already bound to vfio-pci (nothing to do)'; rc=\$?; udrv unbind $EDU >/dev/null; exit \$rc"

# Refusals, on the real thing.
IFACE=$(ls /sys/bus/pci/devices/$KNIC/virtio*/net)
ip link set "$IFACE" up
vm_test "refuse: network interface up" expect_fail "is in use: network interface $IFACE is up; take it down first" udrv bind "$KNIC"
ip link set "$IFACE" down
# The kernel's nvme driver scans namespaces asynchronously: wait for the disk of $NVME to appear.
for i in $(seq 50); do DISK=$(ls /sys/bus/pci/devices/$NVME/nvme/nvme*/ 2>/dev/null | grep -m1 -E '^nvme[0-9]+n1$') && [ -b "/dev/$DISK" ] && break; sleep 0.2; done
mke2fs -q "/dev/$DISK" && mkdir -p /mnt/nvme && mount "/dev/$DISK" /mnt/nvme
vm_test "refuse: mounted disk" expect_fail "is in use: /dev/$DISK is mounted on /mnt/nvme; unmount it first" udrv bind "$NVME"
umount /mnt/nvme
vm_test "refuse: not root" expect_fail "binding and unbinding devices needs root" su -s /bin/sh nobody -c "/udrv/bin/udrv bind $EDU"
rmmod vfio_pci
vm_test "refuse: vfio-pci not loaded" expect_fail "vfio-pci is not loaded: modprobe vfio-pci" udrv bind "$EDU"
insmod /lib/modules/vfio-pci.ko
vm_test "bind and unbind a device with a kernel driver (nvme) gives it back" sh -c "udrv bind $NVME && udrv unbind $NVME | grep -F 'returned to nvme'"

# NVMe: the udrv driver against the kernel's, on the same device.
nvme_disk() {  # the kernel's block device of $NVME, once it has appeared
  for i in $(seq 50); do
    d=$(ls /sys/bus/pci/devices/$NVME/nvme/nvme*/ 2>/dev/null | grep -m1 -E '^nvme[0-9]+n1$') && [ -b "/dev/$d" ] && { echo "$d"; return 0; }
    sleep 0.2
  done
  return 1
}
vm_test "nvme: udrv id-ctrl/id-ns JSON is nvme-cli's, key for key" sh /udrv/nvme_identify_agrees.sh "$NVME"
head -c 4194304 /dev/urandom > /tmp/pattern1
head -c 4194304 /dev/urandom > /tmp/pattern2
data_udrv_to_kernel() {
  udrv bind "$NVME" && udrv nvme write "$NVME" --lba 0 -d /tmp/pattern1 && udrv unbind "$NVME" || return 1
  disk=$(nvme_disk) || return 1
  dd if="/dev/$disk" of=/tmp/back1 bs=1M count=4 2>/dev/null && cmp /tmp/pattern1 /tmp/back1 && echo "4 MiB written by udrv read back by the kernel: identical"
}
data_kernel_to_udrv() {
  disk=$(nvme_disk) || return 1
  dd if=/tmp/pattern2 of="/dev/$disk" bs=1M seek=8 conv=fsync 2>/dev/null || return 1
  udrv bind "$NVME" && udrv nvme read "$NVME" -s 16384 -c 8191 -d /tmp/back2 && udrv unbind "$NVME" || return 1
  cmp /tmp/pattern2 /tmp/back2 && echo "4 MiB written by the kernel read back by udrv: identical"
}
vm_test "nvme data safety: udrv writes, kernel reads" data_udrv_to_kernel
vm_test "nvme data safety: kernel writes, udrv reads" data_kernel_to_udrv
udrv bind "$NVME" >/dev/null
vm_test "block list: the namespace is block device nvme0n1 at $NVME/ns1, with its size" sh -c \
  "udrv block list | tee /dev/stderr | grep -E '^nvme0n1 +$NVME/ns1 +udrv_nvme +131072 blocks of 512 B \\(64.0 MiB\\)'"
vm_test "nvme list names the controller nvme0 and its namespace's block device" sh -c \
  "udrv nvme list | tee /dev/stderr | grep -E '^nvme0  $NVME  ' && udrv nvme list | grep -qE 'ns1: .*block device nvme0n1$'"
vm_test "block perf opens the namespace by class name (nvme0n1) and by path (00:04.0/ns1 style)" sh -c \
  "udrv block perf nvme0n1 -q 4 -t 1 | grep -q ' 0 errors' && udrv block perf ${NVME#0000:}/ns1 -q 4 -t 1 | grep -q ' 0 errors'"
vm_test "nvme: status decoding, non-DMA memory, resets and unbind with I/O in flight" udrv-vmtest-nvme "$NVME"
vm_test "nvme: udrv nvme reset, then identify and a read work" sh -c \
  "udrv nvme reset -s $NVME && udrv nvme identify -s $NVME --json | grep -q '\"sn\": \"udrv0001 ' && udrv nvme read $NVME --blocks 8 -d /tmp/r.bin && [ \$(stat -c %s /tmp/r.bin) -eq 4096 ]"
vm_test "nvme: write past the end is refused" expect_fail "lie past the end" udrv nvme write "$NVME" --lba 131071 -d /tmp/pattern1
vm_test "nvme: perf polled, interrupt and hybrid complete without errors" sh -c \
  "udrv nvme perf -s $NVME -q 8 -t 1 --json | grep -q '\"errors\": 0' && udrv nvme perf -s $NVME -q 8 -t 1 --mode interrupt -w randrw | grep -q ' 0 errors' && udrv nvme perf -s $NVME -q 8 -t 1 --mode hybrid -w randwrite | grep -q ' 0 errors'"
vm_test "nvme: perf with I/Os above MDTS sizes its queue for the split (-o 16M -q 2: 64 commands)" sh -c \
  "udrv nvme perf -s $NVME -o 16M -q 2 -t 1 -w randread | tee /tmp/big.out | grep -q ' 0 errors'"
vm_test "nvme: perf -q above the controller's queue size is refused up front" expect_fail \
  "-q 4096: $NVME/ns1 allows at most 2047 commands per queue" udrv nvme perf -s "$NVME" -q 4096 -t 1
vm_test "nvme: perf -q 100000 is refused at once, not after allocating" sh -c \
  "t0=\$(date +%s); out=\$(udrv nvme perf -s $NVME -q 100000 -t 1 2>&1); rc=\$?; t1=\$(date +%s); echo \"\$out\" | tail -1;
   [ \$rc -ne 0 ] && echo \"\$out\" | grep -q 'allows at most 2047' && [ \$((t1 - t0)) -le 5 ]"
vm_test "nvme: numbers are parsed strictly (--lba -1)" expect_fail "--start-block: '-1' is not a whole number" udrv nvme read "$NVME" --lba -1
udrv unbind "$NVME" >/dev/null
vm_test "nvme: a controller on the kernel driver is named with what to do" expect_fail \
  "$NVME is on the kernel's nvme driver: \`udrv bind $NVME\` first" udrv nvme read "$NVME" --blocks 1 -d /tmp/none

MULTI=0000:00:09.0
vm_test "nvme: id-ctrl/id-ns JSON agree with nvme-cli on two namespaces (512 B and 4 KiB blocks)" sh /udrv/nvme_identify_agrees.sh "$MULTI"
udrv bind "$MULTI" >/dev/null
vm_test "nvme: two namespaces, 512 B and 4 KiB blocks" sh -c \
  "udrv nvme list | grep -E 'ns1: 32768 blocks of 512 B' && udrv nvme list | grep -E 'ns2: 8192 blocks of 4096 B'"
multi_ns_data() {
  head -c 1048576 /dev/urandom > /tmp/ns2pattern
  udrv nvme write "$MULTI" -n 2 --lba 100 -d /tmp/ns2pattern && \
  udrv nvme read "$MULTI" -n 2 --lba 100 --blocks 256 -d /tmp/ns2back && cmp /tmp/ns2pattern /tmp/ns2back && \
  udrv nvme read "$MULTI" -n 1 --lba 0 --blocks 2048 -d /tmp/ns1back && \
  ! cmp -s /tmp/ns1back /tmp/ns2pattern && echo "1 MiB on namespace 2 (4 KiB blocks) round-trips; namespace 1 is separate"
}
vm_test "nvme: data on a 4 KiB-block namespace" multi_ns_data
two_processes() {  # two udrv processes drive two controllers at once: each binds only the one it names
  udrv bind "$NVME" >/dev/null || return 1
  udrv nvme perf -s "$NVME" -q 8 -t 4 --json > /tmp/p1.json 2>/tmp/p1.err &
  pid=$!
  sleep 1
  udrv nvme perf -s "$MULTI" -q 8 -t 1 --json > /tmp/p2.json 2>/tmp/p2.err; rc2=$?
  wait $pid; rc1=$?
  udrv unbind "$NVME" >/dev/null
  tail -3 /tmp/p1.err /tmp/p2.err; grep -h '"device"\|"errors"' /tmp/p1.json /tmp/p2.json
  [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && grep -q '"errors": 0' /tmp/p1.json && grep -q '"errors": 0' /tmp/p2.json
}
vm_test "nvme: two processes, one controller each, at the same time" two_processes
# The holder runs until told to stop, and is asked only once it holds the controller: with fixed
# times, under the sanitizers in TCG, identify and list could start after it had finished (or before it began).
held_elsewhere() {
  udrv nvme perf -s "$MULTI" -q 1 -t 120 > /dev/null 2> /tmp/holder.err &
  pid=$!
  for _ in $(seq 100); do grep -q "$MULTI: nvme[0-9]*: " /tmp/holder.err && break; sleep 0.1; done
  udrv nvme identify -s "$MULTI" > /tmp/busy.out 2>&1; rc=$?
  udrv nvme list > /tmp/busy.list 2>&1
  kill -INT $pid; wait $pid; hrc=$?
  cat /tmp/busy.out /tmp/busy.list; echo "the holder exited with $hrc"
  [ $rc -ne 0 ] && [ $hrc -eq 0 ] && tail -1 /tmp/busy.out | grep -q "^udrv: error: $MULTI: .*is in use by another process" &&
    grep -q "^- *$MULTI  (not taken: .*in use by another process" /tmp/busy.list
}
vm_test "nvme: a controller another process holds is named with the reason (identify, list)" held_elsewhere
udrv unbind "$MULTI" >/dev/null

# Network: udrv's virtio-net driver on 00:07.0 and the guest kernel's own NIC on 00:08.0, one hub.
VNET=0000:00:07.0 E1K=0000:00:06.0
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6  # no stray router solicitations in the captures
ip addr add 10.0.0.1/24 dev "$IFACE" && ip link set "$IFACE" up
udrv bind "$VNET" "$E1K" >/dev/null
vm_test "net list: both NICs as net devices, with driver, MAC, link and queues" sh -c \
  "udrv net list | tee /tmp/netlist.out; grep -qE '^net[0-9] +$VNET +udrv_virtio_net +([0-9a-f]{2}:){5}[0-9a-f]{2} +link (up|down) +1 queue pair' /tmp/netlist.out &&
   grep -qE '^net[0-9] +$E1K +udrv_e1000e +([0-9a-f]{2}:){5}[0-9a-f]{2} +link (up|down) +1 queue pair' /tmp/netlist.out &&
   udrv net list --json | grep -q '\"driver\": \"udrv_e1000e\"'"
echo_replies() { awk '/^Icmp:/ { if (!n) { for (i = 1; i <= NF; i++) if ($i == "InEchoReps") c = i; n = 1 } else print $c }' /proc/net/snmp; }
# ping_udrv NIC IP [MODE]: every echo is answered and reaches the kernel (its ICMP counter, which also
# counts a reply that comes after ping stopped waiting: under TCG with the sanitizers a reply has taken
# over a second, and ping counted it lost); in interrupt mode the responder was woken by interrupts.
ping_udrv() {
  udrv net respond -s "$1" --ip "$2" -t 60 -m "${3:-poll}" > /tmp/respond.out 2>&1 &
  pid=$!
  wait_started $pid /tmp/respond.out "^answering" || return 1
  before=$(echo_replies)
  ping -c 100 -i 0.05 -W 2 "$2" > /tmp/ping.out
  for _ in $(seq 50); do [ $(($(echo_replies) - before)) -ge 100 ] && break; sleep 0.2; done  # late replies
  kill -INT $pid; wait $pid
  got=$(($(echo_replies) - before))
  tail -2 /tmp/ping.out; tail -1 /tmp/respond.out
  echo "the kernel received $got echo replies"
  if ! grep -q "100 packets received" /tmp/ping.out; then
    sed -n 's/.*seq=\([0-9]*\).*/\1/p' /tmp/ping.out > /tmp/ping.seen
    echo "ping gave up on icmp_seq $(seq 0 99 | grep -vxF -f /tmp/ping.seen | tr '\n' ' ')"
  fi
  grep -q "100 packets transmitted" /tmp/ping.out && [ "$got" -eq 100 ] || return 1
  [ "${3:-poll}" = poll ] || [ "$(tail -1 /tmp/respond.out | sed -n 's/.* \([0-9][0-9]*\) receive interrupts$/\1/p')" -gt 0 ]
}
pktgen_to_kernel() {  # pktgen_to_kernel NIC: the kernel's counter and a UDP socket both see all 1000
  before=$(cat /sys/class/net/$IFACE/statistics/rx_packets)
  udrv-vmtest-udprecv 9 1000 20 > /tmp/udp.out &
  pid=$!
  for i in $(seq 50); do grep -q ready /tmp/udp.out 2>/dev/null && break; sleep 0.1; done
  # At a rate the guest kernel's receive path keeps up with under TCG: at full speed it can overrun.
  udrv net pktgen -s "$1" -n 1000 --size 128 -b 8 --rate 20000 2>&1 | tail -1 || return 1
  wait $pid; rc=$?
  sleep 1
  after=$(cat /sys/class/net/$IFACE/statistics/rx_packets)
  echo "kernel $IFACE rx_packets +$((after - before))"; tail -n +2 /tmp/udp.out
  [ $((after - before)) -eq 1000 ] && [ $rc -eq 0 ]
}
# A virtio device without VIRTIO_F_ACCESS_PLATFORM (QEMU's default) would DMA around the IOMMU: refused.
no_access_platform() {
  KV=0000:00:0a.0
  udrv bind "$KV" >/dev/null || return 1
  out=$(udrv net respond -s "$KV" -t 1 2>&1); rc=$?
  udrv unbind "$KV" >/dev/null
  echo "$out" | tail -2
  [ $rc -ne 0 ] && echo "$out" | grep -q "does not offer VIRTIO_F_ACCESS_PLATFORM: its DMA would bypass the IOMMU" &&
    echo "$out" | grep -q "iommu_platform=on"
}
vm_test "net: virtio-net without iommu_platform is refused at probe" no_access_platform
vm_test "net: fwd with the same port twice is refused" expect_fail "-s and -d both name $VNET" udrv net fwd -s "$VNET" -d "$VNET" -t 1
vm_test "net: the kernel pings udrv net respond on virtio-net: 100 echoes, no loss" ping_udrv "$VNET" 10.0.0.2
vm_test "net: the kernel pings udrv net respond on e1000e: 100 echoes, no loss" ping_udrv "$E1K" 10.0.0.3
vm_test "net: the same on virtio-net in interrupt mode (MSI-X), woken by interrupts" ping_udrv "$VNET" 10.0.0.2 interrupt
vm_test "net: the same on e1000e in hybrid mode (spin, then MSI-X), woken by interrupts" ping_udrv "$E1K" 10.0.0.3 hybrid
vm_test "net: pktgen on virtio-net sends 1000 frames, the kernel receives all, sequence numbers intact" pktgen_to_kernel "$VNET"
vm_test "net: pktgen on e1000e sends 1000 frames, the kernel receives all, sequence numbers intact" pktgen_to_kernel "$E1K"
dump_kernel_frames() {
  arp -s 10.0.0.9 52:54:00:00:00:07 -i "$IFACE"
  udrv net dump -s "$VNET" -w /tmp/cap.pcap -c 50 -t 20 > /tmp/dump.out 2>&1 &
  pid=$!
  wait_started $pid /tmp/dump.out "^capturing on" || return 1
  ping -c 50 -i 0.05 -W 1 10.0.0.9 >/dev/null 2>&1
  wait $pid
  tail -1 /tmp/dump.out
  grep -q "captured 50 frames" /tmp/dump.out || return 1
  # The host reads it back with tshark (see run-suite.sh).
  echo "UDRV-FILE cap.pcap"; base64 /tmp/cap.pcap; echo "UDRV-FILE-END"
}
vm_test "net: the kernel sends 50 frames, udrv net dump captures 50 into a pcap" dump_kernel_frames
fwd_end_to_end() {  # kernel A (hub 0) pings kernel B (hub 1, own netns) through udrv net fwd
  E2=0000:00:0b.0 KB=0000:00:0a.0
  IFB=$(ls /sys/bus/pci/devices/$KB/virtio*/net)
  udrv bind "$E2" >/dev/null || return 1
  unshare -n sleep 60 &
  nspid=$!
  sleep 0.5
  ip link set "$IFB" netns $nspid
  nsenter -t $nspid -n ip addr add 10.0.0.5/24 dev "$IFB"
  nsenter -t $nspid -n ip link set "$IFB" up
  udrv net fwd -s "$VNET" -d "$E2" -t 15 > /tmp/fwd.out 2>&1 &
  fpid=$!
  wait_started $fpid /tmp/fwd.out "^forwarding between" || { kill $nspid; udrv unbind "$E2" >/dev/null; return 1; }
  out=$(ping -c 50 -i 0.05 -W 2 10.0.0.5 | tail -2)
  wait $fpid
  kill $nspid
  echo "$out"; tail -1 /tmp/fwd.out
  udrv unbind "$E2" >/dev/null
  echo "$out" | grep -q "50 packets transmitted, 50 packets received, 0% packet loss"
}
vm_test "net: udrv net fwd (virtio-net <-> e1000e) carries the kernel's ping end to end" fwd_end_to_end
udrv unbind "$VNET" "$E1K" >/dev/null
ip link set "$IFACE" down

# Multi-queue: udrv's virtio-net on 00:0c.0 (2 queue pairs, on a multi-queue tap) and the kernel's NIC
# on 00:0d.0, bridged outside the VM (see vm.sh). The tap spreads flows over the queues by hash.
MQ=0000:00:0c.0 KMQ=0000:00:0d.0
mq_spread() {
  if [ ! -e /sys/bus/pci/devices/$MQ ]; then echo "SKIP: no multi-queue NIC in this VM (vm.sh needs root and /dev/net/tun)"; return 0; fi
  IFM=$(ls /sys/bus/pci/devices/$KMQ/virtio*/net)
  ip addr add 10.1.0.1/24 dev "$IFM" && ip link set "$IFM" up && arp -s 10.1.0.2 52:54:00:00:00:0c -i "$IFM" || return 1
  udrv bind "$MQ" >/dev/null || return 1
  # More pairs than the device has: refused, saying how many there are.
  if udrv net dump -s "$MQ" -q 3 -w /tmp/mq.pcap -c 1 -t 1 > /tmp/mq.err 2>&1 || ! grep -q "this device has 2" /tmp/mq.err; then
    cat /tmp/mq.err; return 1
  fi
  udrv net dump -s "$MQ" -q 2 -w /tmp/mq.pcap -c 160 -t 30 --json > /tmp/mq.out 2>&1 &
  pid=$!
  wait_started $pid /tmp/mq.out "^capturing on" || { udrv unbind "$MQ" >/dev/null; return 1; }
  udrv-vmtest-udpsend 10.1.0.2 16 10
  wait $pid
  udrv unbind "$MQ" >/dev/null
  ip link set "$IFM" down
  set -- $(tr -d ' \n' < /tmp/mq.out | sed -n 's/.*"per_queue":\[\([0-9]*\),\([0-9]*\)\].*/\1 \2/p')
  seen=$(tr -c 'A-Za-z0-9 ' '\n' < /tmp/mq.pcap | grep -o 'UDRV flow [0-9]* seq [0-9]* end' | sort -u | wc -l)
  echo "captured per queue: ${1:-?} ${2:-?}; distinct datagrams in the pcap: $seen of 160"
  [ "${1:-0}" -gt 0 ] && [ "${2:-0}" -gt 0 ] && [ "$seen" -eq 160 ]
}
vm_test "net: virtio-net multiqueue: 16 flows spread over 2 receive queues, dump captures all 160 datagrams" mq_spread
mq_respond() {  # the kernel pings udrv net respond -q 2 from 16 source addresses: every echo answered, on both queues
  if [ ! -e /sys/bus/pci/devices/$MQ ]; then echo "SKIP: no multi-queue NIC in this VM"; return 0; fi
  IFM=$(ls /sys/bus/pci/devices/$KMQ/virtio*/net)
  ip link set "$IFM" up && ip neigh flush dev "$IFM"  # ARP for 10.1.0.2 goes to udrv this time
  udrv bind "$MQ" >/dev/null || return 1
  udrv net respond -s "$MQ" --ip 10.1.0.2 -q 2 -t 60 --json > /tmp/mqr.out 2>/tmp/mqr.err &
  pid=$!
  wait_started $pid /tmp/mqr.err "^answering" || { udrv unbind "$MQ" >/dev/null; return 1; }
  ok=0
  for i in $(seq 101 116); do
    ip addr add 10.1.0.$i/24 dev "$IFM" 2>/dev/null
    ping -c 2 -W 2 -I 10.1.0.$i 10.1.0.2 >/dev/null 2>&1 && ok=$((ok + 1))
  done
  kill -INT $pid; wait $pid; rc=$?
  udrv unbind "$MQ" >/dev/null
  ip link set "$IFM" down
  set -- $(tr -d ' \n' < /tmp/mqr.out | sed -n 's/.*"echo_replies_per_queue":\[\([0-9]*\),\([0-9]*\)\].*/\1 \2/p')
  echo "answered pings from $ok of 16 source addresses; echo replies per queue: ${1:-?} ${2:-?} (exit $rc)"
  [ $rc -eq 0 ] && [ "$ok" -eq 16 ] && [ "${1:-0}" -gt 0 ] && [ "${2:-0}" -gt 0 ]
}
vm_test "net: udrv net respond -q 2: a thread per queue pair answers pings from 16 addresses, on both queues" mq_respond
mq_pktgen() {  # udrv net pktgen -q 2: 1000 frames, 500 from each transmit queue, all reach the kernel's NIC
  if [ ! -e /sys/bus/pci/devices/$MQ ]; then echo "SKIP: no multi-queue NIC in this VM"; return 0; fi
  IFM=$(ls /sys/bus/pci/devices/$KMQ/virtio*/net)
  ip link set "$IFM" up
  udrv bind "$MQ" >/dev/null || return 1
  before=$(cat /sys/class/net/$IFM/statistics/rx_packets)
  out=$(udrv net pktgen -s "$MQ" -q 2 -n 1000 --size 128 -b 8 --rate 20000 2>/dev/null)
  sleep 1
  after=$(cat /sys/class/net/$IFM/statistics/rx_packets)
  udrv unbind "$MQ" >/dev/null
  ip link set "$IFM" down
  echo "$out"; echo "kernel $IFM rx_packets +$((after - before))"
  echo "$out" | grep -q "^sent 1000 frames of 128 bytes in batches of 8 (per queue: 500, 500)" && [ $((after - before)) -eq 1000 ]
}
vm_test "net: udrv net pktgen -q 2: 500 frames from each of 2 transmit queues, the kernel's NIC counts 1000" mq_pktgen
mq_fwd_refused() {  # fwd -q 2 needs 2 pairs on both ports; e1000e has one
  if [ ! -e /sys/bus/pci/devices/$MQ ]; then echo "SKIP: no multi-queue NIC in this VM"; return 0; fi
  udrv bind "$MQ" "$E1K" >/dev/null || return 1
  out=$(udrv net fwd -s "$MQ" -d "$E1K" -q 2 -t 1 2>&1); rc=$?
  udrv unbind "$MQ" "$E1K" >/dev/null
  echo "$out"
  [ $rc -ne 0 ] && echo "$out" | grep -q "$E1K: .*1 queue pair(s) and no way to change that"
}
vm_test "net: udrv net fwd -q 2 with a one-queue port is refused, naming the port" mq_fwd_refused

. /udrv/udrvd-tests.sh
. /udrv/ublk-tests.sh
. /udrv/nvmf-tests.sh

vm_summary
