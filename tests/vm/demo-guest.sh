# The demo, inside the test VM (run by `make run`): what udrv does with real (emulated) hardware.
. /udrv/guest-lib.sh
step() { printf '\n== %s\n$ %s\n' "$1" "$2"; sh -c "$2" 2>&1; }
EDU=$(find_dev 1234 11e8)
step "The VM's PCI devices: QEMU's edu, two NVMe controllers, e1000e and virtio-net NICs" "udrv lspci"
step "The edu device in detail: its BAR, MSI capability and IOMMU group" "udrv lspci -v -s $EDU"
step "Give it to vfio-pci, so a user-space driver can own it through the IOMMU" "udrv bind $EDU"
step "Run the edu driver: MMIO registers, factorial, MSI interrupts, DMA both ways through the vIOMMU" "udrv-edu-selftest"
step "Give the device back" "udrv unbind $EDU"
step "A device in kernel use is refused: the guest's own NIC, once its interface is up" \
     "ip link set \$(ls /sys/bus/pci/devices/0000:00:08.0/virtio*/net) up; udrv bind 0000:00:08.0"
NVME=0000:00:04.0
step "NVMe: give a controller to udrv and list it" "udrv bind $NVME && udrv nvme list"
step "NVMe: write 1 MiB with udrv, read it back, compare" \
     "head -c 1048576 /dev/urandom > /tmp/a && udrv nvme write $NVME --lba 0 -d /tmp/a && udrv nvme read $NVME --lba 0 --blocks 2048 -d /tmp/b && cmp /tmp/a /tmp/b && echo identical"
step "NVMe: 4 KiB random reads for 3 s, polling for completions, 32 commands in flight on 1 thread" \
     "udrv nvme perf $NVME -q 32 -t 3"
echo "(This VM is QEMU under TCG: every register access and DMA of the emulated NVMe is software, so these"
echo " figures are QEMU's speed, not a drive's. Compare drivers in the same boot: bench/nvme.sh runs the"
echo " kernel's driver and udrv side by side; bench/results/ has the tables.)"
step "Give it back to the kernel, which sees udrv's data" \
     "udrv unbind $NVME && for i in \$(seq 50); do d=\$(ls /sys/bus/pci/devices/$NVME/nvme/nvme*/ 2>/dev/null | grep -m1 -E '^nvme[0-9]+n1\$') && [ -b /dev/\$d ] && break; sleep 0.2; done; dd if=/dev/\$d of=/tmp/k bs=1M count=1 2>/dev/null && cmp /tmp/k /tmp/a && echo \"the kernel (/dev/\$d) reads the same bytes\""
VNET=0000:00:07.0
IFACE=$(ls /sys/bus/pci/devices/0000:00:08.0/virtio*/net)
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6
ip link set "$IFACE" down; ip addr add 10.0.0.1/24 dev "$IFACE"; ip link set "$IFACE" up
step "Networking: udrv's virtio-net driver answers ARP and ping for 10.0.0.2 while the kernel pings it" \
     "udrv bind $VNET >/dev/null && (udrv net respond -s $VNET --ip 10.0.0.2 -t 8 -m interrupt >/tmp/r.out 2>&1 &) && sleep 3 && ping -c 10 -i 0.2 10.0.0.2 | tail -2; sleep 6; tail -1 /tmp/r.out"
step "Networking: 1000 numbered frames from udrv's pktgen; the kernel's counter shows them arrive" \
     "b=\$(cat /sys/class/net/$IFACE/statistics/rx_packets); udrv net pktgen -s $VNET -n 1000 2>/dev/null; sleep 1; echo \"kernel $IFACE received \$((\$(cat /sys/class/net/$IFACE/statistics/rx_packets) - b)) frames\"; udrv unbind $VNET >/dev/null"
mkdir -p /run
step "udrvd, the driver manager: it keeps devices bound, each driver in a host process of its own" \
     "(udrvd > /tmp/udrvd.log 2>&1 &); sleep 1; udrv bind $NVME $VNET 2>/dev/null"
step "What runs: devices, their hosts, the names they publish" "udrv top -b -n 1"
step "A driver host crashes (kill -9 of the NVMe controller's host): udrvd restarts it, the device keeps its name" \
     "kill -9 \$(udrv rpc device_list 2>/dev/null | grep -A8 '\"$NVME\"' | sed -n 's/^ *\"pid\": \\([0-9]*\\),*/\\1/p'); sleep 3; grep -E 'died|restarting|is up' /tmp/udrvd.log | tail -3; udrv block perf nvme0n1 -q 32 -t 2 2>/dev/null | head -1"
step "Stop udrvd: hosts unbind their drivers, the devices go back to the kernel" \
     "kill -TERM \$(pidof udrvd); sleep 2; tail -3 /tmp/udrvd.log; udrv lspci -k -s 04.0 | tail -1"
exit 0
