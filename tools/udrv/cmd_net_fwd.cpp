// udrv net fwd: forward every frame between two ports, both ways. Zero-copy: a received buffer is
// handed to the other port's transmit queue as it is (both ports share the process's IOMMU space);
// with --copy, or when a port cannot reach the other's buffers, frames are copied into the
// transmitting port's pool. With --queues N both ports spread traffic over N pairs and a thread per
// pair number q forwards between their queues q (so the buffers it hands over stay on the thread
// that owns both queues).
#include <memory>
#include <thread>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "net_common.hpp"
#include "numbers.hpp"
#include "output.hpp"

namespace udrv::tools {
namespace {

struct FwdOpts {
    std::string a, b;
    double seconds = 0;
    std::uint32_t batch = 32;
    bool copy = false, json = false;
    unsigned queues = 1;
};

// Errors by which a port refuses another's buffer (not in its IOMMU space, too long, from a pool it
// cannot take): the frames can still go by copy.
bool refused_by_reference(const Error& e) { return e.code() == EXDEV || e.code() == ERANGE || e.code() == EINVAL; }

Result<int> run_fwd(const FwdOpts& o) {
    if (o.batch == 0 || o.batch > 256) return fail(EINVAL, "batch {} (1-256)", o.batch);
    if (auto pa = pci::Address::parse(o.a), pb = pci::Address::parse(o.b); pa && pb && *pa == *pb)
        return fail(EINVAL, "fwd forwards between two ports: -s and -d both name {}; give two different NICs", pa->to_string());
    Nics nics = UDRV_TRY(open_nics({o.a, o.b}, o.queues));
    net::Handle* ports[2] = {&nics.ports[0], &nics.ports[1]};
    for (net::Handle* p : ports) UDRV_TRY(p->set_promiscuous(true));
    std::fprintf(stderr, "forwarding between %s (%s) and %s (%s), %s\n", ports[0]->id().name.c_str(), o.a.c_str(),
                 ports[1]->id().name.c_str(), o.b.c_str(), o.seconds > 0 ? fmt::format("{} s", o.seconds).c_str() : "until interrupted");
    const unsigned queues = o.queues;
    std::vector<Counter> fwd_ab(queues), fwd_ba(queues), dropped(queues), first_tick(queues), last_tick(queues);
    std::atomic<bool> copying{o.copy};
    Stopwatch watch;
    const std::uint64_t deadline = watch.deadline(o.seconds);
    const std::uint64_t idle_limit = watch.per_second / 1000;  // spin 1 ms without traffic, then nap
    auto loop = [&](unsigned q) -> Result<void> {
        auto pool0 = UDRV_TRY(ports[0]->tx_pool(q));  // one UDRV_TRY per statement (a return mid-initializer leaks)
        auto pool1 = UDRV_TRY(ports[1]->tx_pool(q));
        std::shared_ptr<net::PacketPool> pools[2] = {std::move(pool0), std::move(pool1)};
        net::Burst rx, tx;  // tx: copies, when the ports cannot share buffers
        bool copy = o.copy;
        std::uint64_t fwd[2] = {0, 0}, n_dropped = 0, first = 0, last_busy = watch.t0;
        // Copies the frames of `in` into `pool` (the transmitting port's), into `out` (empty), and lets
        // `in` go; frames the pool has no buffer for are dropped.
        auto copy_into = [&](net::PacketPool& pool, net::Burst& in, net::Burst& out) {
            const unsigned made = pool.alloc_burst(out, in.size()).value_or(0);
            for (unsigned i = 0; i < made; ++i) {
                (void)out.resize(i, in.length(i));  // within the buffer: both pools hold full frames
                std::memcpy(out.data(i).data(), in.data(i).data(), in.length(i));
            }
            n_dropped += in.size() - made;
            in.clear();
        };
        while (!stop_requested()) {
            const std::uint64_t now = ticks();
            if (deadline && now >= deadline) break;
            unsigned moved = 0;
            for (int dir = 0; dir < 2; ++dir) {
                net::Handle& from = *ports[dir];
                net::Handle& to = *ports[1 - dir];
                net::PacketPool& to_pool = *pools[1 - dir];
                rx.clear();
                const unsigned n = UDRV_TRY(from.rx_burst(q, rx, o.batch));
                if (n == 0) continue;
                net::Burst* out = &rx;
                if (copy) {
                    copy_into(to_pool, rx, tx);
                    out = &tx;
                }
                auto sent = to.tx_burst(q, *out);
                if (!sent && !copy && refused_by_reference(sent.error())) {
                    std::fprintf(stderr, "fwd: zero-copy not possible on queue %u (%s); copying from now on\n", q,
                                 sent.error().message().c_str());
                    copy = true;
                    copying = true;
                    copy_into(to_pool, rx, tx);
                    out = &tx;
                    sent = to.tx_burst(q, tx);
                }
                if (!sent) return std::unexpected(std::move(sent.error()));
                fwd[dir] += *sent;
                n_dropped += out->size();  // ring full: the rest go back to their pool
                out->clear();
                moved += n;
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
        if (!o.json)
            std::fprintf(stderr, "%s -> %s %llu, %s -> %s %llu, dropped %llu (%llu/s)\n", o.a.c_str(), o.b.c_str(), (unsigned long long)ab,
                         o.b.c_str(), o.a.c_str(), (unsigned long long)ba, (unsigned long long)sum(dropped),
                         (unsigned long long)(ab + ba - reported));
        reported = ab + ba;
    };
    UDRV_TRY(run_per_queue(queues, loop, progress));
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
    if (o.json)
        print_json(nlohmann::json{{"a_to_b", ab}, {"b_to_a", ba}, {"per_queue", values(fwd_ab)}, {"dropped", sum(dropped)},
                                  {"zero_copy", !copying.load()}, {"busy_seconds", busy}, {"pps", pps}});
    else
        print(fmt::format("forwarded {} frames {} -> {} and {} frames {} -> {}, {} dropped ({}, {:.0f} frames/s while busy)\n", ab, o.a,
                          o.b, ba, o.b, o.a, sum(dropped), copying.load() ? "copied" : "zero-copy", pps));
    return 0;
}

}  // namespace

void add_net_fwd(CLI::App& net, Commands& c) {
    auto o = std::make_shared<FwdOpts>();
    auto* cmd = net.add_subcommand("fwd", "Forward frames between two ports, both ways");
    cmd->add_option("-s,--slot", o->a, "First port")->required();
    cmd->add_option("-d,--dest", o->b, "Second port")->required();
    cmd->add_option("-t,--time", o->seconds, "How long to run: 10, 10s, 2m (default: until interrupted)")->transform(seconds_option());
    cmd->add_option("-b,--batch", o->batch, "Frames per rx_burst (default 32)")->transform(count_option());
    cmd->add_flag("--copy", o->copy, "Copy each frame into the other port's pool (default: hand the received buffer over)");
    cmd->add_option("-q,--queues", o->queues, "Queue pairs on both ports, a thread per pair number (default 1)")->check(CLI::Range(1u, 64u));
    cmd->add_flag("--json", o->json, "Emit JSON totals");
    c.add(cmd, [o] { return run_fwd(*o); });
}

}  // namespace udrv::tools
