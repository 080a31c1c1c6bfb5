#include <sys/eventfd.h>

#include <algorithm>

#include "udrv/log.hpp"
#include "udrv/pci.hpp"

namespace udrv::pci {

bool DeviceId::matches(const DeviceInfo& d) const noexcept {
    return (vendor == kAny || vendor == d.vendor_id) && (device == kAny || device == d.device_id) &&
           (subvendor == kAny || subvendor == d.subsystem_vendor) && (subdevice == kAny || subdevice == d.subsystem_device) &&
           ((class_code ^ d.class_code) & class_mask) == 0;
}

const DeviceId* Driver::match(const DeviceInfo& d) const noexcept {
    for (const DeviceId& id : ids_)
        if (id.matches(d)) return &id;
    return nullptr;
}

Device::Device(Bus& bus, DeviceInfo info) : udrv::Device(bus, info.address.to_string()), info_(std::move(info)) {}

Device::~Device() = default;

Bus::~Bus() { remove_all_devices(); }

Result<std::size_t> Bus::scan(const std::filesystem::path& root) {
    std::vector<Error> problems;
    auto infos = UDRV_TRY(pci::scan(root, &problems));
    for (auto& e : problems) pr_warn("pci: skipping device: {}", e.message());
    std::size_t added = 0;
    for (auto& info : infos) {
        if (find(info.address)) continue;
        UDRV_TRY(add_device(std::make_unique<Device>(*this, std::move(info))));
        ++added;
    }
    return added;
}

Result<Device*> Bus::add_model(DeviceInfo info, std::shared_ptr<hw::PciFunction> fn) {
    auto dev = std::make_unique<Device>(*this, std::move(info));
    dev->model_ = std::move(fn);
    auto* d = UDRV_TRY(add_device(std::move(dev)));
    return static_cast<Device*>(d);
}

Device* Bus::find(const Address& a) const noexcept { return static_cast<Device*>(find_device(a.to_string())); }

const void* Bus::match(const udrv::Device& dev, const udrv::Driver& drv) const {
    // Devices on this bus are pci::Devices (their constructor takes a pci::Bus); a driver of another
    // bus type registered here by mistake simply matches nothing.
    auto* pdrv = dynamic_cast<const Driver*>(&drv);
    const auto& pdev = static_cast<const Device&>(dev);
    const DeviceInfo& info = pdev.info();
    if (claim_ == Claim::vfio_only && info.driver != "vfio-pci" && !pdev.model_) return nullptr;  // a kernel driver owns it
    if (!allow_.empty() && std::find(allow_.begin(), allow_.end(), info.address) == allow_.end()) return nullptr;
    return pdrv ? pdrv->match(info) : nullptr;
}

Result<void> Bus::open_binding(Device& dev) {
    auto b = std::make_unique<Device::Binding>();
    if (dev.model_) {
        b->fn = dev.model_;
    } else {
        if (!dev.info().iommu_group)
            return fail(ENODEV, "{}: no IOMMU group: the IOMMU is off (boot with intel_iommu=on or amd_iommu=on)", dev.name());
        auto container = UDRV_TRY(vfio::Container::shared());
        auto group = UDRV_TRY(container->group(*dev.info().iommu_group));
        b->fn = std::shared_ptr<vfio::Device>(UDRV_TRY(group->open_device(dev.name())));
    }
    b->dma = b->fn->dma_space();
    dev.binding_ = std::move(b);
    return {};
}

Result<detail::DriverData> Bus::probe(udrv::Device& dev, udrv::Driver& drv, const void* id) {
    auto& pdev = static_cast<Device&>(dev);
    Bound<Device> bound(pdev, bound_key());
    if (pdev.model_ || pdev.info().driver == "vfio-pci") {
        UDRV_TRY(open_binding(pdev));
        // Registered first, so released last: after the driver's own managed resources.
        bound.add_action("device access", [&pdev] { pdev.binding_.reset(); });
    }
    return static_cast<Driver&>(drv).probe(bound, *static_cast<const DeviceId*>(id));
}

Result<Fd> Bus::removal_notifier(const Address& a) {
    Device* d = find(a);
    if (!d || !d->binding_) return fail(ENODEV, "{}: not bound to a udrv driver", a.to_string());
    if (UDRV_TRY(d->binding_->fn->irq_count(hw::IrqKind::req)) == 0)
        return fail(ENOTSUP, "{}: the kernel offers no removal notification for it", a.to_string());
    Fd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd) return fail_errno("eventfd");
    const std::int32_t raw = fd.get();
    UDRV_TRY(d->binding_->fn->set_irq_eventfds(hw::IrqKind::req, 0, std::span(&raw, 1)));
    return fd;
}

Bus& bus() {
    static Bus b;
    return b;
}

}  // namespace udrv::pci
