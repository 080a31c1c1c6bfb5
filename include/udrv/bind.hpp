// Handing PCI devices to vfio-pci and back (like dpdk-devbind.py and SPDK's setup.sh). Refuses, with a
// message that says what to do, when the IOMMU is off, the IOMMU group is not viable, the device is in
// use (a mounted disk, an up network interface), vfio-pci is not loaded, the caller is not root, or the
// device is one the machine cannot lose (a host or ISA bridge, a PCI bridge or root port with devices
// behind it, an interrupt controller or timer, the boot display).
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "udrv/pci.hpp"
#include "udrv/result.hpp"

namespace udrv::pci {

struct BindOptions {
    std::filesystem::path sysfs = "/sys";           ///< tests point this at a fake tree
    std::filesystem::path mounts = "/proc/mounts";
    int euid = -1;                                  ///< -1: the real effective uid
};

/// What binding one device did (or would do).
struct BindOutcome {
    Address address;
    std::string previous_driver;  ///< "" when it had none
    bool already = false;         ///< it was on vfio-pci already: nothing was changed
};

/// Checks everything bind_vfio checks, changing nothing.
Result<BindOutcome> check_bind(const Address& addr, const BindOptions& opts = {});
/// Unbinds the device's kernel driver and binds it to vfio-pci. A device already on vfio-pci is left as is.
Result<BindOutcome> bind_vfio(const Address& addr, const BindOptions& opts = {});
/// All or nothing: every device is checked before any is touched; if binding one then fails, the ones
/// this call bound are given back to their drivers, and the error says so.
Result<std::vector<BindOutcome>> bind_vfio_all(std::span<const Address> addrs, const BindOptions& opts = {});
/// Gives the device back to its kernel driver (clears driver_override and reprobes). Returns the name of
/// the driver that took it, or "" if none did.
Result<std::string> unbind_vfio(const Address& addr, const BindOptions& opts = {});

}  // namespace udrv::pci
