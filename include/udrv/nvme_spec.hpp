// NVMe 1.4 definitions: registers, queue entry layouts, opcodes, status names, and the validated
// parsing of what a controller reports (Identify). Shared by the driver, the tools, the tests and
// anything that speaks NVMe (the NVMe/TCP target).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "udrv/result.hpp"

namespace udrv::nvme {

// Controller registers (BAR0).
inline constexpr std::size_t kRegCap = 0x00, kRegVs = 0x08, kRegIntms = 0x0c, kRegIntmc = 0x10, kRegCc = 0x14,
                             kRegCsts = 0x1c, kRegAqa = 0x24, kRegAsq = 0x28, kRegAcq = 0x30, kRegDoorbells = 0x1000;
/// The register window the driver maps: the registers and a page of doorbells (the admin queue's and
/// as many I/O queues' as the doorbell stride leaves room for; see io_queues_in_window).
inline constexpr std::size_t kBarMin = 0x2000;
/// Shadow doorbell and event index buffers (Doorbell Buffer Config) are one page laid out as the
/// doorbells are: a queue whose doorbells lie in the window has its shadow entries in the page.
inline constexpr std::size_t kShadowBufferBytes = kBarMin - kRegDoorbells;

/// I/O queue pairs whose doorbells (`stride` bytes apart, SQ then CQ, queue 0 first) lie within a register
/// window of `window` bytes; -1 when not even the admin queue's do. CAP.DSTRD is the device's word.
constexpr int io_queues_in_window(std::uint32_t stride, std::size_t window) {
    if (window <= kRegDoorbells || stride == 0) return -1;
    return static_cast<int>((window - kRegDoorbells) / (2 * std::size_t{stride})) - 1;
}

inline constexpr std::uint32_t kCcEnable = 1u << 0, kCcShnNormal = 1u << 14, kCcShnMask = 3u << 14;
inline constexpr std::uint32_t kCcIosqes = 6u << 16, kCcIocqes = 4u << 20;  // 64-byte SQEs, 16-byte CQEs
inline constexpr std::uint32_t kCstsReady = 1u << 0, kCstsFatal = 1u << 1, kCstsShstMask = 3u << 2, kCstsShstDone = 2u << 2;

/// Submission queue entry (64 bytes).
struct Sqe {
    std::uint32_t cdw0;  // opcode 0-7, fused 8-9, PSDT 14-15, command id 16-31
    std::uint32_t nsid;
    std::uint32_t cdw2, cdw3;
    std::uint64_t mptr;
    std::uint64_t prp1, prp2;
    std::uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};
static_assert(sizeof(Sqe) == 64);

/// Completion queue entry (16 bytes).
struct Cqe {
    std::uint32_t result;
    std::uint32_t reserved;
    std::uint16_t sq_head, sq_id;
    std::uint16_t cid;
    std::uint16_t status;  // phase in bit 0, status field in 1-15
};
static_assert(sizeof(Cqe) == 16);

/// Whether a completion entry can be believed: it names a command id this queue has outstanding
/// (`outstanding(cid)` is asked only for cid < depth), this queue's SQ, and an SQ head inside the queue.
/// Anything else means the controller, or its view of memory, is broken.
template <typename Outstanding>
constexpr bool completion_plausible(const Cqe& c, std::uint16_t qid, std::uint16_t depth, Outstanding&& outstanding) noexcept {
    return c.cid < depth && c.sq_id == qid && c.sq_head < depth && outstanding(c.cid);
}

// Admin opcodes.
inline constexpr std::uint8_t kAdminDeleteSq = 0x00, kAdminCreateSq = 0x01, kAdminDeleteCq = 0x04, kAdminCreateCq = 0x05,
                              kAdminIdentify = 0x06, kAdminAbort = 0x08, kAdminSetFeatures = 0x09, kAdminDoorbellBuffer = 0x7c;
inline constexpr std::uint16_t kOacsDoorbellBuffer = 1u << 8;
inline constexpr std::uint32_t kCnsNamespace = 0x00, kCnsController = 0x01, kCnsActiveNsList = 0x02;
inline constexpr std::uint32_t kFeatureNumQueues = 0x07;
// I/O opcodes.
inline constexpr std::uint8_t kIoFlush = 0x00, kIoWrite = 0x01, kIoRead = 0x02, kIoWriteZeroes = 0x08, kIoDsm = 0x09;

struct LbaFormat {
    std::uint16_t metadata_size = 0;
    std::uint8_t lba_shift = 9;        ///< LBADS: block size is 1 << lba_shift
    std::uint8_t relative_performance = 0;
};

struct NamespaceInfo {
    std::uint32_t nsid = 0;
    std::uint64_t size = 0, capacity = 0, utilization = 0;  ///< in blocks (NSZE, NCAP, NUSE)
    std::vector<LbaFormat> lba_formats;
    std::uint8_t current_format = 0;
    std::uint32_t block_size() const { return 1u << lba_formats[current_format].lba_shift; }
};

struct ControllerInfo {
    std::uint16_t vid = 0, ssvid = 0, cntlid = 0;
    std::string serial, model, firmware, subnqn;
    std::uint8_t mdts = 0;              ///< log2 of pages; 0: no limit
    std::uint32_t version = 0;          ///< VS register
    std::uint32_t namespaces = 0;       ///< NN
    std::uint16_t oncs = 0;             ///< optional NVM commands
    std::uint16_t oacs = 0;             ///< optional admin commands
    bool shadow_doorbells = false;      ///< Doorbell Buffer Config in use (emulated controllers)
    std::uint8_t vwc = 0;               ///< volatile write cache
    std::uint16_t max_queue_entries = 0; ///< CAP.MQES + 1
    std::uint32_t doorbell_stride = 4;  ///< bytes, from CAP.DSTRD
    std::uint32_t timeout_ms = 0;       ///< CAP.TO
    std::uint16_t io_queues = 0;        ///< granted by Set Features (Number of Queues)
    std::uint32_t max_transfer = 0;     ///< bytes per command this driver uses
};
/// Identify Controller data (CNS 1, 4096 bytes) into info's identify fields, and max_transfer from MDTS,
/// at most `max_transfer_cap`. ENOTSUP when the controller needs queue entries larger than 64/16 bytes.
Result<void> parse_identify_controller(std::span<const std::byte> id, ControllerInfo& info, std::uint32_t max_transfer_cap);

/// Identify Namespace data (CNS 0, 4096 bytes) of namespace `nsid`, validated before anyone divides by a
/// block size or trusts a size: EPROTO for a format index beyond the table, a block size outside
/// 512 B-64 KiB, a size of 0 or above 2^48 blocks; ENOTSUP for a block larger than `max_transfer` (one
/// command could not move it) or a format with metadata.
Result<NamespaceInfo> parse_identify_namespace(std::uint32_t nsid, std::span<const std::byte> id, std::uint32_t max_transfer);

/// Identify data field by field, named and valued as nvme-cli's `id-ctrl -o json` / `id-ns -o json` print
/// them (every field of the structure, in its order), so that scripts written for nvme-cli read udrv's
/// output unchanged. Numbers are numbers; text fields keep the device's padding, as nvme-cli's do;
/// 128-bit counts are decimal strings, GUIDs and EUIs hex strings.
using IdentifyValue = std::variant<std::uint64_t, std::string>;
struct IdentifyRecord {
    std::vector<std::pair<std::string_view, IdentifyValue>> fields;
};
struct IdentifyDump {
    IdentifyRecord fields;
    std::string_view list_key;            ///< "psds" (power states) or "lbafs" (LBA formats)
    std::vector<IdentifyRecord> list;
};
/// Identify Controller data (4096 bytes; EINVAL if shorter).
Result<IdentifyDump> dump_identify_controller(std::span<const std::byte> id);
/// Identify Namespace data (4096 bytes; EINVAL if shorter).
Result<IdentifyDump> dump_identify_namespace(std::span<const std::byte> id);

/// Status field (CQE bits 17-31, i.e. `status >> 1`): SCT in bits 8-10, SC in bits 0-7, DNR bit 14.
inline constexpr std::uint16_t status_code_type(std::uint16_t sf) { return (sf >> 8) & 0x7; }
inline constexpr std::uint16_t status_code(std::uint16_t sf) { return sf & 0xff; }
inline constexpr bool status_dnr(std::uint16_t sf) { return sf & 0x4000; }
/// "Invalid Field in Command (SCT 0h, SC 2h)" and friends.
std::string status_name(std::uint16_t sf);
/// errno for a status: EINVAL for invalid commands, ENOSPC for capacity, EIO otherwise.
int status_errno(std::uint16_t sf);

}  // namespace udrv::nvme
