// udrv net dump: a tcpdump-like capture to a pcap file (libpcap writes it). With --queues N the device
// spreads traffic over N receive queues and this one thread takes from all of them.
#include <memory>
#include <string>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "net_common.hpp"
#include "numbers.hpp"
#include "output.hpp"
#include "udrv/pcap.hpp"

namespace udrv::tools {
namespace {

struct DumpOpts {
    std::string addr, file, mode = "poll";
    std::uint64_t count = 0;
    double seconds = 0;
    unsigned queues = 1;
    bool json = false;
};

Result<int> run_dump(const DumpOpts& o) {
    const net::WaitMode mode = UDRV_TRY(net::parse_wait_mode(o.mode));
    if (o.queues > 1 && mode != net::WaitMode::poll)
        return fail(EINVAL, "--queues {} needs -m poll: one thread cannot sleep on several queues' interrupts", o.queues);
    Nics nics = UDRV_TRY(open_nics({o.addr}, o.queues));
    net::Handle& d = nics.ports[0];
    pcap::Writer out = UDRV_TRY(pcap::Writer::create(o.file));
    // Said once the device receives, so that whoever starts traffic for the capture knows when to.
    std::string until = o.count ? fmt::format("{} frames", o.count) : "";
    if (o.seconds > 0) until += fmt::format("{}{} s", until.empty() ? "" : " or ", o.seconds);
    std::fprintf(stderr, "capturing on %s (%s) to %s until %s\n", d.id().name.c_str(), o.addr.c_str(), o.file.c_str(),
                 until.empty() ? "interrupted" : until.c_str());
    std::vector<net::Packet> rx(32);
    std::uint64_t captured = 0, bytes = 0;
    std::vector<std::uint64_t> per_queue(o.queues, 0);
    Stopwatch watch;
    const std::uint64_t deadline = watch.deadline(o.seconds);
    std::uint64_t next_report = watch.t0 + watch.per_second;
    for (unsigned q = 0; !Stopwatch::over(deadline) && (o.count == 0 || captured < o.count); q = (q + 1) % o.queues) {
        const unsigned n = UDRV_TRY(d.rx_batch(q, rx));
        const auto now = std::chrono::system_clock::now();
        for (unsigned i = 0; i < n; ++i) {
            if (o.count == 0 || captured < o.count) {
                UDRV_TRY(out.write(rx[i].data(), now));
                ++captured;
                ++per_queue[q];
                bytes += rx[i].size();
            }
            rx[i] = net::Packet();
        }
        if (n == 0 && o.queues == 1) UDRV_TRY(d.rx_wait(0, mode, std::chrono::milliseconds(100)));
        if (!o.json && ticks() >= next_report) {
            std::fprintf(stderr, "captured %llu frames\n", (unsigned long long)captured);
            next_report += watch.per_second;
        }
    }
    UDRV_TRY(out.flush());
    if (o.json)
        print_json(nlohmann::json{{"device", d.id().name}, {"file", o.file}, {"frames", captured}, {"bytes", bytes}, {"per_queue", per_queue}});
    else
        print(fmt::format("captured {} frames ({} bytes) to {}{}\n", captured, bytes, o.file,
                          o.queues > 1 ? fmt::format(" (per queue: {})", fmt::join(per_queue, ", ")) : ""));
    return 0;
}

}  // namespace

void add_net_dump(CLI::App& net, Commands& c) {
    auto o = std::make_shared<DumpOpts>();
    auto* cmd = net.add_subcommand("dump", "Capture received frames to a pcap file (readable by tcpdump/tshark)");
    cmd->add_option("-s,--slot", o->addr, "NIC address")->required();
    cmd->add_option("-w,--write", o->file, "pcap file to write")->required();
    cmd->add_option("-c,--count", o->count, "Stop after this many frames (default: no limit)")->transform(count_option());
    cmd->add_option("-t,--time", o->seconds, "Stop after this long: 10, 10s, 2m (default: when interrupted)")->transform(seconds_option());
    cmd->add_option("-m,--mode", o->mode, "Waiting for frames: poll, interrupt or hybrid (default poll)");
    cmd->add_option("-q,--queues", o->queues, "Receive queues to spread traffic over and capture from (default 1; more need -m poll)")
        ->check(CLI::Range(1u, 64u));
    cmd->add_flag("--json", o->json, "Emit JSON totals");
    c.add(cmd, [o] { return run_dump(*o); });
}

}  // namespace udrv::tools
