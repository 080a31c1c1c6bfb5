#include "udrv/platform.hpp"

namespace udrv::platform {

Device::Device(udrv::Bus& bus, DeviceDesc desc) : udrv::Device(bus, desc.name), desc_(std::move(desc)) {}

// A missing resource is ENOENT, not ENXIO: a driver that matched the device and lacks a resource it
// needs has failed (the description is wrong), where ENXIO would count as declining the device.
Result<const MemResource*> Device::memory(std::size_t index) const {
    if (index >= desc_.memory.size())
        return fail(ENOENT, "{}: no memory resource {} (it has {})", name(), index, desc_.memory.size());
    return &desc_.memory[index];
}

Result<const MemResource*> Device::memory(std::string_view n) const {
    for (auto& m : desc_.memory)
        if (m.name == n) return &m;
    return fail(ENOENT, "{}: no memory resource named '{}'", name(), n);
}

Result<const IrqResource*> Device::irq(std::size_t index) const {
    if (index >= desc_.irqs.size()) return fail(ENOENT, "{}: no irq resource {} (it has {})", name(), index, desc_.irqs.size());
    return &desc_.irqs[index];
}

Result<const IrqResource*> Device::irq(std::string_view n) const {
    for (auto& i : desc_.irqs)
        if (i.name == n) return &i;
    return fail(ENOENT, "{}: no irq resource named '{}'", name(), n);
}

const std::string* Driver::match(const DeviceDesc& d) const noexcept {
    // The device's list is most specific first, so its order decides (as OF matching does).
    for (const std::string& c : d.compatible)
        for (std::string_view mine : compatible_)
            if (c == mine) return &c;
    return nullptr;
}

Bus::~Bus() { remove_all_devices(); }

Result<Device*> Bus::register_device(DeviceDesc desc) {
    UDRV_TRY(validate(desc));
    for (udrv::Device* d : devices()) UDRV_TRY(check_conflicts(static_cast<Device*>(d)->desc(), desc));
    auto* dev = UDRV_TRY(add_device(std::unique_ptr<Device>(new Device(*this, std::move(desc)))));
    return static_cast<Device*>(dev);
}

Result<std::vector<Device*>> Bus::register_devices(std::vector<DeviceDesc> descs) {
    std::vector<Device*> added;
    for (auto& d : descs) {
        auto r = register_device(std::move(d));
        if (!r) {
            for (auto it = added.rbegin(); it != added.rend(); ++it) (void)remove_device((*it)->name());
            return std::unexpected(std::move(r).error());
        }
        added.push_back(*r);
    }
    return added;
}

const void* Bus::match(const udrv::Device& dev, const udrv::Driver& drv) const {
    auto* pdrv = dynamic_cast<const Driver*>(&drv);
    return pdrv ? pdrv->match(static_cast<const Device&>(dev).desc()) : nullptr;
}

Result<detail::DriverData> Bus::probe(udrv::Device& dev, udrv::Driver& drv, const void* id) {
    Bound<Device> bound(static_cast<Device&>(dev), bound_key());
    return static_cast<Driver&>(drv).probe(bound, *static_cast<const std::string*>(id));
}

Bus& bus() {
    static Bus b;
    return b;
}

}  // namespace udrv::platform
