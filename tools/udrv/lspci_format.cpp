#include "lspci_format.hpp"

#include <optional>

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

std::uint8_t cfg8(const pci::DeviceInfo& d, std::size_t off) {
    const auto& b = d.config.bytes;
    return off < b.size() ? b[off] : 0;
}

bool has(const pci::DeviceInfo& d, std::size_t off, std::size_t len) { return off + len <= d.config.bytes.size(); }

// lspci's size notation: divided by 1024 while at least 1024 ("[size=4K]").
std::string size_text(std::uint64_t x) {
    static constexpr const char* suffix[] = {"", "K", "M", "G", "T"};
    unsigned i = 0;
    for (; i < 4 && x >= 1024; ++i) x /= 1024;
    return fmt::format("{}{}", x, suffix[i]);
}

const char* devsel(std::uint16_t status) {
    switch (status & 0x600) {
        case 0x000: return "fast";
        case 0x200: return "medium";
        case 0x400: return "slow";
        default: return "??";
    }
}

// Command and status registers (lspci -vv's Control/Status lines), latency and the interrupt line.
std::string header_registers(const pci::DeviceInfo& d) {
    const std::uint16_t cmd = cfg16(d, 0x04), st = cfg16(d, 0x06);
    auto b = [](std::uint32_t v, std::uint32_t bit) { return flag(v & bit); };
    std::string s = fmt::format("\tControl: I/O{} Mem{} BusMaster{} SpecCycle{} MemWINV{} VGASnoop{} ParErr{} Stepping{} SERR{} FastB2B{} "
                                "DisINTx{}\n", b(cmd, 0x1), b(cmd, 0x2), b(cmd, 0x4), b(cmd, 0x8), b(cmd, 0x10), b(cmd, 0x20), b(cmd, 0x40),
                                b(cmd, 0x80), b(cmd, 0x100), b(cmd, 0x200), b(cmd, 0x400));
    s += fmt::format("\tStatus: Cap{} 66MHz{} UDF{} FastB2B{} ParErr{} DEVSEL={} >TAbort{} <TAbort{} <MAbort{} >SERR{} <PERR{} INTx{}\n",
                     b(st, 0x10), b(st, 0x20), b(st, 0x40), b(st, 0x80), b(st, 0x100), devsel(st), b(st, 0x800), b(st, 0x1000),
                     b(st, 0x2000), b(st, 0x4000), b(st, 0x8000), b(st, 0x8));
    if (cmd & 0x4) {  // bus master: its latency timer matters
        const unsigned htype = d.config.header_type & 0x7f;
        const unsigned min_gnt = htype == 0 ? cfg8(d, 0x3e) : 0, max_lat = htype == 0 ? cfg8(d, 0x3f) : 0;
        s += fmt::format("\tLatency: {}", cfg8(d, 0x0d));
        if (min_gnt || max_lat) {
            s += " (";
            if (min_gnt) s += fmt::format("{}ns min", min_gnt * 250);
            if (min_gnt && max_lat) s += ", ";
            if (max_lat) s += fmt::format("{}ns max", max_lat * 250);
            s += ")";
        }
        if (const unsigned cls = cfg8(d, 0x0c)) s += fmt::format(", Cache Line Size: {} bytes", cls * 4);
        s += "\n";
    }
    const unsigned pin = d.config.interrupt_pin;
    if (pin || (d.irq && *d.irq))
        s += fmt::format("\tInterrupt: pin {} routed to IRQ {}\n", pin >= 1 && pin <= 4 ? static_cast<char>('A' + pin - 1) : '?',
                         d.irq.value_or(0));
    return s;
}

std::string regions(const pci::DeviceInfo& d) {
    const std::uint16_t cmd = cfg16(d, 0x04);
    std::string s;
    for (const pci::Bar& b : d.bars) {
        if (b.index == 6) continue;  // the expansion ROM: after the BARs (bridges: after the windows)
        const std::uint32_t reg = cfg32(d, 0x10 + 4u * b.index);
        const bool virt = reg == 0 || reg == 0xffffffff;  // reported by the OS, not by the device (SR-IOV VFs)
        std::string what = fmt::format("\tRegion {}: {}", b.index, virt ? "[virtual] " : "");
        if (b.io) s += fmt::format("{}I/O ports at {:04x}{} [size={}]\n", what, b.start, !virt && !(cmd & 0x1) ? " [disabled]" : "",
                                   size_text(b.size));
        else
            s += fmt::format("{}Memory at {:x} ({}-bit, {}prefetchable){} [size={}]\n", what, b.start, b.is_64bit ? 64 : 32,
                             b.prefetchable ? "" : "non-", !virt && !(cmd & 0x2) ? " [disabled]" : "", size_text(b.size));
    }
    return s;
}

std::string expansion_rom(const pci::DeviceInfo& d) {
    for (const pci::Bar& b : d.bars) {
        if (b.index != 6) continue;
        const std::size_t reg = (d.config.header_type & 0x7f) == 1 ? 0x38 : 0x30;
        const std::uint32_t flg = cfg32(d, reg);
        const bool virt = !(flg & ~0x7ffu);
        std::string state = !(flg & 0x1) && !virt ? " [disabled]" : !virt && !(cfg16(d, 0x04) & 0x2) ? " [disabled by cmd]" : "";
        return fmt::format("\t{}Expansion ROM at {:08x}{} [size={}]\n", virt ? "[virtual] " : "", b.start, state, size_text(b.size));
    }
    return {};
}

// A PCI-to-PCI bridge's bus numbers, windows, secondary status and control (header type 1).
std::string bridge(const pci::DeviceInfo& d) {
    auto b = [](std::uint32_t v, std::uint32_t bit) { return flag(v & bit); };
    std::string s = fmt::format("\tBus: primary={:02x}, secondary={:02x}, subordinate={:02x}, sec-latency={}\n", cfg8(d, 0x18),
                                cfg8(d, 0x19), cfg8(d, 0x1a), cfg8(d, 0x1b));
    const unsigned io_base = cfg8(d, 0x1c), io_limit = cfg8(d, 0x1d);
    if ((io_base & 0xf) == (io_limit & 0xf) && (io_base & 0xf) <= 1) {
        const bool io32 = (io_base & 0xf) == 1;
        std::uint32_t base = (io_base & 0xf0u) << 8, limit = ((io_limit & 0xf0u) << 8) | 0xfff;
        if (io32) base |= std::uint32_t{cfg16(d, 0x30)} << 16, limit |= std::uint32_t{cfg16(d, 0x32)} << 16;
        if (base <= limit)
            s += io32 ? fmt::format("\tI/O behind bridge: {:08x}-{:08x} [size={}] [32-bit]\n", base, limit, size_text(std::uint64_t{limit} - base + 1))
                      : fmt::format("\tI/O behind bridge: {:04x}-{:04x} [size={}] [16-bit]\n", base, limit, size_text(std::uint64_t{limit} - base + 1));
    }
    const std::uint32_t mem_base = cfg16(d, 0x20), mem_limit = cfg16(d, 0x22);
    if (!(mem_base & 0xf) && !(mem_limit & 0xf)) {
        const std::uint32_t base = (mem_base & 0xfff0u) << 16, limit = ((mem_limit & 0xfff0u) << 16) | 0xfffff;
        if (base <= limit)
            s += fmt::format("\tMemory behind bridge: {:08x}-{:08x} [size={}] [32-bit]\n", base, limit, size_text(std::uint64_t{limit} - base + 1));
    }
    const std::uint32_t pf_base = cfg16(d, 0x24), pf_limit = cfg16(d, 0x26);
    if ((pf_base & 0xf) == (pf_limit & 0xf) && (pf_base & 0xf) <= 1) {
        std::uint64_t base = (pf_base & 0xfff0u) << 16, limit = ((pf_limit & 0xfff0u) << 16) | 0xfffff;
        if ((pf_base & 0xf) == 1) base |= std::uint64_t{cfg32(d, 0x28)} << 32, limit |= std::uint64_t{cfg32(d, 0x2c)} << 32;
        const bool pf64 = limit > 0xffffffffu;  // lspci names a 64-bit-capable window by the addresses it holds
        if (base <= limit)
            s += pf64 ? fmt::format("\tPrefetchable memory behind bridge: {:016x}-{:016x} [size={}] [64-bit]\n", base, limit, size_text(limit - base + 1))
                      : fmt::format("\tPrefetchable memory behind bridge: {:08x}-{:08x} [size={}] [32-bit]\n", base, limit, size_text(limit - base + 1));
    }
    const std::uint16_t sec = cfg16(d, 0x1e), brc = cfg16(d, 0x3e);
    s += fmt::format("\tSecondary status: 66MHz{} FastB2B{} ParErr{} DEVSEL={} >TAbort{} <TAbort{} <MAbort{} <SERR{} <PERR{}\n", b(sec, 0x20),
                     b(sec, 0x80), b(sec, 0x100), devsel(sec), b(sec, 0x800), b(sec, 0x1000), b(sec, 0x2000), b(sec, 0x4000), b(sec, 0x8000));
    s += expansion_rom(d);
    s += fmt::format("\tBridgeCtl: Parity{} SERR{} NoISA{} VGA{} VGA16{} MAbort{} >Reset{} FastB2B{}\n", b(brc, 0x1), b(brc, 0x2),
                     b(brc, 0x4), b(brc, 0x8), b(brc, 0x10), b(brc, 0x20), b(brc, 0x40), b(brc, 0x80));
    s += fmt::format("\t\tPriDiscTmr{} SecDiscTmr{} DiscTmrStat{} DiscTmrSERREn{}\n", b(brc, 0x100), b(brc, 0x200), b(brc, 0x400),
                     b(brc, 0x800));
    return s;
}

const char* link_speed(unsigned code) {
    static constexpr const char* kSpeeds[] = {"unknown", "2.5GT/s", "5GT/s", "8GT/s", "16GT/s", "32GT/s", "64GT/s"};
    return code < std::size(kSpeeds) ? kSpeeds[code] : "unknown";
}

// PCIe link capabilities, control and status (lspci -vv's LnkCap/LnkCtl/LnkSta), for ports with a link.
std::string express_link(const pci::DeviceInfo& d, const pci::Capability& c) {
    const std::size_t o = c.offset;
    const unsigned type = c.express->port_type;
    if (type == 9 || type == 10 || !has(d, o + 0x12, 2)) return {};  // root-complex integrated: no link
    auto b = [](std::uint32_t v, std::uint32_t bit) { return flag(v & bit); };
    const std::uint32_t cap = cfg32(d, o + 0x0c);
    const unsigned aspm = (cap >> 10) & 3, cap_speed = cap & 0xf, cap_width = (cap >> 4) & 0x3f;
    static constexpr const char* kAspm[] = {"not supported", "L0s", "L1", "L0s L1"};
    static constexpr const char* kL0s[] = {"<64ns", "<128ns", "<256ns", "<512ns", "<1us", "<2us", "<4us", "unlimited"};
    static constexpr const char* kL1[] = {"<1us", "<2us", "<4us", "<8us", "<16us", "<32us", "<64us", "unlimited"};
    std::string s = fmt::format("\t\tLnkCap:\tPort #{}, Speed {}, Width x{}, ASPM {}", cap >> 24, link_speed(cap_speed), cap_width, kAspm[aspm]);
    if (aspm) {
        s += ", Exit Latency ";
        if (aspm & 1) s += fmt::format("L0s {}", kL0s[(cap >> 12) & 7]);
        if (aspm & 2) s += fmt::format("{}L1 {}", aspm & 1 ? ", " : "", kL1[(cap >> 15) & 7]);
    }
    s += fmt::format("\n\t\t\tClockPM{} Surprise{} LLActRep{} BwNot{} ASPMOptComp{}\n", b(cap, 1u << 18), b(cap, 1u << 19),
                     b(cap, 1u << 20), b(cap, 1u << 21), b(cap, 1u << 22));
    const std::uint16_t ctl = cfg16(d, o + 0x10);
    static constexpr const char* kAspmCtl[] = {"Disabled", "L0s Enabled", "L1 Enabled", "L0s L1 Enabled"};
    s += fmt::format("\t\tLnkCtl:\tASPM {};", kAspmCtl[ctl & 3]);
    if (type == 4 || type == 0 || type == 1 || type == 7) s += fmt::format(" RCB {} bytes,", ctl & 0x8 ? 128 : 64);
    s += fmt::format(" Disabled{} CommClk{}\n\t\t\tExtSynch{} ClockPM{} AutWidDis{} BWInt{} AutBWInt{}\n", b(ctl, 0x10), b(ctl, 0x40),
                     b(ctl, 0x80), b(ctl, 0x100), b(ctl, 0x200), b(ctl, 0x400), b(ctl, 0x800));
    const std::uint16_t sta = cfg16(d, o + 0x12);
    const unsigned sta_speed = sta & 0xf, sta_width = (sta >> 4) & 0x3f;
    // Below what the link can do is worth saying only on an endpoint's side (ports see every device).
    auto compare = [&](unsigned now, unsigned most) -> std::string {
        if (now > most) return " (overdriven)";
        if (now == most || type == 4 || type == 6 || type == 8) return "";
        return " (downgraded)";
    };
    s += fmt::format("\t\tLnkSta:\tSpeed {}{}, Width x{}{}\n", link_speed(sta_speed), compare(sta_speed, cap_speed), sta_width,
                     compare(sta_width, cap_width));
    s += fmt::format("\t\t\tTrErr{} Train{} SlotClk{} DLActive{} BWMgmt{} ABWMgmt{}\n", b(sta, 0x400), b(sta, 0x800), b(sta, 0x1000),
                     b(sta, 0x2000), b(sta, 0x4000), b(sta, 0x8000));
    return s;
}

// The lines under a capability header that lspci -vv prints and udrv reproduces.
std::string capability_details(const pci::DeviceInfo& d, const pci::Capability& c) {
    auto b = [](std::uint32_t v, std::uint32_t bit) { return flag(v & bit); };
    const std::size_t o = c.offset;
    std::string s;
    if (c.pm_version && has(d, o + 6, 2)) {
        const std::uint16_t cap = cfg16(d, o + 2), ctl = cfg16(d, o + 4);
        static constexpr int kAux[] = {0, 55, 100, 160, 220, 270, 320, 375};
        s += fmt::format("\t\tFlags: PMEClk{} DSI{} D1{} D2{} AuxCurrent={}mA PME(D0{},D1{},D2{},D3hot{},D3cold{})\n", b(cap, 0x8),
                         b(cap, 0x20), b(cap, 0x200), b(cap, 0x400), kAux[(cap >> 6) & 7], b(cap, 0x800), b(cap, 0x1000), b(cap, 0x2000),
                         b(cap, 0x4000), b(cap, 0x8000));
        s += fmt::format("\t\tStatus: D{} NoSoftRst{} PME-Enable{} DSel={} DScale={} PME{}\n", ctl & 3, b(ctl, 0x8), b(ctl, 0x100),
                         (ctl >> 9) & 0xf, (ctl >> 13) & 3, b(ctl, 0x8000));
        if (const std::uint8_t ext = cfg8(d, o + 6)) s += fmt::format("\t\tBridge: PM{} B3{}\n", b(ext, 0x80), b(~ext, 0x40));
    }
    if (c.msi) {
        const bool wide = c.msi->is_64bit;
        if (has(d, o + (wide ? 14u : 10u), 0)) {
            const std::uint32_t lo = cfg32(d, o + 4), hi = wide ? cfg32(d, o + 8) : 0;
            const std::uint16_t data = cfg16(d, o + (wide ? 12u : 8u));
            s += wide ? fmt::format("\t\tAddress: {:08x}{:08x}  Data: {:04x}\n", hi, lo, data) : fmt::format("\t\tAddress: {:08x}  Data: {:04x}\n", lo, data);
            if (c.msi->per_vector_mask && has(d, o + (wide ? 20u : 16u), 4))
                s += fmt::format("\t\tMasking: {:08x}  Pending: {:08x}\n", cfg32(d, o + (wide ? 16u : 12u)), cfg32(d, o + (wide ? 20u : 16u)));
        }
    }
    if (c.msix)
        s += fmt::format("\t\tVector table: BAR={} offset={:08x}\n\t\tPBA: BAR={} offset={:08x}\n", c.msix->table_bir, c.msix->table_offset,
                         c.msix->pba_bir, c.msix->pba_offset);
    if (c.express) s += express_link(d, c);
    if (c.virtio) {
        s += fmt::format("\t\tBAR={} offset={:08x} size={:08x}", c.virtio->bar, c.virtio->offset, c.virtio->length);
        if (c.virtio->notify_multiplier) s += fmt::format(" multiplier={:08x}", *c.virtio->notify_multiplier);
        s += "\n";
    }
    return s;
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
        case 0x04: return "Slot ID";
        case 0x0c: return "Hot-plug capable";
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
    if (c.id == 0x04) {  // Slot Identification (PCI-to-PCI bridge spec): expansion slots and chassis number
        const std::uint8_t esr = cfg8(d, c.offset + 2u), chassis = cfg8(d, c.offset + 3u);
        return fmt::format("Slot ID: {} slots, First{}, chassis {:02x}", esr & 0x1f, flag(esr & 0x20), chassis);
    }
    return cap_name(c.id);
}

std::string ext_capability_name(std::uint16_t id) {
    switch (id) {
        case 0x01: return "Advanced Error Reporting";
        case 0x02: return "Virtual Channel";
        case 0x03: return "Device Serial Number";
        case 0x04: return "Power Budgeting";
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
        default: return fmt::format("Extended Capability ID {:#x}", id);
    }
}

std::optional<std::string> device_serial(const pci::DeviceInfo& d, const pci::ExtCapability& c) {
    if (c.id != 0x03 || !has(d, c.offset + 12u, 0)) return std::nullopt;
    const std::uint32_t lo = cfg32(d, c.offset + 4u), hi = cfg32(d, c.offset + 8u);
    return fmt::format("{:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}", hi >> 24, (hi >> 16) & 0xff, (hi >> 8) & 0xff, hi & 0xff,
                       lo >> 24, (lo >> 16) & 0xff, (lo >> 8) & 0xff, lo & 0xff);
}

std::string ext_capability_text(const pci::DeviceInfo& d, const pci::ExtCapability& c) {
    if (auto serial = device_serial(d, c)) return "Device Serial Number " + *serial;
    if (c.id == 0x04) return "Power Budgeting <?>";
    return ext_capability_name(c.id);
}

std::string format_device(const pci::DeviceInfo& d, const pci::IdDatabase& ids, bool verbose) {
    std::string s = lspci_header(d, ids, verbose) + "\n";
    if (!verbose) return s;
    // The lines of `lspci -vvv`, in its order, for what udrv decodes (a test checks they agree).
    if (d.subsystem_vendor && d.subsystem_vendor != 0xffff)
        s += "\tSubsystem: " + ids.describe_subsystem(d.vendor_id, d.device_id, d.subsystem_vendor, d.subsystem_device) + "\n";
    const unsigned htype = d.config.header_type & 0x7f;
    if (htype <= 2) s += header_registers(d);
    if (d.numa_node >= 0) s += fmt::format("\tNUMA node: {}\n", d.numa_node);
    s += d.iommu_group ? fmt::format("\tIOMMU group: {}\n", *d.iommu_group) : "\tIOMMU group: none (IOMMU off: VFIO cannot use this device)\n";
    s += regions(d);
    if (htype == 1) s += bridge(d);
    else s += expansion_rom(d);
    for (const pci::Capability& c : d.config.caps) {
        s += fmt::format("\tCapabilities: [{:02x}] {}\n", c.offset, capability_text(d, c, ids));
        s += capability_details(d, c);
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
        {"class_name", name(ids.subclass_name(d.base_class(), d.sub_class()) ? ids.subclass_name(d.base_class(), d.sub_class())
                                                                               : ids.class_name(d.base_class()))},
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
    for (const pci::ExtCapability& c : d.config.ext_caps) {
        json e = {{"offset", c.offset}, {"id", c.id}, {"version", c.version}, {"name", ext_capability_name(c.id)}};
        if (auto serial = device_serial(d, c)) e["serial"] = *serial;
        j["extended_capabilities"].push_back(std::move(e));
    }
    j["problems"] = d.config.problems;
    return j;
}

}  // namespace udrv::tools
