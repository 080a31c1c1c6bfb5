// The PCI bus: enumeration from sysfs, config-space parsing, ID tables and PCI drivers.
//
// A PCI driver is a type with an ID table and a probe returning its per-device state; its destructor is
// remove():
//
//     struct MyDriver {
//         static constexpr udrv::pci::DeviceId ids[] = {udrv::pci::DeviceId::vendor_device(0x1234, 0x11e8)};
//         static udrv::Result<std::unique_ptr<MyDriver>> probe(udrv::Bound<udrv::pci::Device>& dev,
//                                                              const udrv::pci::DeviceId& id);
//     };
//     UDRV_PCI_DRIVER(MyDriver, .name = "my_driver", .authors = {"..."}, .description = "...", .license = "GPL");
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "udrv/device.hpp"
#include "udrv/dma.hpp"
#include "udrv/irq.hpp"
#include "udrv/mmio.hpp"
#include "udrv/module.hpp"
#include "udrv/result.hpp"
#include "udrv/vfio.hpp"

namespace udrv::pci {

/// Domain:bus:device.function, e.g. 0000:00:03.0.
struct Address {
    std::uint32_t domain = 0;
    std::uint8_t bus = 0, device = 0, function = 0;

    /// Parses "DDDD:BB:DD.F" (or "BB:DD.F", domain 0). Rejects device > 31, function > 7.
    static Result<Address> parse(std::string_view s);
    std::string to_string() const;
    auto operator<=>(const Address&) const = default;
};

/// One BAR from the sysfs `resource` file.
struct Bar {
    unsigned index = 0;
    std::uint64_t start = 0;
    std::uint64_t size = 0;
    bool io = false;            ///< I/O port space rather than memory
    bool is_64bit = false;
    bool prefetchable = false;
};

/// Standard capability IDs (PCI Local Bus 3.0 / PCIe base spec).
enum CapId : std::uint8_t {
    kCapPm = 0x01, kCapVpd = 0x03, kCapMsi = 0x05, kCapVendor = 0x09, kCapSubsystem = 0x0d, kCapExpress = 0x10,
    kCapMsix = 0x11, kCapSata = 0x12, kCapAf = 0x13,
};

struct MsixCap {
    std::uint16_t table_size = 0;   ///< number of vectors (N+1 from the control word)
    std::uint8_t table_bir = 0;
    std::uint32_t table_offset = 0;
    std::uint8_t pba_bir = 0;
    std::uint32_t pba_offset = 0;
    bool enabled = false, function_masked = false;
};

struct MsiCap {
    std::uint8_t vectors_capable = 1, vectors_enabled = 1;
    bool is_64bit = false, per_vector_mask = false, enabled = false;
};

struct ExpressCap {
    std::uint8_t version = 0, port_type = 0, interrupt_message = 0;
    bool slot = false;
};

/// virtio 1.x vendor capability (struct virtio_pci_cap): where a config structure lives.
struct VirtioCap {
    std::uint8_t cfg_type = 0;      ///< 1 common, 2 notify, 3 ISR, 4 device, 5 PCI cfg access, 8 shared memory
    std::uint8_t bar = 0;
    std::uint32_t offset = 0, length = 0;
    std::optional<std::uint32_t> notify_multiplier;  ///< cfg_type 2 only
};

/// One entry of the standard capability list.
struct Capability {
    std::uint16_t offset = 0;
    std::uint8_t id = 0;
    std::optional<std::uint8_t> pm_version;
    std::optional<MsiCap> msi;
    std::optional<MsixCap> msix;
    std::optional<ExpressCap> express;
    std::optional<std::uint8_t> vendor_length;  ///< vendor-specific: its length byte
    std::optional<VirtioCap> virtio;            ///< vendor-specific on a virtio device (vendor 1af4)
};

/// One entry of the extended (PCIe, offset >= 0x100) capability list.
struct ExtCapability {
    std::uint16_t offset = 0;
    std::uint16_t id = 0;
    std::uint8_t version = 0;
};

/// A parsed configuration space. The bytes come from the device and are untrusted: the capability
/// walks stop at loops, out-of-range pointers and truncation, and record what was wrong in `problems`.
struct ConfigSpace {
    std::vector<std::uint8_t> bytes;
    std::uint16_t vendor_id = 0, device_id = 0, command = 0, status = 0;
    std::uint8_t revision = 0, header_type = 0, interrupt_pin = 0;
    std::uint32_t class_code = 0;  ///< base:sub:prog-if, 24 bits
    std::uint16_t subsystem_vendor = 0, subsystem_device = 0;  ///< header type 0 (or via capability on bridges)
    bool multifunction = false;
    std::uint8_t primary_bus = 0, secondary_bus = 0, subordinate_bus = 0;  ///< header type 1
    std::vector<Capability> caps;
    std::vector<ExtCapability> ext_caps;
    std::vector<std::string> problems;

    /// Parses `bytes` (at least the 64-byte header; 256 for capabilities, 4096 for extended ones).
    /// Fails only when not even the header is there; everything past it degrades into `problems`.
    static Result<ConfigSpace> parse(std::vector<std::uint8_t> bytes);

    const Capability* find_cap(std::uint8_t id) const noexcept;
    /// Every capability with this id (virtio devices have several vendor-specific ones).
    std::vector<const Capability*> find_caps(std::uint8_t id) const;
    const ExtCapability* find_ext_cap(std::uint16_t id) const noexcept;
};

/// Everything known about a PCI function from sysfs.
struct DeviceInfo {
    Address address;
    std::filesystem::path sysfs_path;
    std::uint16_t vendor_id = 0, device_id = 0;
    std::uint16_t subsystem_vendor = 0, subsystem_device = 0;
    std::uint32_t class_code = 0;
    std::uint8_t revision = 0;
    std::vector<Bar> bars;                 ///< only populated (non-empty) BARs 0..5 and the ROM (index 6)
    std::optional<std::string> driver;     ///< bound kernel driver, if any
    std::optional<unsigned> iommu_group;   ///< absent when the IOMMU is off
    int numa_node = -1;
    std::optional<unsigned> irq;           ///< legacy interrupt line the kernel routed (sysfs `irq`)
    ConfigSpace config;

    std::uint8_t base_class() const noexcept { return static_cast<std::uint8_t>(class_code >> 16); }
    std::uint8_t sub_class() const noexcept { return static_cast<std::uint8_t>(class_code >> 8); }
    std::uint8_t prog_if() const noexcept { return static_cast<std::uint8_t>(class_code); }
};

/// The device's modalias as the kernel writes it (sysfs `modalias`), for matching module aliases:
/// "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02".
std::string modalias(const DeviceInfo& d);

/// Default sysfs location of PCI devices.
inline constexpr std::string_view kSysfsDevices = "/sys/bus/pci/devices";

/// Reads one device directory (e.g. /sys/bus/pci/devices/0000:00:03.0).
Result<DeviceInfo> read_device(const std::filesystem::path& dir);
/// Reads every device under `root`, sorted by address. A device that fails to read (vanished,
/// malformed) is reported through `problems` (if given) and skipped, so one bad device does not hide
/// the others. A missing root is an error.
Result<std::vector<DeviceInfo>> scan(const std::filesystem::path& root = kSysfsDevices,
                                     std::vector<Error>* problems = nullptr);

/// Names from the pci.ids database.
class IdDatabase {
public:
    /// Standard locations: $UDRV_PCI_IDS, /usr/share/misc/pci.ids, /usr/share/hwdata/pci.ids, /usr/share/pci.ids.
    static std::vector<std::filesystem::path> default_paths();
    static Result<IdDatabase> load(const std::filesystem::path& file);
    /// Parses pci.ids text. Lines it cannot read are skipped, as pciutils does.
    static IdDatabase parse(std::string_view text);
    /// First readable default path; an empty database (numbers only) if none.
    static IdDatabase load_default();

    const std::string* vendor(std::uint16_t v) const;
    const std::string* device(std::uint16_t v, std::uint16_t d) const;
    const std::string* subsystem(std::uint16_t v, std::uint16_t d, std::uint16_t sv, std::uint16_t sd) const;
    const std::string* class_name(std::uint8_t c) const;
    const std::string* subclass_name(std::uint8_t c, std::uint8_t s) const;
    const std::string* prog_if_name(std::uint8_t c, std::uint8_t s, std::uint8_t p) const;
    bool empty() const noexcept;

    // Formatted as `lspci -nn` prints them.
    std::string describe_class(std::uint16_t cls) const;                         ///< "Ethernet controller [0200]"
    std::string describe_device(std::uint16_t v, std::uint16_t d) const;         ///< "Red Hat, Inc. Virtio ... [1af4:1041]"
    std::string describe_subsystem(std::uint16_t v, std::uint16_t d, std::uint16_t sv, std::uint16_t sd) const;

private:
    struct Tables;
    std::shared_ptr<const Tables> t_;
};

/// One ID-table entry. Fields left at kAny match anything; class matching uses (class ^ id.class) & mask.
struct DeviceId {
    static constexpr std::uint32_t kAny = 0xffffffff;
    std::uint32_t vendor = kAny, device = kAny, subvendor = kAny, subdevice = kAny;
    std::uint32_t class_code = 0, class_mask = 0;
    std::uintptr_t driver_data = 0;

    static constexpr DeviceId vendor_device(std::uint16_t v, std::uint16_t d, std::uintptr_t data = 0) {
        return DeviceId{v, d, kAny, kAny, 0, 0, data};
    }
    /// Matches a class code: class_code 0x010802 with mask 0xffffff = NVMe.
    static constexpr DeviceId by_class(std::uint32_t cls, std::uint32_t mask, std::uintptr_t data = 0) {
        return DeviceId{kAny, kAny, kAny, kAny, cls, mask, data};
    }
    bool matches(const DeviceInfo& d) const noexcept;

    /// Module alias like the kernel's: "pci:v00001234d000011E8sv*sd*bc*sc*i*".
    constexpr detail::FixedString alias() const {
        detail::FixedString s;
        auto field = [&](std::string_view tag, std::uint32_t v) {
            s.append(tag);
            if (v == kAny) s.push('*'); else s.append_hex(v, 8);
        };
        s.append("pci:");
        field("v", vendor); field("d", device); field("sv", subvendor); field("sd", subdevice);
        auto cls = [&](std::string_view tag, unsigned shift) {
            s.append(tag);
            if (((class_mask >> shift) & 0xff) == 0xff) s.append_hex((class_code >> shift) & 0xff, 2); else s.push('*');
        };
        cls("bc", 16); cls("sc", 8); cls("i", 0);
        return s;
    }
};

class Bus;

/// A PCI function on the udrv PCI bus.
class Device : public udrv::Device {
public:
    Device(Bus& bus, DeviceInfo info);
    ~Device() override;
    const DeviceInfo& info() const noexcept { return info_; }
    const Address& address() const noexcept { return info_.address; }

private:
    friend class Bus;
    friend class udrv::Bound<Device>;
    // What a binding holds to reach the hardware (VFIO, or a model); opened before probe, dropped after
    // the driver's managed resources.
    struct Binding {
        std::shared_ptr<hw::PciFunction> fn;
        std::map<unsigned, std::unique_ptr<hw::BarMapping>> bars;
        std::shared_ptr<dma::Space> dma;
        std::uint64_t dma_limit = UINT64_MAX;
    };
    DeviceInfo info_;
    std::shared_ptr<hw::PciFunction> model_;  // a device model the bus was given (tests): used instead of VFIO
    std::unique_ptr<Binding> binding_;
};

}  // namespace udrv::pci

namespace udrv {

/// A PCI device bound to the calling driver: BARs, config space, DMA and interrupts live here.
/// Everything it hands out is valid until the device is unbound; DMA objects and IRQ vectors are owned
/// by the driver and must be dropped in its remove (its destructor), before the binding goes.
template <>
class Bound<pci::Device> : public BoundBase<pci::Device> {
public:
    using BoundBase::BoundBase;

    /// Maps BAR `index` and returns a window of SIZE bytes with compile-time checked offsets. Fails
    /// if the BAR is smaller than SIZE ("0000:00:03.0: BAR0 is 16 KiB, driver needs 32 KiB").
    template <std::size_t SIZE>
    Result<Mmio<SIZE>> map_bar(unsigned index) const {
        const hw::BarMapping* bar = UDRV_TRY(map_bar_raw(index, SIZE));
        return detail::MmioFactory::make<SIZE>(*bar);
    }
    /// Lets the device master the bus (DMA and MSI); VFIO leaves it off.
    Result<void> enable_bus_master() const;

    Result<std::uint8_t> read_config8(std::uint32_t offset) const;
    Result<std::uint16_t> read_config16(std::uint32_t offset) const;
    Result<std::uint32_t> read_config32(std::uint32_t offset) const;
    Result<void> write_config16(std::uint32_t offset, std::uint16_t v) const;
    Result<void> write_config32(std::uint32_t offset, std::uint32_t v) const;

    /// Limits this device's DMA addresses to `bits` bits (the kernel's dma_set_mask); 64 = no limit.
    Result<void> set_dma_mask(unsigned bits) const;
    /// An allocator the driver may keep to allocate DMA memory after probe (honours the DMA mask set
    /// before it was taken).
    Result<dma::Allocator> dma() const;
    /// `count` objects of T in DMA memory the device can reach.
    template <typename T>
    Result<dma::Coherent<T>> alloc_coherent(std::size_t count = 1) const {
        dma::Region r = UDRV_TRY(alloc_dma(sizeof(T) * count));
        return dma::Coherent<T>(std::move(r), count);
    }
    Result<dma::Region> alloc_dma(std::size_t bytes) const;
    Result<dma::Pool> create_dma_pool(std::size_t buffer_size, std::uint32_t count) const;
    /// Maps the caller's page-aligned memory for DMA (zero-copy I/O from application buffers).
    Result<dma::Streaming> map_streaming(std::span<std::byte> memory) const;

    /// Enables `count` vectors of `kind` with eventfds (pci_alloc_irq_vectors + request_irq).
    Result<irq::Vectors> alloc_irq_vectors(irq::IrqKind kind, unsigned count) const;
    /// The best the device offers for `count` vectors: MSI-X, then MSI, then INTx (count 1).
    Result<irq::Vectors> alloc_irq_vectors_any(unsigned count) const;

private:
    Result<const hw::BarMapping*> map_bar_raw(unsigned index, std::size_t min_size) const;
    Result<pci::Device::Binding*> binding() const;
};

}  // namespace udrv

namespace udrv::pci {

/// A PCI driver as the bus sees it. Drivers normally use UDRV_PCI_DRIVER / DriverFor<T> instead.
class Driver : public udrv::Driver {
public:
    Driver(std::string name, std::span<const DeviceId> ids) : udrv::Driver(std::move(name)), ids_(ids) {}
    std::span<const DeviceId> id_table() const noexcept { return ids_; }
    /// The first ID-table entry matching `d`, or nullptr.
    const DeviceId* match(const DeviceInfo& d) const noexcept;
    virtual Result<detail::DriverData> probe(Bound<Device>& dev, const DeviceId& id) = 0;

private:
    std::span<const DeviceId> ids_;
};

/// Adapts a driver type T (ids + static probe returning unique_ptr<T>) to the bus. A probe that takes
/// a third argument, `const ThisModule&`, gets its module's parameters (the kernel's module_param).
template <typename T>
class DriverFor final : public Driver {
public:
    explicit DriverFor(ThisModule module) : Driver(module.name(), std::span<const DeviceId>(T::ids)), module_(std::move(module)) {}
    explicit DriverFor(std::string name) : DriverFor(ThisModule(std::move(name), {})) {}
    Result<detail::DriverData> probe(Bound<Device>& dev, const DeviceId& id) override {
        return detail::probe_driver<T>(module_, dev, id);
    }

private:
    ThisModule module_;
};

/// Which devices udrv drivers may bind.
enum class Claim {
    vfio_only,  ///< only devices bound to vfio-pci (the default: never fight a kernel driver)
    any,        ///< any device (fixture trees and tests; bound operations then fail without VFIO)
};

/// The PCI bus. Devices come from scan(); the process-wide instance is udrv::pci::bus().
class Bus final : public udrv::Bus {
public:
    Bus() : udrv::Bus("pci") {}
    ~Bus() override;
    void set_claim(Claim c) noexcept { claim_ = c; }
    /// Only these devices may be bound to drivers (DPDK's `-a`); empty, the default, allows all that
    /// the claim policy does. Lets several udrv processes share a machine, each driving its own
    /// devices: a device another process holds is never probed. Affects later matches only.
    void allow_only(std::vector<Address> list) { allow_ = std::move(list); }
    void allow(const Address& a) { allow_.push_back(a); }
    /// Adds every device found under `root` not yet on the bus; returns how many were added.
    Result<std::size_t> scan(const std::filesystem::path& root = kSysfsDevices);
    /// Adds a device reached through `fn` instead of VFIO (a device model in memory, for tests and
    /// benchmarks), and binds it to the first matching driver whatever the claim policy says.
    Result<Device*> add_model(DeviceInfo info, std::shared_ptr<hw::PciFunction> fn);
    Device* find(const Address& a) const noexcept;
    /// An eventfd that becomes readable when the kernel wants the bound device `a` back (it is being
    /// hot-removed, or unbound from vfio-pci): the owner then unbinds it (remove_device), which closes
    /// the VFIO device and lets the kernel go on. ENOTSUP where the device has no such notification
    /// (device models; kernels without VFIO's request interrupt).
    Result<Fd> removal_notifier(const Address& a);

protected:
    const void* match(const udrv::Device& dev, const udrv::Driver& drv) const override;
    Result<detail::DriverData> probe(udrv::Device& dev, udrv::Driver& drv, const void* id) override;

private:
    Result<void> open_binding(Device& dev);
    Claim claim_ = Claim::vfio_only;
    std::vector<Address> allow_;
};

/// The process-wide PCI bus that UDRV_PCI_DRIVER modules register with.
Bus& bus();

/// Module glue for UDRV_PCI_DRIVER: init registers the driver, exit (destructor) unregisters it.
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
    std::unique_ptr<DriverFor<T>> driver_;  // its destructor unregisters from the bus
};

/// Aliases for every entry of T's ID table.
template <typename T>
constexpr auto aliases_of() {
    std::array<detail::FixedString, std::size(T::ids)> out{};
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = T::ids[i].alias();
    return out;
}

}  // namespace udrv::pci

/// Declares a module holding PCI driver T (see the top of this header). The module's name is the driver's.
#define UDRV_PCI_DRIVER(T, ...) \
    UDRV_MODULE_WITH_ALIASES(::udrv::pci::DriverModule<T>, ::udrv::pci::aliases_of<T>(), __VA_ARGS__)
