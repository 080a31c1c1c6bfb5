// udrv nvme read / write / perf: a namespace's blocks, through the block class (the namespace's block
// device "ADDRESS/nsN"), as any application reaches them.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>

#include "block_perf.hpp"
#include "command.hpp"
#include "numbers.hpp"
#include "nvme_common.hpp"
#include "output.hpp"
#include "udrv/block.hpp"

namespace udrv::tools {
namespace {

using clock = std::chrono::steady_clock;

struct IoOpts {
    std::string addr, file;
    std::uint32_t nsid = 1;
    std::uint64_t lba = 0, blocks = 1;
};

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
    const auto deadline = clock::now() + std::chrono::seconds(60);
    while (!s.done) {
        UDRV_TRY(q.wait(std::chrono::milliseconds(100)));
        if (clock::now() > deadline) return fail(ETIMEDOUT, "I/O did not complete within 60 s");
    }
    if (s.err) return std::unexpected(*s.err);
    return {};
}

struct Namespace {
    NvmeTarget target;
    block::Handle dev;
};

Result<Namespace> open_namespace(const std::string& addr, std::uint32_t nsid) {
    auto t = UDRV_TRY(open_nvme(addr));
    const auto ns = UDRV_TRY(find_namespace(t.controller, nsid));
    block::Handle dev = UDRV_TRY(block::open(ns.block_device));
    return Namespace{std::move(t), std::move(dev)};
}

Result<int> run_rw(bool is_write, const IoOpts& o) {
    auto ns = UDRV_TRY(open_namespace(o.addr, o.nsid));
    block::Handle& dev = ns.dev;
    const block::Info& info = dev.info();
    std::uint64_t blocks = o.blocks;
    std::vector<char> data;
    if (is_write) {
        std::ifstream in(o.file, std::ios::binary);
        if (!in) return fail(ENOENT, "cannot read {}", o.file);
        data.assign(std::istreambuf_iterator<char>(in), {});
        blocks = (data.size() + info.block_size - 1) / info.block_size;
        if (blocks == 0) return fail(EINVAL, "{} is empty", o.file);
    }
    if (blocks == 0) return fail(EINVAL, "--blocks 0: nothing to read (give at least 1; -c counts from 0)");
    if (o.lba >= info.blocks || blocks > info.blocks - o.lba)
        return fail(ERANGE, "blocks {}+{} lie past the end of {} ({} blocks)", o.lba, blocks, info.name, info.blocks);
    data.resize(blocks * info.block_size, 0);
    // A 4 MiB chunk is up to 8 commands at 512 KiB; a controller with small queues takes fewer at once.
    auto q = UDRV_TRY(dev.open_queue(std::min(32u, info.max_queue_depth), block::Mode::polled));
    const std::uint64_t chunk_blocks = std::max<std::uint64_t>(1, (4u << 20) / info.block_size);  // 4 MiB at a time
    auto buf = UDRV_TRY(dev.alloc_buffer(chunk_blocks * info.block_size));
    for (std::uint64_t done = 0; done < blocks;) {
        const std::uint64_t n = std::min(chunk_blocks, blocks - done);
        auto span = buf.bytes().first(n * info.block_size);
        Sync sy;
        if (is_write) {
            std::memcpy(span.data(), data.data() + done * info.block_size, span.size());
            UDRV_TRY(q->write(o.lba + done, static_cast<std::uint32_t>(n), span, &Sync::cb, &sy));
        } else {
            UDRV_TRY(q->read(o.lba + done, static_cast<std::uint32_t>(n), span, &Sync::cb, &sy));
        }
        UDRV_TRY(wait_sync(*q, sy));
        if (!is_write) std::memcpy(data.data() + done * info.block_size, span.data(), span.size());
        done += n;
    }
    if (is_write) {
        Sync sy;
        UDRV_TRY(q->flush(&Sync::cb, &sy));
        UDRV_TRY(wait_sync(*q, sy));
        std::fprintf(stderr, "wrote %llu blocks at LBA %llu of %s (%s, flushed)\n", (unsigned long long)blocks, (unsigned long long)o.lba,
                     dev.id().name.c_str(), info.name.c_str());
        return 0;
    }
    if (o.file.empty() || o.file == "-") {
        write_raw(std::string_view(data.data(), data.size()));
    } else {
        std::ofstream out(o.file, std::ios::binary);
        out.write(data.data(), static_cast<std::streamsize>(data.size()));
        if (!out) return fail(EIO, "cannot write {}", o.file);
    }
    std::fprintf(stderr, "read %llu blocks at LBA %llu of %s (%s)\n", (unsigned long long)blocks, (unsigned long long)o.lba,
                 dev.id().name.c_str(), info.name.c_str());
    return 0;
}

Result<int> run_perf(PerfOpts o) {
    auto ns = UDRV_TRY(open_namespace(o.addr, o.nsid));
    install_stop_signals();  // Ctrl-C ends the run early and reports what was measured, as spdk_nvme_perf
    o.cancel = &stop_flag();
    return run_block_perf(ns.dev, o);
}

}  // namespace

// read/write take nvme-cli's options (`nvme read DEV -s START -c COUNT-1 -d FILE`): -s is the start
// block there, so the controller is the positional DEVICE (or --slot), as nvme-cli's device is.
void add_rw_options(CLI::App* cmd, IoOpts& o) {
    cmd->add_option("device,--slot", o.addr, "Controller address, lspci style (00:04.0); default: the first");
    cmd->add_option("-n,--namespace-id", o.nsid, "Namespace id (default 1)")->transform(count_option());
    cmd->add_option("-s,--start-block,--lba", o.lba, "First block (default 0)")->transform(count_option());
}

void add_nvme_io(CLI::App& nvme, Commands& c) {
    auto o = std::make_shared<IoOpts>();
    auto* rd = nvme.add_subcommand("read", "Read blocks to a file (or stdout), with nvme-cli's options");
    add_rw_options(rd, *o);
    auto* count0 = rd->add_option_function<std::uint64_t>(
                         "-c,--block-count", [o](std::uint64_t n) { o->blocks = n + 1; },
                         "Blocks to read, 0's based as nvme-cli's (-c 7 reads 8)")
                       ->transform(count_option());
    rd->add_option("--blocks", o->blocks, "Blocks to read, counted from 1 (default 1)")->transform(count_option())->excludes(count0);
    rd->add_option("-d,--data,--output", o->file, "File to write the data to (default stdout)");
    c.add(rd, [o] { return run_rw(false, *o); });

    auto* wr = nvme.add_subcommand("write", "Write a file's contents (padded to whole blocks), then flush, with nvme-cli's options");
    add_rw_options(wr, *o);
    wr->add_option("-d,--data,--input", o->file, "File whose bytes are written")->required();
    c.add(wr, [o] { return run_rw(true, *o); });

    auto p = std::make_shared<PerfOpts>();
    auto* perf = nvme.add_subcommand("perf", "Benchmark, in the spirit of spdk_nvme_perf");
    perf->add_option("device,-s,--slot", p->addr, "Controller address, lspci style (00:04.0); default: the first");
    perf->add_option("-n,--namespace-id", p->nsid, "Namespace id (default 1)")->transform(count_option());
    add_perf_options(perf, *p);
    c.add(perf, [p] { return run_perf(*p); });
}

}  // namespace udrv::tools
