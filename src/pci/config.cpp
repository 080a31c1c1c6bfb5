// Config-space parsing (PCI Local Bus 3.0 ch. 6, PCIe base spec ch. 7). All bytes are untrusted.
#include <algorithm>
#include <set>

#include "udrv/pci.hpp"

namespace udrv::pci {
namespace {

class Bytes {
public:
    explicit Bytes(const std::vector<std::uint8_t>& b) : b_(b) {}
    bool has(std::size_t off, std::size_t len) const { return off <= b_.size() && len <= b_.size() - off; }
    std::uint8_t u8(std::size_t off) const { return b_[off]; }
    std::uint16_t u16(std::size_t off) const { return static_cast<std::uint16_t>(b_[off] | b_[off + 1] << 8); }
    std::uint32_t u32(std::size_t off) const { return static_cast<std::uint32_t>(u16(off)) | static_cast<std::uint32_t>(u16(off + 2)) << 16; }

private:
    const std::vector<std::uint8_t>& b_;
};

// How many bytes past the capability header we need to decode each kind.
std::size_t cap_body_size(std::uint8_t id) {
    switch (id) {
        case kCapPm: return 4;
        case kCapMsi: return 4;
        case kCapMsix: return 12;
        case kCapExpress: return 4;
        case kCapVendor: return 3;
        default: return 2;
    }
}

void decode_cap(Capability& c, const Bytes& b, std::uint16_t vendor, std::uint16_t device, std::vector<std::string>& problems) {
    const std::size_t o = c.offset;
    switch (c.id) {
        case kCapPm: c.pm_version = b.u16(o + 2) & 0x7; break;
        case kCapMsi: {
            std::uint16_t ctl = b.u16(o + 2);
            MsiCap m;
            m.enabled = ctl & 0x1;
            m.vectors_capable = static_cast<std::uint8_t>(1u << ((ctl >> 1) & 0x7));
            m.vectors_enabled = static_cast<std::uint8_t>(1u << ((ctl >> 4) & 0x7));
            m.is_64bit = ctl & 0x80;
            m.per_vector_mask = ctl & 0x100;
            c.msi = m;
            break;
        }
        case kCapMsix: {
            std::uint16_t ctl = b.u16(o + 2);
            std::uint32_t table = b.u32(o + 4), pba = b.u32(o + 8);
            MsixCap m;
            m.table_size = static_cast<std::uint16_t>((ctl & 0x7ff) + 1);
            m.enabled = ctl & 0x8000;
            m.function_masked = ctl & 0x4000;
            m.table_bir = table & 0x7;
            m.table_offset = table & ~0x7u;
            m.pba_bir = pba & 0x7;
            m.pba_offset = pba & ~0x7u;
            if (m.table_bir > 5 || m.pba_bir > 5)
                problems.push_back(fmt::format("MSI-X capability at {:#x} names BAR {} (valid: 0-5)", o, std::max(m.table_bir, m.pba_bir)));
            c.msix = m;
            break;
        }
        case kCapExpress: {
            std::uint16_t reg = b.u16(o + 2);
            c.express = ExpressCap{static_cast<std::uint8_t>(reg & 0xf), static_cast<std::uint8_t>((reg >> 4) & 0xf),
                                   static_cast<std::uint8_t>((reg >> 9) & 0x1f), static_cast<bool>(reg & 0x100)};
            break;
        }
        case kCapVendor: {
            std::uint8_t len = b.u8(o + 2);
            c.vendor_length = len;
            // virtio_pci_cap: cap_vndr, cap_next, cap_len, cfg_type, bar, id, padding[2], offset, length.
            // Modern virtio devices are 1af4:1000-107f (transitional ones included).
            if (vendor == 0x1af4 && device >= 0x1000 && device <= 0x107f && len >= 16) {
                if (!b.has(o, 16)) {
                    problems.push_back(fmt::format("virtio capability at {:#x} is truncated", o));
                    break;
                }
                VirtioCap v{b.u8(o + 3), b.u8(o + 4), b.u32(o + 8), b.u32(o + 12), std::nullopt};
                if (v.cfg_type == 2 && len >= 20 && b.has(o, 20)) v.notify_multiplier = b.u32(o + 16);
                c.virtio = v;
            }
            break;
        }
        default: break;
    }
}

void walk_caps(ConfigSpace& cs, const Bytes& b) {
    if (!(cs.status & 0x10)) return;  // Status.Capabilities List
    const std::size_t ptr_off = (cs.header_type & 0x7f) == 2 ? 0x14 : 0x34;
    std::size_t limit = std::min<std::size_t>(cs.bytes.size(), 256);
    std::set<std::size_t> seen;
    std::size_t ptr = b.u8(ptr_off) & ~0x3u;
    while (ptr != 0) {
        if (ptr < 0x40 || ptr + 2 > limit) {
            cs.problems.push_back(ptr + 2 > limit && ptr >= 0x40 && limit < 256
                                      ? fmt::format("capability at {:#x} lies beyond the {} readable bytes of config space "
                                                    "(reading config space needs root)", ptr, limit)
                                      : fmt::format("capability pointer {:#x} is out of range (must be 0x40-0xfc)", ptr));
            return;
        }
        if (!seen.insert(ptr).second) {
            cs.problems.push_back(fmt::format("capability list loops back to {:#x}", ptr));
            return;
        }
        if (seen.size() > 48) {  // 192 bytes / 4: more entries than can fit
            cs.problems.push_back("capability list has more than 48 entries");
            return;
        }
        Capability c;
        c.offset = static_cast<std::uint16_t>(ptr);
        c.id = b.u8(ptr);
        if (ptr + cap_body_size(c.id) > limit) {
            cs.problems.push_back(fmt::format("capability {:#04x} at {:#x} is truncated", c.id, ptr));
            cs.caps.push_back(c);
            return;
        }
        decode_cap(c, b, cs.vendor_id, cs.device_id, cs.problems);
        cs.caps.push_back(c);
        ptr = b.u8(ptr + 1) & ~0x3u;
    }
}

void walk_ext_caps(ConfigSpace& cs, const Bytes& b) {
    if (cs.bytes.size() < 0x104) return;
    std::set<std::size_t> seen;
    std::size_t ptr = 0x100;
    while (true) {
        if (ptr < 0x100 || !b.has(ptr, 4)) {
            cs.problems.push_back(fmt::format("extended capability pointer {:#x} is out of range", ptr));
            return;
        }
        if (!seen.insert(ptr).second) {
            cs.problems.push_back(fmt::format("extended capability list loops back to {:#x}", ptr));
            return;
        }
        std::uint32_t hdr = b.u32(ptr);
        if (hdr == 0 || hdr == 0xffffffff) return;  // no extended capabilities (or device gone)
        cs.ext_caps.push_back(ExtCapability{static_cast<std::uint16_t>(ptr), static_cast<std::uint16_t>(hdr & 0xffff),
                                            static_cast<std::uint8_t>((hdr >> 16) & 0xf)});
        ptr = (hdr >> 20) & ~0x3u;
        if (ptr == 0) return;
    }
}

}  // namespace

Result<ConfigSpace> ConfigSpace::parse(std::vector<std::uint8_t> bytes) {
    if (bytes.size() < 64)
        return fail(EBADMSG, "config space is {} bytes, shorter than the 64-byte header", bytes.size());
    ConfigSpace cs;
    cs.bytes = std::move(bytes);
    Bytes b(cs.bytes);
    cs.vendor_id = b.u16(0x00);
    cs.device_id = b.u16(0x02);
    if (cs.vendor_id == 0xffff)
        return fail(ENODEV, "config space reads all ones (vendor ffff): the device is gone or not responding");
    cs.command = b.u16(0x04);
    cs.status = b.u16(0x06);
    cs.revision = b.u8(0x08);
    cs.class_code = b.u32(0x08) >> 8;
    cs.header_type = b.u8(0x0e);
    cs.multifunction = cs.header_type & 0x80;
    cs.interrupt_pin = b.u8(0x3d);
    switch (cs.header_type & 0x7f) {
        case 0:
            cs.subsystem_vendor = b.u16(0x2c);
            cs.subsystem_device = b.u16(0x2e);
            break;
        case 1:
            cs.primary_bus = b.u8(0x18);
            cs.secondary_bus = b.u8(0x19);
            cs.subordinate_bus = b.u8(0x1a);
            break;
        case 2: break;  // CardBus: only the capability pointer differs
        default: cs.problems.push_back(fmt::format("unknown header type {:#x}", cs.header_type & 0x7f)); return cs;
    }
    walk_caps(cs, b);
    walk_ext_caps(cs, b);
    if ((cs.header_type & 0x7f) == 1)
        if (const Capability* ss = cs.find_cap(kCapSubsystem); ss && b.has(ss->offset, 8)) {
            cs.subsystem_vendor = b.u16(ss->offset + 4);
            cs.subsystem_device = b.u16(ss->offset + 6);
        }
    return cs;
}

const Capability* ConfigSpace::find_cap(std::uint8_t id) const noexcept {
    for (auto& c : caps)
        if (c.id == id) return &c;
    return nullptr;
}

std::vector<const Capability*> ConfigSpace::find_caps(std::uint8_t id) const {
    std::vector<const Capability*> out;
    for (auto& c : caps)
        if (c.id == id) out.push_back(&c);
    return out;
}

const ExtCapability* ConfigSpace::find_ext_cap(std::uint16_t id) const noexcept {
    for (auto& c : ext_caps)
        if (c.id == id) return &c;
    return nullptr;
}

}  // namespace udrv::pci
