// udrv net pktgen: send numbered UDP frames (netproto::UdpFrames). With --queues N each transmit
// queue has a thread sending its share of the frames (and of the rate); frame k of queue q carries
// sequence number q + N * k, so all the frames together number 0..count-1 once each, as with one queue.
#include <array>
#include <memory>
#include <thread>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "net_common.hpp"
#include "numbers.hpp"
#include "output.hpp"
#include "udrv/netproto.hpp"

namespace udrv::tools {
namespace {

struct PktgenOpts {
    std::string addr, dst;
    std::uint64_t count = 1000;
    bool count_given = false;
    double seconds = 0, rate = 0;
    std::uint32_t size = 64, batch = 32;
    unsigned queues = 1;
    bool json = false;
};

Result<int> run_pktgen(const PktgenOpts& o) {
    // With --time and no --count the time alone ends the run.
    const std::uint64_t count = o.count_given || o.seconds <= 0 ? o.count : UINT64_MAX;
    if (o.batch == 0 || o.batch > 256) return fail(EINVAL, "batch {} (1-256)", o.batch);
    const net::Mac dst = o.dst.empty() ? net::Mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} : UDRV_TRY(netproto::parse_mac(o.dst));
    if (o.size < netproto::UdpFrames::kMinFrame || o.size > netproto::UdpFrames::kMaxFrame)
        return fail(EINVAL, "frame size {} ({}-{})", o.size, netproto::UdpFrames::kMinFrame, netproto::UdpFrames::kMaxFrame);
    Nics nics = UDRV_TRY(open_nics({o.addr}, o.queues));
    net::Handle& d = nics.ports[0];
    // UDP from 10.0.0.2:9 to 10.0.0.255 (Ethernet broadcast unless --dst).
    const auto frames = UDRV_TRY(netproto::UdpFrames::create(dst, d.mac(), {10, 0, 0, 2}, {10, 0, 0, 255}, o.size));
    const unsigned queues = o.queues;
    std::vector<Counter> sent(queues);
    Stopwatch watch;
    const std::uint64_t deadline = watch.deadline(o.seconds);
    auto loop = [&](unsigned q) -> Result<void> {
        const std::uint64_t share = count == UINT64_MAX ? count : count / queues + (q < count % queues ? 1 : 0);
        const double share_rate = o.rate / queues;
        std::shared_ptr<net::PacketPool> pool = UDRV_TRY(d.tx_pool(q));
        net::Burst pkts;  // what the ring did not take stays here, stamped, for the next round
        std::uint64_t n_sent = 0;
        while (n_sent < share && !Stopwatch::over(deadline)) {
            if (share_rate > 0 && static_cast<double>(n_sent) >= share_rate * watch.seconds()) {  // pace: never ahead of rate * elapsed
                std::this_thread::sleep_for(std::chrono::microseconds(50));
                continue;
            }
            const auto want = static_cast<std::uint32_t>(std::min<std::uint64_t>(o.batch, share - n_sent));
            const unsigned kept = pkts.size();
            UDRV_TRY(pool->alloc_burst(pkts, want - std::min(kept, want), o.size));  // fewer when buffers are in flight
            for (unsigned i = kept; i < pkts.size(); ++i) frames.stamp(pkts.data(i), q + std::uint64_t{queues} * (n_sent + i));
            const unsigned n = UDRV_TRY(d.tx_burst(q, pkts));
            n_sent += n;
            sent[q].store(n_sent, std::memory_order_relaxed);
        }
        return {};
    };
    std::uint64_t reported = 0;
    auto progress = [&] {
        const std::uint64_t now = sum(sent);
        if (!o.json) std::fprintf(stderr, "sent %llu frames (%llu/s)\n", (unsigned long long)now, (unsigned long long)(now - reported));
        reported = now;
    };
    UDRV_TRY(run_per_queue(queues, loop, progress));
    const double secs = watch.seconds();  // the driver's remove drains the rings
    const std::uint64_t total = sum(sent);
    if (o.json)
        print_json(nlohmann::json{{"device", d.id().name}, {"sent", total}, {"per_queue", values(sent)}, {"size", o.size},
                                  {"batch", o.batch}, {"seconds", secs}, {"pps", total / secs}});
    else
        print(fmt::format("sent {} frames of {} bytes in batches of {}{}: {:.0f} frames/s\n", total, o.size, o.batch,
                          queues > 1 ? fmt::format(" (per queue: {})", fmt::join(values(sent), ", ")) : "", total / secs));
    return 0;
}

}  // namespace

void add_net_pktgen(CLI::App& net, Commands& c) {
    auto o = std::make_shared<PktgenOpts>();
    auto* cmd = net.add_subcommand("pktgen", "Send numbered UDP frames");
    cmd->add_option("-s,--slot", o->addr, "NIC address")->required();
    auto* count = cmd->add_option("-n,--count", o->count, "Frames to send (default 1000, or no limit with --time)")->transform(count_option());
    cmd->add_option("-t,--time", o->seconds, "Stop after this long: 10, 10s, 2m")->transform(seconds_option());
    cmd->add_option("--dst", o->dst, "Destination MAC address (default ff:ff:ff:ff:ff:ff)");
    cmd->add_option("--size", o->size, "Frame size in bytes, 60-1514 (default 64)")->transform(count_option());
    cmd->add_option("-b,--batch", o->batch, "Frames per tx_burst (default 32)")->transform(count_option());
    cmd->add_option("-r,--rate", o->rate, "Frames per second (default: as fast as the device takes them)")->check(CLI::NonNegativeNumber);
    cmd->add_option("-q,--queues", o->queues, "Transmit queues, a thread each, sharing the count and rate (default 1)")
        ->check(CLI::Range(1u, 64u));
    cmd->add_flag("--json", o->json, "Emit JSON totals");
    c.add(cmd, [o, count] {
        o->count_given = count->count() > 0;
        return run_pktgen(*o);
    });
}

}  // namespace udrv::tools
