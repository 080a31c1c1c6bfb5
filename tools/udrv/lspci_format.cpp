#include "lspci_format.hpp"

namespace udrv::tools {
namespace {

char flag(bool b) { return b ? '+' : '-'; }

std::string hex4(std::uint32_t v) { return fmt::format("{:04x}", v); }

std::uint16_t cfg16(const pci::DeviceInfo& d, std::size_t off) {
    const auto& b = d.config.bytes;
    return off + 1 < b.size() ? static_cast<std::uint16_t>(b[off] | b[off + 1] << 8) : 0;
}

std::uint32_t cfg32(const pci::DeviceInfo& d, std::size_t off) {
    return static_cast<std::uint32_t>(cfg16(d, off)) | static_cast<std::uint32_t>(cfg16(d, off + 2)) << 16;
}

std::string express_type(const pci::ExpressCap& e) {
    switch (e.port_type) {
        case 0: return "Endpoint";
        case 1: return "Legacy Endpoint";
        case 4: return fmt::format("Root Port (Slot{})", flag(e.slot));
        case 5: return "Upstream Port";
        case 6: return fmt::format("Downstream Port (Slot{})", flag(e.slot));
        case 7: return "PCI-Express to PCI/PCI-X Bridge";
        case 8: return "PCI/PCI-X to PCI-Express Bridge";
        case 9: return "Root Complex Integrated Endpoint";
        case 10: return "Root Complex Event Collector";
        default: return fmt::format("Unknown type {}", e.port_type);
    }
}

const char* virtio_cfg_name(std::uint8_t t) {
    switch (t) {
        case 1: return "CommonCfg";
        case 2: return "Notify";
        case 3: return "ISR";
        case 4: return "DeviceCfg";
        case 8: return "SharedMemory";
        default: return "<unknown>";
    }
}

std::string cap_name(std::uint8_t id) {
    switch (id) {
        case pci::kCapPm: return "Power Management";
        case pci::kCapVpd: return "Vital Product Data";
        case pci::kCapMsi: return "MSI";
        case pci::kCapVendor: return "Vendor Specific Information";
        case pci::kCapSubsystem: return "Subsystem";
        case pci::kCapExpress: return "Express";
        case pci::kCapMsix: return "MSI-X";
        case pci::kCapSata: return "SATA HBA";
        case pci::kCapAf: return "PCI Advanced Features";
        default: return fmt::format("Capability {:#04x}", id);
    }
}

}  // namespace

std::string format_size(std::uint64_t x) {
    static constexpr const char* suffix[] = {"", "K", "M", "G", "T"};
    unsigned i = 0;
    for (; i < 4 && x && x % 1024 == 0; ++i) x /= 1024;
    return fmt::format("{}{}", x, suffix[i]);
}

std::string lspci_header(const pci::DeviceInfo& d, const pci::IdDatabase& ids, bool verbose) {
    std::string s = fmt::format("{} {}: {}", d.address.to_string(), ids.describe_class(static_cast<std::uint16_t>(d.class_code >> 8)),
                                ids.describe_device(d.vendor_id, d.device_id));
    if (d.revision) s += fmt::format(" (rev {:02x})", d.revision);
    if (verbose) {
        const std::string* pif = ids.prog_if_name(d.base_class(), d.sub_class(), d.prog_if());
        if (d.prog_if() || pif) s += fmt::format(" (prog-if {:02x}{})", d.prog_if(), pif ? " [" + *pif + "]" : "");
    }
    return s;
}

std::string capability_text(const pci::DeviceInfo& d, const pci::Capability& c, const pci::IdDatabase& ids) {
    if (c.pm_version) return fmt::format("Power Management version {}", *c.pm_version);
    if (c.msi)
        return fmt::format("MSI: Enable{} Count={}/{} Maskable{} 64bit{}", flag(c.msi->enabled), c.msi->vectors_enabled,
                           c.msi->vectors_capable, flag(c.msi->per_vector_mask), flag(c.msi->is_64bit));
    if (c.msix) return fmt::format("MSI-X: Enable{} Count={} Masked{}", flag(c.msix->enabled), c.msix->table_size, flag(c.msix->function_masked));
    if (c.express) return fmt::format("Express (v{}) {}, MSI {:02x}", c.express->version, express_type(*c.express), c.express->interrupt_message);
    if (c.id == pci::kCapVendor) {
        if (c.virtio) return fmt::format("Vendor Specific Information: VirtIO: {}", virtio_cfg_name(c.virtio->cfg_type));
        if (d.vendor_id == 0x8086) {
            std::uint16_t w = cfg16(d, c.offset + 2u);
            unsigned type = w >> 12, version = (w >> 8) & 0xf;
            if (type == 0) return fmt::format("Vendor Specific Information: Intel Capabilities v{}", version);
            return type == 1 ? "Vendor Specific Information: Intel Feature Detection" : "Vendor Specific Information: Intel <unknown>";
        }
        return fmt::format("Vendor Specific Information: Len={:02x} <?>", c.vendor_length.value_or(0));
    }
    if (c.id == pci::kCapSata) {
        std::uint32_t rev = cfg16(d, c.offset + 2u) & 0xff, bars = cfg32(d, c.offset + 4u);
        std::string t = fmt::format("SATA HBA v{}.{}", rev >> 4, rev & 0xf);
        unsigned loc = bars & 0xf;
        if (loc >= 4 && loc <= 9) return t + fmt::format(" BAR{} Offset={:08x}", loc - 4, (bars >> 4) & 0xfffff);  // lspci prints the raw field
        return t + (loc == 15 ? " InCfgSpace" : fmt::format(" BAR??{}", loc));
    }
    if (c.id == pci::kCapSubsystem)
        return "Subsystem: " + ids.describe_subsystem(d.vendor_id, d.device_id, d.config.subsystem_vendor, d.config.subsystem_device);
    return cap_name(c.id);
}

std::string ext_capability_text(const pci::DeviceInfo& d, const pci::ExtCapability& c) {
    switch (c.id) {
        case 0x01: return "Advanced Error Reporting";
        case 0x02: return "Virtual Channel";
        case 0x03: {
            std::uint32_t lo = cfg32(d, c.offset + 4u), hi = cfg32(d, c.offset + 8u);
            return fmt::format("Device Serial Number {:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}", hi >> 24, (hi >> 16) & 0xff,
                               (hi >> 8) & 0xff, hi & 0xff, lo >> 24, (lo >> 16) & 0xff, (lo >> 8) & 0xff, lo & 0xff);
        }
        case 0x04: return "Power Budgeting <?>";
        case 0x0b: return "Vendor Specific Information";
        case 0x0d: return "Access Control Services";
        case 0x0e: return "Alternative Routing-ID Interpretation (ARI)";
        case 0x0f: return "Address Translation Service (ATS)";
        case 0x10: return "Single Root I/O Virtualization (SR-IOV)";
        case 0x13: return "Page Request Interface (PRI)";
        case 0x17: return "Transaction Processing Hints";
        case 0x18: return "Latency Tolerance Reporting";
        case 0x19: return "Secondary PCI Express";
        case 0x1e: return "L1 PM Substates";
        default: return fmt::format("Extended Capability ID {:#x}", c.id);
    }
}

std::string format_device(const pci::DeviceInfo& d, const pci::IdDatabase& ids, bool verbose) {
    std::string s = lspci_header(d, ids, verbose) + "\n";
    if (!verbose) return s;
    if ((d.config.header_type & 0x7f) == 0 && d.subsystem_vendor && d.subsystem_vendor != 0xffff)
        s += "\tSubsystem: " + ids.describe_subsystem(d.vendor_id, d.device_id, d.subsystem_vendor, d.subsystem_device) + "\n";
    if (d.numa_node >= 0) s += fmt::format("\tNUMA node: {}\n", d.numa_node);
    s += d.iommu_group ? fmt::format("\tIOMMU group: {}\n", *d.iommu_group) : "\tIOMMU group: none (IOMMU off: VFIO cannot use this device)\n";
    for (const pci::Bar& b : d.bars) {
        std::string what = b.index == 6 ? "Expansion ROM" : fmt::format("Region {}", b.index);
        if (b.io) s += fmt::format("\t{}: I/O ports at {:04x} [size={}]\n", what, b.start, format_size(b.size));
        else if (b.index == 6) s += fmt::format("\t{} at {:x} [size={}]\n", what, b.start, format_size(b.size));
        else
            s += fmt::format("\t{}: Memory at {:x} ({}-bit, {}prefetchable) [size={}]\n", what, b.start, b.is_64bit ? 64 : 32,
                             b.prefetchable ? "" : "non-", format_size(b.size));
    }
    for (const pci::Capability& c : d.config.caps) {
        s += fmt::format("\tCapabilities: [{:02x}] {}\n", c.offset, capability_text(d, c, ids));
        if (c.msix)
            s += fmt::format("\t\tVector table: BAR={} offset={:08x}\n\t\tPBA: BAR={} offset={:08x}\n", c.msix->table_bir,
                             c.msix->table_offset, c.msix->pba_bir, c.msix->pba_offset);
        if (c.virtio) {
            s += fmt::format("\t\tBAR={} offset={:08x} size={:08x}", c.virtio->bar, c.virtio->offset, c.virtio->length);
            if (c.virtio->notify_multiplier) s += fmt::format(" multiplier={:08x}", *c.virtio->notify_multiplier);
            s += "\n";
        }
    }
    for (const pci::ExtCapability& c : d.config.ext_caps)
        s += fmt::format("\tCapabilities: [{:03x} v{}] {}\n", c.offset, c.version, ext_capability_text(d, c));
    if (d.config.bytes.size() <= 64) s += "\tCapabilities: <access denied>\n";
    if (d.driver) s += fmt::format("\tKernel driver in use: {}\n", *d.driver);
    for (const std::string& p : d.config.problems) s += fmt::format("\tWarning: {}\n", p);
    return s + "\n";
}

nlohmann::json device_json(const pci::DeviceInfo& d, const pci::IdDatabase& ids) {
    using nlohmann::json;
    auto name = [](const std::string* s) { return s ? json(*s) : json(nullptr); };
    json j = {
        {"address", d.address.to_string()},
        {"vendor_id", hex4(d.vendor_id)},
        {"device_id", hex4(d.device_id)},
        {"subsystem_vendor_id", hex4(d.subsystem_vendor)},
        {"subsystem_device_id", hex4(d.subsystem_device)},
        {"class", fmt::format("{:06x}", d.class_code)},
        {"revision", d.revision},
        {"vendor", name(ids.vendor(d.vendor_id))},
        {"device", name(ids.device(d.vendor_id, d.device_id))},
        {"class_name", ids.describe_class(static_cast<std::uint16_t>(d.class_code >> 8))},
        {"header_type", d.config.header_type & 0x7f},
        {"driver", d.driver ? json(*d.driver) : json(nullptr)},
        {"iommu_group", d.iommu_group ? json(*d.iommu_group) : json(nullptr)},
        {"numa_node", d.numa_node},
        {"config_size", d.config.bytes.size()},
    };
    j["bars"] = json::array();
    for (const pci::Bar& b : d.bars)
        j["bars"].push_back({{"index", b.index}, {"start", b.start}, {"size", b.size}, {"type", b.io ? "io" : "memory"},
                             {"is_64bit", b.is_64bit}, {"prefetchable", b.prefetchable}});
    j["capabilities"] = json::array();
    for (const pci::Capability& c : d.config.caps) {
        json cj = {{"offset", c.offset}, {"id", c.id}, {"name", cap_name(c.id)}, {"text", capability_text(d, c, ids)}};
        if (c.msix)
            cj["msix"] = {{"table_size", c.msix->table_size}, {"table_bar", c.msix->table_bir}, {"table_offset", c.msix->table_offset},
                          {"pba_bar", c.msix->pba_bir}, {"pba_offset", c.msix->pba_offset}, {"enabled", c.msix->enabled},
                          {"masked", c.msix->function_masked}};
        if (c.msi)
            cj["msi"] = {{"vectors_capable", c.msi->vectors_capable}, {"vectors_enabled", c.msi->vectors_enabled},
                         {"is_64bit", c.msi->is_64bit}, {"per_vector_mask", c.msi->per_vector_mask}, {"enabled", c.msi->enabled}};
        if (c.express) cj["express"] = {{"version", c.express->version}, {"port_type", c.express->port_type}};
        if (c.pm_version) cj["pm_version"] = *c.pm_version;
        if (c.virtio) {
            cj["virtio"] = {{"cfg_type", c.virtio->cfg_type}, {"cfg_name", virtio_cfg_name(c.virtio->cfg_type)}, {"bar", c.virtio->bar},
                            {"offset", c.virtio->offset}, {"length", c.virtio->length}};
            if (c.virtio->notify_multiplier) cj["virtio"]["notify_multiplier"] = *c.virtio->notify_multiplier;
        }
        j["capabilities"].push_back(std::move(cj));
    }
    j["extended_capabilities"] = json::array();
    for (const pci::ExtCapability& c : d.config.ext_caps)
        j["extended_capabilities"].push_back({{"offset", c.offset}, {"id", c.id}, {"version", c.version}, {"name", ext_capability_text(d, c)}});
    j["problems"] = d.config.problems;
    return j;
}

}  // namespace udrv::tools
