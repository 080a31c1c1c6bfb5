// The little protocol work udrv's network tools do, kept out of the tools so that it is tested and
// fuzzed: the Internet checksum, answers to ARP requests and ICMP echo requests, parsing of MAC and
// IPv4 addresses, and the numbered UDP frames of the traffic generator. Frames come off the wire:
// every length and field is checked before it is used.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "udrv/net.hpp"
#include "udrv/result.hpp"

namespace udrv::netproto {

inline constexpr std::uint16_t kEtherTypeIpv4 = 0x0800, kEtherTypeArp = 0x0806;
inline constexpr std::size_t kEthHeader = 14, kIpv4MinHeader = 20, kUdpHeader = 8, kArpFrame = 42;

/// An IPv4 address in network byte order, as it appears in a frame.
using Ipv4 = std::array<std::uint8_t, 4>;

/// RFC 1071's ones'-complement sum over `data` (an odd last byte padded with zero), complemented.
std::uint16_t internet_checksum(std::span<const std::byte> data) noexcept;

/// "52:54:00:12:34:56" (hex digits, either case). EINVAL with the text otherwise.
Result<net::Mac> parse_mac(std::string_view text);
/// Dotted quad "10.0.0.2". EINVAL with the text otherwise.
Result<Ipv4> parse_ipv4(std::string_view text);

/// Answers ARP requests for its address and ICMP echo requests to it, as a host's stack would.
class Responder {
public:
    Responder(net::Mac mac, Ipv4 ip) noexcept : mac_(mac), ip_(ip) {}
    enum class Kind { none, arp_reply, echo_reply };
    struct Answer {
        Kind kind = Kind::none;
        std::size_t length = 0;  ///< bytes of `out` the reply fills
    };
    /// The reply to frame `in`, built into `out` (Kind::none if none is due: another address, another
    /// protocol, a malformed or truncated frame, or a reply that would not fit `out`).
    Answer answer(std::span<const std::byte> in, std::span<std::byte> out) const noexcept;

private:
    net::Mac mac_;
    Ipv4 ip_;
};

/// The traffic generator's frames: UDP from `src_ip`:9 to `dst_ip`:9, payload "UDRV" and a 64-bit
/// sequence number (little-endian), zero-padded to the frame size. The headers are built once;
/// stamp() writes one frame.
class UdpFrames {
public:
    static constexpr std::size_t kSequenceOffset = kEthHeader + kIpv4MinHeader + kUdpHeader + 4;  ///< after "UDRV"
    static constexpr std::size_t kMinFrame = 60, kMaxFrame = 1514;
    /// EINVAL unless kMinFrame <= frame_size <= kMaxFrame.
    static Result<UdpFrames> create(const net::Mac& dst, const net::Mac& src, Ipv4 src_ip, Ipv4 dst_ip, std::size_t frame_size);
    std::size_t frame_size() const noexcept { return size_; }
    /// Writes frame `sequence` into `frame` (frame_size() bytes; the rest of a buffer that only ever
    /// held these frames is already zero, so only the headers and the number are written).
    void stamp(std::span<std::byte> frame, std::uint64_t sequence) const noexcept;
    /// The sequence number of one of these frames; nullopt for any other frame.
    static std::optional<std::uint64_t> sequence_of(std::span<const std::byte> frame) noexcept;

private:
    UdpFrames() = default;
    std::array<std::byte, kSequenceOffset> headers_{};
    std::size_t size_ = 0;
};

}  // namespace udrv::netproto
