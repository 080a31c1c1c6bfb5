# ublk in the VM (sourced by guest-tests.sh after udrvd-tests.sh): a udrv NVMe namespace as /dev/ublkb0
# through udrvd; ext4 on it, the bytes the kernel's own driver reads afterwards; fio with verification;
# the driver host killed ten times under a verifying writer on a mounted file system; refusals.
# Needs a kernel with ublk (the 6.12 guest); says so and skips otherwise.
UNVME=${UNVME:-0000:00:04.0}
if [ ! -e /dev/ublk-control ]; then
  echo "SKIP: ublk tests: this kernel has no ublk (UDRV_VM_KERNEL=6.12 has)"
  return 0 2>/dev/null || exit 0
fi
# Ten crashes in a row are more than udrvd's default restart limit (5 in 60 s) allows: raised here.
printf '[daemon]\nrestart_limit = 30\n' > /tmp/ublk-udrvd.toml
udrvd_start --log-level info --config /tmp/ublk-udrvd.toml || return 1

ublk_fs() {
  udrv bind "$UNVME" && udrv export ublk nvme0n1 | grep -q "nvme0n1: exported as /dev/ublkb0" || return 1
  mkfs.ext4 -q -F /dev/ublkb0 && mount /dev/ublkb0 /mnt || return 1
  for i in 1 2 3 4 5; do head -c $((i * 300000)) /dev/urandom > /mnt/file$i; done
  mkdir /mnt/dir && echo "written through udrv" > /mnt/dir/note
  (cd /mnt && md5sum file* dir/note) > /tmp/sums
  sync && umount /mnt && mount /dev/ublkb0 /mnt && (cd /mnt && md5sum -c /tmp/sums) && umount /mnt
}
vm_test "ublk: ext4 on /dev/ublkb0 (the NVMe through udrv): files written, unmounted, mounted again, checksums match" ublk_fs

kernel_reads_it() {  # unexport, give the controller to the kernel's nvme driver: the same files
  udrv unexport ublk nvme0n1 && [ ! -e /dev/ublkb0 ] || return 1
  udrv unbind "$UNVME" || return 1
  d=$(disk_of "$UNVME") || return 1
  echo "the kernel's nvme driver: /dev/$d"
  mount /dev/$d /mnt && (cd /mnt && md5sum -c /tmp/sums); rc=$?
  umount /mnt
  [ $rc -eq 0 ]
}
vm_test "ublk: unexported, the controller back on the kernel's nvme driver: /dev/nvme0n1 mounts with the same files" kernel_reads_it

fio_verify() {
  udrv bind "$UNVME" >/dev/null || return 1
  expect_fail "nvme0n1 has at most 16 queues: 17 ublk queues cannot each have one" udrv export ublk nvme0n1 -q 17 || return 1
  udrv export ublk nvme0n1 >/dev/null || return 1
  fio --name=verify --filename=/dev/ublkb0 --size=48M --rw=randwrite --bs=4k --iodepth=16 --ioengine=libaio --direct=1 \
      --verify=crc32c --do_verify=1 --verify_fatal=1 > /tmp/fio1.out 2>&1; rc=$?
  grep -E "err=|verify" /tmp/fio1.out
  [ $rc -eq 0 ] && grep -q "err= 0" /tmp/fio1.out
}
vm_test "ublk: more queues than the device has are refused; fio randwrite with verify=crc32c through /dev/ublkb0: no error" fio_verify

# Ten rounds; three in the sanitizer build's VM run (make asan-vm), whose every step is several times slower.
crash_rounds=10
[ -n "${ASAN_OPTIONS:-}" ] && crash_rounds=3
crash_survival() {  # ext4 mounted, fio writing with verification; the driver host killed in each round
  mkfs.ext4 -q -F /dev/ublkb0 && mount /dev/ublkb0 /mnt || return 1
  dmesg -c >/dev/null
  local round ok=0 pid
  for round in $(seq $crash_rounds); do
    fio --name=crash --filename=/mnt/f$round --size=8M --rw=randwrite --bs=4k --ioengine=psync --fsync=32 \
        --verify=crc32c --do_verify=1 --verify_fatal=1 > /tmp/crash$round.out 2>&1 &
    local f=$!
    sleep 1.5
    pid=$(host_pid "$UNVME")
    [ "${pid:-0}" -gt 1 ] || { echo "round $round: no host"; kill $f; break; }
    kill -9 "$pid"
    wait $f; local rc=$?
    if [ $rc -eq 0 ] && grep -q "err= 0" /tmp/crash$round.out; then ok=$((ok + 1)); else echo "round $round: fio exit $rc"; cat /tmp/crash$round.out; fi
    wait_for 20 sh -c "udrv export list | grep -q 'running'" || { echo "round $round: the export did not come back"; break; }
    rm -f /mnt/f$round
  done
  umount /mnt
  e2fsck -fn /dev/ublkb0 > /tmp/fsck.out 2>&1; local fsck=$?
  tail -3 /tmp/fsck.out
  local ioerr; ioerr=$(dmesg | grep -ciE "I/O error|blk_update_request|Buffer I/O|EXT4-fs error")
  echo "$ok of $crash_rounds rounds without an fio error; fsck -n exit $fsck; kernel I/O errors: $ioerr; restarts: $(udrv rpc device_list | sed -n 's/^ *"restarts": \([0-9]*\).*/\1/p' | head -1)"
  grep -c "taken over by host" /tmp/udrvd.log
  [ $ok -eq $crash_rounds ] && [ $fsck -eq 0 ] && [ "$ioerr" -eq 0 ]
}
vm_test "ublk: kill -9 of the driver host $crash_rounds times in a row under fio --verify on ext4: no fio error, fsck clean, no kernel I/O error" crash_survival

vm_test "ublk: exporting a device twice is refused" expect_fail "nvme0n1 is exported already as /dev/ublkb0" udrv export ublk nvme0n1
unplug_exported() {  # the controller removed while exported: the export goes, the kernel gets errors, nothing hangs
  dd if=/dev/ublkb0 of=/dev/null bs=64k count=2000 iflag=direct > /tmp/dd.out 2>&1 &
  local bg=$!
  sleep 1
  timeout 30 sh -c "echo 1 > /sys/bus/pci/devices/$UNVME/remove" || { echo "the removal hung"; return 1; }
  for _ in $(seq 200); do kill -0 $bg 2>/dev/null || break; sleep 0.1; done
  if kill -0 $bg 2>/dev/null; then echo "a reader of /dev/ublkb0 still hangs 20 s after the removal"; kill -9 $bg; return 1; fi
  wait $bg
  cat /tmp/dd.out
  wait_for 10 sh -c "[ ! -e /dev/ublkb0 ]" || { echo "/dev/ublkb0 is still there"; return 1; }
  udrv export list; grep -E "ublkb0 (removed|deleted)|deleting /dev/ublkb0" /tmp/udrvd.log | tail -2
  echo 1 > /sys/bus/pci/rescan
  wait_for 15 sh -c "udrv block list | grep -q '^nvme0n1 '"
}
vm_test "ublk: the controller hot-removed while exported: the export is removed, readers get errors, nothing hangs" unplug_exported
ramdisk_export() {  # any block device exports: a RAM disk with 4 KiB blocks
  printf '[[device]]\nname = "rd"\ncompatible = "udrv,ramdisk"\nmemory = [{ name = "storage", start = 0x1000_0000, size = 0x200_0000 }]\n[device.properties]\nblock-size = 4096\n' > /tmp/rd.toml
  udrv rpc platform_add '{"description": "/tmp/rd.toml"}' >/dev/null || return 1
  local dev; dev=$(udrv export ublk ram0 --json | sed -n 's/^ *"path": "\(.*\)",*/\1/p')
  echo "ram0 exported as $dev: $(cat /sys/block/${dev#/dev/}/queue/logical_block_size)-byte blocks"
  [ "$(cat /sys/block/${dev#/dev/}/queue/logical_block_size)" = 4096 ] || return 1
  mkfs.ext4 -q -F "$dev" && mount "$dev" /mnt && head -c 1000000 /dev/urandom > /mnt/x && sync && umount /mnt && e2fsck -fn "$dev" >/dev/null &&
    udrv unexport ublk ram0 && [ ! -e "$dev" ]
}
vm_test "ublk: a RAM disk exports too (4 KiB blocks): ext4 made, written, checked clean, unexported" ramdisk_export
udrvd_stop_all() { kill -TERM $udrvd_pid; wait $udrvd_pid; }
vm_test "ublk: udrvd stops" udrvd_stop_all

given_up() {  # no host will serve it again (restart_limit = 0): udrvd deletes the device, the kernel fails its I/O
  printf '[daemon]\nrestart_limit = 0\n' > /tmp/ublk-giveup.toml
  udrvd_start --config /tmp/ublk-giveup.toml || return 1
  udrv bind "$UNVME" >/dev/null && udrv export ublk nvme0n1 >/dev/null || return 1
  # The reader reads the device over and over (one pass takes about a second), so it is reading when
  # the host dies, and stops at its first error.
  sh -c 'while dd if=/dev/ublkb0 of=/dev/null bs=64k iflag=direct; do :; done' > /tmp/dd2.out 2>&1 &
  local bg=$!
  sleep 2
  kill -0 $bg 2>/dev/null || { echo "the reader stopped before the host was killed"; cat /tmp/dd2.out; return 1; }
  kill -9 "$(host_pid "$UNVME")"
  for _ in $(seq 300); do kill -0 $bg 2>/dev/null || break; sleep 0.1; done
  if kill -0 $bg 2>/dev/null; then echo "the reader still hangs 30 s after its server died for good"; kill -9 $bg; return 1; fi
  tail -3 /tmp/dd2.out; grep -E "gave up|deleting" /tmp/udrvd.log | tail -2
  local rc=0
  grep -q "Input/output error" /tmp/dd2.out && [ ! -e /dev/ublkb0 ] && udrv rpc get_version >/dev/null || rc=1
  udrvd_stop_all
  return $rc
}
vm_test "ublk: a driver host that will not come back: udrvd deletes /dev/ublkb0, the reader gets EIO, nothing hangs" given_up
