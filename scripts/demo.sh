#!/usr/bin/env bash
# The main job: udrv on this machine (read-only), then in the test VM on real emulated devices.
set -euo pipefail
build=${1:-build}
udrv="$build/bin/udrv"
mods="$build/modules"
step() { printf '\n== %s\n$ %s\n' "$1" "$2"; }

echo "udrv demo, part 1: this machine (read-only; nothing here is unbound or touched)"
step "PCI devices on this machine (like lspci -nn)" "udrv lspci"
"$udrv" lspci
step "Module metadata, read from the ELF file without loading it" "udrv modinfo udrv_edu.so"
"$udrv" modinfo "$mods/udrv_edu.so"
step "Load modules with parameters and a dependency, list them, unload them on exit" \
     "udrv insmod udrv_sample_params count=2 who=demo -- udrv_sample_consumer"
UDRV_MODULE_PATH="$mods" "$udrv" insmod udrv_sample_params count=2 who=demo -- udrv_sample_consumer
step "Platform devices from a description file, bound to the built-in ramdisk driver" \
     "udrv platform docs/examples/ramdisks.toml"
"$udrv" platform docs/examples/ramdisks.toml

printf '\nudrv demo, part 2: the test VM (QEMU q35 + intel-iommu, TCG); booting...\n'
tests/vm/vm.sh run "$build" tests/vm/demo-guest.sh
