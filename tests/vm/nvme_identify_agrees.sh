# `udrv nvme id-ctrl/id-ns -o json` on ADDRESS must be nvme-cli's `nvme id-ctrl/id-ns -o json` through the
# kernel driver, key for key, value for value, in the same order (compared with whitespace removed:
# the two JSON writers indent differently). Run in the guest with the device on the kernel's nvme driver;
# it binds, identifies, and gives it back.
# Usage: sh nvme_identify_agrees.sh ADDRESS
set -e
addr=$1
ctrl=$(ls /sys/bus/pci/devices/$addr/nvme)
for i in $(seq 50); do [ -b /dev/${ctrl}n1 ] && break; sleep 0.2; done
sleep 0.5  # the kernel scans namespaces asynchronously: let the others appear too
flat() { tr -d ' \n'; }
nvme id-ctrl /dev/$ctrl -o json | flat > /tmp/kernel-ctrl.json
nss=""
for n in /dev/${ctrl}n*; do
  [ -b "$n" ] || continue
  # The kernel numbers block devices in the order it finds them, not by NSID: ask it which this is.
  id=$(cat /sys/block/${n##*/}/nsid 2>/dev/null || echo ${n##*n})
  nss="$nss $id"
  nvme id-ns "$n" -o json | flat > /tmp/kernel-ns$id.json
done
udrv bind "$addr" >/dev/null
udrv nvme id-ctrl -s "$addr" -o json | flat > /tmp/udrv-ctrl.json
for id in $nss; do udrv nvme id-ns -s "$addr" -n "$id" -o json | flat > /tmp/udrv-ns$id.json; done
udrv unbind "$addr" >/dev/null
fields=$(tr ',' '\n' < /tmp/kernel-ctrl.json | grep -c ':')
if ! cmp -s /tmp/kernel-ctrl.json /tmp/udrv-ctrl.json; then
  echo "id-ctrl disagrees with nvme-cli:"; echo "nvme-cli: $(cat /tmp/kernel-ctrl.json)"; echo "udrv:     $(cat /tmp/udrv-ctrl.json)"; exit 1
fi
for id in $nss; do
  if ! cmp -s /tmp/kernel-ns$id.json /tmp/udrv-ns$id.json; then
    echo "id-ns $id disagrees with nvme-cli:"; echo "nvme-cli: $(cat /tmp/kernel-ns$id.json)"; echo "udrv:     $(cat /tmp/udrv-ns$id.json)"; exit 1
  fi
done
echo "id-ctrl ($fields values) and id-ns of namespace(s)$nss agree with nvme-cli's JSON"
