// The network tools' protocol code: checksums against known values, ARP and ICMP answers field by
// field (and what must not be answered), address parsing, the generator's UDP frames, and pcap files
// read back through libpcap.
#include <gtest/gtest.h>

#include <pcap/pcap.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "udrv/netproto.hpp"
#include "udrv/pcap.hpp"

namespace {

using namespace udrv::netproto;
using Bytes = std::vector<std::byte>;

Bytes bytes(std::initializer_list<unsigned> v) {
    Bytes b;
    for (unsigned x : v) b.push_back(std::byte(x));
    return b;
}
unsigned at(const Bytes& b, std::size_t i) { return std::to_integer<unsigned>(b[i]); }
unsigned be16(const Bytes& b, std::size_t i) { return at(b, i) << 8 | at(b, i + 1); }

const udrv::net::Mac kOurMac{0x52, 0x54, 0x00, 0x00, 0x00, 0x0c};
const udrv::net::Mac kTheirMac{0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
const Ipv4 kOurIp{10, 0, 0, 2}, kTheirIp{10, 0, 0, 1};

Bytes arp_request(Ipv4 target) {
    Bytes f(42);
    std::memset(f.data(), 0xff, 6);
    std::memcpy(&f[6], kTheirMac.data(), 6);
    f[12] = std::byte{0x08}, f[13] = std::byte{0x06};
    const Bytes hdr = bytes({0, 1, 0x08, 0x00, 6, 4, 0, 1});
    std::memcpy(&f[14], hdr.data(), 8);
    std::memcpy(&f[22], kTheirMac.data(), 6);
    std::memcpy(&f[28], kTheirIp.data(), 4);
    std::memcpy(&f[38], target.data(), 4);
    return f;
}

// An echo request as Linux's ping sends it: 20-byte IP header, 8-byte ICMP header, 56 bytes of data.
Bytes echo_request(Ipv4 dst, std::size_t payload = 56) {
    const std::size_t total = 20 + 8 + payload;
    Bytes f(14 + total);
    std::memcpy(&f[0], kOurMac.data(), 6);
    std::memcpy(&f[6], kTheirMac.data(), 6);
    f[12] = std::byte{0x08};
    f[14] = std::byte{0x45};
    f[16] = std::byte(total >> 8), f[17] = std::byte(total & 0xff);
    f[22] = std::byte{64}, f[23] = std::byte{1};
    std::memcpy(&f[26], kTheirIp.data(), 4);
    std::memcpy(&f[30], dst.data(), 4);
    const std::uint16_t ipsum = internet_checksum(std::span(f).subspan(14, 20));
    f[24] = std::byte(ipsum >> 8), f[25] = std::byte(ipsum & 0xff);
    f[34] = std::byte{8};                      // echo request
    f[38] = std::byte{0x12}, f[39] = std::byte{0x34};  // identifier
    f[41] = std::byte{7};                      // sequence 7
    for (std::size_t i = 0; i < payload; ++i) f[42 + i] = std::byte(i);
    const std::uint16_t sum = internet_checksum(std::span(f).subspan(34, 8 + payload));
    f[36] = std::byte(sum >> 8), f[37] = std::byte(sum & 0xff);
    return f;
}

TEST(InternetChecksum, KnownValues) {
    // RFC 1071's worked example: 0001 f203 f4f5 f6f7 sums to ddf2; the checksum is its complement.
    EXPECT_EQ(internet_checksum(bytes({0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7})), 0xffff - 0xddf2);
    // An IPv4 header (from Wikipedia's example) whose checksum field holds b861.
    const Bytes ip = bytes({0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
                            0x00, 0xc7});
    EXPECT_EQ(internet_checksum(ip), 0xb861);
    EXPECT_EQ(internet_checksum(bytes({0x01})), 0xfeff);  // an odd byte is padded with zero
    EXPECT_EQ(internet_checksum({}), 0xffff);
}

TEST(Responder, AnswersArpForItsAddress) {
    Responder r(kOurMac, kOurIp);
    Bytes out(64);
    auto a = r.answer(arp_request(kOurIp), out);
    ASSERT_EQ(a.kind, Responder::Kind::arp_reply);
    ASSERT_EQ(a.length, 42u);
    EXPECT_EQ(std::memcmp(&out[0], kTheirMac.data(), 6), 0);  // to the asker
    EXPECT_EQ(std::memcmp(&out[6], kOurMac.data(), 6), 0);
    EXPECT_EQ(be16(out, 12), 0x0806u);
    EXPECT_EQ(be16(out, 20), 2u);  // reply
    EXPECT_EQ(std::memcmp(&out[22], kOurMac.data(), 6), 0);
    EXPECT_EQ(std::memcmp(&out[28], kOurIp.data(), 4), 0);
    EXPECT_EQ(std::memcmp(&out[32], kTheirMac.data(), 6), 0);
    EXPECT_EQ(std::memcmp(&out[38], kTheirIp.data(), 4), 0);
}

TEST(Responder, AnswersEchoWithValidChecksums) {
    Responder r(kOurMac, kOurIp);
    const Bytes in = echo_request(kOurIp);
    Bytes out(1514);
    auto a = r.answer(in, out);
    ASSERT_EQ(a.kind, Responder::Kind::echo_reply);
    ASSERT_EQ(a.length, in.size());
    out.resize(a.length);
    EXPECT_EQ(std::memcmp(&out[0], kTheirMac.data(), 6), 0);
    EXPECT_EQ(std::memcmp(&out[26], kOurIp.data(), 4), 0);    // from us
    EXPECT_EQ(std::memcmp(&out[30], kTheirIp.data(), 4), 0);  // to them
    EXPECT_EQ(at(out, 34), 0u);                                // echo reply
    EXPECT_EQ(be16(out, 38), 0x1234u);                         // identifier and sequence kept
    EXPECT_EQ(be16(out, 40), 7u);
    EXPECT_EQ(std::memcmp(&out[42], &in[42], 56), 0);          // data kept
    // A header with its checksum in place sums to zero (its complement 0xffff... complemented: 0).
    EXPECT_EQ(internet_checksum(std::span(out).subspan(14, 20)), 0u);
    EXPECT_EQ(internet_checksum(std::span(out).subspan(34)), 0u);
}

TEST(Responder, IgnoresWhatIsNotForIt) {
    Responder r(kOurMac, kOurIp);
    Bytes out(1514);
    EXPECT_EQ(r.answer(arp_request(Ipv4{10, 0, 0, 3}), out).kind, Responder::Kind::none);  // another host
    EXPECT_EQ(r.answer(echo_request(Ipv4{10, 0, 0, 3}), out).kind, Responder::Kind::none);
    Bytes reply = arp_request(kOurIp);
    reply[21] = std::byte{2};  // an ARP reply is not answered
    EXPECT_EQ(r.answer(reply, out).kind, Responder::Kind::none);
    Bytes echo_reply = echo_request(kOurIp);
    echo_reply[34] = std::byte{0};
    EXPECT_EQ(r.answer(echo_reply, out).kind, Responder::Kind::none);
    Bytes udp = echo_request(kOurIp);
    udp[23] = std::byte{17};
    EXPECT_EQ(r.answer(udp, out).kind, Responder::Kind::none);
}

TEST(Responder, RefusesMalformedAndTruncatedFrames) {
    Responder r(kOurMac, kOurIp);
    Bytes out(1514);
    const Bytes arp = arp_request(kOurIp);
    for (std::size_t n = 0; n < arp.size(); ++n)  // every truncation of an ARP request
        EXPECT_EQ(r.answer(std::span(arp).first(n), out).kind, Responder::Kind::none) << n;
    const Bytes echo = echo_request(kOurIp);
    for (std::size_t n = 0; n < echo.size(); ++n)  // the IP total length promises more than arrived
        EXPECT_EQ(r.answer(std::span(echo).first(n), out).kind, Responder::Kind::none) << n;
    Bytes bad_ihl = echo;
    bad_ihl[14] = std::byte{0x44};  // IHL 4: shorter than an IPv4 header
    EXPECT_EQ(r.answer(bad_ihl, out).kind, Responder::Kind::none);
    Bytes v6 = echo;
    v6[14] = std::byte{0x65};
    EXPECT_EQ(r.answer(v6, out).kind, Responder::Kind::none);
    Bytes small(echo.size() - 1);  // the reply would not fit the buffer
    EXPECT_EQ(r.answer(echo, small).kind, Responder::Kind::none);
}

TEST(Addresses, ParseAndRefuse) {
    EXPECT_EQ(*parse_mac("52:54:00:AB:cd:0e"), (udrv::net::Mac{0x52, 0x54, 0x00, 0xab, 0xcd, 0x0e}));
    for (const char* bad : {"", "52:54:00:ab:cd", "52:54:00:ab:cd:0e:01", "52-54-00-ab-cd-0e", "5:54:00:ab:cd:0e", "zz:54:00:ab:cd:0e",
                            "52:54:00:ab:cd:0e "}) {
        auto m = parse_mac(bad);
        ASSERT_FALSE(m) << bad;
        EXPECT_EQ(m.error().code(), EINVAL);
        EXPECT_NE(m.error().message().find("is not a MAC address"), std::string::npos);
    }
    EXPECT_EQ(*parse_ipv4("10.0.0.2"), (Ipv4{10, 0, 0, 2}));
    EXPECT_EQ(*parse_ipv4("255.255.255.255"), (Ipv4{255, 255, 255, 255}));
    for (const char* bad : {"", "10.0.0", "10.0.0.256", "10.0.0.2.1", "10..0.2", "a.b.c.d", "10.0.0.2x", "1000.0.0.2"})
        EXPECT_FALSE(parse_ipv4(bad)) << bad;
}

TEST(UdpFrames, HeadersAndSequenceNumbers) {
    auto f = UdpFrames::create(kTheirMac, kOurMac, kOurIp, Ipv4{10, 0, 0, 255}, 128);
    ASSERT_TRUE(f);
    Bytes frame(128);
    f->stamp(frame, 0x0102030405060708ull);
    EXPECT_EQ(be16(frame, 12), 0x0800u);
    EXPECT_EQ(be16(frame, 16), 128u - 14);  // IP total length
    EXPECT_EQ(at(frame, 23), 17u);          // UDP
    EXPECT_EQ(internet_checksum(std::span(frame).subspan(14, 20)), 0u);
    EXPECT_EQ(be16(frame, 38), 128u - 34);  // UDP length
    EXPECT_EQ(UdpFrames::sequence_of(frame), 0x0102030405060708ull);
    EXPECT_FALSE(UdpFrames::sequence_of(std::span(frame).first(50)));
    frame[42] = std::byte{'X'};
    EXPECT_FALSE(UdpFrames::sequence_of(frame));
    EXPECT_FALSE(UdpFrames::create(kTheirMac, kOurMac, kOurIp, kTheirIp, 59));
    EXPECT_FALSE(UdpFrames::create(kTheirMac, kOurMac, kOurIp, kTheirIp, 1515));
}

TEST(Pcap, WrittenFilesReadBackThroughLibpcap) {
    const std::string path = "/tmp/udrv-pcap-test-" + std::to_string(getpid()) + ".pcap";
    const Bytes a = echo_request(kOurIp), b = arp_request(kOurIp);
    {
        auto w = udrv::pcap::Writer::create(path, 64);
        ASSERT_TRUE(w) << w.error().message();
        const auto when = std::chrono::system_clock::time_point(std::chrono::microseconds(1700000000123456));
        ASSERT_TRUE(w->write(a, when));
        ASSERT_TRUE(w->write(b, when + std::chrono::microseconds(1)));
        ASSERT_TRUE(w->flush());
    }
    char err[PCAP_ERRBUF_SIZE];
    pcap_t* p = pcap_open_offline(path.c_str(), err);
    ASSERT_NE(p, nullptr) << err;
    EXPECT_EQ(pcap_datalink(p), DLT_EN10MB);
    EXPECT_EQ(pcap_snapshot(p), 64);
    pcap_pkthdr* h;
    const u_char* data;
    ASSERT_EQ(pcap_next_ex(p, &h, &data), 1);
    EXPECT_EQ(h->ts.tv_sec, 1700000000);
    EXPECT_EQ(h->ts.tv_usec, 123456);
    EXPECT_EQ(h->len, a.size());   // the frame's real length
    EXPECT_EQ(h->caplen, 64u);     // cut to the snap length
    EXPECT_EQ(std::memcmp(data, a.data(), 64), 0);
    ASSERT_EQ(pcap_next_ex(p, &h, &data), 1);
    EXPECT_EQ(h->len, b.size());
    EXPECT_EQ(h->caplen, b.size());
    EXPECT_EQ(pcap_next_ex(p, &h, &data), PCAP_ERROR_BREAK);  // no more
    pcap_close(p);
    std::remove(path.c_str());
    auto bad = udrv::pcap::Writer::create("/nonexistent-dir/x.pcap");
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message().find("cannot create /nonexistent-dir/x.pcap"), std::string::npos) << bad.error().message();
}

}  // namespace
