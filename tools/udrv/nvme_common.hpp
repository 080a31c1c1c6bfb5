// What the `udrv nvme` commands share: binding the controller a command names (-s), or every NVMe
// controller on vfio-pci when it names none, and finding it and its namespaces through the nvme class.
#pragma once

#include <memory>
#include <string>

#include "session.hpp"
#include "udrv/nvme.hpp"

namespace udrv::tools {

struct NvmeTarget {
    std::unique_ptr<Session> session;
    nvme::Handle controller;
    /// The controller's stable path (its PCI address), for naming its namespaces' block devices.
    const std::string& address() const noexcept { return controller.id().path; }
};

/// Binds and opens the controller at `address`, or (empty) the first NVMe controller on vfio-pci.
Result<NvmeTarget> open_nvme(const std::string& address);

/// Binds every NVMe controller on vfio-pci; the session says which (on kernel drivers, say) it skipped.
Result<std::unique_ptr<Session>> open_all_nvme();

/// Namespace `nsid` of the controller; ENODEV naming the active ones if it is not among them.
Result<nvme::ControllerDevice::NamespaceEntry> find_namespace(const nvme::Handle& c, std::uint32_t nsid);

}  // namespace udrv::tools
