// Admin commands and properties of an NVMe/TCP controller: what the Linux host's nvme core asks at
// connect time (Property Get/Set of CAP, VS, CC, CSTS; Identify; Set Features Number of Queues and
// Asynchronous Event Configuration; Get Log Page) and what nvme-cli shows (id-ctrl, id-ns, smart-log,
// error-log, discover).
#include <algorithm>
#include <cstring>

#include "target_impl.hpp"

namespace udrv::nvmf::detail {

namespace {

constexpr std::uint32_t kVersion = 0x00010300;  // NVMe 1.3: what the Linux host needs, and no 2.0 identify sets
constexpr std::uint8_t kCntrlTypeIo = 1, kCntrlTypeDiscovery = 2;
constexpr std::uint16_t kKas = 10;               // keep alive granularity: 100 ms units -> 1 s
constexpr std::uint8_t kAerl = 3;                // four AERs held at once

void put_text(std::span<std::byte> out, std::size_t off, std::size_t width, std::string_view s, char pad = ' ') {
    for (std::size_t i = 0; i < width; ++i) out[off + i] = std::byte(i < s.size() ? static_cast<unsigned char>(s[i]) : pad);
}

std::uint32_t mdts_of(std::uint32_t max_transfer) {
    std::uint32_t m = 0;
    while ((4096u << (m + 1)) <= max_transfer && m < 15) ++m;
    return m;
}

}  // namespace

std::vector<std::byte> identify_controller(const Controller& c, const SubsystemState& s, const TargetOptions& o) {
    std::vector<std::byte> id(4096);
    std::span<std::byte> b(id);
    put16(b, 0, 0x1b36);   // VID: the PCI id QEMU's NVMe uses for "Red Hat, Inc." software devices; SSVID the same
    put16(b, 2, 0x1af4);
    put_text(b, 4, 20, s.serial);
    put_text(b, 24, 40, s.model);
    put_text(b, 64, 8, "udrv");
    b[72] = std::byte{6};                                            // RAB
    b[76] = std::byte(s.discovery ? 0 : 0x02);                       // CMIC: more than one controller (hosts) per subsystem
    b[77] = std::byte(mdts_of(o.max_transfer));                      // MDTS in 4 KiB pages
    put16(b, 78, c.cntlid);
    put32(b, 80, kVersion);
    put32(b, 92, s.discovery ? 0 : (1u << 8));                       // OAES: Namespace Attribute Notices
    put32(b, 96, (1u << 0) | (1u << 6));                             // CTRATT: 128-bit host id, traffic-based keep alive
    b[111] = std::byte(s.discovery ? kCntrlTypeDiscovery : kCntrlTypeIo);
    put16(b, 256, 0);                                                // OACS: no optional admin commands
    b[258] = std::byte{3};                                           // ACL: four aborts
    b[259] = std::byte(kAerl);
    b[260] = std::byte{0x03};                                        // FRMW: slot 1 read-only, one slot
    b[261] = std::byte{(1u << 1) | (1u << 2)};                       // LPA: commands effects log, extended Get Log Page
    b[262] = std::byte{0};                                           // ELPE: one error log entry
    put16(b, 266, 0x0157);                                           // WCTEMP 343 K, CCTEMP 373 K (nvme-cli shows them)
    put16(b, 268, 0x0175);
    put16(b, 320, kKas);
    b[512] = std::byte{0x66};                                        // SQES: 64 bytes
    b[513] = std::byte{0x44};                                        // CQES: 16 bytes
    put16(b, 514, static_cast<std::uint16_t>(o.queue_entries));      // MAXCMD
    if (!s.discovery) {
        std::uint32_t nn = 0;
        bool wz = false, dealloc = false, vwc = false;
        for (const auto& n : s.namespaces) {
            nn = std::max(nn, n.nsid);
            wz |= n.info.write_zeroes;
            dealloc |= n.info.deallocate;
            vwc |= n.info.volatile_cache;
        }
        put32(b, 516, std::max<std::uint32_t>(nn, 32));              // NN: namespaces may be added up to this id
        put16(b, 520, static_cast<std::uint16_t>((dealloc ? 1u << 2 : 0) | (wz ? 1u << 3 : 0)));  // ONCS
        b[525] = std::byte(vwc ? 0x07 : 0x06);                       // VWC present; flush with NSID FFFFFFFFh supported
    }
    put32(b, 536, (1u << 0) | (1u << 20));                           // SGLS: SGLs, offsets in data block descriptors
    put_text(b, 768, 256, s.nqn, '\0');                              // SUBNQN
    put32(b, 1792, (64 + o.in_capsule) / 16);                        // IOCCSZ
    put32(b, 1796, 1);                                               // IORCSZ: 16 bytes
    put16(b, 1800, 0);                                               // ICDOFF
    b[1803] = std::byte{1};                                          // MSDBD
    put16(b, 2048, 0x09c4);                                          // power state 0: 25 W (nvme-cli prints it)
    return id;
}

namespace {

std::vector<std::byte> identify_namespace(const Namespace* n) {
    std::vector<std::byte> id(4096);
    if (!n) return id;  // an inactive namespace: zeros
    std::span<std::byte> b(id);
    const std::uint64_t blocks = n->info.blocks;
    put64(b, 0, blocks);
    put64(b, 8, blocks);
    put64(b, 16, blocks);
    b[24] = std::byte(n->info.deallocate ? 0x01 : 0x00);  // NSFEAT: thin provisioning where deallocate works
    b[25] = std::byte{0};                                // NLBAF: one format
    b[26] = std::byte{0};                                // FLBAS
    b[30] = std::byte{0x01};                             // NMIC: may be attached to several controllers
    std::copy(n->nguid.begin(), n->nguid.end(), b.begin() + 104);
    const auto shift = static_cast<std::uint8_t>(__builtin_ctz(n->info.block_size));
    b[128 + 2] = std::byte(shift);                       // LBAF0: LBADS
    return id;
}

}  // namespace

Completion admin_identify(Controller& c, const SubsystemState& s, const TargetOptions& o, const nvme::Sqe& sqe, std::vector<std::byte>& out) {
    const std::uint8_t cns = static_cast<std::uint8_t>(sqe.cdw10);
    switch (cns) {
    case 0x01: out = identify_controller(c, s, o); return {};
    case 0x00:
        if (s.discovery) return {0, 0, kScInvalidField | kDnr};
        if (sqe.nsid == 0 || (sqe.nsid > kMaxNamespaces && sqe.nsid != 0xffffffffu)) return {0, 0, kScInvalidNamespace | kDnr};
        out = identify_namespace(s.find(sqe.nsid));
        return {};
    case 0x02: {  // active namespace ids above NSID
        if (s.discovery) return {0, 0, kScInvalidField | kDnr};
        if (sqe.nsid >= 0xfffffffeu) return {0, 0, kScInvalidNamespace | kDnr};
        out.assign(4096, std::byte{0});
        std::size_t i = 0;
        for (const auto& n : s.namespaces)
            if (n.nsid > sqe.nsid && i < 1024) put32(out, 4 * i++, n.nsid);
        return {};
    }
    case 0x03: {  // namespace identification descriptors: the NGUID and the command set (NVM)
        const Namespace* n = s.discovery ? nullptr : s.find(sqe.nsid);
        if (!n) return {0, 0, kScInvalidNamespace | kDnr};
        out.assign(4096, std::byte{0});
        out[0] = std::byte{0x02};  // NIDT: NGUID
        out[1] = std::byte{16};
        std::copy(n->nguid.begin(), n->nguid.end(), out.begin() + 4);
        out[20] = std::byte{0x04};  // NIDT: command set identifier
        out[21] = std::byte{1};
        out[24] = std::byte{0};     // NVM
        return {};
    }
    default: return {0, 0, kScInvalidField | kDnr};
    }
}

Completion admin_get_log_page(Controller& c, const SubsystemState& s, TargetImplView& t, const nvme::Sqe& sqe, std::vector<std::byte>& out) {
    const std::uint8_t lid = static_cast<std::uint8_t>(sqe.cdw10);
    const std::uint64_t dwords = ((std::uint64_t{sqe.cdw11 & 0xffff} << 16) | (sqe.cdw10 >> 16)) + 1;
    const std::uint64_t offset = std::uint64_t{sqe.cdw12} | std::uint64_t{sqe.cdw13} << 32;
    std::vector<std::byte> log;
    switch (lid) {
    case 0x01: log.assign(64, std::byte{0}); break;   // error information: none recorded
    case 0x02: {                                     // SMART / health: nothing to warn about
        log.assign(512, std::byte{0});
        put16(log, 1, 0x0141);                       // composite temperature 321 K
        log[3] = std::byte{100};                     // available spare
        log[4] = std::byte{10};                      // spare threshold
        break;
    }
    case 0x03: {                                     // firmware slots
        log.assign(512, std::byte{0});
        log[0] = std::byte{1};
        put_text(log, 8, 8, "udrv");
        break;
    }
    case 0x04: {                                     // changed namespace list (read clears it)
        log.assign(4096, std::byte{0});
        std::lock_guard lock(c.mu);
        if (c.changed_nsids.size() > 1024) put32(log, 0, 0xffffffffu);
        else
            for (std::size_t i = 0; i < c.changed_nsids.size(); ++i) put32(log, 4 * i, c.changed_nsids[i]);
        if (!(sqe.cdw10 & (1u << 15))) c.changed_nsids.clear();
        break;
    }
    case 0x05: {                                     // commands supported and effects
        log.assign(4096, std::byte{0});
        for (std::uint8_t op : {0x02, 0x06, 0x08, 0x09, 0x0a, 0x0c, 0x18}) put32(log, 4 * op, 1);
        for (std::uint8_t op : {0x00, 0x01, 0x02, 0x08, 0x09}) put32(log, 1024 + 4 * op, op == 0x02 ? 1 : 3);  // writes change content
        break;
    }
    case 0x70: {                                     // discovery
        if (!s.discovery) return {0, 0, kScInvalidLogPage | kDnr};
        const auto entries = t.discovery_entries(c.hostnqn);
        log.assign(1024 * (1 + entries.size()), std::byte{0});
        put64(log, 0, c.subsys->generation.load(std::memory_order_acquire));  // GENCTR
        put64(log, 8, entries.size());
        for (std::size_t i = 0; i < entries.size(); ++i) {
            std::span<std::byte> e = std::span(log).subspan(1024 * (i + 1), 1024);
            const auto& d = entries[i];
            e[0] = std::byte{3};                                          // TRTYPE: TCP
            e[1] = std::byte(d.address.host.find(':') != std::string::npos ? 2 : 1);  // ADRFAM: IPv6 / IPv4
            e[2] = std::byte{2};                                          // SUBTYPE: NVMe subsystem
            e[3] = std::byte{0x04};                                       // TREQ: SQ flow control may be disabled
            put16(e, 4, d.port_id);
            put16(e, 6, 0xffff);                                          // CNTLID: dynamic
            put16(e, 8, 32);                                              // ASQSZ
            put_text(e, 32, 32, std::to_string(d.address.port));         // TRSVCID
            put_text(e, 256, 256, d.subnqn, '\0');
            put_text(e, 512, 256, d.address.host);                        // TRADDR
            e[768] = std::byte{0};                                        // TSAS: no security
        }
        break;
    }
    default: return {0, 0, kScInvalidLogPage | kDnr};
    }
    if (offset % 4 || offset > log.size()) return {0, 0, kScInvalidField | kDnr};
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(dwords * 4, log.size() - offset));
    out.assign(log.begin() + static_cast<std::ptrdiff_t>(offset), log.begin() + static_cast<std::ptrdiff_t>(offset + n));
    out.resize(static_cast<std::size_t>(std::min<std::uint64_t>(dwords * 4, 1u << 20)));  // beyond the log: zeros
    return {};
}

Completion admin_features(Controller& c, const SubsystemState& s, const TargetOptions& o, const nvme::Sqe& sqe) {
    const bool set = (sqe.cdw0 & 0xff) == 0x09;
    const std::uint8_t fid = static_cast<std::uint8_t>(sqe.cdw10);
    bool vwc = false;
    for (const auto& n : s.namespaces) vwc |= n.info.volatile_cache;
    switch (fid) {
    case 0x07: {  // Number of Queues
        if (set) {
            if (c.io_queues_granted.load() != 0) return {0, 0, 0x10c | kDnr};  // Feature Not Changeable (once granted)
            const std::uint32_t nsq = (sqe.cdw11 & 0xffff) + 1, ncq = (sqe.cdw11 >> 16) + 1;
            if (nsq == 0x10000 || ncq == 0x10000) return {0, 0, kScInvalidField | kDnr};
            const std::uint32_t n = std::min({nsq, ncq, o.max_io_queues, 64u});
            c.io_queues_granted.store(static_cast<std::uint16_t>(n));
        }
        const std::uint32_t n = c.io_queues_granted.load() ? c.io_queues_granted.load() : std::min(o.max_io_queues, 64u);
        return {(n - 1) | (n - 1) << 16, 0, kScSuccess};
    }
    case 0x0b:  // Asynchronous Event Configuration
        if (set) c.aen_config = sqe.cdw11;
        return {c.aen_config, 0, kScSuccess};
    case 0x0f:  // Keep Alive Timer
        if (set) c.kato_ms = sqe.cdw11;
        return {c.kato_ms, 0, kScSuccess};
    case 0x06:  // Volatile Write Cache: on where the devices have one (it cannot be turned off)
        if (set && bool(sqe.cdw11 & 1) != vwc) return {0, 0, kScInvalidField | kDnr};
        return {vwc ? 1u : 0u, 0, kScSuccess};
    case 0x01: case 0x02: case 0x04: case 0x08:  // arbitration, power management, temperature, interrupt coalescing
        if (set) return {0, 0, kScSuccess};      // accepted; nothing in the target depends on them
        return {fid == 0x04 ? 0x0157u : 0u, 0, kScSuccess};
    default: return {0, 0, kScInvalidField | kDnr};
    }
}

Completion property_get(Controller& c, const TargetOptions& o, const nvme::Sqe& sqe) {
    const bool eight = (sqe.cdw10 & 0x7) == 1;
    const std::uint32_t offset = sqe.cdw11;
    std::uint64_t v = 0;
    switch (offset) {
    case nvme::kRegCap:
        v = std::uint64_t{o.queue_entries - 1}     // MQES
            | 1ull << 16                            // CQR
            | 30ull << 24                           // TO: 15 s
            | 1ull << 37;                           // CSS: NVM command set
        break;
    case nvme::kRegVs: v = kVersion; break;
    case nvme::kRegCc: v = c.cc.load(); break;
    case nvme::kRegCsts: v = c.csts.load(); break;
    default: return {0, 0, kScInvalidField | kDnr};
    }
    if (eight != (offset == nvme::kRegCap)) return {0, 0, kScInvalidField | kDnr};
    return {static_cast<std::uint32_t>(v), static_cast<std::uint32_t>(v >> 32), kScSuccess};
}

Completion property_set(Controller& c, const nvme::Sqe& sqe) {
    const std::uint32_t offset = sqe.cdw11;
    const std::uint32_t v = sqe.cdw12;
    if ((sqe.cdw10 & 0x7) != 0 || offset != nvme::kRegCc) return {0, 0, kScInvalidField | kDnr};
    const std::uint32_t old = c.cc.exchange(v);
    std::uint32_t csts = c.csts.load();
    if ((v & nvme::kCcEnable) && !(old & nvme::kCcEnable)) {
        // Enabling: the queue entry sizes must be the only ones fabrics know.
        if (((v >> 16) & 0xf) != 6 || ((v >> 20) & 0xf) != 4) csts |= nvme::kCstsFatal;
        else csts |= nvme::kCstsReady;
    } else if (!(v & nvme::kCcEnable) && (old & nvme::kCcEnable)) {
        csts = 0;  // a reset: the host reconnects its I/O queues
    }
    if (v & nvme::kCcShnMask) csts = (csts & ~nvme::kCstsShstMask) | nvme::kCstsShstDone;  // nothing is cached here: done at once
    c.csts.store(csts);
    return {};
}

}  // namespace udrv::nvmf::detail
