// The platform bus: devices that are registered, not discovered (the kernel's platform_device), from a
// description file or from code. Drivers match by compatible string (like OF/device-tree matching) and
// get their resources by index or by name.
//
//     struct MyDriver {
//         static constexpr std::string_view compatible[] = {"acme,widget"};
//         static udrv::Result<std::unique_ptr<MyDriver>> probe(udrv::Bound<udrv::platform::Device>& dev,
//                                                              std::string_view matched);
//     };
//     UDRV_PLATFORM_DRIVER(MyDriver, .name = "widget", .authors = {"..."}, .license = "GPL");
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "udrv/device.hpp"
#include "udrv/module.hpp"
#include "udrv/result.hpp"

namespace udrv::platform {

/// A memory region the device occupies.
struct MemResource {
    std::string name;
    std::uint64_t start = 0;
    std::uint64_t size = 0;
    std::uint64_t end() const noexcept { return start + size; }  ///< one past the last byte
};

/// An interrupt line the device raises.
struct IrqResource {
    std::string name;
    std::uint32_t number = 0;
};

using Property = std::variant<bool, std::int64_t, double, std::string>;

/// A platform device as described in a file or built in code.
struct DeviceDesc {
    std::string name;
    std::vector<std::string> compatible;  ///< most specific first
    std::vector<MemResource> memory;
    std::vector<IrqResource> irqs;
    std::map<std::string, Property, std::less<>> properties;
    std::string source;  ///< "file.toml:12" where it was described, for messages
};

/// Checks one description on its own: name, compatible, resource sizes, duplicate resource names.
Result<void> validate(const DeviceDesc& d);
/// Checks that `d` can be registered beside `first`: distinct names, no overlapping memory.
Result<void> check_conflicts(const DeviceDesc& first, const DeviceDesc& d);
/// Parses a TOML description (`[[device]]` tables; see docs/platform.md). Errors name `source:line`.
Result<std::vector<DeviceDesc>> parse_description(std::string_view toml, std::string_view source);
Result<std::vector<DeviceDesc>> load_description(const std::filesystem::path& file);

/// A device on the platform bus.
class Device : public udrv::Device {
public:
    const DeviceDesc& desc() const noexcept { return desc_; }

    Result<const MemResource*> memory(std::size_t index) const;
    Result<const MemResource*> memory(std::string_view name) const;
    Result<const IrqResource*> irq(std::size_t index) const;
    Result<const IrqResource*> irq(std::string_view name) const;
    /// Typed property: ENOENT if absent, EINVAL if of another type. T: bool, int64_t, double, std::string.
    template <typename T>
    Result<T> property(std::string_view name) const {
        auto it = desc_.properties.find(name);
        if (it == desc_.properties.end()) return fail(ENOENT, "{}: no property '{}'", this->name(), name);
        if (auto* v = std::get_if<T>(&it->second)) return *v;
        constexpr std::string_view want = std::is_same_v<T, bool>           ? "true or false"
                                          : std::is_same_v<T, std::int64_t> ? "an integer"
                                          : std::is_same_v<T, double>       ? "a number"
                                                                            : "a string in quotes";
        return fail(EINVAL, "{}: property '{}' has the wrong type: it must be {}", this->name(), name, want);
    }
    /// An optional property: `fallback` when absent, EINVAL when given with another type (not the
    /// fallback: `block-size = "4k"` is a mistake to report, not a reason to use 512).
    template <typename T>
    Result<T> property_or(std::string_view name, T fallback) const {
        auto v = property<T>(name);
        if (!v && v.error().code() == ENOENT) return fallback;
        return v;
    }

private:
    friend class Bus;
    Device(udrv::Bus& bus, DeviceDesc desc);
    DeviceDesc desc_;
};

/// A platform driver as the bus sees it; drivers normally use UDRV_PLATFORM_DRIVER.
class Driver : public udrv::Driver {
public:
    Driver(std::string name, std::span<const std::string_view> compatible)
        : udrv::Driver(std::move(name)), compatible_(compatible) {}
    std::span<const std::string_view> compatible() const noexcept { return compatible_; }
    /// The device's first compatible string this driver supports, or nullptr.
    const std::string* match(const DeviceDesc& d) const noexcept;
    virtual Result<detail::DriverData> probe(Bound<Device>& dev, std::string_view matched) = 0;

private:
    std::span<const std::string_view> compatible_;
};

/// Adapts a driver type T (compatible strings + static probe) to the bus. A probe that takes a third
/// argument, `const ThisModule&`, gets its module's parameters, as PCI drivers do.
template <typename T>
class DriverFor final : public Driver {
public:
    explicit DriverFor(ThisModule module)
        : Driver(module.name(), std::span<const std::string_view>(T::compatible)), module_(std::move(module)) {}
    explicit DriverFor(std::string name) : DriverFor(ThisModule(std::move(name), {})) {}
    Result<detail::DriverData> probe(Bound<Device>& dev, std::string_view matched) override {
        return detail::probe_driver<T>(module_, dev, matched);
    }

private:
    ThisModule module_;
};

class Bus final : public udrv::Bus {
public:
    Bus() : udrv::Bus("platform") {}
    ~Bus() override;
    /// Validates and registers a device (binding it if a driver matches). Rejects duplicate names (EEXIST)
    /// and memory that overlaps another device's (EBUSY), naming both.
    Result<Device*> register_device(DeviceDesc desc);
    /// Registers every device of a description; all or nothing.
    Result<std::vector<Device*>> register_devices(std::vector<DeviceDesc> descs);
    Result<void> unregister_device(std::string_view name) { return remove_device(name); }

protected:
    const void* match(const udrv::Device& dev, const udrv::Driver& drv) const override;
    Result<detail::DriverData> probe(udrv::Device& dev, udrv::Driver& drv, const void* id) override;
};

/// The process-wide platform bus that UDRV_PLATFORM_DRIVER modules register with.
Bus& bus();

template <typename T>
class DriverModule {
public:
    static Result<DriverModule> init(const ThisModule& m) {
        DriverModule mod(m);
        UDRV_TRY(bus().register_driver(*mod.driver_));
        return mod;
    }

private:
    explicit DriverModule(const ThisModule& m) : driver_(std::make_unique<DriverFor<T>>(m)) {}
    std::unique_ptr<DriverFor<T>> driver_;
};

/// Aliases "of:N*T*C<compatible>" for each compatible string, like the kernel's OF aliases.
template <typename T>
constexpr auto aliases_of() {
    std::array<detail::FixedString, std::size(T::compatible)> out{};
    for (std::size_t i = 0; i < out.size(); ++i) {
        out[i].append("of:N*T*C");
        out[i].append(T::compatible[i]);
    }
    return out;
}

}  // namespace udrv::platform

#define UDRV_PLATFORM_DRIVER(T, ...) \
    UDRV_MODULE_WITH_ALIASES(::udrv::platform::DriverModule<T>, ::udrv::platform::aliases_of<T>(), __VA_ARGS__)
