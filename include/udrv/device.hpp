// The driver core: buses own devices, drivers register with a bus, the bus matches them and probes.
// Mirrors the Linux driver model (struct bus_type / device / device_driver, devres) with Rust-for-Linux's
// ownership rules: a driver gets a Bound<Dev> in probe, and everything it acquires through that handle
// is released in reverse order when the device is unbound, whether probe failed or remove ran.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "udrv/result.hpp"

namespace udrv {

class Bus;
class Driver;
class ThisModule;

namespace detail {
/// The per-device object a driver's probe returned; destroying it is the driver's remove().
struct DriverData {
    std::unique_ptr<void, void (*)(void*)> object{nullptr, [](void*) {}};
    const std::type_info* type = nullptr;
};

template <typename T>
DriverData make_driver_data(std::unique_ptr<T> p) {
    return DriverData{{p.release(), [](void* q) { delete static_cast<T*>(q); }}, &typeid(T)};
}

/// Runs driver T's static probe for a bus's DriverFor<T>: with the module's parameters as a last
/// argument when the probe takes one (`const ThisModule&`), without them otherwise.
template <typename T, typename... Args>
Result<DriverData> probe_driver(const ThisModule& module, Args&... args) {
    auto r = [&] {
        if constexpr (requires { T::probe(args..., module); }) return T::probe(args..., module);
        else return T::probe(args...);
    }();
    if (!r) return std::unexpected(std::move(r).error());
    return make_driver_data(std::move(*r));
}
}  // namespace detail

/// A device on a bus. Owned by its bus; drivers see it through Bound<...> (in probe) or by reference.
class Device {
public:
    Device(const Device&) = delete;
    Device& operator=(const Device&) = delete;
    virtual ~Device();

    /// Bus-unique name: "0000:00:03.0" on PCI, the registered name on the platform bus.
    const std::string& name() const noexcept { return name_; }
    Bus& bus() const noexcept { return *bus_; }
    /// The driver bound to this device, or nullptr.
    const Driver* driver() const noexcept { return driver_; }
    bool is_bound() const noexcept { return driver_ != nullptr; }
    /// Why the device is not bound after the bus last tried: no driver matches it, every matching
    /// driver declined it, or the first probe's error. Empty while bound and before any attempt.
    const std::optional<Error>& unbound_reason() const noexcept { return unbound_reason_; }
    /// Number of managed resources currently tied to the binding (for diagnostics and tests).
    std::size_t devres_count() const noexcept { return devres_.size(); }
    /// Number of publications (class devices) the binding made, withdrawn first at unbind.
    std::size_t published_count() const noexcept { return unpublish_.size(); }
    /// The bound driver's per-device object if it is a T (the kernel's dev_get_drvdata), else nullptr.
    template <typename T>
    T* driver_data() const noexcept {
        return data_.type && *data_.type == typeid(T) ? static_cast<T*>(data_.object.get()) : nullptr;
    }

protected:
    Device(Bus& bus, std::string name);

private:
    friend class Bus;
    template <typename D> friend class BoundBase;

    struct DevresAction {
        std::string what;
        std::function<void()> release;
    };

    void release_all_devres() noexcept;
    void withdraw_all_publications() noexcept;

    Bus* bus_;
    std::string name_;
    Driver* driver_ = nullptr;
    detail::DriverData data_;
    std::vector<DevresAction> devres_;
    std::vector<DevresAction> unpublish_;  // run before the driver's remove, newest first
    std::optional<Error> unbound_reason_;
};

/// A resource whose lifetime is tied to a device binding (the kernel's Devres<T>). The driver keeps the
/// handle; at unbind the core drops the resource even if the handle is still around, after which
/// access() fails with ENODEV instead of touching a released resource. Not for concurrent use: a
/// device's binding and its Devres handles belong to one thread.
template <typename T>
class Devres {
public:
    Devres() = default;
    /// The resource, or ENODEV once the device has been unbound.
    Result<std::reference_wrapper<T>> access() const {
        if (!slot_ || !slot_->has_value()) return fail(ENODEV, "resource was released: the device is unbound");
        return std::ref(**slot_);
    }
    bool revoked() const noexcept { return !slot_ || !slot_->has_value(); }

private:
    template <typename D> friend class BoundBase;
    explicit Devres(std::shared_ptr<std::optional<T>> s) : slot_(std::move(s)) {}
    std::shared_ptr<std::optional<T>> slot_;
};

/// Key that only buses can make: Bound<D> handles are created by the core, never by drivers.
class BoundKey {
    friend class Bus;
    BoundKey() = default;
};

/// What every Bound<D> offers; buses may specialise Bound<D> to add bus operations (see pci.hpp).
template <typename D>
class BoundBase {
public:
    BoundBase(D& dev, BoundKey) : dev_(&dev) {}
    BoundBase(const BoundBase&) = delete;
    BoundBase& operator=(const BoundBase&) = delete;

    D& device() const noexcept { return *dev_; }
    D* operator->() const noexcept { return dev_; }

    /// Runs `release` when the device is unbound (or probe fails), after the driver's remove and in
    /// reverse order of registration. `what` names the resource in debug logs.
    void add_action(std::string what, std::function<void()> release) const {
        static_cast<Device&>(*dev_).devres_.push_back({std::move(what), std::move(release)});
    }

    /// Runs `withdraw` at unbind (or when probe fails) before the driver's remove and before the managed
    /// resources go, newest first: for what makes the device reachable by others (a class device), so
    /// that nobody calls into a driver that is tearing down. See udrv/classdev.hpp.
    void add_unpublish_action(std::string what, std::function<void()> withdraw) const {
        static_cast<Device&>(*dev_).unpublish_.push_back({std::move(what), std::move(withdraw)});
    }

    /// Moves `value` into a managed slot dropped at unbind; returns a revocable handle to it.
    template <typename T>
    Devres<T> manage(std::string what, T value) const {
        auto slot = std::make_shared<std::optional<T>>(std::move(value));
        add_action(std::move(what), [slot] { slot->reset(); });
        return Devres<T>(slot);
    }

private:
    D* dev_;
};

/// Proof that `Dev` is bound to the driver being called (the Rust `Device<Bound>` typestate).
/// Operations that need a bound device (mapping BARs, DMA, IRQs, managed resources) live on this type.
/// Handed to probe by reference; do not keep it beyond the binding.
template <typename D>
class Bound : public BoundBase<D> {
public:
    using BoundBase<D>::BoundBase;
};

/// A driver: a name plus whatever its bus needs to match and probe (see pci::Driver, platform::Driver).
class Driver {
public:
    Driver(const Driver&) = delete;
    Driver& operator=(const Driver&) = delete;
    virtual ~Driver();

    const std::string& name() const noexcept { return name_; }
    /// The bus this driver is registered with, or nullptr.
    Bus* bus() const noexcept { return bus_; }

protected:
    explicit Driver(std::string name) : name_(std::move(name)) {}

private:
    friend class Bus;
    std::string name_;
    Bus* bus_ = nullptr;
};

/// A bus: owns its devices, keeps the list of registered drivers and binds them.
/// Order is defined: devices in the order they were added (enumeration order), drivers in registration
/// order; a device binds to the first driver that matches it and whose probe succeeds.
class Bus {
public:
    explicit Bus(std::string name);
    Bus(const Bus&) = delete;
    Bus& operator=(const Bus&) = delete;
    /// Unbinds every device (last added first) and drops them.
    virtual ~Bus();

    const std::string& name() const noexcept { return name_; }

    /// Registers a driver and probes every unbound device it matches. A failing probe is logged and
    /// does not fail the registration (as in the kernel); a duplicate driver name is EEXIST.
    Result<void> register_driver(Driver& drv);
    /// Unbinds every device bound to `drv` (last bound first), then forgets the driver.
    void unregister_driver(Driver& drv) noexcept;

    /// Adds a device and binds it to the first matching driver. Duplicate name: EEXIST.
    Result<Device*> add_device(std::unique_ptr<Device> dev);
    /// Unbinds (if bound) and drops a device. Unknown name: ENOENT.
    Result<void> remove_device(std::string_view name);
    /// Drops every device (unbinding each).
    void remove_all_devices() noexcept;

    /// Binds `dev` to `drv` explicitly (like writing to a driver's sysfs `bind`): EBUSY if bound,
    /// ENODEV if `drv` does not match `dev`, or the error probe returned.
    Result<void> bind(Device& dev, Driver& drv);
    /// Binds `dev` to the first matching driver whose probe succeeds. When none does: the first probe
    /// failure (with the device's name), or ENODEV if none matches or every match declined (ENODEV/ENXIO).
    Result<void> attach(Device& dev);
    /// Runs the driver's remove (drops its per-device data), then releases managed resources in
    /// reverse order. No-op if unbound.
    void unbind(Device& dev) noexcept;

    Device* find_device(std::string_view name) const noexcept;
    Driver* find_driver(std::string_view name) const noexcept;
    std::vector<Device*> devices() const;
    std::vector<Driver*> drivers() const;

protected:
    /// Does `drv` handle `dev`? Returns an opaque match (e.g. the ID-table entry) or nullptr.
    virtual const void* match(const Device& dev, const Driver& drv) const = 0;
    /// Calls the driver's probe with a Bound handle; returns the driver's per-device data.
    virtual Result<detail::DriverData> probe(Device& dev, Driver& drv, const void* id) = 0;
    static BoundKey bound_key() noexcept { return {}; }

private:
    Result<void> really_probe(Device& dev, Driver& drv, const void* id);
    Result<void> try_drivers(Device& dev);  // attach() without recording its outcome

    std::string name_;
    std::vector<std::unique_ptr<Device>> devices_;
    std::vector<Driver*> drivers_;
};

}  // namespace udrv
