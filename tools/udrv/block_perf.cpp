#include "block_perf.hpp"

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "numbers.hpp"
#include "output.hpp"
#include "udrv/ticks.hpp"

namespace udrv::tools {
namespace {

// "polled" is accepted as a synonym; output says "poll", as the net commands do.
std::string mode_name(const std::string& m) { return m == "polled" ? "poll" : m; }

using nlohmann::json;
using clock = std::chrono::steady_clock;

// ---- perf ----

// Log-linear latency histogram: 16 sub-buckets per power of two (about 6% resolution).
struct Histogram {
    std::vector<std::uint64_t> b = std::vector<std::uint64_t>(64 * 16, 0);
    std::uint64_t count = 0, max = 0, min = UINT64_MAX;
    double sum = 0;
    // Buckets: exact below 16 ns, then 16 per power of two; a value is reported as its bucket's lower
    // bound, at most this far below the true value.
    static constexpr double kResolutionPercent = 100.0 / 16;
    static unsigned index(std::uint64_t ns) {
        if (ns < 16) return static_cast<unsigned>(ns);
        unsigned e = 63 - static_cast<unsigned>(__builtin_clzll(ns));
        return (e - 3) * 16 + static_cast<unsigned>((ns >> (e - 4)) & 15);
    }
    static std::uint64_t lower(unsigned i) {
        if (i < 16) return i;
        unsigned e = i / 16 + 3;
        return (1ull << e) | (std::uint64_t{i % 16} << (e - 4));
    }
    void add(std::uint64_t ns) {
        ++b[index(ns)];
        ++count;
        sum += static_cast<double>(ns);
        max = std::max(max, ns);
        min = std::min(min, ns);
    }
    void merge(const Histogram& o) {
        for (std::size_t i = 0; i < b.size(); ++i) b[i] += o.b[i];
        count += o.count;
        sum += o.sum;
        max = std::max(max, o.max);
        min = std::min(min, o.min);
    }
    std::uint64_t percentile(double p) const {
        std::uint64_t want = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count))), seen = 0;
        for (unsigned i = 0; i < b.size(); ++i)
            if ((seen += b[i]) >= want && want) return lower(i);
        return max;
    }
};

struct Worker {
    struct Io {
        Worker* w;
        std::uint32_t slot;
        std::uint64_t start;  // ticks()
    };
    block::Queue* q = nullptr;
    std::vector<block::Buffer> bufs;
    std::vector<Io> ios;
    Histogram hist;
    std::uint64_t done = 0, errors = 0, blocks_per_io = 0, max_lba = 0, seq_lba = 0;
    std::mt19937_64 rng{std::random_device{}()};
    const PerfOpts* o = nullptr;
    bool stopping = false;
    std::optional<Error> first_error;
    std::atomic<std::uint64_t> progress{0};

    // The pattern, decoded once: comparing strings on every I/O showed in the QD1 guest profile.
    bool writes = false, mixed = false, sequential = false;
    void set_pattern(const std::string& p) {
        writes = p == "write" || p == "randwrite";
        mixed = p == "rw" || p == "randrw";
        sequential = p == "read" || p == "write" || p == "rw";
    }
    bool is_write() {
        if (mixed) return rng() % 100 >= o->mix;  // mix = read percentage
        return writes;
    }
    std::uint64_t next_lba() {
        if (sequential) {
            std::uint64_t l = seq_lba;
            seq_lba = (seq_lba + blocks_per_io) % (max_lba + 1);
            return l;
        }
        return (rng() % (max_lba / blocks_per_io + 1)) * blocks_per_io;
    }
    // A failed I/O, or a failed submission (which loses that slot for the rest of the run).
    void note(const Error& e) {
        ++errors;
        if (!first_error) first_error = e;
    }
    static void on_done(void* ctx, const Result<void>& r) {
        auto* io = static_cast<Io*>(ctx);
        Worker& w = *io->w;
        w.hist.add(static_cast<std::uint64_t>(ticks_to_ns(ticks() - io->start)));
        if (!r) w.note(r.error());
        ++w.done;
        w.progress.store(w.done, std::memory_order_relaxed);
        if (!w.stopping)
            if (auto s = w.issue(io->slot); !s) w.note(s.error());
    }
    Result<void> issue(std::uint32_t slot) {
        Io& io = ios[slot];
        io.start = ticks();
        auto span = bufs[slot].bytes();
        std::uint64_t lba = next_lba();
        auto n = static_cast<std::uint32_t>(blocks_per_io);
        return is_write() ? q->write(lba, n, span, &on_done, &io) : q->read(lba, n, span, &on_done, &io);
    }
};

}  // namespace

Result<int> run_block_perf(block::Device& dev, const PerfOpts& o) {
    static const std::vector<std::string> patterns = {"read", "write", "randread", "randwrite", "rw", "randrw"};
    if (std::find(patterns.begin(), patterns.end(), o.pattern) == patterns.end())
        return std::unexpected(Error(EINVAL, fmt::format("unknown pattern '{}' (read, write, randread, randwrite, rw, randrw)", o.pattern)));
    // One vocabulary with the net commands: poll (or polled), interrupt, hybrid.
    block::Mode mode = o.mode == "interrupt" ? block::Mode::interrupt : o.mode == "hybrid" ? block::Mode::hybrid : block::Mode::polled;
    if (o.mode != "poll" && o.mode != "polled" && o.mode != "interrupt" && o.mode != "hybrid")
        return std::unexpected(Error(EINVAL, fmt::format("unknown mode '{}' (poll, interrupt, hybrid)", o.mode)));
    const block::Info& info = dev.info();
    if (o.io_size == 0 || o.io_size % info.block_size)
        return std::unexpected(Error(EINVAL, fmt::format("I/O size {} is not a multiple of the {}-byte block", o.io_size, info.block_size)));
    if (o.io_size / info.block_size > info.blocks)
        return std::unexpected(Error(EINVAL, fmt::format("I/O size {} is larger than {} ({} blocks)", o.io_size, info.name, info.blocks)));
    if (o.depth == 0 || o.threads == 0 || o.threads > 1024)
        return std::unexpected(Error(EINVAL, fmt::format("queue depth {} and threads {}: both must be at least 1 (threads at most 1024)", o.depth,
                                                o.threads)));
    // Every I/O above the device's largest command is several commands, each taking a queue slot: the
    // queue is sized for that, and refused up front where the device cannot hold it.
    std::uint64_t commands_per_io = 1;
    if (info.max_transfer && o.io_size > info.max_transfer) {
        if (!info.splits)
            return std::unexpected(Error(EINVAL, fmt::format("I/O size {} is above the {} bytes {} moves per request", o.io_size, info.max_transfer,
                                                    info.name)));
        commands_per_io = (o.io_size + info.max_transfer - 1) / info.max_transfer;
    }
    const std::uint64_t queue_depth = std::uint64_t{o.depth} * commands_per_io;
    if (info.max_queue_depth && queue_depth > info.max_queue_depth)
        return std::unexpected(Error(EINVAL, commands_per_io > 1
            ? fmt::format("-q {} with {}-byte I/Os needs {} commands in flight ({} per I/O of at most {} bytes each); {} allows at most {} per "
                          "queue: lower -q or -o", o.depth, o.io_size, queue_depth, commands_per_io, info.max_transfer, info.name,
                          info.max_queue_depth)
            : fmt::format("-q {}: {} allows at most {} commands per queue", o.depth, info.name, info.max_queue_depth)));
    if (!(o.seconds > 0)) return std::unexpected(Error(EINVAL, fmt::format("time {} s: must be more than 0", o.seconds)));
    if (o.mix > 100) return std::unexpected(Error(EINVAL, fmt::format("read percentage {} (0-100)", o.mix)));

    (void)ticks_per_second();  // calibrate before the clock starts
    std::vector<std::unique_ptr<Worker>> workers;
    std::vector<std::unique_ptr<block::Queue>> queues;
    for (std::uint32_t t = 0; t < o.threads; ++t) {
        auto w = std::make_unique<Worker>();
        auto q = dev.open_queue(static_cast<unsigned>(queue_depth), mode);
        if (!q) return std::unexpected(q.error());
        w->q = q->get();
        queues.push_back(std::move(*q));
        w->o = &o;
        w->set_pattern(o.pattern);
        w->blocks_per_io = o.io_size / info.block_size;
        w->max_lba = info.blocks - w->blocks_per_io;
        w->seq_lba = (info.blocks / o.threads) * t / w->blocks_per_io * w->blocks_per_io;
        for (std::uint32_t i = 0; i < o.depth; ++i) {
            auto b = dev.alloc_buffer(o.io_size);
            if (!b) return std::unexpected(b.error());
            w->bufs.push_back(*b);
            w->ios.push_back({w.get(), i, 0});
        }
        workers.push_back(std::move(w));
    }
    std::atomic<bool> stop{false};
    // Workers still running; the last to stop wakes the reporting loop (which must not wake itself
    // more than once a second: it shares a CPU with a polling worker when the run is pinned).
    std::mutex running_mu;
    std::condition_variable all_stopped;
    std::size_t running = workers.size();
    // A worker that cannot go on (a submission or wait failed, or every slot's resubmission did) stops
    // early with its error counted; either way it stops resubmitting before its queue is closed,
    // which may complete (fail) what is still outstanding and so run on_done.
    auto body = [&](Worker& w) {
        bool ok = true;
        for (std::uint32_t i = 0; ok && i < o.depth; ++i)
            if (auto r = w.issue(i); !r) w.note(r.error()), ok = false;
        while (ok && !stop.load(std::memory_order_relaxed) && w.q->outstanding())
            if (auto r = w.q->wait(std::chrono::milliseconds(100)); !r) w.note(r.error()), ok = false;
        w.stopping = true;
        while (w.q->outstanding())
            if (!w.q->wait(std::chrono::milliseconds(100))) break;
        std::lock_guard lock(running_mu);
        if (--running == 0) all_stopped.notify_all();
    };
    auto t0 = clock::now();
    std::vector<std::thread> threads;
    for (auto& w : workers) threads.emplace_back(body, std::ref(*w));
    std::uint64_t last = 0;
    auto print = [&](std::string_view text) { o.out ? o.out(text) : tools::print(text); };
    auto print_json = [&](const json& j) { o.out ? o.out(j.dump(2, ' ', false, json::error_handler_t::replace) + "\n") : tools::print_json(j); };
    for (int sec = 1; clock::now() - t0 < std::chrono::duration<double>(o.seconds); ++sec) {
        const auto until = t0 + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(std::min<double>(sec, o.seconds)));
        bool ended;
        {
            std::unique_lock lock(running_mu);
            ended = all_stopped.wait_until(lock, until, [&] { return running == 0; });
        }
        if (ended) break;  // every worker stopped early, on an error
        std::uint64_t now = 0;
        for (auto& w : workers) now += w->progress.load(std::memory_order_relaxed);
        if (!o.json_out && o.live)
            std::fprintf(stderr, "[%3ds] %10.0f IOPS %10.2f MiB/s\n", sec, double(now - last), double(now - last) * o.io_size / 1048576.0);
        if (o.ios_done) o.ios_done->store(now, std::memory_order_relaxed);
        last = now;
        if (o.cancel && o.cancel->load(std::memory_order_relaxed)) break;
    }
    stop = true;
    for (auto& t : threads) t.join();
    double secs = std::chrono::duration<double>(clock::now() - t0).count();
    queues.clear();

    Histogram h;
    std::uint64_t errors = 0;
    std::optional<Error> err;
    for (auto& w : workers) {
        h.merge(w->hist);
        errors += w->errors;
        if (!err && w->first_error) err = w->first_error;
    }
    double iops = static_cast<double>(h.count) / secs;
    double mean_us = h.count ? h.sum / static_cast<double>(h.count) / 1000.0 : 0;
    auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
    auto round_to = [](double v, double unit) { return std::round(v / unit) * unit; };  // JSON: sensible digits
    const std::uint64_t min_ns = h.count ? h.min : 0;
    if (o.json_out) {
        json pct = json::object();
        for (double p : o.percentiles) pct[fmt::format("p{}", p)] = round_to(us(h.percentile(p)), 0.1);
        json j = {{"device", info.name}, {"pattern", o.pattern}, {"io_size", o.io_size}, {"queue_depth", o.depth},
                  {"threads", o.threads}, {"mode", mode_name(o.mode)}, {"seconds", round_to(secs, 0.001)}, {"ios", h.count},
                  {"errors", errors}, {"iops", static_cast<std::uint64_t>(std::llround(iops))}, {"mib_per_s", round_to(iops * o.io_size / 1048576.0, 0.01)},
                  {"latency_us", {{"min", round_to(us(min_ns), 0.1)}, {"mean", round_to(mean_us, 0.1)}, {"max", round_to(us(h.max), 0.1)},
                                  {"percentiles", pct}, {"resolution_percent", Histogram::kResolutionPercent}}}};
        if (o.histogram) {
            json hist = json::array();
            for (unsigned i = 0; i < h.b.size(); ++i)
                if (h.b[i]) hist.push_back({{"from_us", us(Histogram::lower(i))}, {"count", h.b[i]}});
            j["histogram"] = hist;
        }
        if (err) j["first_error"] = err->to_string();
        print_json(j);
    } else {
        // Every figure says what it is: "QD32 x1" meant queue depth 32 on each of 1 thread.
        print(fmt::format("{} {} {} B, queue depth {} x {} thread{} ({}): {:.0f} IOPS, {}/s, {} errors\n", info.name, o.pattern, o.io_size,
                          o.depth, o.threads, o.threads == 1 ? "" : "s", mode_name(o.mode), iops, human_bytes(iops * o.io_size), errors));
        print(fmt::format("latency us: min {:.1f}  mean {:.1f}  max {:.1f}\n", us(min_ns), mean_us, us(h.max)));
        std::string pct;
        for (double p : o.percentiles) pct += fmt::format("  p{} {:.1f}", p, us(h.percentile(p)));
        print(fmt::format("percentiles us:{}  (histogram buckets {:.2f}% wide: values are at most that far low)\n", pct,
                          Histogram::kResolutionPercent));
        if (o.histogram && h.count) print("histogram (us, share of I/Os):\n");
        for (unsigned i = 0; o.histogram && h.count && i < h.b.size(); ++i)
            if (h.b[i] * 1000 >= h.count)  // buckets with at least 0.1%
                print(fmt::format("  >= {:9.1f}  {:6.2f}%  {}\n", us(Histogram::lower(i)), 100.0 * h.b[i] / h.count,
                                std::string(static_cast<std::size_t>(50.0 * h.b[i] / h.count), '#')));
        if (err) print("first error: " + err->to_string() + "\n");
    }
    return errors ? 1 : 0;
}

void add_perf_options(CLI::App* perf, PerfOpts& o) {
    perf->add_option("-q,--queue-depth", o.depth, "I/Os in flight per queue (default 32)")->transform(count_option());
    perf->add_option("-o,--io-size", o.io_size, "Bytes per I/O: 4096, 4k, 1M (default 4096)")->transform(size_option());
    perf->add_option("-w,--pattern", o.pattern, "read, write, randread (default), randwrite, rw, randrw");
    perf->add_option("-M,--read-percent", o.mix, "Reads in rw/randrw, percent (default 50)")->transform(count_option());
    perf->add_option("-t,--time", o.seconds, "Duration: 10, 10s, 500ms, 2m (default 5 s)")->transform(seconds_option());
    // Not -c: spdk_nvme_perf's -c is a core mask.
    perf->add_option("-j,--threads", o.threads, "Threads, one queue each (default 1), as fio's numjobs")->transform(count_option());
    perf->add_option("-m,--mode", o.mode, "Waiting for completions: poll (default), interrupt or hybrid, as the net commands");
    perf->add_option("--percentiles", o.percentiles, "Latency percentiles to report, comma-separated (default 50,90,99,99.9,99.99)")
        ->delimiter(',')
        ->check(CLI::Range(0.001, 100.0).description("each above 0 and at most 100"));
    perf->add_flag("--histogram", o.histogram, "Also print the latency histogram (in JSON too)");
    perf->add_flag("--json", o.json_out, "Emit JSON");
}

}  // namespace udrv::tools
