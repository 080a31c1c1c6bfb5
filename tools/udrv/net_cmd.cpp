#include "net_cmd.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "numbers.hpp"
#include "output.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"
#include "udrv/net.hpp"
#include "udrv/pci.hpp"
#include "udrv/ticks.hpp"
#include "e1000e/e1000e.hpp"
#include "virtio_net/virtio_net.hpp"

namespace udrv::tools {
namespace {

// Set by SIGINT/SIGTERM, or by a queue thread that failed; every loop checks it. A lock-free atomic
// is safe to write from a signal handler and to read from other threads.
std::atomic<int> g_stop{0};
static_assert(std::atomic<int>::is_always_lock_free);

// Network drivers bound to the NICs a command names, and to no other device: other udrv processes
// (a traffic generator, say) may be driving the rest.
struct NetSession {
    Loader loader;
    Result<net::Device*> open(const std::string& addr) {
        auto a = UDRV_TRY(pci::Address::parse(addr));
        pci::bus().allow(a);
        for (const char* m : {"udrv_virtio_net", "udrv_e1000e"})
            if (!loader.find(m)) UDRV_TRY(loader.load(m));
        UDRV_TRY(pci::bus().scan());
        pci::Device* d = pci::bus().find(a);
        if (!d) return fail(ENODEV, "no PCI device {}", addr);
        if (!d->is_bound() && d->info().driver == "vfio-pci") UDRV_TRY(pci::bus().attach(*d));  // says why a probe failed
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

// A monotonic clock for loops that check it per batch: the TSC, not clock_gettime (a system call and a
// slow clock-device read in emulated guests).
struct Stopwatch {
    std::uint64_t t0 = ticks();
    std::uint64_t per_second = static_cast<std::uint64_t>(ticks_per_second());
    double seconds() const { return static_cast<double>(ticks() - t0) / static_cast<double>(per_second); }
    double seconds_between(std::uint64_t a, std::uint64_t b) const { return static_cast<double>(b - a) / static_cast<double>(per_second); }
    /// The tick `seconds` after the start; 0 (no deadline) for seconds <= 0.
    std::uint64_t deadline(double seconds) const {
        return seconds > 0 ? t0 + static_cast<std::uint64_t>(seconds * static_cast<double>(per_second)) : 0;
    }
};

// Runs loop(q) on a thread of its own for each queue pair q < n (a queue pair belongs to one thread).
// The calling thread calls progress() once a second until every loop has returned. The first error
// stops the other loops (through g_stop) and is returned.
Result<void> run_per_queue(unsigned n, const std::function<Result<void>(unsigned)>& loop, const std::function<void()>& progress) {
    std::mutex mu;
    std::condition_variable all_done;
    unsigned running = n;
    std::optional<Error> first;
    std::vector<std::thread> threads;
    for (unsigned q = 0; q < n; ++q)
        threads.emplace_back([&, q] {
            auto r = loop(q);
            std::lock_guard lock(mu);
            if (!r && !first) {
                first = std::move(r.error());
                g_stop = 1;
            }
            if (--running == 0) all_done.notify_all();
        });
    {
        std::unique_lock lock(mu);
        for (auto next = std::chrono::steady_clock::now() + std::chrono::seconds(1); running; next += std::chrono::seconds(1)) {
            if (all_done.wait_until(lock, next, [&] { return running == 0; })) break;
            lock.unlock();
            progress();
            lock.lock();
        }
    }
    for (auto& t : threads) t.join();
    if (first) return std::unexpected(std::move(*first));
    return {};
}

// Spreads the device's traffic over `queues` pairs (before any queue's thread starts).
Result<void> use_queues(net::Device& d, const std::string& addr, unsigned queues) {
    if (auto r = d.set_queues(queues); !r) return std::unexpected(std::move(r.error()).context(addr));
    return {};
}

// A counter one queue thread writes and the reporting thread reads.
using Counter = std::atomic<std::uint64_t>;
std::uint64_t sum(const std::vector<Counter>& v) {
    std::uint64_t n = 0;
    for (auto& c : v) n += c.load(std::memory_order_relaxed);
    return n;
}
std::vector<std::uint64_t> values(const std::vector<Counter>& v) {
    std::vector<std::uint64_t> out;
    for (auto& c : v) out.push_back(c.load(std::memory_order_relaxed));
    return out;
}

// With --queues N each queue pair has a thread: it answers what arrives on its receive queue through
// its own transmit queue.
int run_respond(const std::string& addr, const std::string& ip_text, double seconds, const std::string& mode_text, unsigned queues,
                bool json) {
    std::uint32_t ip = 0;
    if (inet_pton(AF_INET, ip_text.c_str(), &ip) != 1) return report(Error(EINVAL, fmt::format("'{}' is not an IPv4 address", ip_text)));
    auto mode = net::parse_wait_mode(mode_text);
    if (!mode) return report(mode.error());
    NetSession s;
    auto dev = s.open(addr);
    if (!dev) return report(dev.error());
    net::Device& d = **dev;
    if (auto r = use_queues(d, addr, queues); !r) return report(r.error());
    std::signal(SIGINT, [](int) { g_stop = 1; });
    std::signal(SIGTERM, [](int) { g_stop = 1; });
    std::fprintf(stderr, "answering ARP and ping for %s on %s (%s), %s\n", ip_text.c_str(), addr.c_str(), net::format_mac(d.mac()).c_str(),
                 seconds > 0 ? fmt::format("{} s", seconds).c_str() : "until interrupted");
    std::vector<Counter> seen(queues), arps(queues), pings(queues);
    Stopwatch watch;
    const std::uint64_t deadline = watch.deadline(seconds);
    auto loop = [&](unsigned q) -> Result<void> {
        std::vector<net::Packet> rx(32), tx;
        std::uint64_t n_seen = 0, n_arps = 0, n_pings = 0;
        while (!g_stop && (!deadline || ticks() < deadline)) {
            auto n = d.rx_batch(q, rx);
            if (!n) return std::unexpected(std::move(n.error()));
            tx.clear();
            for (unsigned i = 0; i < *n; ++i) {
                ++n_seen;
                auto out = d.tx_pool(q).alloc();
                if (!out) break;
                if (answer(rx[i].data(), d.mac(), ip, *out, n_arps, n_pings)) tx.push_back(std::move(*out));
                rx[i] = net::Packet();
            }
            if (!tx.empty())
                if (auto sent = d.tx_batch(q, tx); !sent) return std::unexpected(std::move(sent.error()));
            seen[q].store(n_seen, std::memory_order_relaxed);
            arps[q].store(n_arps, std::memory_order_relaxed);
            pings[q].store(n_pings, std::memory_order_relaxed);
            if (*n == 0)
                if (auto w = d.rx_wait(q, *mode, std::chrono::milliseconds(100)); !w) return std::unexpected(std::move(w.error()));
        }
        return {};
    };
    auto progress = [&] {
        if (!json)
            std::fprintf(stderr, "rx %llu frames, answered %llu ARP, %llu echo\n", (unsigned long long)sum(seen), (unsigned long long)sum(arps),
                         (unsigned long long)sum(pings));
    };
    if (auto r = run_per_queue(queues, loop, progress); !r) return report(r.error());
    auto st = *d.stats();
    if (json)
        print_json(nlohmann::json{{"rx_frames", sum(seen)}, {"arp_replies", sum(arps)}, {"echo_replies", sum(pings)},
                             {"echo_replies_per_queue", values(pings)}, {"rx_packets", st.rx_packets}, {"tx_packets", st.tx_packets},
                             {"rx_errors", st.rx_errors}, {"rx_interrupts", st.rx_interrupts}});
    else
        print(fmt::format("{} frames received, {} ARP replies, {} echo replies{}, {} sent, {} receive interrupts\n", sum(seen), sum(arps),
                          sum(pings), queues > 1 ? fmt::format(" (per queue: {})", fmt::join(values(pings), ", ")) : "", st.tx_packets,
                          st.rx_interrupts));
    return 0;
}

// With --queues N each transmit queue has a thread sending its share of the frames (and of the rate);
// frame k of queue q carries sequence number q + N * k, so all the frames together number 0..count-1
// once each, as with one queue.
int run_pktgen(const std::string& addr, std::uint64_t count, double seconds, const std::string& dst_text, std::uint32_t size, std::uint32_t batch,
               double rate, unsigned queues, bool json) {
    NetSession s;
    auto dev = s.open(addr);
    if (!dev) return report(dev.error());
    net::Device& d = **dev;
    if (size < 60 || size > 1514) return report(Error(EINVAL, fmt::format("frame size {} (60-1514)", size)));
    if (batch == 0 || batch > 256) return report(Error(EINVAL, fmt::format("batch {} (1-256)", batch)));
    net::Mac dst{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    if (!dst_text.empty()) {
        unsigned v[6];
        char tail;
        if (std::sscanf(dst_text.c_str(), "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6 ||
            std::any_of(v, v + 6, [](unsigned x) { return x > 0xff; }))
            return report(Error(EINVAL, fmt::format("'{}' is not a MAC address (like 02:00:00:00:00:01)", dst_text)));
        for (int i = 0; i < 6; ++i) dst[i] = static_cast<std::uint8_t>(v[i]);
    }
    if (auto r = use_queues(d, addr, queues); !r) return report(r.error());
    // UDP from 10.0.0.2:9 to 10.0.0.255 (Ethernet broadcast unless --dst), payload "UDRV" + a 64-bit
    // sequence number. Built once; each frame copies the headers and writes its number. Pool buffers
    // start zeroed and only ever hold these frames, so the rest of the payload stays zero.
    constexpr std::size_t kSeq = 46;  // Ethernet + IPv4 + UDP + "UDRV"; the 8-byte sequence number follows
    std::array<std::byte, kSeq> tmpl{};
    {
        auto* o = tmpl.data();
        std::memcpy(&o[0], dst.data(), 6);
        std::memcpy(&o[6], d.mac().data(), 6);
        put16(&o[12], 0x0800);
        o[14] = std::byte{0x45};
        put16(&o[16], static_cast<std::uint16_t>(size - 14));
        o[22] = std::byte{64};
        o[23] = std::byte{17};
        const std::uint8_t src_ip[4] = {10, 0, 0, 2}, dst_ip[4] = {10, 0, 0, 255};
        std::memcpy(&o[26], src_ip, 4);
        std::memcpy(&o[30], dst_ip, 4);
        put16(&o[24], checksum(std::span<const std::byte>(&o[14], 20)));
        put16(&o[34], 9);
        put16(&o[36], 9);
        put16(&o[38], static_cast<std::uint16_t>(size - 34));
        std::memcpy(&o[42], "UDRV", 4);
    }
    std::signal(SIGINT, [](int) { g_stop = 1; });
    std::signal(SIGTERM, [](int) { g_stop = 1; });
    std::vector<Counter> sent(queues);
    Stopwatch watch;
    const std::uint64_t deadline = watch.deadline(seconds);
    auto loop = [&](unsigned q) -> Result<void> {
        const std::uint64_t share = count == UINT64_MAX ? count : count / queues + (q < count % queues ? 1 : 0);
        const double share_rate = rate / queues;
        net::PacketPool& pool = d.tx_pool(q);
        std::array<net::Packet, 256> pkts;
        std::uint64_t n_sent = 0;
        while (n_sent < share && !g_stop && (!deadline || ticks() < deadline)) {
            if (share_rate > 0 && static_cast<double>(n_sent) >= share_rate * watch.seconds()) {  // pace: never ahead of rate * elapsed
                std::this_thread::sleep_for(std::chrono::microseconds(50));
                continue;
            }
            const auto want = static_cast<std::uint32_t>(std::min<std::uint64_t>(batch, share - n_sent));
            const unsigned built = pool.alloc_bulk(std::span(pkts).first(want));  // fewer when buffers are in flight
            for (unsigned i = 0; i < built; ++i) {
                (void)pkts[i].resize(size);
                const std::uint64_t seq = q + std::uint64_t{queues} * (n_sent + i);
                std::byte* o = pkts[i].data().data();
                std::memcpy(o, tmpl.data(), kSeq);
                std::memcpy(o + kSeq, &seq, 8);
            }
            auto n = d.tx_batch(q, std::span(pkts).first(built));
            if (!n) return std::unexpected(std::move(n.error()));
            for (unsigned i = *n; i < built; ++i) pkts[i] = net::Packet();  // not taken: back to the pool, sent again next round
            n_sent += *n;
            sent[q].store(n_sent, std::memory_order_relaxed);
        }
        return {};
    };
    std::uint64_t reported = 0;
    auto progress = [&] {
        const std::uint64_t now = sum(sent);
        if (!json) std::fprintf(stderr, "sent %llu frames (%llu/s)\n", (unsigned long long)now, (unsigned long long)(now - reported));
        reported = now;
    };
    if (auto r = run_per_queue(queues, loop, progress); !r) return report(r.error());
    const double secs = watch.seconds();  // the driver's remove drains the rings
    const std::uint64_t total = sum(sent);
    const std::string per_queue = queues > 1 ? fmt::format(" (per queue: {})", fmt::join(values(sent), ", ")) : "";
    if (json)
        print_json(nlohmann::json{{"sent", total}, {"per_queue", values(sent)}, {"size", size}, {"batch", batch}, {"seconds", secs},
                             {"pps", total / secs}});
    else
        print(fmt::format("sent {} frames of {} bytes in batches of {}{}: {:.0f} frames/s\n", total, size, batch, per_queue, total / secs));
    return 0;
}

// Forwards every frame between two ports, both ways. Zero-copy: a received buffer is handed to the
// other port's transmit queue as it is (both ports share the process's IOMMU space); with --copy, or
// when a port cannot reach the other's buffers, frames are copied into the transmitting port's pool.
// With --queues N both ports spread traffic over N pairs and a thread per pair number q forwards
// between their queues q (so the buffers it hands over stay on the thread that owns both queues).
int run_fwd(const std::string& a_addr, const std::string& b_addr, double seconds, std::uint32_t batch, bool copy_all, unsigned queues,
            bool json) {
    if (batch == 0 || batch > 256) return report(Error(EINVAL, fmt::format("batch {} (1-256)", batch)));
    if (auto pa = pci::Address::parse(a_addr), pb = pci::Address::parse(b_addr); pa && pb && *pa == *pb)
        return report(Error(EINVAL, fmt::format("fwd forwards between two ports: -s and -d both name {}; give two different NICs",
                                                pa->to_string())));
    NetSession s;
    auto a = s.open(a_addr);
    if (!a) return report(a.error());
    auto b = s.open(b_addr);
    if (!b) return report(b.error());
    net::Device* ports[2] = {*a, *b};
    for (net::Device* p : ports)
        if (auto r = p->set_promiscuous(true); !r) return report(r.error());
    if (auto r = use_queues(**a, a_addr, queues); !r) return report(r.error());
    if (auto r = use_queues(**b, b_addr, queues); !r) return report(r.error());
    std::signal(SIGINT, [](int) { g_stop = 1; });
    std::signal(SIGTERM, [](int) { g_stop = 1; });
    std::vector<Counter> fwd_ab(queues), fwd_ba(queues), dropped(queues), first_tick(queues), last_tick(queues);
    std::atomic<bool> copying{copy_all};
    Stopwatch watch;
    const std::uint64_t deadline = watch.deadline(seconds);
    const std::uint64_t idle_limit = watch.per_second / 1000;  // spin 1 ms without traffic, then nap
    auto loop = [&](unsigned q) -> Result<void> {
        std::vector<net::Packet> rx(batch), tx, refused;  // refused: frames a port could not take by reference, to copy
        tx.reserve(batch);
        bool copy = copy_all;
        std::uint64_t fwd[2] = {0, 0}, n_dropped = 0, first = 0, last_busy = watch.t0;
        // Copies frames into `to`'s own pool, appending the copies to `out` (the fallback path).
        auto copy_into = [&](net::Device& to, std::span<net::Packet> in, std::vector<net::Packet>& out) {
            for (auto& p : in) {
                auto c = to.tx_pool(q).alloc();
                if (c && c->resize(p.size())) {
                    std::memcpy(c->data().data(), p.data().data(), p.size());
                    out.push_back(std::move(*c));
                } else {
                    ++n_dropped;
                }
                p = net::Packet();
            }
        };
        while (!g_stop) {
            const std::uint64_t now = ticks();
            if (deadline && now >= deadline) break;
            unsigned moved = 0;
            for (int dir = 0; dir < 2; ++dir) {
                net::Device& from = *ports[dir];
                net::Device& to = *ports[1 - dir];
                auto n = from.rx_batch(q, rx);
                if (!n) return std::unexpected(std::move(n.error()));
                if (*n == 0) continue;
                tx.clear();
                if (copy) {
                    copy_into(to, std::span(rx).first(*n), tx);
                } else {
                    for (unsigned i = 0; i < *n; ++i) tx.push_back(std::move(rx[i]));
                }
                auto sent = to.tx_batch(q, tx);
                if (!sent && !copy && (sent.error().code() == EXDEV || sent.error().code() == ERANGE || sent.error().code() == EINVAL)) {
                    std::fprintf(stderr, "fwd: zero-copy not possible on queue %u (%s); copying from now on\n", q,
                                 sent.error().message().c_str());
                    copy = true;
                    copying = true;
                    refused.swap(tx);
                    tx.clear();
                    copy_into(to, refused, tx);
                    refused.clear();
                    sent = to.tx_batch(q, tx);
                }
                if (!sent) return std::unexpected(std::move(sent.error()));
                fwd[dir] += *sent;
                n_dropped += tx.size() - *sent;  // ring full: the rest go back to their pool
                moved += *n;
            }
            if (moved) {
                if (!first) first = now, first_tick[q].store(now, std::memory_order_relaxed);
                last_busy = now;
                last_tick[q].store(now, std::memory_order_relaxed);
                fwd_ab[q].store(fwd[0], std::memory_order_relaxed);
                fwd_ba[q].store(fwd[1], std::memory_order_relaxed);
                dropped[q].store(n_dropped, std::memory_order_relaxed);
            } else if (now - last_busy > idle_limit) {
                std::this_thread::sleep_for(std::chrono::microseconds(20));
            }
        }
        return {};  // n_dropped only grows in rounds that moved frames, which published it
    };
    std::uint64_t reported = 0;
    auto progress = [&] {
        const std::uint64_t ab = sum(fwd_ab), ba = sum(fwd_ba);
        if (!json)
            std::fprintf(stderr, "%s -> %s %llu, %s -> %s %llu, dropped %llu (%llu/s)\n", a_addr.c_str(), b_addr.c_str(), (unsigned long long)ab,
                         b_addr.c_str(), a_addr.c_str(), (unsigned long long)ba, (unsigned long long)sum(dropped),
                         (unsigned long long)(ab + ba - reported));
        reported = ab + ba;
    };
    if (auto r = run_per_queue(queues, loop, progress); !r) return report(r.error());
    // Rate over the busy interval, from the first frame forwarded (on any queue) to the last.
    std::uint64_t first = 0, last = 0;
    for (unsigned q = 0; q < queues; ++q) {
        const std::uint64_t f = first_tick[q].load(), l = last_tick[q].load();
        if (f && (!first || f < first)) first = f;
        last = std::max(last, l);
    }
    const std::uint64_t ab = sum(fwd_ab), ba = sum(fwd_ba);
    const double busy = first && last > first ? watch.seconds_between(first, last) : 0;
    const double pps = busy > 0 ? static_cast<double>(ab + ba) / busy : 0;
    if (json)
        print_json(nlohmann::json{{"a_to_b", ab}, {"b_to_a", ba}, {"per_queue", values(fwd_ab)}, {"dropped", sum(dropped)},
                             {"zero_copy", !copying.load()}, {"busy_seconds", busy}, {"pps", pps}});
    else
        print(fmt::format("forwarded {} frames {} -> {} and {} frames {} -> {}, {} dropped ({}, {:.0f} frames/s while busy)\n", ab, a_addr,
                          b_addr, ba, b_addr, a_addr, sum(dropped), copying.load() ? "copied" : "zero-copy", pps));
    return 0;
}

// A tcpdump-like capture in the classic pcap format (microsecond timestamps, Ethernet link type).
// With --queues N the device spreads traffic over N receive queues and this one thread takes from all.
int run_dump(const std::string& addr, const std::string& file, std::uint64_t count, double seconds, const std::string& mode_text,
             unsigned queues, bool json) {
    auto mode = net::parse_wait_mode(mode_text);
    if (!mode) return report(mode.error());
    if (queues > 1 && *mode != net::WaitMode::poll)
        return report(Error(EINVAL, fmt::format("--queues {} needs -m poll: one thread cannot sleep on several queues' interrupts",
                                                queues)));
    NetSession s;
    auto dev = s.open(addr);
    if (!dev) return report(dev.error());
    net::Device& d = **dev;
    if (auto r = use_queues(d, addr, queues); !r) return report(r.error());
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
    std::vector<std::uint64_t> per_queue(queues, 0);
    Stopwatch watch;
    const std::uint64_t deadline = watch.deadline(seconds);
    std::uint64_t next_report = watch.t0 + watch.per_second;
    for (unsigned q = 0; !g_stop && (count == 0 || captured < count) && (!deadline || ticks() < deadline); q = (q + 1) % queues) {
        auto n = d.rx_batch(q, rx);
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
            ++per_queue[q];
            bytes += rx[i].size();
            rx[i] = net::Packet();
        }
        if (*n == 0 && queues == 1)
            if (auto w = d.rx_wait(0, *mode, std::chrono::milliseconds(100)); !w) {
                std::fclose(f);
                return report(w.error());
            }
        if (!json && ticks() >= next_report) {
            std::fprintf(stderr, "captured %llu frames\n", (unsigned long long)captured);
            next_report += watch.per_second;
        }
    }
    std::fclose(f);
    if (json) print_json(nlohmann::json{{"file", file}, {"frames", captured}, {"bytes", bytes}, {"per_queue", per_queue}});
    else print(fmt::format("captured {} frames ({} bytes) to {}{}\n", captured, bytes, file,
                           queues > 1 ? fmt::format(" (per queue: {})", fmt::join(per_queue, ", ")) : ""));
    return 0;
}

}  // namespace

std::function<int()> add_net_commands(CLI::App& app) {
    auto* netc = app.add_subcommand("net", "Network devices bound to vfio-pci, driven by udrv network drivers");
    netc->require_subcommand(1);
    struct State {
        std::string addr, ip = "10.0.0.2", dst, mode = "poll";
        double seconds = 0;
        std::uint64_t count = 1000;
        std::uint32_t size = 64, batch = 32;
        double rate = 0;
        bool json = false, copy = false;
        std::string file;
        std::uint64_t frames = 0;
        unsigned queues = 1;
    };
    auto st = std::make_shared<State>();
    auto* respond = netc->add_subcommand("respond", "Answer ARP and ICMP echo for an IPv4 address (so ping works against udrv)");
    respond->add_option("-s,--slot", st->addr, "NIC address")->required();
    respond->add_option("--ip", st->ip, "IPv4 address to answer for (default 10.0.0.2)");
    respond->add_option("-t,--time", st->seconds, "How long to run: 10, 10s, 2m (default: until interrupted)")->transform(seconds_option());
    respond->add_option("-m,--mode", st->mode, "Waiting for frames: poll, interrupt or hybrid (default poll)");
    respond->add_option("-q,--queues", st->queues, "Queue pairs to spread traffic over, a thread each (default 1)")->check(CLI::Range(1u, 64u));
    respond->add_flag("--json", st->json, "Emit JSON totals");
    auto* pktgen = netc->add_subcommand("pktgen", "Send numbered UDP frames");
    pktgen->add_option("-s,--slot", st->addr, "NIC address")->required();
    pktgen->add_option("-n,--count", st->count, "Frames to send (default 1000, or no limit with --time)")->transform(count_option());
    pktgen->add_option("-t,--time", st->seconds, "Stop after this long: 10, 10s, 2m")->transform(seconds_option());
    pktgen->add_option("--dst", st->dst, "Destination MAC address (default ff:ff:ff:ff:ff:ff)");
    pktgen->add_option("--size", st->size, "Frame size in bytes, 60-1514 (default 64)")->transform(count_option());
    pktgen->add_option("-b,--batch", st->batch, "Frames per tx_batch (default 32)")->transform(count_option());
    pktgen->add_option("-r,--rate", st->rate, "Frames per second (default: as fast as the device takes them)")->check(CLI::NonNegativeNumber);
    pktgen->add_option("-q,--queues", st->queues, "Transmit queues, a thread each, sharing the count and rate (default 1)")
        ->check(CLI::Range(1u, 64u));
    pktgen->add_flag("--json", st->json, "Emit JSON totals");
    auto* fwdc = netc->add_subcommand("fwd", "Forward frames between two ports, both ways");
    fwdc->add_option("-s,--slot", st->addr, "First port")->required();
    fwdc->add_option("-d,--dest", st->file, "Second port")->required();
    fwdc->add_option("-t,--time", st->seconds, "How long to run: 10, 10s, 2m (default: until interrupted)")->transform(seconds_option());
    fwdc->add_option("-b,--batch", st->batch, "Frames per rx_batch (default 32)")->transform(count_option());
    fwdc->add_flag("--copy", st->copy, "Copy each frame into the other port's pool (default: hand the received buffer over)");
    fwdc->add_option("-q,--queues", st->queues, "Queue pairs on both ports, a thread per pair number (default 1)")->check(CLI::Range(1u, 64u));
    fwdc->add_flag("--json", st->json, "Emit JSON totals");
    auto* dump = netc->add_subcommand("dump", "Capture received frames to a pcap file (readable by tcpdump/tshark)");
    dump->add_option("-s,--slot", st->addr, "NIC address")->required();
    dump->add_option("-w,--write", st->file, "pcap file to write")->required();
    dump->add_option("-c,--count", st->frames, "Stop after this many frames (default: no limit)")->transform(count_option());
    dump->add_option("-t,--time", st->seconds, "Stop after this long: 10, 10s, 2m (default: when interrupted)")->transform(seconds_option());
    dump->add_option("-m,--mode", st->mode, "Waiting for frames: poll, interrupt or hybrid (default poll)");
    dump->add_option("-q,--queues", st->queues, "Receive queues to spread traffic over and capture from (default 1; more need -m poll)")
        ->check(CLI::Range(1u, 64u));
    dump->add_flag("--json", st->json, "Emit JSON totals");
    return [=]() -> int {
        if (!*netc) return -1;
        if (*fwdc) return run_fwd(st->addr, st->file, st->seconds, st->batch, st->copy, st->queues, st->json);
        if (*dump) return run_dump(st->addr, st->file, st->frames, st->seconds, st->mode, st->queues, st->json);
        if (*respond) return run_respond(st->addr, st->ip, st->seconds, st->mode, st->queues, st->json);
        if (*pktgen) {
            const bool count_given = pktgen->count("--count") > 0;
            std::uint64_t count = count_given || st->seconds <= 0 ? st->count : UINT64_MAX;
            return run_pktgen(st->addr, count, st->seconds, st->dst, st->size, st->batch, st->rate, st->queues, st->json);
        }
        return -1;
    };
}

}  // namespace udrv::tools
