#include "pdu.hpp"

#include <isa-l/crc.h>

#include <algorithm>

#include <fmt/format.h>

namespace udrv::nvmf {

const char* pdu_type_name(std::uint8_t type) {
    switch (static_cast<PduType>(type)) {
    case PduType::ic_req: return "ICReq";
    case PduType::ic_resp: return "ICResp";
    case PduType::h2c_term_req: return "H2CTermReq";
    case PduType::c2h_term_req: return "C2HTermReq";
    case PduType::capsule_cmd: return "CapsuleCmd";
    case PduType::capsule_resp: return "CapsuleResp";
    case PduType::h2c_data: return "H2CData";
    case PduType::c2h_data: return "C2HData";
    case PduType::r2t: return "R2T";
    }
    return "unknown";
}

std::uint32_t crc32c_update(std::uint32_t crc, std::span<const std::byte> data) {
    // ISA-L takes an unsigned char* and an int length; a PDU's data is at most a few MiB.
    std::uint32_t c = crc;
    std::size_t done = 0;
    while (done < data.size()) {
        const std::size_t n = std::min<std::size_t>(data.size() - done, 1u << 30);
        std::byte* p = const_cast<std::byte*>(data.data() + done);  // ISA-L reads only; its signature lacks const
        c = crc32_iscsi(reinterpret_cast<unsigned char*>(p), static_cast<int>(n), c);  // SAFETY: same bytes, read-only
        done += n;
    }
    return c;
}

namespace {
std::unexpected<FatalError> fatal(Fes fes, std::uint32_t fei, std::string msg) { return std::unexpected(FatalError{fes, fei, std::move(msg)}); }
constexpr std::uint32_t kOffFlags = 1, kOffHlen = 2, kOffPdo = 3, kOffPlen = 4;
}  // namespace

std::expected<Header, FatalError> check_header(const CommonHeader& ch, const Limits& l, bool ic_done) {
    const auto type = static_cast<PduType>(ch.type);
    Header h{ch, ch.hlen, 0, 0, false};
    if (!ic_done) {
        if (type != PduType::ic_req) return fatal(Fes::pdu_sequence_error, 0, fmt::format("{} before the ICReq", pdu_type_name(ch.type)));
        if (ch.hlen != kIcBytes) return fatal(Fes::invalid_header_field, kOffHlen, fmt::format("ICReq HLEN {} (must be 128)", ch.hlen));
        if (ch.plen != kIcBytes) return fatal(Fes::invalid_header_field, kOffPlen, fmt::format("ICReq PLEN {} (must be 128)", ch.plen));
        return h;
    }
    std::uint32_t want_hlen = 0, max_data = 0;
    bool data_required = false;
    switch (type) {
    case PduType::capsule_cmd: want_hlen = kCapsuleCmdHeaderBytes; max_data = l.max_in_capsule; break;
    case PduType::h2c_data: want_hlen = kDataHeaderBytes; max_data = l.max_h2c_data; data_required = true; break;
    case PduType::h2c_term_req:
        // Carries the offending header; never digests.
        if (ch.hlen != kTermReqHeaderBytes) return fatal(Fes::invalid_header_field, kOffHlen, fmt::format("H2CTermReq HLEN {}", ch.hlen));
        if (ch.plen < ch.hlen || ch.plen > kTermReqHeaderBytes + kTermReqMaxData)
            return fatal(Fes::invalid_header_field, kOffPlen, fmt::format("H2CTermReq PLEN {}", ch.plen));
        h.data_offset = ch.hlen;
        h.data_len = ch.plen - ch.hlen;
        return h;
    case PduType::ic_req: return fatal(Fes::pdu_sequence_error, 0, "a second ICReq");
    default: return fatal(Fes::invalid_header_field, 0, fmt::format("PDU type {:#04x} ({}) is not one a host sends", ch.type, pdu_type_name(ch.type)));
    }
    if (ch.hlen != want_hlen)
        return fatal(Fes::invalid_header_field, kOffHlen, fmt::format("{} HLEN {} (must be {})", pdu_type_name(ch.type), ch.hlen, want_hlen));
    if (bool(ch.flags & kFlagHdgst) != l.hdgst)
        return fatal(Fes::invalid_header_field, kOffFlags, fmt::format("{} header digest flag {} where {} agreed", pdu_type_name(ch.type),
                                                                        ch.flags & kFlagHdgst ? "set" : "clear", l.hdgst ? "digests were" : "none was"));
    h.header_total = ch.hlen + (l.hdgst ? kDigestBytes : 0);
    if (ch.plen < h.header_total)
        return fatal(Fes::invalid_header_field, kOffPlen, fmt::format("{} PLEN {} is shorter than its header", pdu_type_name(ch.type), ch.plen));
    if (ch.plen == h.header_total) {
        if (data_required) return fatal(Fes::invalid_header_field, kOffPlen, fmt::format("{} without data", pdu_type_name(ch.type)));
        if (ch.flags & kFlagDdgst) return fatal(Fes::invalid_header_field, kOffFlags, "data digest flag on a PDU without data");
        return h;
    }
    // Data follows, at PDO (any gap after the header is padding), then its digest.
    if (ch.pdo < h.header_total || ch.pdo > ch.plen)
        return fatal(Fes::invalid_header_field, kOffPdo, fmt::format("{} PDO {} outside [{}, {}]", pdu_type_name(ch.type), ch.pdo, h.header_total, ch.plen));
    if (bool(ch.flags & kFlagDdgst) != l.ddgst)
        return fatal(Fes::invalid_header_field, kOffFlags, fmt::format("{} data digest flag {} where {} agreed", pdu_type_name(ch.type),
                                                                        ch.flags & kFlagDdgst ? "set" : "clear", l.ddgst ? "digests were" : "none was"));
    const std::uint32_t tail = l.ddgst ? kDigestBytes : 0;
    if (ch.plen - ch.pdo < tail + 1)
        return fatal(Fes::invalid_header_field, kOffPlen, fmt::format("{} PLEN {} leaves no data after PDO {}", pdu_type_name(ch.type), ch.plen, ch.pdo));
    h.data_offset = ch.pdo;
    h.data_len = ch.plen - ch.pdo - tail;
    h.has_ddgst = l.ddgst;
    if (h.data_len > max_data)
        return fatal(Fes::data_limit_exceeded, kOffPlen, fmt::format("{} with {} data bytes (at most {})", pdu_type_name(ch.type), h.data_len, max_data));
    return h;
}

bool header_digest_ok(std::span<const std::byte> header, std::uint32_t hlen) {
    if (header.size() < std::size_t{hlen} + kDigestBytes) return false;
    return crc32c(header.first(hlen)) == get32(header, hlen);
}

namespace {
std::size_t finish_header(std::span<std::byte> out, std::size_t hlen, bool hdgst) {
    if (!hdgst) return hlen;
    put32(out, hlen, crc32c(out.first(hlen)));
    return hlen + kDigestBytes;
}
}  // namespace

std::size_t build_ic_resp(std::span<std::byte> out, std::uint8_t digests, std::uint32_t maxh2cdata) {
    std::fill_n(out.begin(), kIcBytes, std::byte{0});
    write_common(out, {static_cast<std::uint8_t>(PduType::ic_resp), 0, kIcBytes, 0, kIcBytes});
    put16(out, 8, 0);            // PFV 1.0
    out[10] = std::byte{0};      // CPDA: no alignment of our data
    out[11] = std::byte(digests);
    put32(out, 12, maxh2cdata);
    return kIcBytes;
}

std::size_t build_capsule_resp(std::span<std::byte> out, const nvme::Cqe& cqe, bool hdgst) {
    const auto total = static_cast<std::uint32_t>(kCapsuleRespBytes + (hdgst ? kDigestBytes : 0));
    write_common(out, {static_cast<std::uint8_t>(PduType::capsule_resp), static_cast<std::uint8_t>(hdgst ? kFlagHdgst : 0),
                       kCapsuleRespBytes, 0, total});
    put32(out, 8, cqe.result);
    put32(out, 12, cqe.reserved);
    put16(out, 16, cqe.sq_head);
    put16(out, 18, cqe.sq_id);
    put16(out, 20, cqe.cid);
    put16(out, 22, cqe.status);
    return finish_header(out, kCapsuleRespBytes, hdgst);
}

std::size_t build_c2h_data(std::span<std::byte> out, std::uint16_t cid, std::uint32_t offset, std::uint32_t len, bool last, bool success,
                           bool hdgst, bool ddgst) {
    const auto header_total = static_cast<std::uint32_t>(kDataHeaderBytes + (hdgst ? kDigestBytes : 0));
    std::uint8_t flags = static_cast<std::uint8_t>((hdgst ? kFlagHdgst : 0) | (ddgst ? kFlagDdgst : 0) | (last ? kFlagLastPdu : 0) |
                                                   (success ? kFlagSuccess : 0));
    write_common(out, {static_cast<std::uint8_t>(PduType::c2h_data), flags, kDataHeaderBytes, static_cast<std::uint8_t>(header_total),
                       static_cast<std::uint32_t>(header_total + len + (ddgst ? kDigestBytes : 0))});
    put16(out, 8, cid);
    put16(out, 10, 0);
    put32(out, 12, offset);
    put32(out, 16, len);
    put32(out, 20, 0);
    return finish_header(out, kDataHeaderBytes, hdgst);
}

std::size_t build_r2t(std::span<std::byte> out, std::uint16_t cid, std::uint16_t ttag, std::uint32_t offset, std::uint32_t len, bool hdgst) {
    const auto total = static_cast<std::uint32_t>(kR2tBytes + (hdgst ? kDigestBytes : 0));
    write_common(out, {static_cast<std::uint8_t>(PduType::r2t), static_cast<std::uint8_t>(hdgst ? kFlagHdgst : 0), kR2tBytes, 0, total});
    put16(out, 8, cid);
    put16(out, 10, ttag);
    put32(out, 12, offset);
    put32(out, 16, len);
    put32(out, 20, 0);
    return finish_header(out, kR2tBytes, hdgst);
}

std::size_t build_c2h_term_req(std::span<std::byte> out, Fes fes, std::uint32_t fei, std::span<const std::byte> offending) {
    const std::size_t quoted = std::min(offending.size(), kTermReqMaxData);
    std::fill_n(out.begin(), kTermReqHeaderBytes, std::byte{0});
    write_common(out, {static_cast<std::uint8_t>(PduType::c2h_term_req), 0, kTermReqHeaderBytes, 0,
                       static_cast<std::uint32_t>(kTermReqHeaderBytes + quoted)});
    put16(out, 8, static_cast<std::uint16_t>(fes));
    put32(out, 10, fei);
    std::copy_n(offending.begin(), quoted, out.begin() + kTermReqHeaderBytes);
    return kTermReqHeaderBytes + quoted;
}

}  // namespace udrv::nvmf
