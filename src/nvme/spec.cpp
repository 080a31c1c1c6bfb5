#include "udrv/nvme_spec.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace udrv::nvme {
namespace {

constexpr std::size_t kIdentifyBytes = 4096;

template <typename T>
T le(std::span<const std::byte> b, std::size_t off) {
    T v{};
    std::memcpy(&v, b.data() + off, sizeof v);  // identify data is little-endian, as is x86-64/arm64
    return v;
}

std::string ident_string(std::span<const std::byte> b, std::size_t off, std::size_t len) {
    std::string s;
    for (std::size_t i = 0; i < len; ++i) {
        char c = static_cast<char>(b[off + i]);
        s += (c >= 0x20 && c < 0x7f) ? c : '?';  // the device's bytes: printable ASCII only
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '?' || s.back() == '\0')) s.pop_back();
    return s;
}

enum class Kind { number, text, nqn, u128, uuid, hex };
struct FieldDef {
    std::string_view key;
    unsigned offset, size;
    Kind kind = Kind::number;
};

// NVMe 2.0, Identify Controller Data Structure (figure 275); nvme-cli 2.4's names and order.
constexpr FieldDef kControllerFields[] = {
    {"vid", 0, 2}, {"ssvid", 2, 2}, {"sn", 4, 20, Kind::text}, {"mn", 24, 40, Kind::text}, {"fr", 64, 8, Kind::text}, {"rab", 72, 1},
    {"ieee", 73, 3}, {"cmic", 76, 1}, {"mdts", 77, 1}, {"cntlid", 78, 2}, {"ver", 80, 4}, {"rtd3r", 84, 4}, {"rtd3e", 88, 4},
    {"oaes", 92, 4}, {"ctratt", 96, 4}, {"rrls", 100, 2}, {"cntrltype", 111, 1}, {"fguid", 112, 16, Kind::uuid}, {"crdt1", 128, 2},
    {"crdt2", 130, 2}, {"crdt3", 132, 2}, {"nvmsr", 253, 1}, {"vwci", 254, 1}, {"mec", 255, 1}, {"oacs", 256, 2}, {"acl", 258, 1},
    {"aerl", 259, 1}, {"frmw", 260, 1}, {"lpa", 261, 1}, {"elpe", 262, 1}, {"npss", 263, 1}, {"avscc", 264, 1}, {"apsta", 265, 1},
    {"wctemp", 266, 2}, {"cctemp", 268, 2}, {"mtfa", 270, 2}, {"hmpre", 272, 4}, {"hmmin", 276, 4}, {"tnvmcap", 280, 16, Kind::u128},
    {"unvmcap", 296, 16, Kind::u128}, {"rpmbs", 312, 4}, {"edstt", 316, 2}, {"dsto", 318, 1}, {"fwug", 319, 1}, {"kas", 320, 2},
    {"hctma", 322, 2}, {"mntmt", 324, 2}, {"mxtmt", 326, 2}, {"sanicap", 328, 4}, {"hmminds", 332, 4}, {"hmmaxd", 336, 2},
    {"nsetidmax", 338, 2}, {"endgidmax", 340, 2}, {"anatt", 342, 1}, {"anacap", 343, 1}, {"anagrpmax", 344, 4}, {"nanagrpid", 348, 4},
    {"pels", 352, 4}, {"domainid", 356, 2}, {"megcap", 368, 16, Kind::u128}, {"sqes", 512, 1}, {"cqes", 513, 1}, {"maxcmd", 514, 2},
    {"nn", 516, 4}, {"oncs", 520, 2}, {"fuses", 522, 2}, {"fna", 524, 1}, {"vwc", 525, 1}, {"awun", 526, 2}, {"awupf", 528, 2},
    {"icsvscc", 530, 1}, {"nwpc", 531, 1}, {"acwu", 532, 2}, {"ocfs", 534, 2}, {"sgls", 536, 4}, {"mnan", 540, 4},
    {"maxdna", 544, 16, Kind::u128}, {"maxcna", 560, 4}, {"subnqn", 768, 256, Kind::nqn}, {"ioccsz", 1792, 4}, {"iorcsz", 1796, 4},
    {"icdoff", 1800, 2}, {"fcatt", 1802, 1}, {"msdbd", 1803, 1}, {"ofcs", 1804, 2},
};
// Power State Descriptor (32 bytes each, from byte 2048). Scales are the top two bits of their byte.
constexpr FieldDef kPowerStateFields[] = {
    {"max_power", 0, 2}, {"flags", 3, 1}, {"entry_lat", 4, 4}, {"exit_lat", 8, 4}, {"read_tput", 12, 1}, {"read_lat", 13, 1},
    {"write_tput", 14, 1}, {"write_lat", 15, 1}, {"idle_power", 16, 2},
};
// NVMe 2.0, Identify Namespace Data Structure, NVM Command Set (figure 97).
constexpr FieldDef kNamespaceFields[] = {
    {"nsze", 0, 8}, {"ncap", 8, 8}, {"nuse", 16, 8}, {"nsfeat", 24, 1}, {"nlbaf", 25, 1}, {"flbas", 26, 1}, {"mc", 27, 1}, {"dpc", 28, 1},
    {"dps", 29, 1}, {"nmic", 30, 1}, {"rescap", 31, 1}, {"fpi", 32, 1}, {"dlfeat", 33, 1}, {"nawun", 34, 2}, {"nawupf", 36, 2},
    {"nacwu", 38, 2}, {"nabsn", 40, 2}, {"nabo", 42, 2}, {"nabspf", 44, 2}, {"noiob", 46, 2}, {"nvmcap", 48, 16, Kind::u128},
    {"nsattr", 99, 1}, {"nvmsetid", 100, 2}, {"npwg", 64, 2}, {"npwa", 66, 2}, {"npdg", 68, 2}, {"npda", 70, 2}, {"nows", 72, 2},
    {"mssrl", 74, 2}, {"mcl", 76, 4}, {"msrc", 80, 1}, {"nulbaf", 81, 1}, {"anagrpid", 92, 4}, {"endgid", 102, 2},
    {"eui64", 120, 8, Kind::hex}, {"nguid", 104, 16, Kind::hex},
};

std::uint64_t le_bytes(std::span<const std::byte> b, unsigned off, unsigned n) {
    std::uint64_t v = 0;
    for (unsigned i = n; i > 0; --i) v = v << 8 | std::to_integer<std::uint64_t>(b[off + i - 1]);
    return v;
}

std::string u128_decimal(std::span<const std::byte> b, unsigned off) {
    unsigned __int128 v = 0;
    for (unsigned i = 16; i > 0; --i) v = v << 8 | std::to_integer<unsigned>(b[off + i - 1]);
    std::string out;
    do {
        out.insert(out.begin(), static_cast<char>('0' + static_cast<unsigned>(v % 10)));
        v /= 10;
    } while (v);
    return out;
}

IdentifyValue field_value(std::span<const std::byte> b, const FieldDef& f) {
    switch (f.kind) {
        case Kind::number: return le_bytes(b, f.offset, f.size);
        case Kind::u128: return u128_decimal(b, f.offset);
        case Kind::text: {  // the device's bytes, padding included (as nvme-cli prints them), control bytes replaced
            std::string s;
            for (unsigned i = 0; i < f.size; ++i) {
                const auto c = std::to_integer<unsigned char>(b[f.offset + i]);
                s += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : c == 0 ? ' ' : '?';
            }
            return s;
        }
        case Kind::nqn: {  // NUL-terminated
            std::string s;
            for (unsigned i = 0; i < f.size; ++i) {
                const auto c = std::to_integer<unsigned char>(b[f.offset + i]);
                if (c == 0) break;
                s += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
            }
            return s;
        }
        case Kind::uuid:
        case Kind::hex: {
            std::string s;
            for (unsigned i = 0; i < f.size; ++i) {
                if (f.kind == Kind::uuid && (i == 4 || i == 6 || i == 8 || i == 10)) s += '-';
                s += fmt::format("{:02x}", std::to_integer<unsigned>(b[f.offset + i]));
            }
            return s;
        }
    }
    return std::uint64_t{0};
}

template <std::size_t N>
IdentifyRecord record(std::span<const std::byte> b, const FieldDef (&defs)[N]) {
    IdentifyRecord r;
    for (const FieldDef& f : defs) r.fields.emplace_back(f.key, field_value(b, f));
    return r;
}

}  // namespace

Result<IdentifyDump> dump_identify_controller(std::span<const std::byte> id) {
    if (id.size() < kIdentifyBytes) return fail(EINVAL, "identify controller data is {} bytes, not {}", id.size(), kIdentifyBytes);
    IdentifyDump d{record(id, kControllerFields), "psds", {}};
    const unsigned states = le_bytes(id, 263, 1) + 1u;  // NPSS is 0-based; at most 32 descriptors fit
    for (unsigned i = 0; i < std::min(states, 32u); ++i) {
        const auto psd = id.subspan(2048 + 32 * i, 32);
        IdentifyRecord r = record(psd, kPowerStateFields);
        const std::uint64_t ips = le_bytes(psd, 18, 1), apws = le_bytes(psd, 22, 1);
        r.fields.emplace_back("idle_scale", ips >> 6);
        r.fields.emplace_back("active_power", le_bytes(psd, 20, 2));
        r.fields.emplace_back("active_power_work", apws & 0x7);
        r.fields.emplace_back("active_scale", apws >> 6);
        d.list.push_back(std::move(r));
    }
    return d;
}

Result<IdentifyDump> dump_identify_namespace(std::span<const std::byte> id) {
    if (id.size() < kIdentifyBytes) return fail(EINVAL, "identify namespace data is {} bytes, not {}", id.size(), kIdentifyBytes);
    IdentifyDump d{record(id, kNamespaceFields), "lbafs", {}};
    // NLBAF is 0-based; NULBAF formats follow; the table holds at most 64.
    const unsigned formats = std::min<unsigned>(le_bytes(id, 25, 1) + 1u + le_bytes(id, 81, 1), 64u);
    for (unsigned i = 0; i < formats; ++i) {
        const unsigned o = 128 + 4 * i;
        d.list.push_back(IdentifyRecord{{{"ms", le_bytes(id, o, 2)}, {"ds", le_bytes(id, o + 2, 1)}, {"rp", le_bytes(id, o + 3, 1) & 0x3}}});
    }
    return d;
}

Result<void> parse_identify_controller(std::span<const std::byte> id, ControllerInfo& info, std::uint32_t max_transfer_cap) {
    if (id.size() < kIdentifyBytes) return fail(EINVAL, "identify controller data is {} bytes, not {}", id.size(), kIdentifyBytes);
    info.vid = le<std::uint16_t>(id, 0);
    info.ssvid = le<std::uint16_t>(id, 2);
    info.serial = ident_string(id, 4, 20);
    info.model = ident_string(id, 24, 40);
    info.firmware = ident_string(id, 64, 8);
    info.mdts = le<std::uint8_t>(id, 77);
    info.cntlid = le<std::uint16_t>(id, 78);
    info.oacs = le<std::uint16_t>(id, 256);
    info.namespaces = le<std::uint32_t>(id, 516);
    info.oncs = le<std::uint16_t>(id, 520);
    info.vwc = le<std::uint8_t>(id, 525);
    info.subnqn = ident_string(id, 768, 256);
    const unsigned sqes = le<std::uint8_t>(id, 512) & 0xf, cqes = le<std::uint8_t>(id, 513) & 0xf;
    if (sqes > 6 || cqes > 4)
        return fail(ENOTSUP, "controller requires {}-byte SQ and {}-byte CQ entries (SQES/CQES); udrv uses 64 and 16", 1u << sqes,
                    1u << cqes);
    const std::uint64_t mdts_bytes = info.mdts ? (std::uint64_t{4096} << std::min<std::uint8_t>(info.mdts, 20)) : max_transfer_cap;
    info.max_transfer = static_cast<std::uint32_t>(std::min<std::uint64_t>(mdts_bytes, max_transfer_cap));
    return {};
}

Result<NamespaceInfo> parse_identify_namespace(std::uint32_t nsid, std::span<const std::byte> id, std::uint32_t max_transfer) {
    if (id.size() < kIdentifyBytes) return fail(EINVAL, "identify namespace data is {} bytes, not {}", id.size(), kIdentifyBytes);
    NamespaceInfo ns;
    ns.nsid = nsid;
    ns.size = le<std::uint64_t>(id, 0);
    ns.capacity = le<std::uint64_t>(id, 8);
    ns.utilization = le<std::uint64_t>(id, 16);
    const unsigned nlbaf = le<std::uint8_t>(id, 25);  // 0-based
    ns.current_format = le<std::uint8_t>(id, 26) & 0xf;
    for (unsigned f = 0; f <= std::min(nlbaf, 15u); ++f) {
        const auto d = le<std::uint32_t>(id, 128 + 4 * f);
        ns.lba_formats.push_back(LbaFormat{static_cast<std::uint16_t>(d & 0xffff), static_cast<std::uint8_t>((d >> 16) & 0xff),
                                           static_cast<std::uint8_t>((d >> 24) & 0x3)});
    }
    if (ns.current_format >= ns.lba_formats.size())
        return fail(EPROTO, "namespace {}: formatted with LBA format {}, but only {} are listed (NLBAF)", nsid, ns.current_format,
                    ns.lba_formats.size());
    const LbaFormat& f = ns.lba_formats[ns.current_format];
    if (f.lba_shift < 9 || f.lba_shift > 16)
        return fail(EPROTO, "namespace {}: block size 2^{} bytes (LBADS) is outside 512 B-64 KiB", nsid, f.lba_shift);
    if (ns.size == 0 || ns.size > (std::uint64_t{1} << 48))
        return fail(EPROTO, "namespace {}: implausible size of {} blocks (NSZE)", nsid, ns.size);
    if (ns.block_size() > max_transfer)
        return fail(ENOTSUP, "namespace {}: {}-byte blocks, but the controller moves at most {} bytes per command (MDTS)", nsid,
                    ns.block_size(), max_transfer);
    if (f.metadata_size != 0)
        return fail(ENOTSUP, "namespace {}: formatted with {} bytes of metadata per block, which udrv does not support", nsid,
                    f.metadata_size);
    return ns;
}

std::string status_name(std::uint16_t sf) {
    const std::uint16_t sct = status_code_type(sf), sc = status_code(sf);
    const char* name = nullptr;
    if (sct == 0) {
        switch (sc) {
            case 0x00: name = "Successful Completion"; break;
            case 0x01: name = "Invalid Command Opcode"; break;
            case 0x02: name = "Invalid Field in Command"; break;
            case 0x03: name = "Command ID Conflict"; break;
            case 0x04: name = "Data Transfer Error"; break;
            case 0x05: name = "Commands Aborted due to Power Loss Notification"; break;
            case 0x06: name = "Internal Error"; break;
            case 0x07: name = "Command Abort Requested"; break;
            case 0x08: name = "Command Aborted due to SQ Deletion"; break;
            case 0x0b: name = "Invalid Namespace or Format"; break;
            case 0x0d: name = "Invalid SGL Segment Descriptor"; break;
            case 0x13: name = "Invalid PRP Offset"; break;
            case 0x80: name = "LBA Out of Range"; break;
            case 0x81: name = "Capacity Exceeded"; break;
            case 0x82: name = "Namespace Not Ready"; break;
        }
    } else if (sct == 1) {
        switch (sc) {
            case 0x00: name = "Completion Queue Invalid"; break;
            case 0x01: name = "Invalid Queue Identifier"; break;
            case 0x02: name = "Invalid Queue Size"; break;
            case 0x03: name = "Abort Command Limit Exceeded"; break;
            case 0x08: name = "Invalid Interrupt Vector"; break;
            case 0x0b: name = "Invalid Namespace or Format"; break;
            case 0x0c: name = "Invalid Queue Deletion"; break;
            case 0x80: name = "Conflicting Attributes"; break;
            case 0x82: name = "Attempted Write to Read Only Range"; break;
        }
    } else if (sct == 2) {
        switch (sc) {
            case 0x80: name = "Write Fault"; break;
            case 0x81: name = "Unrecovered Read Error"; break;
            case 0x82: name = "End-to-end Guard Check Error"; break;
            case 0x85: name = "Compare Failure"; break;
            case 0x86: name = "Access Denied"; break;
            case 0x87: name = "Deallocated or Unwritten Logical Block"; break;
        }
    }
    static constexpr const char* kTypes[] = {"Generic", "Command Specific", "Media/Data Integrity", "Path Related",
                                             "?", "?", "?", "Vendor Specific"};
    return fmt::format("{} (SCT {:x}h {}, SC {:02x}h{})", name ? name : "Unknown status", sct, kTypes[sct], sc,
                       status_dnr(sf) ? ", do not retry" : "");
}

int status_errno(std::uint16_t sf) {
    const std::uint16_t sct = status_code_type(sf), sc = status_code(sf);
    if (sct == 0 && (sc == 0x01 || sc == 0x02 || sc == 0x0b || sc == 0x80)) return EINVAL;
    if (sct == 0 && sc == 0x81) return ENOSPC;
    if (sct == 0 && (sc == 0x07 || sc == 0x08)) return ECANCELED;
    if (sct == 2 && sc == 0x86) return EACCES;
    return EIO;
}

}  // namespace udrv::nvme
