// NVMe 1.4 definitions used by the driver: registers, queue entry layouts, opcodes, status names.
#pragma once

#include <cstdint>
#include <string>

namespace udrv::nvme {

// Controller registers (BAR0).
inline constexpr std::size_t kRegCap = 0x00, kRegVs = 0x08, kRegIntms = 0x0c, kRegIntmc = 0x10, kRegCc = 0x14,
                             kRegCsts = 0x1c, kRegAqa = 0x24, kRegAsq = 0x28, kRegAcq = 0x30, kRegDoorbells = 0x1000;
/// BAR0 must hold at least the registers and the admin queue's doorbells.
inline constexpr std::size_t kBarMin = 0x2000;

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

// Admin opcodes.
inline constexpr std::uint8_t kAdminDeleteSq = 0x00, kAdminCreateSq = 0x01, kAdminDeleteCq = 0x04, kAdminCreateCq = 0x05,
                              kAdminIdentify = 0x06, kAdminAbort = 0x08, kAdminSetFeatures = 0x09, kAdminDoorbellBuffer = 0x7c;
inline constexpr std::uint16_t kOacsDoorbellBuffer = 1u << 8;
inline constexpr std::uint32_t kCnsNamespace = 0x00, kCnsController = 0x01, kCnsActiveNsList = 0x02;
inline constexpr std::uint32_t kFeatureNumQueues = 0x07;
// I/O opcodes.
inline constexpr std::uint8_t kIoFlush = 0x00, kIoWrite = 0x01, kIoRead = 0x02, kIoWriteZeroes = 0x08, kIoDsm = 0x09;

/// Status field (CQE bits 17-31, i.e. `status >> 1`): SCT in bits 8-10, SC in bits 0-7, DNR bit 14.
inline constexpr std::uint16_t status_code_type(std::uint16_t sf) { return (sf >> 8) & 0x7; }
inline constexpr std::uint16_t status_code(std::uint16_t sf) { return sf & 0xff; }
inline constexpr bool status_dnr(std::uint16_t sf) { return sf & 0x4000; }
/// "Invalid Field in Command (SCT 0h, SC 2h)" and friends.
std::string status_name(std::uint16_t sf);
/// errno for a status: EINVAL for invalid commands, ENOSPC for capacity, EIO otherwise.
int status_errno(std::uint16_t sf);

}  // namespace udrv::nvme
