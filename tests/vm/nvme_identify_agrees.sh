# Compares `udrv nvme identify` on ADDRESS with nvme-cli's id-ctrl / id-ns through the kernel driver.
# Run in the guest with the device on the kernel's nvme driver; it binds, identifies, and gives it back.
# Usage: sh nvme_identify_agrees.sh ADDRESS
set -e
addr=$1
ctrl=$(ls /sys/bus/pci/devices/$addr/nvme)
for i in $(seq 50); do [ -b /dev/${ctrl}n1 ] && break; sleep 0.2; done
num() { if echo "$1" | grep -qE '^(0x[0-9a-fA-F]+|[0-9]+)$'; then printf '%d' "$1"; else printf '%s' "$1"; fi; }
kv() { while read -r k v; do printf '%s=%s\n' "$k" "$(num "$v")"; done; }
nvme id-ctrl /dev/$ctrl | sed -n -E 's/^(vid|ssvid|sn|mn|fr|mdts|cntlid|nn|oncs|vwc|subnqn) *: *(.*[^ ]) *$/\1 \2/p' | kv | sort > /tmp/kernel.txt
nvme id-ns /dev/${ctrl}n1 | sed -n -E 's/^(nsze|ncap|nuse) *: *(.*[^ ]) *$/\1 \2/p' | kv | sort >> /tmp/kernel.txt
nvme id-ns /dev/${ctrl}n1 | sed -n -E 's/^flbas *: *(.*[^ ]) *$/flbas \1/p' | kv >> /tmp/kernel.txt
nvme id-ns /dev/${ctrl}n1 | sed -n -E 's/^lbaf +([0-9]+) *: *ms:([0-9]+) +lbads:([0-9]+) +rp:(0x)?([0-9a-f]+).*/lbaf\1 ms=\2 lbads=\3 rp=\5/p' >> /tmp/kernel.txt
udrv bind "$addr" >/dev/null
udrv nvme identify -s "$addr" --format nvme-cli > /tmp/udrv.txt
udrv unbind "$addr" >/dev/null
if diff -u /tmp/kernel.txt /tmp/udrv.txt; then
  echo "identify agrees with nvme-cli: $(wc -l < /tmp/kernel.txt) fields"
else
  echo "identify disagrees with nvme-cli (- nvme-cli, + udrv)"; exit 1
fi
