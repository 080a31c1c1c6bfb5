// The block API on the io_uring file-backed device: data integrity, flush, write zeroes, deallocate,
// bounds, queue limits and probe errors.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "fileblk/fileblk.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"

namespace {

struct Done {
    int ok = 0, failed = 0;
    std::string error;
    static void cb(void* c, const udrv::Result<void>& r) {
        auto* d = static_cast<Done*>(c);
        if (r) ++d->ok;
        else ++d->failed, d->error = r.error().message();
    }
};

class FileBlockTest : public ::testing::Test {
protected:
    void SetUp() override {
        udrv::set_log_sink([this](udrv::LogLevel, std::string_view m) { log.emplace_back(m); });
        ASSERT_TRUE(loader.load("udrv_fileblk"));
        path = "/var/tmp/udrv-fileblk-" + std::to_string(getpid()) + ".img";
    }
    void TearDown() override {
        udrv::platform::bus().remove_all_devices();
        udrv::set_log_sink(nullptr);
        std::remove(path.c_str());
    }
    udrv::fileblk::FileBlock* make(std::int64_t size, std::int64_t bs = 512) {
        udrv::platform::DeviceDesc d;
        d.name = "disk0";
        d.compatible = {"udrv,file-block"};
        d.properties["path"] = path;
        d.properties["size"] = size;
        d.properties["block-size"] = bs;
        auto dev = udrv::platform::bus().register_device(d);
        EXPECT_TRUE(dev);
        return dev ? (*dev)->driver_data<udrv::fileblk::FileBlock>() : nullptr;
    }
    void drain(udrv::block::Queue& q) {
        for (int i = 0; i < 1000 && q.outstanding(); ++i) ASSERT_TRUE(q.wait(std::chrono::milliseconds(100)));
        ASSERT_EQ(q.outstanding(), 0u);
    }
    udrv::Loader loader;
    std::vector<std::string> log;
    std::string path;
};

TEST_F(FileBlockTest, WriteReadFlushZeroesDeallocate) {
    auto* dev = make(1 << 20);
    ASSERT_NE(dev, nullptr);
    EXPECT_EQ(dev->info().blocks, 2048u);
    for (auto mode : {udrv::block::Mode::polled, udrv::block::Mode::interrupt}) {
        auto q = dev->open_queue(8, mode);
        ASSERT_TRUE(q) << q.error().message();
        auto w = *dev->alloc_buffer(8192), r = *dev->alloc_buffer(8192);
        for (std::size_t i = 0; i < 8192; ++i) w.bytes()[i] = std::byte(static_cast<unsigned char>(i * 13 + 1));
        Done d;
        ASSERT_TRUE((*q)->write(100, 16, w.bytes(), &Done::cb, &d));
        drain(**q);
        ASSERT_TRUE((*q)->flush(&Done::cb, &d));
        ASSERT_TRUE((*q)->read(100, 16, r.bytes(), &Done::cb, &d));
        drain(**q);
        EXPECT_EQ(d.ok, 3) << d.error;
        EXPECT_EQ(std::memcmp(w.bytes().data(), r.bytes().data(), 8192), 0);
        ASSERT_TRUE((*q)->write_zeroes(100, 8, &Done::cb, &d));
        ASSERT_TRUE((*q)->deallocate(108, 8, &Done::cb, &d));
        drain(**q);
        ASSERT_TRUE((*q)->read(100, 16, r.bytes(), &Done::cb, &d));
        drain(**q);
        EXPECT_EQ(d.failed, 0) << d.error;
        bool zero = true;
        for (auto b : r.bytes()) zero = zero && b == std::byte{0};
        EXPECT_TRUE(zero) << "write zeroes and deallocate leave zeros";
    }
}

TEST_F(FileBlockTest, BoundsAndLimits) {
    auto* dev = make(1 << 20);
    ASSERT_NE(dev, nullptr);
    auto q = *dev->open_queue(2, udrv::block::Mode::polled);
    auto buf = *dev->alloc_buffer(4096);
    Done d;
    EXPECT_EQ(q->read(2047, 2, buf.bytes(), &Done::cb, &d).error().code(), ERANGE);
    EXPECT_EQ(q->read(UINT64_MAX, 1, buf.bytes(), &Done::cb, &d).error().code(), ERANGE);
    EXPECT_EQ(q->read(0, 16, buf.bytes(), &Done::cb, &d).error().message(),
              "file:" + path + ": buffer of 4096 bytes is smaller than 16 blocks of 512");
    EXPECT_EQ(q->read(0, 0, buf.bytes(), &Done::cb, &d).error().code(), EINVAL);
    ASSERT_TRUE(q->read(0, 1, buf.bytes(), &Done::cb, &d));
    ASSERT_TRUE(q->read(1, 1, buf.bytes(), &Done::cb, &d));
    EXPECT_EQ(q->read(2, 1, buf.bytes(), &Done::cb, &d).error().code(), EAGAIN);
    drain(*q);
    EXPECT_EQ(d.ok, 2);
    EXPECT_EQ(dev->open_queue(0, udrv::block::Mode::polled).error().code(), EINVAL);
}

TEST_F(FileBlockTest, RequestsAbove1GiBAreRefusedNotWrapped) {
    // 8 GiB of 64 KiB blocks (sparse). 65536 blocks are 4 GiB: counted in 32 bits that was a transfer
    // of 0 bytes, which "succeeded" without reading anything.
    auto* dev = make(std::int64_t{8} << 30, 65536);
    ASSERT_NE(dev, nullptr);
    auto q = *dev->open_queue(2, udrv::block::Mode::polled);
    // A buffer big enough for 4 GiB, never touched (reserved address space, no memory behind it).
    const std::size_t big = std::size_t{4} << 30;
    void* mem = mmap(nullptr, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ASSERT_NE(mem, MAP_FAILED);
    const std::span<std::byte> buf(static_cast<std::byte*>(mem), big);
    Done d;
    for (std::uint32_t blocks : {65536u, 16385u}) {  // 4 GiB; 1 GiB + one block
        auto r = q->read(0, blocks, buf, &Done::cb, &d);
        ASSERT_FALSE(r) << blocks << " blocks accepted";
        EXPECT_EQ(r.error().code(), EINVAL);
        EXPECT_NE(r.error().message().find("at most 1073741824 per request"), std::string::npos) << r.error().message();
    }
    drain(*q);
    EXPECT_EQ(d.ok + d.failed, 0);
    munmap(mem, big);
}

TEST_F(FileBlockTest, ShortReadIsAnErrorNotStaleData) {
    auto* dev = make(1 << 20);
    ASSERT_NE(dev, nullptr);
    auto q = *dev->open_queue(2, udrv::block::Mode::polled);
    auto buf = *dev->alloc_buffer(8192);
    ASSERT_EQ(truncate(path.c_str(), 4096 + 2048), 0);  // someone shrinks the file under the device
    Done d;
    ASSERT_TRUE(q->read(8, 16, buf.bytes(), &Done::cb, &d));  // bytes 4096-12287: only 2048 are left
    drain(*q);
    EXPECT_EQ(d.failed, 1);
    EXPECT_NE(d.error.find("short transfer: 2048 of 8192 bytes"), std::string::npos) << d.error;
}

TEST_F(FileBlockTest, ProbeErrorsLeaveTheDeviceUnbound) {
    udrv::platform::DeviceDesc d;
    d.name = "nopath";
    d.compatible = {"udrv,file-block"};
    auto dev = udrv::platform::bus().register_device(d);
    ASSERT_TRUE(dev);
    EXPECT_FALSE((*dev)->is_bound());
    EXPECT_NE(log.back().find("udrv,file-block needs path = \"file\""), std::string::npos) << log.back();
    d.name = "missing";
    d.properties["path"] = std::string("/nonexistent/disk.img");
    dev = udrv::platform::bus().register_device(d);
    ASSERT_TRUE(dev);
    EXPECT_FALSE((*dev)->is_bound());
    EXPECT_NE(log.back().find("missing: cannot open /nonexistent/disk.img: No such file or directory"), std::string::npos) << log.back();
}

// Reads of a file's holes complete inside io_uring_submit, so a callback that resubmits used to keep
// poll() taking completions for ever (udrv block perf spun at 100% CPU past -t until killed).
TEST_F(FileBlockTest, PollReturnsWhenCallbacksResubmitAndTheKernelCompletesAtOnce) {
    auto* dev = make(16 << 20);  // created by extending: all holes
    ASSERT_NE(dev, nullptr);
    for (auto mode : {udrv::block::Mode::polled, udrv::block::Mode::interrupt}) {
        auto q = dev->open_queue(8, mode);
        ASSERT_TRUE(q) << q.error().message();
        auto buf = dev->alloc_buffer(4096);
        ASSERT_TRUE(buf);
        struct Loop {
            udrv::block::Queue* q;
            std::span<std::byte> buf;
            std::uint64_t completed = 0;
            bool resubmit = true;
            static void cb(void* c, const udrv::Result<void>& r) {
                auto* l = static_cast<Loop*>(c);
                ASSERT_TRUE(r) << r.error().message();
                ++l->completed;
                if (l->resubmit && l->completed < 1000000) {
                    ASSERT_TRUE(l->q->read((l->completed * 8) % 32768, 8, l->buf, &cb, c));
                }
            }
        } loop{q->get(), buf->bytes()};
        ASSERT_TRUE((*q)->read(0, 8, loop.buf, &Loop::cb, &loop));
        std::uint64_t most = 0;
        for (int i = 0; i < 200; ++i) {
            auto n = (*q)->wait(std::chrono::milliseconds(100));
            ASSERT_TRUE(n) << n.error().message();
            most = std::max<std::uint64_t>(most, *n);
        }
        EXPECT_LE(most, 8u) << "one call took more completions than the queue holds";
        EXPECT_GE(loop.completed, 10u);
        loop.resubmit = false;
        drain(**q);
    }
}

}  // namespace

// A queue the application still holds after the device is unbound: what it had in flight comes back,
// new requests are refused with ENODEV, and the file stays open under it until it is dropped.
TEST_F(FileBlockTest, AQueueHeldPastUnbindIsRefused) {
    auto* dev = make(1 << 20);
    ASSERT_NE(dev, nullptr);
    auto q = *dev->open_queue(4, udrv::block::Mode::polled);
    auto buf = *dev->alloc_buffer(4096);
    Done d;
    ASSERT_TRUE(q->read(0, 8, buf.bytes(), &Done::cb, &d));
    udrv::platform::bus().remove_all_devices();
    drain(*q);
    EXPECT_EQ(d.ok, 1) << d.error;
    auto r = q->read(0, 8, buf.bytes(), &Done::cb, &d);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ENODEV);
    EXPECT_NE(r.error().message().find("the device was removed"), std::string::npos) << r.error().message();
    q.reset();
}
