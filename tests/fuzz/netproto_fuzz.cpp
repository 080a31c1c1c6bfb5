// Frames from the wire, as the responder and the receiver see them, and addresses from the command line.
#include <cstring>
#include <string_view>
#include <vector>

#include "udrv/netproto.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace udrv::netproto;
    std::span<const std::byte> frame(reinterpret_cast<const std::byte*>(data), size);
    const Responder r({0x52, 0x54, 0, 0, 0, 0x0c}, Ipv4{10, 0, 0, 2});
    for (std::size_t room : {std::size_t{64}, std::size_t{1514}, size}) {
        std::vector<std::byte> out(room);
        const auto a = r.answer(frame, out);
        if (a.length > out.size()) __builtin_trap();  // a reply never claims more than its buffer
        if (a.kind == Responder::Kind::echo_reply) {  // and an echo reply's checksums are right
            const std::size_t ihl = (std::to_integer<unsigned>(out[14]) & 0xf) * 4u;
            if (internet_checksum(std::span(out).subspan(14, ihl)) != 0) __builtin_trap();
            if (internet_checksum(std::span(out).subspan(14 + ihl, a.length - 14 - ihl)) != 0) __builtin_trap();
        }
    }
    (void)UdpFrames::sequence_of(frame);
    std::string_view text(reinterpret_cast<const char*>(data), size);
    (void)parse_mac(text);
    (void)parse_ipv4(text);
    return 0;
}
