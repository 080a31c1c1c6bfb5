# Sourced by the bench scripts (from the project root).

# results_file NAME prints bench/results/NAME-DATE.md, or, when a run earlier that day already wrote
# it, NAME-DATEb.md, NAME-DATEc.md, ...: a second run on one day gets its own file instead of
# replacing the first one's figures.
results_file() {
  local day out suffix
  day=$(date +%Y-%m-%d)
  out=bench/results/$1-$day.md
  for suffix in b c d e f g h i j k; do
    [ -e "$out" ] || break
    out=bench/results/$1-$day$suffix.md
  done
  echo "$out"
}

# need_dpdk WHO: Debian's DPDK (dpdk-testpmd and the virtio and e1000 PMDs the VM gets with
# UDRV_VM_DPDK=1), installed when missing (as root).
need_dpdk() {
  local pkgs=(dpdk-dev librte-net-virtio23 librte-net-e1000-23 librte-mempool-ring23)
  command -v dpdk-testpmd >/dev/null && ls /usr/lib/*/dpdk/pmds-*/librte_net_virtio.so.* >/dev/null 2>&1 && return 0
  [ "$(id -u)" -eq 0 ] || { echo "$1: needs ${pkgs[*]}: run as root" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

# build_commit BUILD_DIR: what was measured: the commit of the build's source tree, and whether it had
# uncommitted changes.
build_commit() {
  local src
  src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$1/CMakeCache.txt" 2>/dev/null)
  echo "$(git -C "${src:-.}" describe --always --dirty=" with uncommitted changes" 2>/dev/null || echo unknown) (${src:-?})"
}

# host_line: the build machine, which the VM figures depend on more than on anything else (QEMU's main
# loop makes several system calls per I/O, so the cost of a system call on the host sets ceilings).
host_line() {
  local hv syscall=""
  hv=$(dmesg 2>/dev/null | grep -m1 -o 'Hypervisor detected: [A-Za-z]*' | sed 's/.*: //' || true)
  command -v perf >/dev/null &&
    syscall=$(perf bench syscall basic -l 200000 2>/dev/null | awk '/usecs\/op/ {printf "; a system call (getppid, perf bench syscall basic) takes %.2f µs", $1}')
  echo "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) CPUs, kernel $(uname -r)${hv:+, under $hv}$syscall"
}
