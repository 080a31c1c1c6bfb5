// NVMe commands built from named fields (NVMe 1.4: admin commands in section 5, NVM commands in 6),
// so no caller writes a command dword by hand. The command identifier goes in at submission.
#pragma once

#include <cstdint>
#include <optional>

#include "udrv/nvme_spec.hpp"

namespace udrv::nvme {

/// Optional NVM Command Support (Identify Controller ONCS): the commands a controller takes besides read,
/// write and flush.
enum Oncs : std::uint16_t {
    kOncsCompare = 1u << 0,
    kOncsWriteUncorrectable = 1u << 1,
    kOncsDatasetManagement = 1u << 2,
    kOncsWriteZeroes = 1u << 3,
    kOncsSaveSelect = 1u << 4,
    kOncsReservations = 1u << 5,
    kOncsTimestamp = 1u << 6,
    kOncsVerify = 1u << 7,
};

/// One Dataset Management range (16 bytes, little-endian): what a DSM command's data holds.
struct DsmRange {
    std::uint32_t attributes = 0;  ///< context attributes (access hints)
    std::uint32_t blocks = 0;      ///< length in logical blocks
    std::uint64_t slba = 0;        ///< starting LBA
};
static_assert(sizeof(DsmRange) == 16);
inline constexpr std::uint32_t kDsmDeallocate = 1u << 2;  ///< CDW11 attribute AD
inline constexpr unsigned kDsmMaxRanges = 256;

namespace cmd {

constexpr Sqe with_opcode(std::uint8_t opcode, std::uint32_t nsid = 0) {
    Sqe s{};
    s.cdw0 = opcode;
    s.nsid = nsid;
    return s;
}

/// Identify (CNS: 0 namespace, 1 controller, 2 active namespace list) into the page at `prp`.
constexpr Sqe identify(std::uint32_t cns, std::uint32_t nsid, std::uint64_t prp) {
    Sqe s = with_opcode(kAdminIdentify, nsid);
    s.prp1 = prp;
    s.cdw10 = cns;
    return s;
}

/// Set Features, Number of Queues: `sqs` submission and `cqs` completion queues wanted (1-based here).
constexpr Sqe set_number_of_queues(std::uint16_t sqs, std::uint16_t cqs) {
    Sqe s = with_opcode(kAdminSetFeatures);
    s.cdw10 = kFeatureNumQueues;
    s.cdw11 = static_cast<std::uint32_t>(cqs - 1u) << 16 | (sqs - 1u);
    return s;
}

/// Doorbell Buffer Config: the shadow doorbell page and the event index page.
constexpr Sqe doorbell_buffer_config(std::uint64_t shadow, std::uint64_t event_index) {
    Sqe s = with_opcode(kAdminDoorbellBuffer);
    s.prp1 = shadow;
    s.prp2 = event_index;
    return s;
}

/// Create I/O Completion Queue `qid` of `entries` entries at `iova` (physically contiguous), raising
/// MSI-X `vector` when given, else polled.
constexpr Sqe create_io_cq(std::uint16_t qid, std::uint16_t entries, std::uint64_t iova, std::optional<std::uint16_t> vector) {
    Sqe s = with_opcode(kAdminCreateCq);
    s.prp1 = iova;
    s.cdw10 = static_cast<std::uint32_t>(entries - 1u) << 16 | qid;
    s.cdw11 = (vector ? (static_cast<std::uint32_t>(*vector) << 16 | 0x2) : 0) | 0x1;  // IV, IEN, PC
    return s;
}

/// Create I/O Submission Queue `qid` of `entries` entries at `iova`, completing into CQ `cqid`.
constexpr Sqe create_io_sq(std::uint16_t qid, std::uint16_t entries, std::uint64_t iova, std::uint16_t cqid) {
    Sqe s = with_opcode(kAdminCreateSq);
    s.prp1 = iova;
    s.cdw10 = static_cast<std::uint32_t>(entries - 1u) << 16 | qid;
    s.cdw11 = static_cast<std::uint32_t>(cqid) << 16 | 0x1;  // CQID, PC
    return s;
}

constexpr Sqe delete_io_sq(std::uint16_t qid) {
    Sqe s = with_opcode(kAdminDeleteSq);
    s.cdw10 = qid;
    return s;
}

constexpr Sqe delete_io_cq(std::uint16_t qid) {
    Sqe s = with_opcode(kAdminDeleteCq);
    s.cdw10 = qid;
    return s;
}

/// Abort command `cid` of submission queue `sqid`.
constexpr Sqe abort(std::uint16_t sqid, std::uint16_t cid) {
    Sqe s = with_opcode(kAdminAbort);
    s.cdw10 = sqid | static_cast<std::uint32_t>(cid) << 16;
    return s;
}

/// The NVM commands that address blocks: SLBA in CDW10-11, the 0-based block count in CDW12.
constexpr Sqe block_command(std::uint8_t opcode, std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks) {
    Sqe s = with_opcode(opcode, nsid);
    s.cdw10 = static_cast<std::uint32_t>(slba);
    s.cdw11 = static_cast<std::uint32_t>(slba >> 32);
    s.cdw12 = blocks - 1;
    return s;
}
constexpr Sqe read(std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks) { return block_command(kIoRead, nsid, slba, blocks); }
constexpr Sqe write(std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks) { return block_command(kIoWrite, nsid, slba, blocks); }
constexpr Sqe write_zeroes(std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks) {
    return block_command(kIoWriteZeroes, nsid, slba, blocks);
}
constexpr Sqe flush(std::uint32_t nsid) { return with_opcode(kIoFlush, nsid); }

/// Dataset Management over `ranges` DsmRange entries at `iova`, with CDW11 `attributes` (kDsmDeallocate).
constexpr Sqe dataset_management(std::uint32_t nsid, std::uint64_t iova, unsigned ranges, std::uint32_t attributes) {
    Sqe s = with_opcode(kIoDsm, nsid);
    s.prp1 = iova;
    s.cdw10 = ranges - 1u;  // NR is 0-based
    s.cdw11 = attributes;
    return s;
}

}  // namespace cmd
}  // namespace udrv::nvme
