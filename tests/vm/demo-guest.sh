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
printf '\nNVMe and network drivers run on this same VM in the next milestones (see the issues).\n'
exit 0
