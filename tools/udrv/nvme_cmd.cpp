#include "nvme_cmd.hpp"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "nvme/nvme.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"
#include "udrv/ticks.hpp"

namespace udrv::tools {
namespace {

using nlohmann::json;
using clock = std::chrono::steady_clock;

int report(const Error& e) {
    std::fprintf(stderr, "udrv nvme: error: %s\n", e.to_string().c_str());
    return 1;
}

void out(const std::string& s) { std::fwrite(s.data(), 1, s.size(), stdout); }

// The udrv_nvme driver bound to every NVMe controller on vfio-pci.
struct Session {
    Loader loader;
    std::vector<std::pair<std::string, nvme::Controller*>> controllers;
    std::vector<std::pair<std::string, std::string>> kernel_owned;  // address, kernel driver

    Result<void> open() {
        UDRV_TRY(loader.load("udrv_nvme"));
        UDRV_TRY(pci::bus().scan());
        for (Device* d : pci::bus().devices()) {
            auto* pd = static_cast<pci::Device*>(d);
            if (pd->info().class_code != 0x010802) continue;
            if (auto* c = d->driver_data<nvme::Controller>()) controllers.emplace_back(d->name(), c);
            else kernel_owned.emplace_back(d->name(), pd->info().driver.value_or("none"));
        }
        return {};
    }
    Result<nvme::Controller*> find(const std::string& addr) {
        if (controllers.empty())
            return fail(ENODEV, "no NVMe controller is bound to vfio-pci{}", kernel_owned.empty() ? "" : fmt::format(
                "; {} is on {}: udrv bind {}", kernel_owned[0].first, kernel_owned[0].second, kernel_owned[0].first));
        if (addr.empty()) return controllers.front().second;
        auto a = UDRV_TRY(pci::Address::parse(addr));
        for (auto& [name, c] : controllers)
            if (name == a.to_string()) return c;
        return fail(ENODEV, "{} is not an NVMe controller bound to vfio-pci", a.to_string());
    }
    ~Session() { pci::bus().remove_all_devices(); }  // unbind (clean shutdown) before the module unloads
};

json controller_json(const std::string& addr, const nvme::Controller& c) {
    const auto& i = c.info();
    json j = {{"address", addr}, {"vid", fmt::format("{:#06x}", i.vid)}, {"ssvid", fmt::format("{:#06x}", i.ssvid)},
              {"serial", i.serial}, {"model", i.model}, {"firmware", i.firmware}, {"mdts", i.mdts}, {"cntlid", i.cntlid},
              {"version", fmt::format("{}.{}.{}", i.version >> 16, (i.version >> 8) & 0xff, i.version & 0xff)},
              {"nn", i.namespaces}, {"oncs", fmt::format("{:#06x}", i.oncs)}, {"vwc", i.vwc}, {"subnqn", i.subnqn},
              {"max_queue_entries", i.max_queue_entries}, {"io_queues", i.io_queues}, {"max_transfer", i.max_transfer}};
    j["namespaces"] = json::array();
    for (auto& ns : c.namespaces()) {
        const auto& n = ns->nvme_info();
        json formats = json::array();
        for (std::size_t f = 0; f < n.lba_formats.size(); ++f)
            formats.push_back({{"index", f}, {"data_size", 1u << n.lba_formats[f].lba_shift}, {"metadata_size", n.lba_formats[f].metadata_size},
                               {"relative_performance", n.lba_formats[f].relative_performance}, {"in_use", f == n.current_format}});
        j["namespaces"].push_back({{"nsid", n.nsid}, {"nsze", n.size}, {"ncap", n.capacity}, {"nuse", n.utilization},
                                   {"block_size", n.block_size()}, {"flbas", n.current_format}, {"lba_formats", formats}});
    }
    return j;
}

std::string human(double bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
    return fmt::format("{:.1f} {}", bytes, units[u]);
}

// ---- perf ----

// Log-linear latency histogram: 16 sub-buckets per power of two (about 6% resolution).
struct Histogram {
    std::vector<std::uint64_t> b = std::vector<std::uint64_t>(64 * 16, 0);
    std::uint64_t count = 0, max = 0;
    double sum = 0;
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
    }
    void merge(const Histogram& o) {
        for (std::size_t i = 0; i < b.size(); ++i) b[i] += o.b[i];
        count += o.count;
        sum += o.sum;
        max = std::max(max, o.max);
    }
    std::uint64_t percentile(double p) const {
        std::uint64_t want = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count))), seen = 0;
        for (unsigned i = 0; i < b.size(); ++i)
            if ((seen += b[i]) >= want && want) return lower(i);
        return max;
    }
};

struct PerfOpts {
    std::string addr, pattern = "randread", mode = "polled";
    std::uint32_t nsid = 1, depth = 32, io_size = 4096, threads = 1, mix = 50;
    double seconds = 5;
    bool json_out = false;
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

    bool is_write() {
        if (o->pattern == "randwrite" || o->pattern == "write") return true;
        if (o->pattern == "randrw" || o->pattern == "rw") return rng() % 100 >= o->mix;  // mix = read percentage
        return false;
    }
    std::uint64_t next_lba() {
        if (o->pattern == "read" || o->pattern == "write" || o->pattern == "rw") {
            std::uint64_t l = seq_lba;
            seq_lba = (seq_lba + blocks_per_io) % (max_lba + 1);
            return l;
        }
        return (rng() % (max_lba / blocks_per_io + 1)) * blocks_per_io;
    }
    static void on_done(void* ctx, const Result<void>& r) {
        auto* io = static_cast<Io*>(ctx);
        Worker& w = *io->w;
        w.hist.add(static_cast<std::uint64_t>(ticks_to_ns(ticks() - io->start)));
        if (!r) {
            ++w.errors;
            if (!w.first_error) w.first_error = r.error();
        }
        ++w.done;
        w.progress.store(w.done, std::memory_order_relaxed);
        if (!w.stopping) (void)w.issue(io->slot);
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

int run_perf(const PerfOpts& o) {
    static const std::vector<std::string> patterns = {"read", "write", "randread", "randwrite", "rw", "randrw"};
    if (std::find(patterns.begin(), patterns.end(), o.pattern) == patterns.end())
        return report(Error(EINVAL, fmt::format("unknown pattern '{}' (read, write, randread, randwrite, rw, randrw)", o.pattern)));
    block::Mode mode = o.mode == "interrupt" ? block::Mode::interrupt : o.mode == "hybrid" ? block::Mode::hybrid : block::Mode::polled;
    if (o.mode != "polled" && o.mode != "interrupt" && o.mode != "hybrid")
        return report(Error(EINVAL, fmt::format("unknown mode '{}' (polled, interrupt, hybrid)", o.mode)));
    Session s;
    if (auto r = s.open(); !r) return report(r.error());
    auto c = s.find(o.addr);
    if (!c) return report(c.error());
    auto ns = (*c)->find_namespace(o.nsid);
    if (!ns) return report(ns.error());
    const block::Info& info = (*ns)->info();
    if (o.io_size == 0 || o.io_size % info.block_size)
        return report(Error(EINVAL, fmt::format("I/O size {} is not a multiple of the {}-byte block", o.io_size, info.block_size)));

    (void)ticks_per_second();  // calibrate before the clock starts
    std::vector<std::unique_ptr<Worker>> workers;
    std::vector<std::unique_ptr<block::Queue>> queues;
    for (std::uint32_t t = 0; t < o.threads; ++t) {
        auto w = std::make_unique<Worker>();
        auto q = (*ns)->open_queue(o.depth, mode);
        if (!q) return report(q.error());
        w->q = q->get();
        queues.push_back(std::move(*q));
        w->o = &o;
        w->blocks_per_io = o.io_size / info.block_size;
        w->max_lba = info.blocks - w->blocks_per_io;
        w->seq_lba = (info.blocks / o.threads) * t / w->blocks_per_io * w->blocks_per_io;
        for (std::uint32_t i = 0; i < o.depth; ++i) {
            auto b = (*ns)->alloc_buffer(o.io_size);
            if (!b) return report(b.error());
            w->bufs.push_back(*b);
            w->ios.push_back({w.get(), i, 0});
        }
        workers.push_back(std::move(w));
    }
    std::atomic<bool> stop{false};
    auto body = [&](Worker& w) {
        for (std::uint32_t i = 0; i < o.depth; ++i)
            if (auto r = w.issue(i); !r) {
                w.first_error = r.error();
                return;
            }
        while (!stop.load(std::memory_order_relaxed))
            if (auto r = w.q->wait(std::chrono::milliseconds(100)); !r) {
                w.first_error = r.error();
                return;
            }
        w.stopping = true;
        while (w.q->outstanding())
            if (!w.q->wait(std::chrono::milliseconds(100))) break;
    };
    auto t0 = clock::now();
    std::vector<std::thread> threads;
    for (auto& w : workers) threads.emplace_back(body, std::ref(*w));
    std::uint64_t last = 0;
    for (int sec = 1; clock::now() - t0 < std::chrono::duration<double>(o.seconds); ++sec) {
        std::this_thread::sleep_until(t0 + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(std::min<double>(sec, o.seconds))));
        std::uint64_t now = 0;
        for (auto& w : workers) now += w->progress.load(std::memory_order_relaxed);
        if (!o.json_out) std::fprintf(stderr, "[%3ds] %10.0f IOPS %10.2f MiB/s\n", sec, double(now - last), double(now - last) * o.io_size / 1048576.0);
        last = now;
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
    if (o.json_out) {
        json j = {{"device", info.name}, {"pattern", o.pattern}, {"io_size", o.io_size}, {"queue_depth", o.depth},
                  {"threads", o.threads}, {"mode", o.mode}, {"seconds", secs}, {"ios", h.count}, {"errors", errors},
                  {"iops", iops}, {"mib_per_s", iops * o.io_size / 1048576.0},
                  {"latency_us", {{"mean", mean_us}, {"p50", us(h.percentile(50))}, {"p99", us(h.percentile(99))},
                                  {"p99_9", us(h.percentile(99.9))}, {"max", us(h.max)}}}};
        json hist = json::array();
        for (unsigned i = 0; i < h.b.size(); ++i)
            if (h.b[i]) hist.push_back({{"from_us", us(Histogram::lower(i))}, {"count", h.b[i]}});
        j["histogram"] = hist;
        if (err) j["first_error"] = err->to_string();
        out(j.dump(2) + "\n");
    } else {
        out(fmt::format("{} {} {} B QD{} x{} ({}): {:.0f} IOPS, {}/s, {} errors\n", info.name, o.pattern, o.io_size, o.depth, o.threads,
                        o.mode, iops, human(iops * o.io_size), errors));
        out(fmt::format("latency us: mean {:.1f}  p50 {:.1f}  p99 {:.1f}  p99.9 {:.1f}  max {:.1f}\n", mean_us, us(h.percentile(50)),
                        us(h.percentile(99)), us(h.percentile(99.9)), us(h.max)));
        out("histogram (us, share of I/Os):\n");
        for (unsigned i = 0; i < h.b.size(); ++i)
            if (h.b[i] * 1000 >= h.count)  // buckets with at least 0.1%
                out(fmt::format("  >= {:9.1f}  {:6.2f}%  {}\n", us(Histogram::lower(i)), 100.0 * h.b[i] / h.count,
                                std::string(static_cast<std::size_t>(50.0 * h.b[i] / h.count), '#')));
        if (err) out("first error: " + err->to_string() + "\n");
    }
    return errors ? 1 : 0;
}

// ---- read / write ----

struct Sync {
    bool done = false;
    std::optional<Error> err;
    static void cb(void* c, const Result<void>& r) {
        auto* s = static_cast<Sync*>(c);
        s->done = true;
        if (!r) s->err = r.error();
    }
};

Result<void> wait_sync(block::Queue& q, Sync& s) {
    auto deadline = clock::now() + std::chrono::seconds(60);
    while (!s.done) {
        UDRV_TRY(q.wait(std::chrono::milliseconds(100)));
        if (clock::now() > deadline) return fail(ETIMEDOUT, "I/O did not complete within 60 s");
    }
    if (s.err) return std::unexpected(*s.err);
    return {};
}

int run_rw(bool is_write, const std::string& addr, std::uint32_t nsid, std::uint64_t lba, std::uint64_t blocks, const std::string& file) {
    Session s;
    if (auto r = s.open(); !r) return report(r.error());
    auto c = s.find(addr);
    if (!c) return report(c.error());
    auto ns = (*c)->find_namespace(nsid);
    if (!ns) return report(ns.error());
    const block::Info& info = (*ns)->info();
    std::vector<char> data;
    if (is_write) {
        std::ifstream in(file, std::ios::binary);
        if (!in) return report(Error(ENOENT, fmt::format("cannot read {}", file)));
        data.assign(std::istreambuf_iterator<char>(in), {});
        blocks = (data.size() + info.block_size - 1) / info.block_size;
        if (blocks == 0) return report(Error(EINVAL, fmt::format("{} is empty", file)));
    }
    if (lba >= info.blocks || blocks > info.blocks - lba)
        return report(Error(ERANGE, fmt::format("blocks {}+{} lie past the end of {} ({} blocks)", lba, blocks, info.name, info.blocks)));
    data.resize(blocks * info.block_size, 0);
    auto q = (*ns)->open_queue(32, block::Mode::polled);  // a 4 MiB chunk is up to 8 commands at 512 KiB
    if (!q) return report(q.error());
    const std::uint64_t chunk_blocks = std::max<std::uint64_t>(1, (4u << 20) / info.block_size);  // 4 MiB at a time
    auto buf = (*ns)->alloc_buffer(chunk_blocks * info.block_size);
    if (!buf) return report(buf.error());
    for (std::uint64_t done = 0; done < blocks;) {
        std::uint64_t n = std::min(chunk_blocks, blocks - done);
        auto span = buf->bytes().first(n * info.block_size);
        Sync sy;
        if (is_write) std::memcpy(span.data(), data.data() + done * info.block_size, span.size());
        auto sub = is_write ? (*q)->write(lba + done, static_cast<std::uint32_t>(n), span, &Sync::cb, &sy)
                            : (*q)->read(lba + done, static_cast<std::uint32_t>(n), span, &Sync::cb, &sy);
        if (!sub) return report(sub.error());
        if (auto r = wait_sync(**q, sy); !r) return report(r.error());
        if (!is_write) std::memcpy(data.data() + done * info.block_size, span.data(), span.size());
        done += n;
    }
    if (is_write) {
        Sync sy;
        if (auto r = (*q)->flush(&Sync::cb, &sy); !r) return report(r.error());
        if (auto r = wait_sync(**q, sy); !r) return report(r.error());
        std::fprintf(stderr, "wrote %llu blocks at LBA %llu of %s (flushed)\n", (unsigned long long)blocks, (unsigned long long)lba, info.name.c_str());
        return 0;
    }
    if (file.empty() || file == "-") {
        out(std::string(data.begin(), data.end()));
    } else {
        std::ofstream o(file, std::ios::binary);
        o.write(data.data(), static_cast<std::streamsize>(data.size()));
        if (!o) return report(Error(EIO, fmt::format("cannot write {}", file)));
    }
    std::fprintf(stderr, "read %llu blocks at LBA %llu of %s\n", (unsigned long long)blocks, (unsigned long long)lba, info.name.c_str());
    return 0;
}

}  // namespace

std::function<int()> add_nvme_commands(CLI::App& app) {
    auto* nvme = app.add_subcommand("nvme", "NVMe controllers bound to vfio-pci, driven by udrv_nvme");
    nvme->require_subcommand(1);
    struct State {
        bool json = false;
        std::string addr, file;
        std::uint32_t nsid = 1;
        std::uint64_t lba = 0, blocks = 1;
        std::string format;
        PerfOpts perf;
    };
    auto st = std::make_shared<State>();
    auto* list = nvme->add_subcommand("list", "Controllers and namespaces");
    list->add_flag("--json", st->json, "Emit JSON");
    auto* ident = nvme->add_subcommand("identify", "Identify Controller and Namespace data (like nvme id-ctrl / id-ns)");
    ident->add_option("-s,--slot", st->addr, "Controller address (default: the first)");
    ident->add_flag("--json", st->json, "Emit JSON");
    ident->add_option("--format", st->format, "'nvme-cli': key=value lines named and scaled as nvme-cli's id-ctrl/id-ns");
    auto* rd = nvme->add_subcommand("read", "Read blocks to a file (or stdout)");
    rd->add_option("-s,--slot", st->addr, "Controller address");
    rd->add_option("-n,--namespace", st->nsid, "Namespace id (default 1)");
    rd->add_option("--lba", st->lba, "First block");
    rd->add_option("--blocks", st->blocks, "Number of blocks");
    rd->add_option("-o,--output", st->file, "Output file (default stdout)");
    auto* wr = nvme->add_subcommand("write", "Write a file's contents (padded to whole blocks), then flush");
    wr->add_option("-s,--slot", st->addr, "Controller address");
    wr->add_option("-n,--namespace", st->nsid, "Namespace id (default 1)");
    wr->add_option("--lba", st->lba, "First block");
    wr->add_option("-i,--input", st->file, "Input file")->required();
    auto* perf = nvme->add_subcommand("perf", "Benchmark, in the spirit of spdk_nvme_perf");
    perf->add_option("-s,--slot", st->perf.addr, "Controller address");
    perf->add_option("-n,--namespace", st->perf.nsid, "Namespace id (default 1)");
    perf->add_option("-q,--queue-depth", st->perf.depth, "Commands in flight per queue (default 32)");
    perf->add_option("-o,--io-size", st->perf.io_size, "Bytes per I/O (default 4096)");
    perf->add_option("-w,--pattern", st->perf.pattern, "read, write, randread (default), randwrite, rw, randrw");
    perf->add_option("-M,--read-percent", st->perf.mix, "Reads in rw/randrw, percent (default 50)");
    perf->add_option("-t,--time", st->perf.seconds, "Seconds (default 5)");
    perf->add_option("-c,--threads", st->perf.threads, "Threads, one queue pair each (default 1)");
    perf->add_option("--mode", st->perf.mode, "polled (default), interrupt or hybrid");
    perf->add_flag("--json", st->perf.json_out, "Emit JSON");

    return [=]() -> int {
        if (!*nvme) return -1;
        if (*perf) return run_perf(st->perf);
        if (*rd) return run_rw(false, st->addr, st->nsid, st->lba, st->blocks, st->file);
        if (*wr) return run_rw(true, st->addr, st->nsid, st->lba, 0, st->file);
        Session s;
        if (auto r = s.open(); !r) return report(r.error());
        if (*list) {
            json arr = json::array();
            for (auto& [addr, c] : s.controllers) {
                if (st->json) {
                    arr.push_back(controller_json(addr, *c));
                    continue;
                }
                out(fmt::format("{}  {}  serial {}  firmware {}  udrv_nvme\n", addr, c->info().model, c->info().serial, c->info().firmware));
                for (auto& ns : c->namespaces())
                    out(fmt::format("    ns{}: {} blocks of {} B ({})\n", ns->nvme_info().nsid, ns->info().blocks, ns->info().block_size,
                                    human(double(ns->info().blocks) * ns->info().block_size)));
            }
            for (auto& [addr, drv] : s.kernel_owned)
                if (!st->json) out(fmt::format("{}  (kernel driver {}: `udrv bind {}` to use it here)\n", addr, drv, addr));
            if (st->json) out(arr.dump(2) + "\n");
            return 0;
        }
        auto c = s.find(st->addr);
        if (!c) return report(c.error());
        json j = controller_json(st->addr.empty() ? s.controllers.front().first : st->addr, **c);
        if (st->json) {
            out(j.dump(2) + "\n");
            return 0;
        }
        if (st->format == "nvme-cli") {  // for comparisons with `nvme id-ctrl` / `nvme id-ns`
            const auto& i = (*c)->info();
            std::vector<std::string> lines = {
                fmt::format("cntlid={}", i.cntlid), fmt::format("fr={}", i.firmware), fmt::format("mdts={}", i.mdts),
                fmt::format("mn={}", i.model), fmt::format("nn={}", i.namespaces), fmt::format("oncs={}", i.oncs),
                fmt::format("sn={}", i.serial), fmt::format("ssvid={}", i.ssvid), fmt::format("subnqn={}", i.subnqn),
                fmt::format("vid={}", i.vid), fmt::format("vwc={}", i.vwc)};
            const auto& n = (*c)->namespaces().front()->nvme_info();
            for (auto l : {fmt::format("ncap={}", n.capacity), fmt::format("nsze={}", n.size), fmt::format("nuse={}", n.utilization)})
                lines.push_back(l);
            for (auto& l : lines) out(l + "\n");
            out(fmt::format("flbas={}\n", n.current_format));
            for (std::size_t f = 0; f < n.lba_formats.size(); ++f)
                out(fmt::format("lbaf{} ms={} lbads={} rp={}\n", f, n.lba_formats[f].metadata_size, n.lba_formats[f].lba_shift,
                                n.lba_formats[f].relative_performance));
            return 0;
        }
        for (auto& [k, v] : j.items())
            if (k != "namespaces") out(fmt::format("{:<18}: {}\n", k, v.is_string() ? v.get<std::string>() : v.dump()));
        for (auto& n : j["namespaces"]) {
            out(fmt::format("namespace {}: nsze {} ncap {} nuse {}, block size {}\n", n["nsid"].dump(), n["nsze"].dump(), n["ncap"].dump(),
                            n["nuse"].dump(), n["block_size"].dump()));
            for (auto& f : n["lba_formats"])
                out(fmt::format("    lbaf {:>2}: ms {:<3} lbads {:<5} rp {}{}\n", f["index"].dump(), f["metadata_size"].dump(),
                                f["data_size"].dump(), f["relative_performance"].dump(), f["in_use"].get<bool>() ? " (in use)" : ""));
        }
        return 0;
    };
}

}  // namespace udrv::tools
