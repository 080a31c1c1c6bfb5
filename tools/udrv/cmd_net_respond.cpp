// udrv net respond: answer ARP and ICMP echo for an address, so that ping works against a udrv NIC.
// With --queues N each queue pair has a thread: it answers what arrives on its receive queue through
// its own transmit queue.
#include <memory>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "net_common.hpp"
#include "numbers.hpp"
#include "output.hpp"
#include "udrv/netproto.hpp"

namespace udrv::tools {
namespace {

struct RespondOpts {
    std::string addr, ip = "10.0.0.2", mode = "poll";
    double seconds = 0;
    unsigned queues = 1;
    bool json = false;
};

Result<int> run_respond(const RespondOpts& o) {
    const netproto::Ipv4 ip = UDRV_TRY(netproto::parse_ipv4(o.ip));
    const net::WaitMode mode = UDRV_TRY(net::parse_wait_mode(o.mode));
    Nics nics = UDRV_TRY(open_nics({o.addr}, o.queues));
    net::Handle& d = nics.ports[0];
    const netproto::Responder responder(d.mac(), ip);
    std::fprintf(stderr, "answering ARP and ping for %s on %s (%s, %s), %s\n", o.ip.c_str(), d.id().name.c_str(), o.addr.c_str(),
                 net::format_mac(d.mac()).c_str(), o.seconds > 0 ? fmt::format("{} s", o.seconds).c_str() : "until interrupted");
    std::vector<Counter> seen(o.queues), arps(o.queues), pings(o.queues);
    Stopwatch watch;
    const std::uint64_t deadline = watch.deadline(o.seconds);
    auto loop = [&](unsigned q) -> Result<void> {
        std::shared_ptr<net::PacketPool> pool = UDRV_TRY(d.tx_pool(q));
        std::vector<net::Packet> rx(32), tx;
        std::uint64_t n_seen = 0, n_arps = 0, n_pings = 0;
        while (!Stopwatch::over(deadline)) {
            const unsigned n = UDRV_TRY(d.rx_batch(q, rx));
            tx.clear();
            for (unsigned i = 0; i < n; ++i) {
                ++n_seen;
                auto out = pool->alloc();
                if (!out) break;  // every buffer in flight: what is left goes unanswered, as on a busy host
                (void)out->resize(out->capacity());
                const auto a = responder.answer(rx[i].data(), out->data());
                rx[i] = net::Packet();
                if (a.kind == netproto::Responder::Kind::none) continue;
                (void)out->resize(a.length);
                (a.kind == netproto::Responder::Kind::arp_reply ? n_arps : n_pings)++;
                tx.push_back(std::move(*out));
            }
            if (!tx.empty()) UDRV_TRY(d.tx_batch(q, tx));
            seen[q].store(n_seen, std::memory_order_relaxed);
            arps[q].store(n_arps, std::memory_order_relaxed);
            pings[q].store(n_pings, std::memory_order_relaxed);
            if (n == 0) UDRV_TRY(d.rx_wait(q, mode, std::chrono::milliseconds(100)));
        }
        return {};
    };
    auto progress = [&] {
        if (!o.json)
            std::fprintf(stderr, "rx %llu frames, answered %llu ARP, %llu echo\n", (unsigned long long)sum(seen),
                         (unsigned long long)sum(arps), (unsigned long long)sum(pings));
    };
    UDRV_TRY(run_per_queue(o.queues, loop, progress));
    const net::Stats st = UDRV_TRY(d.stats());
    if (o.json)
        print_json(nlohmann::json{{"device", d.id().name}, {"rx_frames", sum(seen)}, {"arp_replies", sum(arps)},
                                  {"echo_replies", sum(pings)}, {"echo_replies_per_queue", values(pings)},
                                  {"rx_packets", st.rx_packets}, {"tx_packets", st.tx_packets}, {"rx_errors", st.rx_errors},
                                  {"rx_interrupts", st.rx_interrupts}});
    else
        print(fmt::format("{} frames received, {} ARP replies, {} echo replies{}, {} sent, {} receive interrupts\n", sum(seen),
                          sum(arps), sum(pings), o.queues > 1 ? fmt::format(" (per queue: {})", fmt::join(values(pings), ", ")) : "",
                          st.tx_packets, st.rx_interrupts));
    return 0;
}

}  // namespace

void add_net_respond(CLI::App& net, Commands& c) {
    auto o = std::make_shared<RespondOpts>();
    auto* cmd = net.add_subcommand("respond", "Answer ARP and ICMP echo for an IPv4 address (so ping works against udrv)");
    cmd->add_option("-s,--slot", o->addr, "NIC address")->required();
    cmd->add_option("--ip", o->ip, "IPv4 address to answer for (default 10.0.0.2)");
    cmd->add_option("-t,--time", o->seconds, "How long to run: 10, 10s, 2m (default: until interrupted)")->transform(seconds_option());
    cmd->add_option("-m,--mode", o->mode, "Waiting for frames: poll, interrupt or hybrid (default poll)");
    cmd->add_option("-q,--queues", o->queues, "Queue pairs to spread traffic over, a thread each (default 1)")->check(CLI::Range(1u, 64u));
    cmd->add_flag("--json", o->json, "Emit JSON totals");
    c.add(cmd, [o] { return run_respond(*o); });
}

}  // namespace udrv::tools
