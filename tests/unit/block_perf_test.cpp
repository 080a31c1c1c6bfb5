// `udrv nvme perf` / `udrv block perf` on a device that goes wrong: the report must say so (errors
// counted, the first one named, a failing exit status), never a quiet low IOPS figure with 0 errors.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "block_perf.hpp"
#include "output.hpp"

namespace {

// A block device in memory whose commands complete on the next poll, and whose submissions fail
// (EIO, "device gone") once `accept` commands have been submitted on a queue.
class FailingDevice final : public udrv::block::Device {
public:
    explicit FailingDevice(unsigned accept, std::uint32_t max_transfer = 0, std::uint32_t max_queue_depth = 0, bool splits = false)
        : accept_(accept) {
        info_.name = "fake";
        info_.block_size = 512;
        info_.blocks = 1024;
        info_.max_transfer = max_transfer;
        info_.max_queue_depth = max_queue_depth;
        info_.splits = splits;
    }
    unsigned last_depth = 0;  // what the benchmark asked open_queue for
    const udrv::block::Info& info() const override { return info_; }
    udrv::Result<std::unique_ptr<udrv::block::Queue>> open_queue(unsigned depth, udrv::block::Mode) override {
        last_depth = depth;
        return std::unique_ptr<udrv::block::Queue>(new Queue(depth, accept_));
    }
    udrv::Result<udrv::block::Buffer> alloc_buffer(std::size_t bytes) override {
        auto mem = std::make_shared<std::vector<std::byte>>(bytes);
        return udrv::block::Buffer(*mem, mem);
    }

private:
    class Queue final : public udrv::block::Queue {
    public:
        Queue(unsigned depth, unsigned accept) : depth_(depth), accept_(accept) {}
        ~Queue() override { (void)poll(); }
        udrv::Result<void> read(std::uint64_t, std::uint32_t, std::span<std::byte>, udrv::block::Callback cb, void* ctx) override {
            return submit(cb, ctx);
        }
        udrv::Result<void> write(std::uint64_t, std::uint32_t, std::span<const std::byte>, udrv::block::Callback cb, void* ctx) override {
            return submit(cb, ctx);
        }
        udrv::Result<void> flush(udrv::block::Callback cb, void* ctx) override { return submit(cb, ctx); }
        udrv::Result<void> write_zeroes(std::uint64_t, std::uint32_t, udrv::block::Callback cb, void* ctx) override { return submit(cb, ctx); }
        udrv::Result<void> deallocate(std::uint64_t, std::uint32_t, udrv::block::Callback cb, void* ctx) override { return submit(cb, ctx); }
        udrv::Result<unsigned> poll() override {
            auto done = std::move(pending_);
            pending_.clear();
            for (auto [cb, ctx] : done) cb(ctx, {});
            return static_cast<unsigned>(done.size());
        }
        udrv::Result<unsigned> wait(std::chrono::milliseconds) override { return poll(); }
        unsigned outstanding() const override { return static_cast<unsigned>(pending_.size()); }
        unsigned depth() const override { return depth_; }

    private:
        udrv::Result<void> submit(udrv::block::Callback cb, void* ctx) {
            if (submitted_ >= accept_) return udrv::fail(EIO, "fake: device gone");
            if (pending_.size() >= depth_) return udrv::fail(EAGAIN, "fake: queue full");
            ++submitted_;
            pending_.emplace_back(cb, ctx);
            return {};
        }
        unsigned depth_, accept_, submitted_ = 0;
        std::vector<std::pair<udrv::block::Callback, void*>> pending_;
    };
    unsigned accept_;
    udrv::block::Info info_;
};

struct PerfRun {
    int rc;
    std::string out, err;
};

PerfRun run_perf(udrv::block::Device& dev, const udrv::tools::PerfOpts& o) {
    testing::internal::CaptureStdout();
    testing::internal::CaptureStderr();
    auto r = udrv::tools::run_block_perf(dev, o);
    const int rc = r ? *r : udrv::tools::report(r.error());
    std::fflush(stdout);
    return {rc, testing::internal::GetCapturedStdout(), testing::internal::GetCapturedStderr()};
}

}  // namespace

TEST(BlockPerf, ResubmissionsThatFailAreCountedAndTheRunStops) {
    FailingDevice dev(1000);  // 1000 reads, then every submission fails
    udrv::tools::PerfOpts o;
    o.depth = 4;
    o.seconds = 600;  // the run ends when the device does, not after ten minutes
    o.json_out = true;
    PerfRun r = run_perf(dev, o);
    EXPECT_EQ(r.rc, 1) << r.out << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["ios"], 1000);
    EXPECT_EQ(j["errors"], 4);  // each of the 4 slots lost its resubmission
    EXPECT_NE(j["first_error"].get<std::string>().find("fake: device gone"), std::string::npos) << j.dump();
    EXPECT_LT(j["seconds"].get<double>(), 600);
}

// The report a fio or spdk_nvme_perf user reads: min/mean/max, the percentiles asked for (all of them,
// as numbers), the histogram's resolution, and the full histogram only when asked.
TEST(BlockPerf, TheReportHasThePercentilesAskedForAndTheHistogramOnRequest) {
    FailingDevice dev(1000);
    udrv::tools::PerfOpts o;
    o.depth = 4;
    o.seconds = 600;
    o.json_out = true;
    PerfRun r = run_perf(dev, o);
    auto j = nlohmann::json::parse(r.out);
    const auto& lat = j["latency_us"];
    for (const char* p : {"p50", "p90", "p99", "p99.9", "p99.99"}) EXPECT_TRUE(lat["percentiles"][p].is_number()) << p << " " << j.dump();
    EXPECT_LE(lat["min"].get<double>(), lat["mean"].get<double>());
    EXPECT_LE(lat["mean"].get<double>(), lat["max"].get<double>());
    EXPECT_EQ(lat["resolution_percent"], 6.25);
    EXPECT_FALSE(j.contains("histogram"));
    EXPECT_EQ(j["mode"], "poll");
    EXPECT_TRUE(j["iops"].is_number());

    o.percentiles = {50, 99.999};
    o.histogram = true;
    FailingDevice dev2(1000);
    j = nlohmann::json::parse(run_perf(dev2, o).out);
    EXPECT_EQ(j["latency_us"]["percentiles"].size(), 2u) << j.dump();
    EXPECT_TRUE(j["latency_us"]["percentiles"]["p99.999"].is_number());
    EXPECT_TRUE(j["histogram"].is_array());

    o.json_out = false;
    o.histogram = false;
    FailingDevice dev3(1000);
    r = run_perf(dev3, o);
    EXPECT_NE(r.out.find("(poll)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("latency us: min "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("percentiles us:  p50 "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("p99.999 "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("6.25% wide"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("histogram (us"), std::string::npos) << r.out;
}

TEST(BlockPerf, AFirstSubmissionThatFailsIsAnError) {
    FailingDevice dev(0);
    udrv::tools::PerfOpts o;
    o.seconds = 600;
    PerfRun r = run_perf(dev, o);
    EXPECT_EQ(r.rc, 1);
    EXPECT_NE(r.out.find("1 errors"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("first error: fake: device gone"), std::string::npos) << r.out;
}

TEST(BlockPerf, BadOptionsAreRefusedWithWhatIsWrong) {
    FailingDevice dev(1000);
    auto refused = [&](udrv::tools::PerfOpts o, const char* says) {
        PerfRun r = run_perf(dev, o);
        EXPECT_EQ(r.rc, 1);
        EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    };
    udrv::tools::PerfOpts o;
    o.threads = 0;
    refused(o, "both must be at least 1");
    o = {};
    o.depth = 0;
    refused(o, "both must be at least 1");
    o = {};
    o.io_size = 1 << 20;  // the device holds 512 KiB
    refused(o, "is larger than fake (1024 blocks)");
    o = {};
    o.io_size = 1000;
    refused(o, "not a multiple of the 512-byte block");
    o = {};
    o.seconds = 0;
    refused(o, "must be more than 0");
    o = {};
    o.pattern = "randrw";
    o.mix = 101;
    refused(o, "read percentage 101");
}

// An I/O above the device's largest command is several commands: the queue is sized for them, and a
// depth the device cannot hold is refused with the numbers before anything is allocated.
TEST(BlockPerf, QueuesAreSizedForSplitIosOrRefusedUpFront) {
    udrv::tools::PerfOpts o;
    o.io_size = 128 * 1024;
    o.depth = 2;
    o.seconds = 0.05;
    FailingDevice splitting(1u << 31, 4096, 256, true);
    PerfRun ok = run_perf(splitting, o);
    EXPECT_EQ(ok.rc, 0) << ok.out << ok.err;
    EXPECT_EQ(splitting.last_depth, 64u);  // 2 I/Os of 32 commands each
    FailingDevice small(100000, 4096, 63, true);
    PerfRun r = run_perf(small, o);
    EXPECT_EQ(r.rc, 1);
    EXPECT_NE(r.err.find("-q 2 with 131072-byte I/Os needs 64 commands in flight (32 per I/O of at most 4096 bytes each); fake allows at "
                         "most 63 per queue: lower -q or -o"), std::string::npos) << r.err;
    EXPECT_EQ(small.last_depth, 0u);  // refused before any queue was opened
    FailingDevice whole(100000, 4096, 0, false);
    r = run_perf(whole, o);
    EXPECT_NE(r.err.find("I/O size 131072 is above the 4096 bytes fake moves per request"), std::string::npos) << r.err;
    o.io_size = 4096;
    o.depth = 4096;
    FailingDevice shallow(100000, 0, 2047, false);
    r = run_perf(shallow, o);
    EXPECT_NE(r.err.find("-q 4096: fake allows at most 2047 commands per queue"), std::string::npos) << r.err;
}
