#include "spec.hpp"

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

}  // namespace

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
