#!/usr/bin/env bash
# The main job: what udrv can do on this machine, step by step.
set -euo pipefail
build=${1:-build}
udrv="$build/bin/udrv"
mods="$build/modules"
step() { printf '\n== %s\n$ %s\n' "$1" "$2"; }

step "PCI devices on this machine (like lspci -nn)" "udrv lspci"
"$udrv" lspci
# Show a device a kernel driver uses (it has the most to show), else the first one.
first=$(for d in /sys/bus/pci/devices/*; do [ -e "$d/driver" ] && basename "$d" && break; done)
[ -n "$first" ] || first=$(ls /sys/bus/pci/devices 2>/dev/null | head -n 1)
if [ -n "$first" ]; then
  step "One device in detail: BARs, capabilities, IOMMU group, kernel driver" "udrv lspci -v -s $first"
  "$udrv" lspci -v -s "$first"
fi
step "Module metadata, read from the ELF file without loading it" "udrv modinfo $mods/udrv_sample_params.so"
"$udrv" modinfo "$mods/udrv_sample_params.so"
step "Load modules with parameters and a dependency, list them, unload them on exit" \
     "udrv insmod udrv_sample_params count=2 who=demo -- udrv_sample_consumer"
UDRV_MODULE_PATH="$mods" "$udrv" insmod udrv_sample_params count=2 who=demo -- udrv_sample_consumer
step "Platform devices from a description file, bound to the built-in ramdisk driver" \
     "udrv platform docs/examples/ramdisks.toml"
"$udrv" platform docs/examples/ramdisks.toml
echo
echo "Next: the test VM (VFIO, NVMe, networking) is tracked in the project's issues; see README.md."
