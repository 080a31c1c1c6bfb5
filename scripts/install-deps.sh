#!/usr/bin/env bash
# Installs what udrv needs to build and test on Debian 12. Idempotent; quick when all is present.
set -euo pipefail
pkgs=(
  g++ cmake make pkg-config ccache   # toolchain (ccache: rebuilds of a fresh clone reuse earlier compiles)
  libfmt-dev libcli11-dev nlohmann-json3-dev   # libraries
  liburing-dev                       # the file-backed block device, ublk
  libisal-dev                        # CRC32C digests of the NVMe/TCP target
  libpcap-dev                        # pcap files (udrv net dump)
  libncurses-dev                     # udrv top
  libsystemd-dev                     # udrvd's readiness notification (sd_notify)
  libssl-dev openssl                 # module signatures (PKCS#7/CMS), and the openssl tool the tests use
  linux-kbuild-6.1                   # the kernel's scripts/sign-file: signatures must interoperate
  dpkg-dev busybox-static            # make deb (dpkg-shlibdeps); a shell for the package test's empty root
  debootstrap                        # the packages installed on a clean Debian 12 (deb_clean_install)
  libgtest-dev libgmock-dev          # tests
  pciutils pci.ids                   # lspci (compared against) and the names database
  nvme-cli fio bc                    # the kernel side of NVMe comparisons and benchmarks (copied into the VM)
  tshark                             # reads back the pcaps udrv net dump writes
  valgrind                           # callgrind: the drivers' instruction budgets (bench/micro.sh)
)
# `install-deps.sh fuzz`: also the fuzzing toolchain (libFuzzer comes with clang-16's runtime).
[ "${1:-}" = fuzz ] && pkgs+=(clang-16 libclang-rt-16-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "udrv: missing packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "udrv: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
