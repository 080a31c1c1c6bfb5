#include "udrv/device.hpp"

#include <algorithm>
#include <optional>

#include "udrv/log.hpp"

namespace udrv {

Device::Device(Bus& bus, std::string name) : bus_(&bus), name_(std::move(name)) {}

Device::~Device() {
    withdraw_all_publications();
    release_all_devres();
}

void Device::withdraw_all_publications() noexcept {
    while (!unpublish_.empty()) {
        DevresAction a = std::move(unpublish_.back());
        unpublish_.pop_back();
        pr_debug("{}: withdraw {}", name_, a.what);
        a.release();
    }
}

void Device::release_all_devres() noexcept {
    // Reverse order of acquisition, like devres_release_all(): later resources may depend on earlier ones.
    while (!devres_.empty()) {
        DevresAction a = std::move(devres_.back());
        devres_.pop_back();
        pr_debug("{}: devres release {}", name_, a.what);
        a.release();
    }
}

std::string device_log_prefix(const Device& dev) {
    if (dev.driver()) return fmt::format("{} {}: ", dev.driver()->name(), dev.name());
    return fmt::format("{}: ", dev.name());
}

Driver::~Driver() {
    if (bus_) bus_->unregister_driver(*this);
}

Bus::Bus(std::string name) : name_(std::move(name)) {}

Bus::~Bus() {
    remove_all_devices();
    for (Driver* d : drivers_) d->bus_ = nullptr;
}

Result<void> Bus::register_driver(Driver& drv) {
    if (drv.bus_) return fail(EBUSY, "driver {} is already registered with bus {}", drv.name(), drv.bus_->name());
    if (find_driver(drv.name())) return fail(EEXIST, "bus {} already has a driver named {}", name_, drv.name());
    drivers_.push_back(&drv);
    drv.bus_ = this;
    for (auto& dev : devices_) {
        if (dev->is_bound()) continue;
        if (const void* id = match(*dev, drv)) {
            auto r = really_probe(*dev, drv, id);
            if (r) {
                dev->unbound_reason_.reset();
            } else if (r.error().code() != ENODEV && r.error().code() != ENXIO) {
                pr_warn("{} {}: probe failed: {}", drv.name(), dev->name(), r.error().to_string());
                dev->unbound_reason_ = std::move(r.error()).context(dev->name());
            }
        }
    }
    return {};
}

void Bus::unregister_driver(Driver& drv) noexcept {
    if (drv.bus_ != this) return;
    for (auto it = devices_.rbegin(); it != devices_.rend(); ++it)
        if ((*it)->driver_ == &drv) unbind(**it);
    std::erase(drivers_, &drv);
    drv.bus_ = nullptr;
}

Result<Device*> Bus::add_device(std::unique_ptr<Device> dev) {
    if (&dev->bus() != this) return fail(EINVAL, "device {} belongs to bus {}, not {}", dev->name(), dev->bus().name(), name_);
    if (find_device(dev->name())) return fail(EEXIST, "bus {} already has a device named {}", name_, dev->name());
    Device* d = dev.get();
    devices_.push_back(std::move(dev));
    (void)attach(*d);  // an unmatched device simply stays unbound
    return d;
}

Result<void> Bus::remove_device(std::string_view name) {
    auto it = std::find_if(devices_.begin(), devices_.end(), [&](auto& d) { return d->name() == name; });
    if (it == devices_.end()) return fail(ENOENT, "bus {} has no device named {}", name_, name);
    unbind(**it);
    devices_.erase(it);
    return {};
}

void Bus::remove_all_devices() noexcept {
    while (!devices_.empty()) {
        unbind(*devices_.back());
        devices_.pop_back();
    }
}

Result<void> Bus::bind(Device& dev, Driver& drv) {
    if (&dev.bus() != this || drv.bus_ != this)
        return fail(EINVAL, "{} and driver {} are not both on bus {}", dev.name(), drv.name(), name_);
    if (dev.driver_) return fail(EBUSY, "{} is already bound to {}", dev.name(), dev.driver_->name());
    const void* id = match(dev, drv);
    if (!id) return fail(ENODEV, "driver {} does not support device {}", drv.name(), dev.name());
    return really_probe(dev, drv, id);
}

Result<void> Bus::attach(Device& dev) {
    if (dev.driver_) return {};
    auto r = try_drivers(dev);
    if (r) dev.unbound_reason_.reset();
    else dev.unbound_reason_ = r.error();
    return r;
}

Result<void> Bus::try_drivers(Device& dev) {
    bool matched = false;
    std::optional<Error> failure;  // the first probe that failed rather than declined (ENODEV/ENXIO)
    for (Driver* drv : drivers_) {
        const void* id = match(dev, *drv);
        if (!id) continue;
        matched = true;
        auto r = really_probe(dev, *drv, id);
        if (r) return {};
        if (r.error().code() != ENODEV && r.error().code() != ENXIO) {
            pr_warn("{} {}: probe failed: {}", drv->name(), dev.name(), r.error().to_string());
            if (!failure) failure = std::move(r.error());
        }
    }
    if (failure) {  // the caller learns why, with the device named once
        if (!failure->message().starts_with(dev.name() + ":")) failure->context(dev.name());
        return std::unexpected(std::move(*failure));
    }
    return fail(ENODEV, "{}: {}", dev.name(), matched ? "every matching driver declined it" : "no driver matches it");
}

Result<void> Bus::really_probe(Device& dev, Driver& drv, const void* id) {
    // The driver is visible during probe so that dev_info() prints "driver name: ...".
    dev.driver_ = &drv;
    auto data = probe(dev, drv, id);
    if (!data) {
        // A failed probe leaves nothing behind: whatever it published or acquired through Bound<> goes now.
        dev.withdraw_all_publications();
        dev.release_all_devres();
        dev.driver_ = nullptr;
        return std::unexpected(std::move(data).error());
    }
    dev.data_ = std::move(*data);
    pr_debug("{} {}: bound", drv.name(), dev.name());
    return {};
}

void Bus::unbind(Device& dev) noexcept {
    if (!dev.driver_) return;
    // Publications first (nobody may enter the driver from here on), then remove() (the driver's own
    // teardown may still use its resources), then devres in reverse.
    dev.withdraw_all_publications();
    dev.data_ = {};
    dev.release_all_devres();
    pr_debug("{} {}: unbound", dev.driver_->name(), dev.name());
    dev.driver_ = nullptr;
}

Device* Bus::find_device(std::string_view name) const noexcept {
    for (auto& d : devices_)
        if (d->name() == name) return d.get();
    return nullptr;
}

Driver* Bus::find_driver(std::string_view name) const noexcept {
    for (Driver* d : drivers_)
        if (d->name() == name) return d;
    return nullptr;
}

std::vector<Device*> Bus::devices() const {
    std::vector<Device*> out;
    for (auto& d : devices_) out.push_back(d.get());
    return out;
}

std::vector<Driver*> Bus::drivers() const { return drivers_; }

}  // namespace udrv
