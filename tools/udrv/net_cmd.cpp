#include "net_cmd.hpp"

#include <arpa/inet.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>

#include <nlohmann/json.hpp>

#include "output.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"
#include "udrv/net.hpp"
#include "udrv/pci.hpp"
#include "e1000e/e1000e.hpp"
#include "virtio_net/virtio_net.hpp"

namespace udrv::tools {
namespace {

using clock = std::chrono::steady_clock;
volatile std::sig_atomic_t g_stop = 0;

// Network drivers bound to every NIC on vfio-pci.
struct NetSession {
    Loader loader;
    Result<net::Device*> open(const std::string& addr) {
        for (const char* m : {"udrv_virtio_net", "udrv_e1000e"})
            if (!loader.find(m)) UDRV_TRY(loader.load(m));
        UDRV_TRY(pci::bus().scan());
        auto a = UDRV_TRY(pci::Address::parse(addr));
        pci::Device* d = pci::bus().find(a);
        if (!d) return fail(ENODEV, "no PCI device {}", addr);
        if (auto* v = d->driver_data<virtio_net::VirtioNet>()) return static_cast<net::Device*>(v);
        if (auto* e = d->driver_data<e1000e::E1000e>()) return static_cast<net::Device*>(e);
        return fail(ENODEV, "{} is not a NIC bound to a udrv network driver (kernel driver: {}; udrv bind {} first)", addr,
                    d->info().driver.value_or("none"), addr);
    }
    ~NetSession() { pci::bus().remove_all_devices(); }
};

std::uint16_t be16(const std::byte* p) { return static_cast<std::uint16_t>(std::to_integer<unsigned>(p[0]) << 8 | std::to_integer<unsigned>(p[1])); }
void put16(std::byte* p, std::uint16_t v) {
    p[0] = std::byte(v >> 8);
    p[1] = std::byte(v & 0xff);
}

std::uint16_t checksum(std::span<const std::byte> d) {
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i + 1 < d.size(); i += 2) sum += be16(&d[i]);
    if (d.size() & 1) sum += std::to_integer<unsigned>(d.back()) << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<std::uint16_t>(~sum);
}

// Builds the answer to an ARP request or ICMP echo request for `ip` into `out`; false if none is due.
// Every length and field is checked: the frame comes from the wire.
bool answer(std::span<const std::byte> in, const net::Mac& mac, std::uint32_t ip, net::Packet& out, std::uint64_t& arps,
            std::uint64_t& pings) {
    if (in.size() < 14) return false;
    const std::uint16_t type = be16(&in[12]);
    auto o = out.data();
    if (type == 0x0806 && in.size() >= 42) {  // ARP, Ethernet/IPv4
        if (be16(&in[14]) != 1 || be16(&in[16]) != 0x0800 || in[18] != std::byte{6} || in[19] != std::byte{4} || be16(&in[20]) != 1)
            return false;
        std::uint32_t tpa;
        std::memcpy(&tpa, &in[38], 4);
        if (tpa != ip) return false;
        (void)out.resize(42);
        o = out.data();
        std::memcpy(&o[0], &in[6], 6);  // to the asker
        std::memcpy(&o[6], mac.data(), 6);
        put16(&o[12], 0x0806);
        std::memcpy(&o[14], &in[14], 6);  // htype, ptype, hlen, plen
        put16(&o[20], 2);                  // reply
        std::memcpy(&o[22], mac.data(), 6);
        std::memcpy(&o[28], &ip, 4);
        std::memcpy(&o[32], &in[22], 10);  // their sha + spa
        ++arps;
        return true;
    }
    if (type != 0x0800 || in.size() < 14 + 20) return false;
    const std::size_t ihl = (std::to_integer<unsigned>(in[14]) & 0xf) * 4u;
    const std::size_t total = be16(&in[16]);
    if ((std::to_integer<unsigned>(in[14]) >> 4) != 4 || ihl < 20 || total < ihl + 8 || 14 + total > in.size()) return false;
    if (in[23] != std::byte{1}) return false;  // ICMP
    std::uint32_t dst;
    std::memcpy(&dst, &in[30], 4);
    if (dst != ip || in[14 + ihl] != std::byte{8}) return false;  // echo request to us
    if (14 + total > out.capacity()) return false;
    (void)out.resize(14 + total);
    o = out.data();
    std::memcpy(&o[0], &in[0], 14 + total);
    std::memcpy(&o[0], &in[6], 6);
    std::memcpy(&o[6], mac.data(), 6);
    std::memcpy(&o[26], &in[30], 4);  // swap addresses
    std::memcpy(&o[30], &in[26], 4);
    o[22] = std::byte{64};              // TTL
    put16(&o[24], 0);
    put16(&o[24], checksum(o.subspan(14, ihl)));
    o[14 + ihl] = std::byte{0};          // echo reply
    put16(&o[14 + ihl + 2], 0);
    put16(&o[14 + ihl + 2], checksum(o.subspan(14 + ihl, total - ihl)));
    ++pings;
    return true;
}

int run_respond(const std::string& addr, const std::string& ip_text, double seconds, bool json) {
    std::uint32_t ip = 0;
    if (inet_pton(AF_INET, ip_text.c_str(), &ip) != 1) return report(Error(EINVAL, fmt::format("'{}' is not an IPv4 address", ip_text)));
    NetSession s;
    auto dev = s.open(addr);
    if (!dev) return report(dev.error());
    net::Device& d = **dev;
    std::signal(SIGINT, [](int) { g_stop = 1; });
    std::signal(SIGTERM, [](int) { g_stop = 1; });
    std::fprintf(stderr, "answering ARP and ping for %s on %s (%s), %s\n", ip_text.c_str(), addr.c_str(), net::format_mac(d.mac()).c_str(),
                 seconds > 0 ? fmt::format("{} s", seconds).c_str() : "until interrupted");
    std::vector<net::Packet> rx(32), tx;
    std::uint64_t arps = 0, pings = 0, seen = 0;
    auto t0 = clock::now(), next_report = t0 + std::chrono::seconds(1);
    while (!g_stop && (seconds <= 0 || clock::now() - t0 < std::chrono::duration<double>(seconds))) {
        auto n = d.rx_batch(0, rx);
        if (!n) return report(n.error());
        tx.clear();
        for (unsigned i = 0; i < *n; ++i) {
            ++seen;
            auto out = d.tx_pool(0).alloc();
            if (!out) break;
            if (answer(rx[i].data(), d.mac(), ip, *out, arps, pings)) tx.push_back(std::move(*out));
            rx[i] = net::Packet();
        }
        if (!tx.empty())
            if (auto sent = d.tx_batch(0, tx); !sent) return report(sent.error());
        if (*n == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
        if (clock::now() >= next_report && !json) {
            std::fprintf(stderr, "rx %llu frames, answered %llu ARP, %llu echo\n", (unsigned long long)seen, (unsigned long long)arps,
                         (unsigned long long)pings);
            next_report += std::chrono::seconds(1);
        }
    }
    auto st = *d.stats();
    if (json)
        print(nlohmann::json{{"rx_frames", seen}, {"arp_replies", arps}, {"echo_replies", pings}, {"rx_packets", st.rx_packets},
                             {"tx_packets", st.tx_packets}, {"rx_errors", st.rx_errors}}.dump(2) + "\n");
    else
        print(fmt::format("{} frames received, {} ARP replies, {} echo replies, {} sent\n", seen, arps, pings, st.tx_packets));
    return 0;
}

int run_pktgen(const std::string& addr, std::uint64_t count, std::uint32_t size, std::uint32_t batch, double rate, bool json) {
    NetSession s;
    auto dev = s.open(addr);
    if (!dev) return report(dev.error());
    net::Device& d = **dev;
    if (size < 60 || size > 1514) return report(Error(EINVAL, fmt::format("frame size {} (60-1514)", size)));
    if (batch == 0 || batch > 256) return report(Error(EINVAL, fmt::format("batch {} (1-256)", batch)));
    // UDP from 10.0.0.2:9 to broadcast, payload "UDRV" + a 64-bit sequence number.
    auto build = [&](net::Packet& p, std::uint64_t seq) {
        (void)p.resize(size);
        auto o = p.data();
        std::memset(o.data(), 0, size);
        std::memset(&o[0], 0xff, 6);
        std::memcpy(&o[6], d.mac().data(), 6);
        put16(&o[12], 0x0800);
        o[14] = std::byte{0x45};
        put16(&o[16], static_cast<std::uint16_t>(size - 14));
        o[22] = std::byte{64};
        o[23] = std::byte{17};
        const std::uint8_t src[4] = {10, 0, 0, 2}, dst[4] = {10, 0, 0, 255};
        std::memcpy(&o[26], src, 4);
        std::memcpy(&o[30], dst, 4);
        put16(&o[24], checksum(o.subspan(14, 20)));
        put16(&o[34], 9);
        put16(&o[36], 9);
        put16(&o[38], static_cast<std::uint16_t>(size - 34));
        std::memcpy(&o[42], "UDRV", 4);
        std::memcpy(&o[46], &seq, 8);
    };
    std::vector<net::Packet> pkts;
    std::uint64_t sent = 0;
    auto t0 = clock::now();
    while (sent < count) {
        if (rate > 0) {  // pace: never ahead of rate * elapsed
            double due = rate * std::chrono::duration<double>(clock::now() - t0).count();
            if (static_cast<double>(sent) >= due) {
                std::this_thread::sleep_for(std::chrono::microseconds(50));
                continue;
            }
        }
        pkts.clear();
        for (std::uint32_t i = 0; i < batch && sent + pkts.size() < count; ++i) {
            auto p = d.tx_pool(0).alloc();
            if (!p) break;  // all buffers in flight: let the device catch up
            build(*p, sent + pkts.size());
            pkts.push_back(std::move(*p));
        }
        auto n = d.tx_batch(0, pkts);
        if (!n) return report(n.error());
        sent += *n;
        if (*n < pkts.size()) std::this_thread::yield();  // ring full; unsent handles return to the pool
    }
    double secs = std::chrono::duration<double>(clock::now() - t0).count();  // the driver's remove drains the ring
    if (json)
        print(nlohmann::json{{"sent", sent}, {"size", size}, {"batch", batch}, {"seconds", secs}, {"pps", sent / secs}}.dump(2) + "\n");
    else
        print(fmt::format("sent {} frames of {} bytes in batches of {}: {:.0f} frames/s\n", sent, size, batch, sent / secs));
    return 0;
}

// Forwards every frame between two ports, both ways (copying: each port transmits from its own pool).
int run_fwd(const std::string& a_addr, const std::string& b_addr, double seconds, std::uint32_t batch, bool json) {
    NetSession s;
    auto a = s.open(a_addr);
    if (!a) return report(a.error());
    auto b = s.open(b_addr);
    if (!b) return report(b.error());
    net::Device* ports[2] = {*a, *b};
    for (net::Device* p : ports)
        if (auto r = p->set_promiscuous(true); !r) return report(r.error());
    std::signal(SIGINT, [](int) { g_stop = 1; });
    std::signal(SIGTERM, [](int) { g_stop = 1; });
    std::vector<net::Packet> rx(batch), tx;
    std::uint64_t fwd[2] = {0, 0}, dropped = 0;
    auto t0 = clock::now(), next_report = t0 + std::chrono::seconds(1);
    while (!g_stop && (seconds <= 0 || clock::now() - t0 < std::chrono::duration<double>(seconds))) {
        unsigned moved = 0;
        for (int dir = 0; dir < 2; ++dir) {
            net::Device& from = *ports[dir];
            net::Device& to = *ports[1 - dir];
            auto n = from.rx_batch(0, rx);
            if (!n) return report(n.error());
            tx.clear();
            for (unsigned i = 0; i < *n; ++i) {
                auto out = to.tx_pool(0).alloc();
                if (!out || !out->resize(rx[i].size())) {
                    ++dropped;
                } else {
                    std::memcpy(out->data().data(), rx[i].data().data(), rx[i].size());
                    tx.push_back(std::move(*out));
                }
                rx[i] = net::Packet();
            }
            auto sent = to.tx_batch(0, tx);
            if (!sent) return report(sent.error());
            fwd[dir] += *sent;
            dropped += tx.size() - *sent;
            moved += *n;
        }
        if (!moved) std::this_thread::sleep_for(std::chrono::microseconds(20));
        if (clock::now() >= next_report && !json) {
            std::fprintf(stderr, "%s -> %s %llu, %s -> %s %llu, dropped %llu\n", a_addr.c_str(), b_addr.c_str(), (unsigned long long)fwd[0],
                         b_addr.c_str(), a_addr.c_str(), (unsigned long long)fwd[1], (unsigned long long)dropped);
            next_report += std::chrono::seconds(1);
        }
    }
    if (json) print(nlohmann::json{{"a_to_b", fwd[0]}, {"b_to_a", fwd[1]}, {"dropped", dropped}}.dump(2) + "\n");
    else print(fmt::format("forwarded {} frames {} -> {} and {} frames {} -> {}, {} dropped\n", fwd[0], a_addr, b_addr, fwd[1], b_addr, a_addr, dropped));
    return 0;
}

// A tcpdump-like capture in the classic pcap format (microsecond timestamps, Ethernet link type).
int run_dump(const std::string& addr, const std::string& file, std::uint64_t count, double seconds, bool json) {
    NetSession s;
    auto dev = s.open(addr);
    if (!dev) return report(dev.error());
    net::Device& d = **dev;
    std::FILE* f = std::fopen(file.c_str(), "wb");
    if (!f) return report(Error(errno, fmt::format("cannot create {}: {}", file, std::strerror(errno))));
    struct {
        std::uint32_t magic = 0xa1b2c3d4;
        std::uint16_t major = 2, minor = 4;
        std::int32_t zone = 0;
        std::uint32_t sigfigs = 0, snaplen = 65535, linktype = 1;
    } header;
    std::fwrite(&header, sizeof header, 1, f);
    std::signal(SIGINT, [](int) { g_stop = 1; });
    std::signal(SIGTERM, [](int) { g_stop = 1; });
    std::vector<net::Packet> rx(32);
    std::uint64_t captured = 0, bytes = 0;
    auto t0 = clock::now(), next_report = t0 + std::chrono::seconds(1);
    while (!g_stop && (count == 0 || captured < count) && (seconds <= 0 || clock::now() - t0 < std::chrono::duration<double>(seconds))) {
        auto n = d.rx_batch(0, rx);
        if (!n) {
            std::fclose(f);
            return report(n.error());
        }
        auto now = std::chrono::system_clock::now().time_since_epoch();
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
        for (unsigned i = 0; i < *n && (count == 0 || captured < count); ++i) {
            const std::uint32_t rec[4] = {static_cast<std::uint32_t>(us / 1000000), static_cast<std::uint32_t>(us % 1000000),
                                          static_cast<std::uint32_t>(rx[i].size()), static_cast<std::uint32_t>(rx[i].size())};
            std::fwrite(rec, sizeof rec, 1, f);
            std::fwrite(rx[i].data().data(), 1, rx[i].size(), f);
            ++captured;
            bytes += rx[i].size();
            rx[i] = net::Packet();
        }
        if (*n == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
        if (clock::now() >= next_report && !json) {
            std::fprintf(stderr, "captured %llu frames\n", (unsigned long long)captured);
            next_report += std::chrono::seconds(1);
        }
    }
    std::fclose(f);
    if (json) print(nlohmann::json{{"file", file}, {"frames", captured}, {"bytes", bytes}}.dump(2) + "\n");
    else print(fmt::format("captured {} frames ({} bytes) to {}\n", captured, bytes, file));
    return 0;
}

}  // namespace

std::function<int()> add_net_commands(CLI::App& app) {
    auto* netc = app.add_subcommand("net", "Network devices bound to vfio-pci, driven by udrv network drivers");
    netc->require_subcommand(1);
    struct State {
        std::string addr, ip = "10.0.0.2";
        double seconds = 0;
        std::uint64_t count = 1000;
        std::uint32_t size = 64, batch = 32;
        double rate = 0;
        bool json = false;
        std::string file;
        std::uint64_t frames = 0;
    };
    auto st = std::make_shared<State>();
    auto* respond = netc->add_subcommand("respond", "Answer ARP and ICMP echo for an IPv4 address (so ping works against udrv)");
    respond->add_option("-s,--slot", st->addr, "NIC address")->required();
    respond->add_option("--ip", st->ip, "IPv4 address to answer for (default 10.0.0.2)");
    respond->add_option("-t,--time", st->seconds, "Seconds to run (default: until interrupted)");
    respond->add_flag("--json", st->json, "Emit JSON totals");
    auto* pktgen = netc->add_subcommand("pktgen", "Send numbered UDP frames");
    pktgen->add_option("-s,--slot", st->addr, "NIC address")->required();
    pktgen->add_option("-n,--count", st->count, "Frames to send (default 1000)");
    pktgen->add_option("--size", st->size, "Frame size in bytes, 60-1514 (default 64)");
    pktgen->add_option("-b,--batch", st->batch, "Frames per tx_batch (default 32)");
    pktgen->add_option("-r,--rate", st->rate, "Frames per second (default: as fast as the device takes them)");
    pktgen->add_flag("--json", st->json, "Emit JSON totals");
    auto* fwdc = netc->add_subcommand("fwd", "Forward frames between two ports, both ways");
    fwdc->add_option("-s,--slot", st->addr, "First port")->required();
    fwdc->add_option("-d,--dest", st->file, "Second port")->required();
    fwdc->add_option("-t,--time", st->seconds, "Seconds (default: until interrupted)");
    fwdc->add_option("-b,--batch", st->batch, "Frames per rx_batch (default 32)");
    fwdc->add_flag("--json", st->json, "Emit JSON totals");
    auto* dump = netc->add_subcommand("dump", "Capture received frames to a pcap file (readable by tcpdump/tshark)");
    dump->add_option("-s,--slot", st->addr, "NIC address")->required();
    dump->add_option("-w,--write", st->file, "pcap file to write")->required();
    dump->add_option("-c,--count", st->frames, "Stop after this many frames (default: no limit)");
    dump->add_option("-t,--time", st->seconds, "Stop after this many seconds (default: when interrupted)");
    dump->add_flag("--json", st->json, "Emit JSON totals");
    return [=]() -> int {
        if (!*netc) return -1;
        if (*fwdc) return run_fwd(st->addr, st->file, st->seconds, st->batch, st->json);
        if (*dump) return run_dump(st->addr, st->file, st->frames, st->seconds, st->json);
        if (*respond) return run_respond(st->addr, st->ip, st->seconds, st->json);
        if (*pktgen) return run_pktgen(st->addr, st->count, st->size, st->batch, st->rate, st->json);
        return -1;
    };
}

}  // namespace udrv::tools
