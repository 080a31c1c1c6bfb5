#include "udrv/netproto.hpp"

#include <charconv>
#include <cstring>

namespace udrv::netproto {
namespace {

std::uint16_t be16(const std::byte* p) noexcept {
    return static_cast<std::uint16_t>(std::to_integer<unsigned>(p[0]) << 8 | std::to_integer<unsigned>(p[1]));
}
void put16(std::byte* p, std::uint16_t v) noexcept {
    p[0] = std::byte(v >> 8);
    p[1] = std::byte(v & 0xff);
}
unsigned u8(std::byte b) noexcept { return std::to_integer<unsigned>(b); }

constexpr std::size_t kArpOp = 20, kArpSha = 22, kArpSpa = 28, kArpTha = 32, kArpTpa = 38;
constexpr std::size_t kIpTtl = 22, kIpProto = 23, kIpChecksum = 24, kIpSrc = 26, kIpDst = 30;
constexpr std::uint8_t kProtoIcmp = 1, kProtoUdp = 17, kIcmpEchoRequest = 8, kIcmpEchoReply = 0;

}  // namespace

std::uint16_t internet_checksum(std::span<const std::byte> d) noexcept {
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i + 1 < d.size(); i += 2) sum += be16(&d[i]);
    if (d.size() & 1) sum += u8(d.back()) << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<std::uint16_t>(~sum);
}

Result<net::Mac> parse_mac(std::string_view text) {
    net::Mac m{};
    std::string_view rest = text;
    for (std::size_t i = 0; i < 6; ++i) {
        if (i && (rest.empty() || rest.front() != ':')) break;
        if (i) rest.remove_prefix(1);
        if (rest.size() < 2) break;
        unsigned v = 0;
        auto [p, ec] = std::from_chars(rest.data(), rest.data() + 2, v, 16);
        if (ec != std::errc() || p != rest.data() + 2) break;
        m[i] = static_cast<std::uint8_t>(v);
        rest.remove_prefix(2);
        if (i == 5 && rest.empty()) return m;
    }
    return fail(EINVAL, "'{}' is not a MAC address (six hex pairs, like 02:00:00:00:00:01)", text);
}

Result<Ipv4> parse_ipv4(std::string_view text) {
    Ipv4 a{};
    std::string_view rest = text;
    for (std::size_t i = 0; i < 4; ++i) {
        if (i && (rest.empty() || rest.front() != '.')) break;
        if (i) rest.remove_prefix(1);
        unsigned v = 0;
        auto [p, ec] = std::from_chars(rest.data(), rest.data() + std::min<std::size_t>(rest.size(), 3), v);
        if (ec != std::errc() || v > 255 || p == rest.data()) break;
        a[i] = static_cast<std::uint8_t>(v);
        rest.remove_prefix(static_cast<std::size_t>(p - rest.data()));
        if (i == 3 && rest.empty()) return a;
    }
    return fail(EINVAL, "'{}' is not an IPv4 address (like 10.0.0.2)", text);
}

Responder::Answer Responder::answer(std::span<const std::byte> in, std::span<std::byte> o) const noexcept {
    if (in.size() < kEthHeader) return {};
    const std::uint16_t type = be16(&in[12]);
    if (type == kEtherTypeArp) {
        // Ethernet/IPv4 request (htype 1, ptype IPv4, hlen 6, plen 4, op 1) for our address.
        if (in.size() < kArpFrame || o.size() < kArpFrame) return {};
        if (be16(&in[14]) != 1 || be16(&in[16]) != kEtherTypeIpv4 || u8(in[18]) != 6 || u8(in[19]) != 4 || be16(&in[kArpOp]) != 1)
            return {};
        if (std::memcmp(&in[kArpTpa], ip_.data(), 4) != 0) return {};
        std::memcpy(&o[0], &in[6], 6);  // to the asker
        std::memcpy(&o[6], mac_.data(), 6);
        put16(&o[12], kEtherTypeArp);
        std::memcpy(&o[14], &in[14], 6);  // htype, ptype, hlen, plen
        put16(&o[kArpOp], 2);             // reply
        std::memcpy(&o[kArpSha], mac_.data(), 6);
        std::memcpy(&o[kArpSpa], ip_.data(), 4);
        std::memcpy(&o[kArpTha], &in[kArpSha], 10);  // their hardware and protocol address
        return {Kind::arp_reply, kArpFrame};
    }
    if (type != kEtherTypeIpv4 || in.size() < kEthHeader + kIpv4MinHeader) return {};
    const std::size_t ihl = (u8(in[14]) & 0xf) * 4u;
    const std::size_t total = be16(&in[16]);
    if ((u8(in[14]) >> 4) != 4 || ihl < kIpv4MinHeader || total < ihl + 8 || kEthHeader + total > in.size()) return {};
    if (u8(in[kIpProto]) != kProtoIcmp || std::memcmp(&in[kIpDst], ip_.data(), 4) != 0) return {};
    if (u8(in[kEthHeader + ihl]) != kIcmpEchoRequest || kEthHeader + total > o.size()) return {};
    const std::size_t len = kEthHeader + total;
    std::memmove(&o[0], &in[0], len);  // the same frame, turned around
    std::memcpy(&o[0], &in[6], 6);
    std::memcpy(&o[6], mac_.data(), 6);
    std::memcpy(&o[kIpSrc], &in[kIpDst], 4);
    std::memcpy(&o[kIpDst], &in[kIpSrc], 4);
    o[kIpTtl] = std::byte{64};
    put16(&o[kIpChecksum], 0);
    put16(&o[kIpChecksum], internet_checksum(o.subspan(kEthHeader, ihl)));
    const std::size_t icmp = kEthHeader + ihl;
    o[icmp] = std::byte{kIcmpEchoReply};
    put16(&o[icmp + 2], 0);
    put16(&o[icmp + 2], internet_checksum(o.subspan(icmp, total - ihl)));
    return {Kind::echo_reply, len};
}

Result<UdpFrames> UdpFrames::create(const net::Mac& dst, const net::Mac& src, Ipv4 src_ip, Ipv4 dst_ip, std::size_t size) {
    if (size < kMinFrame || size > kMaxFrame) return fail(EINVAL, "frame size {} ({}-{})", size, kMinFrame, kMaxFrame);
    UdpFrames f;
    f.size_ = size;
    std::byte* o = f.headers_.data();
    std::memcpy(&o[0], dst.data(), 6);
    std::memcpy(&o[6], src.data(), 6);
    put16(&o[12], kEtherTypeIpv4);
    o[14] = std::byte{0x45};  // IPv4, 20-byte header
    put16(&o[16], static_cast<std::uint16_t>(size - kEthHeader));
    o[kIpTtl] = std::byte{64};
    o[kIpProto] = std::byte{kProtoUdp};
    std::memcpy(&o[kIpSrc], src_ip.data(), 4);
    std::memcpy(&o[kIpDst], dst_ip.data(), 4);
    put16(&o[kIpChecksum], internet_checksum(std::span<const std::byte>(&o[kEthHeader], kIpv4MinHeader)));
    const std::size_t udp = kEthHeader + kIpv4MinHeader;
    put16(&o[udp], 9);  // discard
    put16(&o[udp + 2], 9);
    put16(&o[udp + 4], static_cast<std::uint16_t>(size - udp));
    // UDP checksum 0: none (allowed over IPv4), so the number can change without recomputing it.
    std::memcpy(&o[udp + kUdpHeader], "UDRV", 4);
    return f;
}

void UdpFrames::stamp(std::span<std::byte> frame, std::uint64_t sequence) const noexcept {
    if (frame.size() < kSequenceOffset + 8) return;
    std::memcpy(frame.data(), headers_.data(), headers_.size());
    std::memcpy(frame.data() + kSequenceOffset, &sequence, 8);
}

std::optional<std::uint64_t> UdpFrames::sequence_of(std::span<const std::byte> f) noexcept {
    if (f.size() < kSequenceOffset + 8 || be16(&f[12]) != kEtherTypeIpv4 || u8(f[14]) != 0x45 || u8(f[kIpProto]) != kProtoUdp ||
        std::memcmp(&f[kSequenceOffset - 4], "UDRV", 4) != 0)
        return std::nullopt;
    std::uint64_t seq;
    std::memcpy(&seq, &f[kSequenceOffset], 8);
    return seq;
}

}  // namespace udrv::netproto
