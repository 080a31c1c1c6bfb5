// NVMe/TCP PDUs (NVMe/TCP Transport Specification 1.0, TP 8000): the common header, the header of each
// PDU type, digests, and the checks every received header passes before anything in it is used. The
// network is untrusted: a header that fails a check is a fatal transport error (check_header names the
// Fatal Error Status and the offset of the offending field, for the C2HTermReq that ends the connection).
// Fields are read and written byte by byte (little-endian, as on the wire), never through casts.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <span>
#include <string>

#include "udrv/nvme_spec.hpp"

namespace udrv::nvmf {

enum class PduType : std::uint8_t {
    ic_req = 0x00, ic_resp = 0x01, h2c_term_req = 0x02, c2h_term_req = 0x03, capsule_cmd = 0x04, capsule_resp = 0x05,
    h2c_data = 0x06, c2h_data = 0x07, r2t = 0x09,
};
const char* pdu_type_name(std::uint8_t type);

inline constexpr std::uint8_t kFlagHdgst = 0x01, kFlagDdgst = 0x02, kFlagLastPdu = 0x04, kFlagSuccess = 0x08;
inline constexpr std::size_t kCommonHeaderBytes = 8, kIcBytes = 128, kCapsuleCmdHeaderBytes = 72, kCapsuleRespBytes = 24,
                             kDataHeaderBytes = 24, kR2tBytes = 24, kTermReqHeaderBytes = 24, kDigestBytes = 4;
/// A TermReq carries at most this much of the PDU header it complains about.
inline constexpr std::size_t kTermReqMaxData = 128;
inline constexpr std::uint8_t kDigestHeader = 0x01, kDigestData = 0x02;  // ICReq/ICResp DGST bits

/// Fatal Error Status of a TermReq.
enum class Fes : std::uint16_t {
    invalid_header_field = 0x01, pdu_sequence_error = 0x02, header_digest_error = 0x03, data_out_of_range = 0x04,
    data_limit_exceeded = 0x05, unsupported_parameter = 0x06,
};

// ---- little-endian fields ----
inline std::uint16_t get16(std::span<const std::byte> b, std::size_t off) {
    return static_cast<std::uint16_t>(std::to_integer<unsigned>(b[off]) | std::to_integer<unsigned>(b[off + 1]) << 8);
}
inline std::uint32_t get32(std::span<const std::byte> b, std::size_t off) {
    return std::uint32_t{get16(b, off)} | std::uint32_t{get16(b, off + 2)} << 16;
}
inline std::uint64_t get64(std::span<const std::byte> b, std::size_t off) {
    return std::uint64_t{get32(b, off)} | std::uint64_t{get32(b, off + 4)} << 32;
}
inline void put16(std::span<std::byte> b, std::size_t off, std::uint16_t v) {
    b[off] = std::byte(v & 0xff);
    b[off + 1] = std::byte(v >> 8);
}
inline void put32(std::span<std::byte> b, std::size_t off, std::uint32_t v) {
    put16(b, off, static_cast<std::uint16_t>(v));
    put16(b, off + 2, static_cast<std::uint16_t>(v >> 16));
}
inline void put64(std::span<std::byte> b, std::size_t off, std::uint64_t v) {
    put32(b, off, static_cast<std::uint32_t>(v));
    put32(b, off + 4, static_cast<std::uint32_t>(v >> 32));
}

/// CRC32C as NVMe/TCP's header and data digests use it (ISA-L's crc32_iscsi). `crc` continues a running
/// digest: crc32c_update(crc32c_update(kCrcInit, a), b), then crc32c_final.
inline constexpr std::uint32_t kCrcInit = 0xffffffffu;
std::uint32_t crc32c_update(std::uint32_t crc, std::span<const std::byte> data);
inline std::uint32_t crc32c_final(std::uint32_t crc) { return ~crc; }
inline std::uint32_t crc32c(std::span<const std::byte> data) { return crc32c_final(crc32c_update(kCrcInit, data)); }

struct CommonHeader {
    std::uint8_t type = 0, flags = 0, hlen = 0, pdo = 0;
    std::uint32_t plen = 0;
};
inline CommonHeader read_common(std::span<const std::byte> b) {
    return {std::to_integer<std::uint8_t>(b[0]), std::to_integer<std::uint8_t>(b[1]), std::to_integer<std::uint8_t>(b[2]),
            std::to_integer<std::uint8_t>(b[3]), get32(b, 4)};
}
inline void write_common(std::span<std::byte> b, const CommonHeader& h) {
    b[0] = std::byte(h.type);
    b[1] = std::byte(h.flags);
    b[2] = std::byte(h.hlen);
    b[3] = std::byte(h.pdo);
    put32(b, 4, h.plen);
}

/// What a connection has agreed (ICReq/ICResp) and allows.
struct Limits {
    bool hdgst = false, ddgst = false;
    std::uint32_t max_in_capsule = 8192;   ///< data bytes in a command capsule (IOCCSZ * 16 - 64 on I/O queues)
    std::uint32_t max_h2c_data = 131072;   ///< MAXH2CDATA
};

/// A failed check: the connection ends with a C2HTermReq carrying fes and fei.
struct FatalError {
    Fes fes;
    std::uint32_t fei;      ///< byte offset of the offending field in the PDU header
    std::string message;    ///< what was wrong, for the log
};

/// A received PDU's header, checked: the data (if any) is bytes [data_offset, data_offset + data_len) of
/// the PDU, followed by a data digest when `has_ddgst`.
struct Header {
    CommonHeader ch;
    std::uint32_t header_total = 0;   ///< hlen plus the header digest
    std::uint32_t data_offset = 0, data_len = 0;
    bool has_ddgst = false;
};

/// Checks the common header of a PDU the host sent (the first 8 bytes): a known host-to-controller type,
/// the type's header length, the digest flags agreed, PDO and PLEN consistent with them, and no more data
/// than the limits allow (in-capsule data, MAXH2CDATA). Before the ICReq (`ic_done` false) only an ICReq
/// is acceptable, after it never again. Returns where the data lies.
std::expected<Header, FatalError> check_header(const CommonHeader& ch, const Limits& l, bool ic_done);

/// Checks the header digest over the `hlen` bytes of `header` against the 4 bytes after them.
bool header_digest_ok(std::span<const std::byte> header, std::uint32_t hlen);

// ---- PDU builders (controller to host); each returns the header bytes written ----
std::size_t build_ic_resp(std::span<std::byte> out, std::uint8_t digests, std::uint32_t maxh2cdata);
/// CapsuleResp with `cqe` (status field in bits 1-15, phase 0, as fabrics carry it).
std::size_t build_capsule_resp(std::span<std::byte> out, const nvme::Cqe& cqe, bool hdgst);
/// C2HData header for `len` bytes at `offset` of command `cid`'s data; `last` and `success` set the flags.
std::size_t build_c2h_data(std::span<std::byte> out, std::uint16_t cid, std::uint32_t offset, std::uint32_t len, bool last,
                           bool success, bool hdgst, bool ddgst);
std::size_t build_r2t(std::span<std::byte> out, std::uint16_t cid, std::uint16_t ttag, std::uint32_t offset, std::uint32_t len,
                      bool hdgst);
/// C2HTermReq quoting up to 128 bytes of the offending header.
std::size_t build_c2h_term_req(std::span<std::byte> out, Fes fes, std::uint32_t fei, std::span<const std::byte> offending);

/// Room enough for any header a controller sends, its digest included.
inline constexpr std::size_t kMaxTxHeader = kTermReqHeaderBytes + kTermReqMaxData;

// ---- the command inside a capsule ----
inline nvme::Sqe read_sqe(std::span<const std::byte> b) {
    nvme::Sqe s{};
    s.cdw0 = get32(b, 0);
    s.nsid = get32(b, 4);
    s.cdw2 = get32(b, 8);
    s.cdw3 = get32(b, 12);
    s.mptr = get64(b, 16);
    s.prp1 = get64(b, 24);
    s.prp2 = get64(b, 32);
    s.cdw10 = get32(b, 40);
    s.cdw11 = get32(b, 44);
    s.cdw12 = get32(b, 48);
    s.cdw13 = get32(b, 52);
    s.cdw14 = get32(b, 56);
    s.cdw15 = get32(b, 60);
    return s;
}
inline std::uint8_t opcode(const nvme::Sqe& s) { return static_cast<std::uint8_t>(s.cdw0); }
inline std::uint16_t command_id(const nvme::Sqe& s) { return static_cast<std::uint16_t>(s.cdw0 >> 16); }

/// The data pointer of a fabrics command is one SGL descriptor (bytes 24-39): address, length, type.
struct Sgl {
    std::uint64_t address;
    std::uint32_t length;
    std::uint8_t type;  ///< descriptor type in bits 4-7, subtype in bits 0-3
};
inline Sgl read_sgl(const nvme::Sqe& s) {
    return {s.prp1, static_cast<std::uint32_t>(s.prp2), static_cast<std::uint8_t>(s.prp2 >> 56)};
}
inline constexpr std::uint8_t kSglInCapsule = 0x01;   ///< Data Block, Offset: data in the capsule
inline constexpr std::uint8_t kSglTransport = 0x5a;   ///< Transport Data Block, transport specific: R2T/H2CData or C2HData
inline constexpr std::uint8_t kSglNull = 0x00;        ///< a Data Block of length 0 (no data)

}  // namespace udrv::nvmf
