// Handing PCI devices to vfio-pci and back (like dpdk-devbind.py and SPDK's setup.sh). Refuses, with a
// message that says what to do, when the IOMMU is off, the IOMMU group is not viable, the device is in
// use (a mounted disk, an up network interface), vfio-pci is not loaded, or the caller is not root.
#pragma once

#include <filesystem>
#include <string>

#include "udrv/pci.hpp"
#include "udrv/result.hpp"

namespace udrv::pci {

struct BindOptions {
    std::filesystem::path sysfs = "/sys";           ///< tests point this at a fake tree
    std::filesystem::path mounts = "/proc/mounts";
    int euid = -1;                                  ///< -1: the real effective uid
};

/// Unbinds the device's kernel driver and binds it to vfio-pci. A device already on vfio-pci is left as is.
Result<void> bind_vfio(const Address& addr, const BindOptions& opts = {});
/// Gives the device back to its kernel driver (clears driver_override and reprobes). Returns the name of
/// the driver that took it, or "" if none did.
Result<std::string> unbind_vfio(const Address& addr, const BindOptions& opts = {});

}  // namespace udrv::pci
