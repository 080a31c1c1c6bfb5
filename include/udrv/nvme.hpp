// The nvme class: NVMe controllers as their driver publishes them (Linux's /dev/nvmeN), for what is
// about the controller rather than a namespace's blocks: Identify data, reset, the namespaces and the
// block devices they are published as. Tools (`udrv nvme`) and exports reach controllers only this
// way; a namespace's data goes through udrv/block.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "udrv/classdev.hpp"
#include "udrv/nvme_spec.hpp"
#include "udrv/result.hpp"

namespace udrv::nvme {

/// What an NVMe driver's controller offers the class.
class ControllerDevice {
public:
    virtual ~ControllerDevice() = default;
    virtual const ControllerInfo& info() const = 0;
    /// Raw Identify data (4096 bytes): CNS 1 controller, CNS 0 namespace `nsid`.
    virtual Result<std::vector<std::byte>> identify(std::uint32_t cns, std::uint32_t nsid) = 0;
    /// Resets the controller (disable, re-enable, restore features and queues), as after a fault.
    virtual Result<void> reset() = 0;
    /// Resets so far, requested or after faults.
    virtual unsigned resets() const = 0;
    struct NamespaceEntry {
        NamespaceInfo info;
        std::string block_device;  ///< the block class name it is published as ("nvme0n1")
    };
    /// The active namespaces the driver took (validated; see the driver's log for any it skipped).
    virtual std::vector<NamespaceEntry> namespaces() const = 0;
};

/// A controller opened through the class: forwards until the controller is unbound, ENODEV after.
class Handle {
public:
    const ClassDeviceInfo& id() const noexcept { return id_; }
    /// Identify Controller as parsed at probe (it does not change while bound).
    const ControllerInfo& info() const noexcept { return info_; }
    bool alive() const noexcept { return !object_->revoked(); }
    Result<std::vector<std::byte>> identify(std::uint32_t cns, std::uint32_t nsid);
    Result<void> reset();
    Result<unsigned> resets() const;
    Result<std::vector<ControllerDevice::NamespaceEntry>> namespaces() const;

private:
    friend Result<Handle> open(std::string_view);
    Handle(ClassDeviceInfo id, ControllerInfo info, std::shared_ptr<Revocable<ControllerDevice>> o)
        : id_(std::move(id)), info_(std::move(info)), object_(std::move(o)) {}
    std::unexpected<Error> gone() const;
    ClassDeviceInfo id_;
    ControllerInfo info_;
    std::shared_ptr<Revocable<ControllerDevice>> object_;
};

/// Opens a published controller by name ("nvme0") or PCI address ("0000:00:04.0", "00:04.0").
Result<Handle> open(std::string_view name_or_path);

struct Listing {
    ClassDeviceInfo id;
    ControllerInfo info;
    std::vector<ControllerDevice::NamespaceEntry> namespaces;
};
std::vector<Listing> list();

namespace detail {
udrv::detail::ClassRegistry<ControllerDevice>& registry();
}
/// For drivers: publishes a controller ("nvme0", "nvme1", ...) at `path` while `bound` stays bound.
template <typename D>
Result<std::string> publish(const BoundBase<D>& bound, ControllerDevice& dev, std::string path) {
    return udrv::detail::publish(detail::registry(), bound, dev, ClassName::next("nvme"), std::move(path), "nvme");
}

}  // namespace udrv::nvme
