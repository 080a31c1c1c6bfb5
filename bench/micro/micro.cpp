// udrv-micro: one driver operation, N times, against an in-RAM device model (tests/models), through the
// public block and packet APIs, for callgrind to count (bench/micro.sh). No VFIO, no VM: the real driver
// code runs, and the model does the device's work inside its MMIO listener, which the counting leaves
// out (the models turn callgrind's collection off there), as it leaves out the benchmark's own
// completion callback. Set-up and a warm-up run happen whatever N is and the teardown is not counted,
// so the count for N operations minus the count for 0 is the cost of N operations.
//
// Usage: udrv-micro OPERATION N     (udrv-micro --list names the operations)
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <valgrind/callgrind.h>

#include "net_models.hpp"

#include "nvme_model.hpp"
#include "udrv/block.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"
#include "udrv/net.hpp"

namespace {

using udrv::Result;

constexpr unsigned kWarmup = 256;

// The caller's work, not the driver's: not counted.
struct Tally {
    std::uint64_t done = 0, failed = 0;
};
void micro_completion(void* ctx, const Result<void>& r) {
    CALLGRIND_TOGGLE_COLLECT;
    auto* t = static_cast<Tally*>(ctx);
    ++t->done;
    if (!r) ++t->failed;
    CALLGRIND_TOGGLE_COLLECT;
}

// The warm-up, then the run callgrind's N-minus-0 measures. Nothing after it is counted: the teardown
// gives back whatever the rings hold, and that depends on where the run left them (counted, it added 18
// instructions per frame to virtio-net's forwarding figure at 2000 frames).
template <typename Run>
Result<void> warm_then_measure(Run& run, std::uint64_t n) {
    UDRV_TRY(run(kWarmup));
    Result<void> r = run(n);
    CALLGRIND_STOP_INSTRUMENTATION;
    return r;
}

Result<void> check(const Tally& t) {
    if (t.failed) return udrv::fail(EIO, "{} of {} I/Os failed", t.failed, t.done);
    return {};
}

// ---- NVMe: reads and writes of `bytes` keeping `depth` in flight, polled ----
Result<void> nvme(std::uint64_t n, std::uint32_t bytes, unsigned depth, bool write) {
    auto model = std::make_shared<udrv::models::NvmeModel>("0000:00:04.0");
    UDRV_TRY(udrv::pci::bus().add_model(model->info(), model));
    udrv::block::Handle dev = UDRV_TRY(udrv::block::open("nvme0n1"));
    auto q = UDRV_TRY(dev.open_queue(depth, udrv::block::Mode::polled));
    std::vector<udrv::block::Buffer> bufs;
    for (unsigned i = 0; i < depth; ++i) bufs.push_back(UDRV_TRY(dev.alloc_buffer(bytes)));
    const std::uint32_t blocks = bytes / dev.info().block_size;
    const std::uint64_t span = dev.info().blocks / blocks;
    auto run = [&](std::uint64_t count) -> Result<void> {
        Tally t;
        std::uint64_t submitted = 0;
        while (t.done < count) {
            {
                // What a round submits reaches the device with one doorbell. At depth 1 a round is one
                // command, and a batch of one would only add its own cost (about 60 instructions).
                std::optional<udrv::block::Batch> batch;
                if (depth > 1) batch.emplace(*q);
                while (submitted < count && submitted - t.done < depth) {
                    auto& b = bufs[submitted % depth];
                    const std::uint64_t lba = (submitted * 7919 % span) * blocks;  // scattered, deterministic
                    UDRV_TRY(write ? q->write(lba, blocks, b.bytes(), &micro_completion, &t)
                                   : q->read(lba, blocks, b.bytes(), &micro_completion, &t));
                    ++submitted;
                }
            }
            UDRV_TRY(q->poll());
        }
        return check(t);
    };
    return warm_then_measure(run, n);
}

// ---- networking: a NIC on its in-RAM model (the bus keeps the model), opened through the class API,
// and its queue 0's transmit pool ----
struct NicOnModel {
    udrv::net::Handle dev;
    std::shared_ptr<udrv::net::PacketPool> pool;
};
template <typename Model>
Result<NicOnModel> nic_on_model() {
    auto model = std::make_shared<Model>();
    UDRV_TRY(udrv::pci::bus().add_model(model->info(), model));
    udrv::net::Handle dev = UDRV_TRY(udrv::net::open(model->address()));
    std::shared_ptr<udrv::net::PacketPool> pool = UDRV_TRY(dev.tx_pool(0));
    return NicOnModel{std::move(dev), std::move(pool)};
}

// ---- networking: frames out through tx_batch, looped back by the model, taken by rx_batch ----
template <typename Model>
Result<void> rxtx(std::uint64_t n, unsigned batch) {
    auto [dev, pool] = UDRV_TRY(nic_on_model<Model>());
    std::vector<udrv::net::Packet> tx(batch), rx(batch);
    auto run = [&](std::uint64_t count) -> Result<void> {
        std::uint64_t sent = 0, received = 0;
        while (received < count) {
            const auto want = static_cast<unsigned>(std::min<std::uint64_t>(batch, count - sent));
            const unsigned built = pool->alloc_bulk(std::span(tx).first(want));
            for (unsigned i = 0; i < built; ++i) (void)tx[i].resize(64);
            const unsigned taken = UDRV_TRY(dev.tx_batch(0, std::span(tx).first(built)));
            for (unsigned i = taken; i < built; ++i) tx[i] = udrv::net::Packet();
            sent += taken;
            const unsigned got = UDRV_TRY(dev.rx_batch(0, rx));
            for (unsigned i = 0; i < got; ++i) rx[i] = udrv::net::Packet();
            received += got;
            if (!taken && !got) return udrv::fail(EIO, "no progress after {} of {} frames", received, count);
        }
        return {};
    };
    return warm_then_measure(run, n);
}

// ---- the same through bursts: no handle per packet, buffers taken and given back per burst ----
template <typename Model>
Result<void> rxtx_burst(std::uint64_t n, unsigned batch) {
    auto [dev, pool] = UDRV_TRY(nic_on_model<Model>());
    udrv::net::Burst tx, rx;
    auto run = [&](std::uint64_t count) -> Result<void> {
        std::uint64_t sent = 0, received = 0;
        while (received < count) {
            const auto want = static_cast<unsigned>(std::min<std::uint64_t>(batch, count - sent));
            UDRV_TRY(pool->alloc_burst(tx, want - tx.size(), 64));
            const unsigned taken = UDRV_TRY(dev.tx_burst(0, tx));
            sent += taken;
            const unsigned got = UDRV_TRY(dev.rx_burst(0, rx, batch));
            rx.clear();
            received += got;
            if (!taken && !got) return udrv::fail(EIO, "no progress after {} of {} frames", received, count);
        }
        return {};
    };
    return warm_then_measure(run, n);
}

// ---- forwarding: what comes in goes out again, as DPDK's io forwarding does; the application takes
// and gives back no buffer, so a frame costs the driver's receive (with its replacement buffer) and
// transmit (with its reclaim) only. The model loops each frame back; `batch` frames circulate. ----
template <typename Model>
Result<void> fwd_burst(std::uint64_t n, unsigned batch) {
    auto [dev, pool] = UDRV_TRY(nic_on_model<Model>());
    udrv::net::Burst b;
    UDRV_TRY(pool->alloc_burst(b, batch, 64));
    if (UDRV_TRY(dev.tx_burst(0, b)) != batch) return udrv::fail(EIO, "the first {} frames did not all go out", batch);
    auto run = [&](std::uint64_t count) -> Result<void> {
        std::uint64_t forwarded = 0;
        while (forwarded < count) {
            const unsigned got = UDRV_TRY(dev.rx_burst(0, b, batch));
            const unsigned sent = UDRV_TRY(dev.tx_burst(0, b));
            forwarded += sent;
            if (!got && !sent) return udrv::fail(EIO, "no progress after {} of {} frames", forwarded, count);
        }
        return {};
    };
    return warm_then_measure(run, n);
}

// ---- a packet buffer taken from its pool and given back ----
Result<void> alloc_free(std::uint64_t n) {
    auto [dev, pool] = UDRV_TRY(nic_on_model<udrv::models::VirtioNetModel>());
    auto run = [&](std::uint64_t count) -> Result<void> {
        for (std::uint64_t i = 0; i < count; ++i) {
            auto p = pool->alloc();
            if (!p) return std::unexpected(std::move(p.error()));
        }
        return {};
    };
    return warm_then_measure(run, n);
}

const std::map<std::string, std::function<Result<void>(std::uint64_t)>>& operations() {
    using udrv::models::E1000eModel;
    using udrv::models::VirtioNetModel;
    static const std::map<std::string, std::function<Result<void>(std::uint64_t)>> ops = {
        {"nvme-read-4k-qd1", [](std::uint64_t n) { return nvme(n, 4096, 1, false); }},
        {"nvme-read-4k-qd32", [](std::uint64_t n) { return nvme(n, 4096, 32, false); }},
        {"nvme-read-128k-qd1", [](std::uint64_t n) { return nvme(n, 128 * 1024, 1, false); }},
        {"nvme-write-4k-qd32", [](std::uint64_t n) { return nvme(n, 4096, 32, true); }},
        {"virtio-rxtx-b1", [](std::uint64_t n) { return rxtx<VirtioNetModel>(n, 1); }},
        {"virtio-rxtx-b32", [](std::uint64_t n) { return rxtx<VirtioNetModel>(n, 32); }},
        {"e1000e-rxtx-b1", [](std::uint64_t n) { return rxtx<E1000eModel>(n, 1); }},
        {"e1000e-rxtx-b32", [](std::uint64_t n) { return rxtx<E1000eModel>(n, 32); }},
        {"virtio-burst-b1", [](std::uint64_t n) { return rxtx_burst<VirtioNetModel>(n, 1); }},
        {"virtio-burst-b32", [](std::uint64_t n) { return rxtx_burst<VirtioNetModel>(n, 32); }},
        {"e1000e-burst-b1", [](std::uint64_t n) { return rxtx_burst<E1000eModel>(n, 1); }},
        {"e1000e-burst-b32", [](std::uint64_t n) { return rxtx_burst<E1000eModel>(n, 32); }},
        {"virtio-fwd-b1", [](std::uint64_t n) { return fwd_burst<VirtioNetModel>(n, 1); }},
        {"virtio-fwd-b32", [](std::uint64_t n) { return fwd_burst<VirtioNetModel>(n, 32); }},
        {"e1000e-fwd-b1", [](std::uint64_t n) { return fwd_burst<E1000eModel>(n, 1); }},
        {"e1000e-fwd-b32", [](std::uint64_t n) { return fwd_burst<E1000eModel>(n, 32); }},
        {"packet-alloc-free", alloc_free},
    };
    return ops;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 2 && std::string(argv[1]) == "--list") {
        for (const auto& [name, op] : operations()) std::printf("%s\n", name.c_str());
        return 0;
    }
    if (argc != 3) {
        std::fprintf(stderr, "usage: udrv-micro OPERATION N   (udrv-micro --list names the operations)\n");
        return 2;
    }
    auto op = operations().find(argv[1]);
    char* end = nullptr;
    const unsigned long long n = std::strtoull(argv[2], &end, 10);
    if (op == operations().end() || !end || *end) {
        std::fprintf(stderr, "udrv-micro: unknown operation '%s' or count '%s' (udrv-micro --list)\n", argv[1], argv[2]);
        return 2;
    }
    udrv::set_log_level(udrv::LogLevel::warn);
    udrv::Loader loader;
    for (const char* m : {"udrv_nvme", "udrv_virtio_net", "udrv_e1000e"})
        if (auto r = loader.load(m); !r) {
            std::fprintf(stderr, "udrv-micro: %s\n", r.error().to_string().c_str());
            return 1;
        }
    auto r = op->second(n);
    udrv::pci::bus().remove_all_devices();
    if (!r) {
        std::fprintf(stderr, "udrv-micro: %s: %s\n", argv[1], r.error().to_string().c_str());
        return 1;
    }
    return 0;
}
