// The NVMe/TCP target against a small initiator written from the transport spec, over loopback TCP, with
// an in-memory block device: bring-up as the Linux host does it (ICReq, Connect, properties, Identify,
// Set Features), I/O with in-capsule data and with R2T/H2CData, digests, discovery, and the refusals
// and fatal errors a malformed or unwelcome host gets.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "mem_block.hpp"
#include "pdu.hpp"
#include "udrv/nvmf.hpp"

using namespace udrv;
using namespace udrv::nvmf;

namespace {

constexpr const char* kNqn = "nqn.2026-12.io.udrv:test";
constexpr const char* kHost = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";

struct Answer {
    nvme::Cqe cqe{};
    std::vector<std::byte> data;
    std::uint16_t sf() const { return cqe.status >> 1; }
};

// The initiator: what Linux's nvme-tcp sends, byte by byte.
class Host {
public:
    Host(std::uint16_t port, bool hdgst = false, bool ddgst = false) : hd_(hdgst), dd_(ddgst) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_port = htons(port);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::connect(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
        const int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::vector<std::byte> ic(128);
        write_common(ic, {0x00, 0, 128, 0, 128});
        ic[11] = std::byte((hdgst ? 1 : 0) | (ddgst ? 2 : 0));
        send_all(ic);
        auto resp = recv_exact(128);
        EXPECT_EQ(std::to_integer<int>(resp[0]), 0x01);
        EXPECT_EQ(std::to_integer<int>(resp[11]), (hdgst ? 1 : 0) | (ddgst ? 2 : 0));
        maxh2c_ = get32(resp, 12);
    }
    ~Host() { ::close(fd_); }
    void send_all(std::span<const std::byte> b) {
        std::size_t off = 0;
        while (off < b.size()) {
            const ssize_t n = ::send(fd_, b.data() + off, b.size() - off, MSG_NOSIGNAL);
            if (n <= 0) return;
            off += static_cast<std::size_t>(n);
        }
    }
    std::vector<std::byte> recv_exact(std::size_t n) {
        std::vector<std::byte> b(n);
        std::size_t off = 0;
        while (off < n) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 5000) <= 0) break;
            const ssize_t r = ::recv(fd_, b.data() + off, n - off, 0);
            if (r <= 0) break;
            off += static_cast<std::size_t>(r);
        }
        b.resize(off);
        return b;
    }
    // A whole PDU (a TermReq: its header quotes the offending one).
    std::vector<std::byte> recv_pdu() {
        auto b = recv_exact(8);
        if (b.size() < 8) return b;
        auto rest = recv_exact(get32(b, 4) - 8);
        b.insert(b.end(), rest.begin(), rest.end());
        return b;
    }
    bool closed_by_peer() {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 5000) <= 0) return false;
        std::byte b;
        return ::recv(fd_, &b, 1, MSG_DONTWAIT) == 0;
    }
    // A PDU: header (with digest when agreed), padding-free data (with digest).
    void send_pdu(std::uint8_t type, std::span<const std::byte> hdr_rest, std::span<const std::byte> data) {
        const std::uint8_t hlen = static_cast<std::uint8_t>(8 + hdr_rest.size());
        const std::uint32_t htotal = hlen + (hd_ ? 4 : 0);
        const std::uint32_t plen = htotal + static_cast<std::uint32_t>(data.size()) + (dd_ && !data.empty() ? 4 : 0);
        std::vector<std::byte> b(plen);
        write_common(b, {type, static_cast<std::uint8_t>((hd_ ? kFlagHdgst : 0) | (dd_ && !data.empty() ? kFlagDdgst : 0)), hlen,
                         static_cast<std::uint8_t>(data.empty() ? 0 : htotal), plen});
        std::copy(hdr_rest.begin(), hdr_rest.end(), b.begin() + 8);
        if (hd_) put32(b, hlen, crc32c(std::span<const std::byte>(b).first(hlen)));
        std::copy(data.begin(), data.end(), b.begin() + htotal);
        if (dd_ && !data.empty()) put32(b, htotal + data.size(), crc32c(data));
        send_all(b);
    }
    // One command and its answer: in-capsule data up to `in_capsule`, else R2T and H2CData.
    Answer cmd(nvme::Sqe s, std::span<const std::byte> out = {}, std::uint32_t in_len = 0, std::uint32_t in_capsule = 8192) {
        s.cdw0 = (s.cdw0 & 0xffff) | std::uint32_t{++cid_} << 16;
        const bool inline_data = !out.empty() && out.size() <= in_capsule;
        const std::uint32_t len = out.empty() ? in_len : static_cast<std::uint32_t>(out.size());
        s.prp1 = 0;
        s.prp2 = std::uint64_t{len} | std::uint64_t{inline_data ? kSglInCapsule : kSglTransport} << 56;
        std::vector<std::byte> sqe(64);
        put32(sqe, 0, s.cdw0);
        put32(sqe, 4, s.nsid);
        put64(sqe, 24, s.prp1);
        put64(sqe, 32, s.prp2);
        for (int i = 0; i < 6; ++i) put32(sqe, 40 + 4 * static_cast<std::size_t>(i), (&s.cdw10)[i]);
        send_pdu(0x04, sqe, inline_data ? out : std::span<const std::byte>{});
        Answer a;
        for (;;) {
            auto ch_bytes = recv_exact(8);
            if (ch_bytes.size() < 8) {
                a.cqe.status = 0xffff;
                return a;
            }
            const CommonHeader ch = read_common(ch_bytes);
            auto rest = recv_exact(ch.plen - 8);
            std::vector<std::byte> pdu = ch_bytes;
            pdu.insert(pdu.end(), rest.begin(), rest.end());
            if (hd_ && ch.type != 0x03) { EXPECT_TRUE(header_digest_ok(pdu, ch.hlen)) << "type " << int(ch.type); }
            if (ch.type == 0x07) {  // C2HData
                const std::uint32_t dlen = get32(pdu, 16);
                a.data.insert(a.data.end(), pdu.begin() + ch.pdo, pdu.begin() + ch.pdo + dlen);
                if (dd_) { EXPECT_EQ(get32(pdu, ch.pdo + dlen), crc32c(std::span<const std::byte>(pdu).subspan(ch.pdo, dlen))); }
                if (ch.flags & kFlagSuccess) return a;
            } else if (ch.type == 0x09) {  // R2T: send what it asks for in MAXH2CDATA pieces
                const std::uint16_t ttag = get16(pdu, 10);
                const std::uint32_t off = get32(pdu, 12), n = get32(pdu, 16);
                for (std::uint32_t done = 0; done < n;) {
                    const std::uint32_t piece = std::min(n - done, std::min<std::uint32_t>(maxh2c_, 16384));
                    std::vector<std::byte> h(16);
                    put16(h, 0, static_cast<std::uint16_t>(s.cdw0 >> 16));
                    put16(h, 2, ttag);
                    put32(h, 4, off + done);
                    put32(h, 8, piece);
                    send_pdu(0x06, h, out.subspan(off + done, piece));
                    done += piece;
                }
            } else if (ch.type == 0x05) {
                a.cqe.result = get32(pdu, 8);
                a.cqe.reserved = get32(pdu, 12);
                a.cqe.sq_head = get16(pdu, 16);
                a.cqe.sq_id = get16(pdu, 18);
                a.cqe.cid = get16(pdu, 20);
                a.cqe.status = get16(pdu, 22);
                EXPECT_EQ(a.cqe.cid, cid_);
                return a;
            } else {
                term_ = pdu;
                a.cqe.status = 0xffff;
                return a;
            }
        }
    }
    Answer connect(std::uint16_t qid, std::uint16_t cntlid, const std::string& subnqn = kNqn, const std::string& hostnqn = kHost,
                   std::uint16_t sqsize = 63) {
        nvme::Sqe s{};
        s.cdw0 = 0x7f;
        s.nsid = 0x01;  // fctype Connect
        s.cdw10 = std::uint32_t{qid} << 16;
        s.cdw11 = qid == 0 ? 31 : sqsize;
        s.cdw12 = qid == 0 ? 5000 : 0;
        std::vector<std::byte> d(1024);
        put16(d, 16, cntlid);
        std::memcpy(d.data() + 256, subnqn.data(), subnqn.size());
        std::memcpy(d.data() + 512, hostnqn.data(), hostnqn.size());
        return cmd(s, d);
    }
    Answer prop_get(std::uint32_t off, bool eight) {
        nvme::Sqe s{};
        s.cdw0 = 0x7f;
        s.nsid = 0x04;
        s.cdw10 = eight ? 1 : 0;
        s.cdw11 = off;
        return cmd(s);
    }
    Answer prop_set(std::uint32_t off, std::uint32_t v) {
        nvme::Sqe s{};
        s.cdw0 = 0x7f;
        s.nsid = 0x00;
        s.cdw11 = off;
        s.cdw12 = v;
        return cmd(s);
    }
    Answer admin(std::uint8_t op, std::uint32_t nsid, std::uint32_t cdw10, std::uint32_t cdw11 = 0, std::uint32_t in_len = 0) {
        nvme::Sqe s{};
        s.cdw0 = op;
        s.nsid = nsid;
        s.cdw10 = cdw10;
        s.cdw11 = cdw11;
        return cmd(s, {}, in_len);
    }
    Answer io(std::uint8_t op, std::uint64_t lba, std::uint32_t blocks, std::span<const std::byte> out = {}, std::uint32_t in_len = 0) {
        nvme::Sqe s{};
        s.cdw0 = op;
        s.nsid = 1;
        s.cdw10 = static_cast<std::uint32_t>(lba);
        s.cdw11 = static_cast<std::uint32_t>(lba >> 32);
        s.cdw12 = blocks - 1;
        return cmd(s, out, in_len);
    }
    // `n` writes of `each` bytes (above the in-capsule size: each waits for its R2T) all sent before any
    // data, as a host with a deep queue sends them; then the data each R2T asks for, as it comes. The
    // answers' statuses, in the order they came (fewer than n: the target stopped answering).
    // Then `m` writes of `inline_each` with their data in the capsule, at the blocks after those.
    std::vector<std::uint16_t> pipelined_writes(unsigned n, std::uint64_t lba0, std::span<const std::byte> each, unsigned m = 0,
                                                std::span<const std::byte> inline_each = {}) {
        std::uint64_t lba = lba0;
        for (unsigned i = 0; i < n + m; ++i) {
            const bool in_capsule = i >= n;
            const std::size_t bytes = in_capsule ? inline_each.size() : each.size();
            const auto blocks = static_cast<std::uint32_t>(bytes / 512);
            std::vector<std::byte> sqe(64);
            put32(sqe, 0, 0x01u | std::uint32_t{++cid_} << 16);
            put32(sqe, 4, 1);
            put64(sqe, 32, std::uint64_t{bytes} | std::uint64_t{in_capsule ? kSglInCapsule : kSglTransport} << 56);
            put32(sqe, 40, static_cast<std::uint32_t>(lba));
            put32(sqe, 48, blocks - 1);
            send_pdu(0x04, sqe, in_capsule ? inline_each : std::span<const std::byte>{});
            lba += blocks;
        }
        std::vector<std::uint16_t> answers;
        while (answers.size() < n + m) {
            auto pdu = recv_pdu();
            if (pdu.size() < 8) break;  // nothing for 5 s, or closed
            const CommonHeader ch = read_common(pdu);
            if (ch.type == 0x09) {
                const std::uint16_t cccid = get16(pdu, 8), ttag = get16(pdu, 10);
                const std::uint32_t off = get32(pdu, 12), len = get32(pdu, 16);
                std::vector<std::byte> h(16);
                put16(h, 0, cccid);
                put16(h, 2, ttag);
                put32(h, 4, off);
                put32(h, 8, len);
                send_pdu(0x06, h, each.subspan(off, len));
            } else if (ch.type == 0x05) {
                answers.push_back(static_cast<std::uint16_t>(get16(pdu, 22) >> 1));
            } else {
                break;
            }
        }
        return answers;
    }
    int fd_ = -1;
    bool hd_, dd_;
    std::uint16_t cid_ = 0;
    std::uint32_t maxh2c_ = 0;
    std::vector<std::byte> term_;
};

// Listens on a free loopback port (tried at random, 50 times); returns it, or 0 if none was free.
std::uint16_t listen_on_free_port(Target& t, unsigned seed) {
    std::mt19937 rng(seed);
    for (int i = 0; i < 50; ++i) {
        const auto p = static_cast<std::uint16_t>(20000 + rng() % 30000);
        if (t.listen({"127.0.0.1", p})) return p;
    }
    return 0;
}

// `dev` as namespace 1 of kNqn.
SubsystemSpec one_namespace(std::shared_ptr<block::Device> dev) {
    SubsystemSpec s;
    s.nqn = kNqn;
    s.namespaces.push_back({1, "mem0", std::move(dev)});
    return s;
}

// An admin queue on `admin` (enabled, one I/O queue granted), then I/O queue 1 on `io`; false if a step failed.
bool connect_admin_and_io(Host& admin, Host& io) {
    auto c = admin.connect(0, 0xffff);
    EXPECT_EQ(c.sf(), 0);
    EXPECT_EQ(admin.prop_set(0x14, 1 | 6u << 16 | 4u << 20).sf(), 0);
    EXPECT_EQ(admin.admin(0x09, 0, 0x07, (1u << 16) | 1u).sf(), 0);
    EXPECT_EQ(io.connect(1, static_cast<std::uint16_t>(c.cqe.result)).sf(), 0);
    return !::testing::Test::HasFailure();
}

class NvmfTarget : public ::testing::Test {
protected:
    void SetUp() override {
        TargetOptions o;
        o.threads = 2;
        target_ = *Target::create(o);
        dev_ = std::make_shared<udrv::testing::MemDevice>();
        SubsystemSpec s = one_namespace(dev_);
        s.serial = "UDRVTEST01";
        ASSERT_TRUE(target_->set_subsystem(s));
        port_ = listen_on_free_port(*target_, static_cast<unsigned>(::getpid()));
        if (!port_) FAIL() << "no free port";
    }
    // The admin queue brought up as Linux does it.
    std::uint16_t bring_up(Host& h) {
        auto c = h.connect(0, 0xffff);
        EXPECT_EQ(c.sf(), 0);
        const auto cntlid = static_cast<std::uint16_t>(c.cqe.result);
        EXPECT_EQ(h.prop_set(0x14, 1 | 6u << 16 | 4u << 20).sf(), 0);
        EXPECT_EQ(h.prop_get(0x1c, false).cqe.result & 1, 1u);
        return cntlid;
    }
    std::unique_ptr<Target> target_;
    std::shared_ptr<udrv::testing::MemDevice> dev_;
    std::uint16_t port_ = 0;
};

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = std::byte((i * 131 + seed) & 0xff);
    return v;
}

}  // namespace

TEST(NvmfPdu, HeaderChecksRejectWhatAHostMustNotSend) {
    Limits l;
    EXPECT_FALSE(check_header({0x04, 0, 72, 0, 72}, l, false));                       // a command before ICReq
    EXPECT_TRUE(check_header({0x00, 0, 128, 0, 128}, l, false));
    EXPECT_EQ(check_header({0x00, 0, 128, 0, 128}, l, true).error().fes, Fes::pdu_sequence_error);  // a second ICReq
    EXPECT_EQ(check_header({0x05, 0, 24, 0, 24}, l, true).error().fes, Fes::invalid_header_field);  // a controller's PDU type
    EXPECT_EQ(check_header({0x04, 0, 70, 0, 70}, l, true).error().fei, 2u);           // wrong HLEN
    EXPECT_EQ(check_header({0x04, 0, 72, 200, 72 + 100}, l, true).error().fei, 3u);  // PDO past PLEN
    EXPECT_EQ(check_header({0x04, 0, 72, 72, 72 + 9000}, l, true).error().fes, Fes::data_limit_exceeded);
    EXPECT_EQ(check_header({0x04, kFlagHdgst, 72, 0, 76}, l, true).error().fei, 1u);  // a digest nobody agreed
    EXPECT_EQ(check_header({0x06, 0, 24, 0, 24}, l, true).error().fes, Fes::invalid_header_field);  // H2CData without data
    auto h = check_header({0x04, 0, 72, 72, 72 + 512}, l, true);
    ASSERT_TRUE(h);
    EXPECT_EQ(h->data_offset, 72u);
    EXPECT_EQ(h->data_len, 512u);
    EXPECT_EQ(crc32c(std::as_bytes(std::span("123456789", 9))), 0xe3069283u);  // the CRC32C check value
}

TEST(NvmfAddress, ParsesWhatUsersWrite) {
    EXPECT_EQ(parse_address("127.0.0.1:4420")->port, 4420);
    EXPECT_EQ(parse_address("10.0.0.1")->port, 4420);
    EXPECT_EQ(parse_address("[::1]:8009")->host, "::1");
    EXPECT_EQ(parse_address(":4421")->host, "0.0.0.0");
    EXPECT_FALSE(parse_address("localhost:4420"));
    EXPECT_FALSE(parse_address("1.2.3.4:99999"));
    EXPECT_TRUE(check_nqn("nqn.2026-12.io.udrv:disk1"));
    EXPECT_FALSE(check_nqn("disk1"));
    EXPECT_FALSE(check_nqn("nqn.2026-12.io.udrv:has space"));
}

TEST_F(NvmfTarget, AdminQueueBringUpAsLinuxDoesIt) {
    Host h(port_);
    auto c = h.connect(0, 0xffff);
    ASSERT_EQ(c.sf(), 0);
    auto cap = h.prop_get(0x00, true);
    ASSERT_EQ(cap.sf(), 0);
    EXPECT_EQ(cap.cqe.result & 0xffff, 127u);         // MQES
    EXPECT_TRUE(cap.cqe.reserved & (1u << 5));         // CSS: NVM (bit 37)
    EXPECT_EQ(h.prop_get(0x08, false).cqe.result, 0x10300u);
    EXPECT_EQ(h.prop_set(0x14, 1 | 6u << 16 | 4u << 20).sf(), 0);
    EXPECT_EQ(h.prop_get(0x1c, false).cqe.result & 1, 1u);  // CSTS.RDY
    auto id = h.admin(0x06, 0, 1, 0, 4096);
    ASSERT_EQ(id.sf(), 0);
    ASSERT_EQ(id.data.size(), 4096u);
    nvme::ControllerInfo ci;
    ASSERT_TRUE(nvme::parse_identify_controller(id.data, ci, 1u << 20));
    EXPECT_EQ(ci.subnqn, kNqn);
    EXPECT_EQ(ci.serial, "UDRVTEST01");
    EXPECT_EQ(ci.cntlid, c.cqe.result);
    EXPECT_EQ(get32(id.data, 1792), (64u + 8192u) / 16);  // IOCCSZ
    EXPECT_NE(get32(id.data, 536) & 1, 0u);                // SGLs
    auto ns = h.admin(0x06, 1, 0, 0, 4096);
    auto nsi = nvme::parse_identify_namespace(1, ns.data, 1u << 20);
    ASSERT_TRUE(nsi) << nsi.error().message();
    EXPECT_EQ(nsi->size, 4096u);
    EXPECT_EQ(nsi->block_size(), 512u);
    auto list = h.admin(0x06, 0, 2, 0, 4096);
    EXPECT_EQ(get32(list.data, 0), 1u);
    EXPECT_EQ(get32(list.data, 4), 0u);
    EXPECT_EQ(h.admin(0x06, 7, 0, 0, 4096).data, std::vector<std::byte>(4096));  // an inactive namespace: zeros
    auto q = h.admin(0x09, 0, 0x07, (7u << 16) | 7u);
    EXPECT_EQ(q.cqe.result, (7u << 16) | 7u);               // eight queues granted
    EXPECT_EQ(h.admin(0x18, 0, 0).sf(), 0);                 // keep alive
    EXPECT_EQ(h.admin(0x02, 0xffffffff, 0x02 | (127u << 16), 0, 512).data.size(), 512u);  // SMART log
    EXPECT_EQ(h.admin(0x55, 0, 0).sf(), 0x001 | 0x4000);    // an opcode nobody knows: Invalid Opcode, DNR
}

TEST_F(NvmfTarget, IoQueueReadsWhatItWroteInCapsuleAndThroughR2T) {
    Host a(port_);
    const std::uint16_t cntlid = bring_up(a);
    ASSERT_EQ(a.admin(0x09, 0, 0x07, (1u << 16) | 1u).sf(), 0);
    Host io(port_);
    ASSERT_EQ(io.connect(1, cntlid).sf(), 0);
    auto small = pattern(4096, 1);
    EXPECT_EQ(io.io(0x01, 8, 8, small).sf(), 0);              // in the capsule
    auto r = io.io(0x02, 8, 8, {}, 4096);
    EXPECT_EQ(r.sf(), 0);
    EXPECT_EQ(r.data, small);
    auto big = pattern(65536, 7);
    EXPECT_EQ(io.io(0x01, 100, 128, big).sf(), 0);            // R2T, then H2CData in 16 KiB pieces
    EXPECT_EQ(std::memcmp(dev_->data_.data() + 100 * 512, big.data(), big.size()), 0);
    EXPECT_EQ(io.io(0x02, 100, 128, {}, 65536).data, big);
    EXPECT_EQ(io.io(0x02, 4095, 2, {}, 1024).sf(), 0x080 | 0x4000);  // beyond the namespace: LBA Out of Range
    EXPECT_EQ(io.io(0x00, 0, 1).sf(), 0);                            // flush
    EXPECT_EQ(io.io(0x08, 8, 8).sf(), 0);                            // write zeroes
    EXPECT_EQ(io.io(0x02, 8, 8, {}, 4096).data, std::vector<std::byte>(4096));
    nvme::Sqe s{};
    s.cdw0 = 0x02;
    s.nsid = 9;
    s.cdw12 = 0;
    EXPECT_EQ(io.cmd(s, {}, 512).sf(), 0x00b | 0x4000);               // no namespace 9
    EXPECT_EQ(io.connect(2, cntlid).sf(), 0x00c | 0x4000);            // connected already: Command Sequence Error
}

// Workers pinned to CPUs, and polling their quiet sockets for a while: the same protocol, threads
// that run only where they were told, and options that make no sense refused.
TEST(NvmfTargetOptions, PinnedPollingWorkersServeAndBadOptionsAreRefused) {
    cpu_set_t allowed;
    ASSERT_EQ(::sched_getaffinity(0, sizeof allowed, &allowed), 0);
    int cpu = 0;
    while (!CPU_ISSET(cpu, &allowed)) ++cpu;
    auto pinned_threads = [cpu] {
        int n = 0;
        for (const auto& t : std::filesystem::directory_iterator("/proc/self/task")) {
            std::ifstream status(t.path() / "status");
            for (std::string line; std::getline(status, line);)
                if (line == "Cpus_allowed_list:\t" + std::to_string(cpu)) ++n;
        }
        return n;
    };
    const int before = pinned_threads();
    TargetOptions o;
    o.cpus = {cpu};
    o.poll_us = 200;
    auto target = Target::create(o);
    ASSERT_TRUE(target) << target.error().message();
    EXPECT_EQ(pinned_threads(), before + 1);
    ASSERT_TRUE((*target)->set_subsystem(one_namespace(std::make_shared<udrv::testing::MemDevice>())));
    const std::uint16_t port = listen_on_free_port(**target, static_cast<unsigned>(::getpid()) + 1);
    ASSERT_NE(port, 0);
    Host a(port), io(port);
    ASSERT_TRUE(connect_admin_and_io(a, io));
    auto data = pattern(8192, 3);
    for (int i = 0; i < 20; ++i) {  // some within the poll window, some after it
        EXPECT_EQ(io.io(0x01, 16, 16, data).sf(), 0);
        EXPECT_EQ(io.io(0x02, 16, 16, {}, 8192).data, data);
        if (i % 5 == 4) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    target->reset();
    EXPECT_EQ(pinned_threads(), before);

    auto refused = [](TargetOptions bad) { auto t = Target::create(bad); return t ? std::string("(accepted)") : t.error().message(); };
    TargetOptions twice;
    twice.cpus = {cpu, cpu};
    EXPECT_EQ(refused(twice), fmt::format("worker CPU {} is listed twice", cpu));
    TargetOptions negative;
    negative.cpus = {-1};
    EXPECT_NE(refused(negative).find("worker CPU -1"), std::string::npos);
    TargetOptions slow;
    slow.poll_us = 5000000;
    EXPECT_NE(refused(slow).find("poll window"), std::string::npos);
}

// device_interrupts: a worker whose commands are at the device sleeps until the device signals them
// (the queue's completion_fd) instead of polling the queue the whole time; polled, it spins.
TEST(NvmfTargetOptions, DeviceInterruptsLetTheWorkerSleepWhileTheDeviceWorks) {
    auto polls_per_command = [](bool interrupts) -> double {
        TargetOptions o;
        o.threads = 1;
        o.device_interrupts = interrupts;
        o.poll_us = 0;  // within a poll window after each PDU the worker is awake and polls both anyway
        auto target = Target::create(o);
        EXPECT_TRUE(target) << target.error().message();
        if (!target) return -1;
        auto dev = std::make_shared<udrv::testing::MemDevice>();
        dev->latency = std::chrono::milliseconds(2);
        EXPECT_TRUE((*target)->set_subsystem(one_namespace(dev)));
        const std::uint16_t port = listen_on_free_port(**target, static_cast<unsigned>(::getpid()) + (interrupts ? 2 : 3));
        EXPECT_NE(port, 0);
        Host a(port), io(port);
        EXPECT_TRUE(connect_admin_and_io(a, io));
        auto data = pattern(4096, 7);
        const unsigned before = dev->polls.load();
        constexpr int kCommands = 10;
        for (int i = 0; i < kCommands / 2; ++i) {
            EXPECT_EQ(io.io(0x01, 8 * static_cast<std::uint32_t>(i), 8, data).sf(), 0);
            EXPECT_EQ(io.io(0x02, 8 * static_cast<std::uint32_t>(i), 8, {}, 4096).data, data);
        }
        const double per = double(dev->polls.load() - before) / kCommands;
        target->reset();
        return per;
    };
    const double sleeping = polls_per_command(true), spinning = polls_per_command(false);
    EXPECT_LE(sleeping, 5) << "a worker told to wait for device interrupts polled the queue " << sleeping << " times per 2 ms command";
    EXPECT_GT(spinning, 5 * sleeping) << "polled: " << spinning << " polls per command; with interrupts: " << sleeping;
}

// The defaults: a worker stays awake (polling) while commands keep coming, and an idle target, its
// connections open, costs no CPU once the poll window has passed.
TEST(NvmfTargetOptions, ByDefaultAQuietTargetSleeps) {
    const TargetOptions o;
    EXPECT_EQ(o.poll_us, kDefaultPollUs);
    EXPECT_TRUE(o.device_interrupts);
    auto target = Target::create(o);
    ASSERT_TRUE(target) << target.error().message();
    ASSERT_TRUE((*target)->set_subsystem(one_namespace(std::make_shared<udrv::testing::MemDevice>())));
    const std::uint16_t port = listen_on_free_port(**target, static_cast<unsigned>(::getpid()) + 4);
    ASSERT_NE(port, 0);
    Host a(port), io(port);
    ASSERT_TRUE(connect_admin_and_io(a, io));
    auto data = pattern(4096, 9);
    for (int i = 0; i < 20; ++i) {
        EXPECT_EQ(io.io(0x01, 8, 8, data).sf(), 0);
        EXPECT_EQ(io.io(0x02, 8, 8, {}, 4096).data, data);
    }
    auto cpu_time = [] {
        rusage u{};
        ::getrusage(RUSAGE_SELF, &u);
        return std::chrono::seconds(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
               std::chrono::microseconds(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
    };
    std::this_thread::sleep_for(std::chrono::microseconds(kDefaultPollUs) + std::chrono::milliseconds(20));  // the window ends
    const auto before = cpu_time();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const auto spent = cpu_time() - before;
    EXPECT_LT(spent, std::chrono::milliseconds(50)) << "an idle target with two open connections used "
                                                    << std::chrono::duration_cast<std::chrono::milliseconds>(spent).count()
                                                    << " ms of CPU in 500 ms";
    // And it answers the next command after sleeping.
    EXPECT_EQ(io.io(0x02, 8, 8, {}, 4096).data, data);
}

// More writes in flight than the worker has device buffers (64), each waiting for its data: the
// connection must go on reading the data of those that have buffers (they free them) while the rest
// wait, or it waits for itself.
// Writes with data in the capsule that find no free buffer keep it in their own memory until one is.
TEST_F(NvmfTarget, MoreWritesAwaitingDataThanDeviceBuffersAllComplete) {
    Host a(port_);
    const std::uint16_t cntlid = bring_up(a);
    ASSERT_EQ(a.admin(0x09, 0, 0x07, (1u << 16) | 1u).sf(), 0);
    Host io(port_);
    ASSERT_EQ(io.connect(1, cntlid, kNqn, kHost, 127).sf(), 0);
    const auto each = pattern(16384, 3), small = pattern(4096, 5);
    const auto answers = io.pipelined_writes(90, 0, each, 30, small);
    ASSERT_EQ(answers.size(), 120u) << "the target stopped answering after " << answers.size() << " writes";
    for (auto sf : answers) EXPECT_EQ(sf, 0);
    for (unsigned i = 0; i < 90; ++i)
        ASSERT_EQ(std::memcmp(dev_->data_.data() + std::size_t{i} * 16384, each.data(), each.size()), 0) << "write " << i;
    for (unsigned i = 0; i < 30; ++i)
        ASSERT_EQ(std::memcmp(dev_->data_.data() + 90 * 16384 + std::size_t{i} * 4096, small.data(), small.size()), 0) << "in-capsule write " << i;
}

TEST_F(NvmfTarget, DigestsBothWays) {
    Host a(port_, true, true);
    const std::uint16_t cntlid = bring_up(a);
    Host io(port_, true, true);
    ASSERT_EQ(io.connect(1, cntlid).sf(), 0);
    auto d = pattern(32768, 3);
    EXPECT_EQ(io.io(0x01, 0, 64, d).sf(), 0);
    EXPECT_EQ(io.io(0x02, 0, 64, {}, 32768).data, d);
    // A header whose digest is wrong: C2HTermReq (header digest error) and the connection ends.
    std::vector<std::byte> bad(76);
    write_common(bad, {0x04, kFlagHdgst, 72, 0, 76});
    put32(bad, 72, 0xdeadbeef);
    io.send_all(bad);
    auto term = io.recv_pdu();
    ASSERT_GE(term.size(), 24u);
    EXPECT_EQ(std::to_integer<int>(term[0]), 0x03);
    EXPECT_EQ(get16(term, 8), 0x03);
    EXPECT_TRUE(io.closed_by_peer());
}

TEST_F(NvmfTarget, AHostNotAllowedIsRefusedAndAnUnknownSubsystemNamed) {
    SubsystemSpec s;
    s.nqn = kNqn;
    s.serial = "UDRVTEST01";
    s.allow_any_host = false;
    s.hosts = {"nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001"};
    s.namespaces.push_back({1, "mem0", dev_});
    ASSERT_TRUE(target_->set_subsystem(s));
    Host h(port_);
    EXPECT_EQ(h.connect(0, 0xffff).sf(), 0x184 | 0x4000);  // Connect Invalid Host
    Host h2(port_);
    auto r = h2.connect(0, 0xffff, "nqn.2026-12.io.udrv:nothere");
    EXPECT_EQ(r.sf(), 0x182 | 0x4000);                      // Connect Invalid Parameters ...
    EXPECT_EQ(r.cqe.result, (1u << 16) | 256u);             // ... in the data, at the subsystem NQN
}

TEST_F(NvmfTarget, MalformedPdusEndTheirConnectionOnly) {
    Host good(port_);
    bring_up(good);
    Host bad(port_);
    std::vector<std::byte> p(24);
    write_common(p, {0x05, 0, 24, 0, 24});  // a CapsuleResp, which only controllers send
    bad.send_all(p);
    auto term = bad.recv_pdu();
    ASSERT_GE(term.size(), 24u);
    EXPECT_EQ(std::to_integer<int>(term[0]), 0x03);
    EXPECT_EQ(get16(term, 8), 0x01);  // invalid PDU header field
    EXPECT_TRUE(bad.closed_by_peer());
    // H2CData nobody asked for.
    Host bad2(port_);
    std::vector<std::byte> h(16);
    put16(h, 2, 40);
    put32(h, 8, 4);
    bad2.send_pdu(0x06, h, pattern(4, 0));
    auto t2 = bad2.recv_pdu();
    ASSERT_GE(t2.size(), 24u);
    EXPECT_EQ(std::to_integer<int>(t2[0]), 0x03);
    // The other host goes on.
    EXPECT_EQ(good.admin(0x18, 0, 0).sf(), 0);
}

TEST_F(NvmfTarget, DiscoveryListsTheSubsystemOnItsListener) {
    Host h(port_);
    auto c = h.connect(0, 0xffff, kDiscoveryNqn);
    ASSERT_EQ(c.sf(), 0);
    ASSERT_EQ(h.prop_set(0x14, 1 | 6u << 16 | 4u << 20).sf(), 0);
    auto id = h.admin(0x06, 0, 1, 0, 4096);
    EXPECT_EQ(std::to_integer<int>(id.data[111]), 2);  // a discovery controller
    auto log = h.admin(0x02, 0, 0x70 | ((2048u / 4 - 1) << 16), 0, 2048);
    ASSERT_EQ(log.sf(), 0);
    ASSERT_EQ(log.data.size(), 2048u);
    EXPECT_EQ(get64(log.data, 8), 1u);  // one record
    const std::span<const std::byte> e = std::span<const std::byte>(log.data).subspan(1024);
    EXPECT_EQ(std::to_integer<int>(e[0]), 3);  // TCP
    std::string subnqn(reinterpret_cast<const char*>(e.data() + 256));
    EXPECT_EQ(subnqn, kNqn);
    std::string svc(reinterpret_cast<const char*>(e.data() + 32), 32);
    EXPECT_EQ(svc.substr(0, svc.find(' ')), std::to_string(port_));
}
