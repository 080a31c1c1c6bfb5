// A block device in RAM whose queue completes everything on the next poll(): for the NVMe/TCP target's
// unit tests and fuzz harness, which need a device but no driver. With a latency, commands complete
// that long after submission, and a queue opened in interrupt mode signals them on a timerfd.
#pragma once

#include <sys/timerfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "udrv/block.hpp"

namespace udrv::testing {

// A RAM block device whose queue completes on poll().
class MemDevice final : public block::Device {
public:
    explicit MemDevice(std::uint32_t bs = 512, std::uint64_t blocks = 4096) : data_(bs * blocks) {
        info_.name = "mem";
        info_.block_size = bs;
        info_.blocks = blocks;
        info_.splits = true;
        info_.max_queue_depth = 256;
        info_.write_zeroes = info_.deallocate = true;
    }
    const block::Info& info() const override { return info_; }
    Result<std::unique_ptr<block::Queue>> open_queue(unsigned depth, block::Mode mode) override {
        return std::make_unique<Q>(*this, depth, mode == block::Mode::interrupt && latency.count() > 0);
    }
    Result<block::Buffer> alloc_buffer(std::size_t bytes) override {
        auto v = std::make_shared<std::vector<std::byte>>(bytes);
        return block::Buffer(std::span(*v), v);
    }
    std::vector<std::byte> data_;
    std::chrono::microseconds latency{0};  ///< set before opening queues
    std::atomic<unsigned> polls{0};        ///< poll() calls on all queues

private:
    struct Q final : block::Queue {
        using clock = std::chrono::steady_clock;
        struct Pending {
            block::Callback cb;
            void* ctx;
            clock::time_point due;
        };
        MemDevice& d;
        unsigned depth_;
        std::deque<Pending> done;
        int timer_ = -1;  // interrupt mode with a latency: fires when the first pending command is due
        Q(MemDevice& dev, unsigned depth, bool interrupts) : d(dev), depth_(depth) {
            if (interrupts) timer_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        }
        ~Q() override {
            if (timer_ >= 0) ::close(timer_);
        }
        void arm() {
            if (timer_ < 0 || done.empty()) return;
            const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(done.front().due.time_since_epoch()).count();
            itimerspec t{};
            t.it_value.tv_sec = ns / 1000000000;
            t.it_value.tv_nsec = std::max<long long>(ns % 1000000000, 1);
            ::timerfd_settime(timer_, TFD_TIMER_ABSTIME, &t, nullptr);
        }
        Result<void> add(block::Callback cb, void* ctx) {
            if (done.size() >= depth_) return fail(EAGAIN, "full");
            done.push_back({cb, ctx, clock::now() + d.latency});
            if (done.size() == 1) arm();
            return {};
        }
        Result<void> read(std::uint64_t lba, std::uint32_t n, std::span<std::byte> buf, block::Callback cb, void* ctx) override {
            std::memcpy(buf.data(), d.data_.data() + lba * d.info_.block_size, std::size_t{n} * d.info_.block_size);
            return add(cb, ctx);
        }
        Result<void> write(std::uint64_t lba, std::uint32_t n, std::span<const std::byte> buf, block::Callback cb, void* ctx) override {
            std::memcpy(d.data_.data() + lba * d.info_.block_size, buf.data(), std::size_t{n} * d.info_.block_size);
            return add(cb, ctx);
        }
        Result<void> flush(block::Callback cb, void* ctx) override { return add(cb, ctx); }
        Result<void> write_zeroes(std::uint64_t lba, std::uint32_t n, block::Callback cb, void* ctx) override {
            std::memset(d.data_.data() + lba * d.info_.block_size, 0, std::size_t{n} * d.info_.block_size);
            return add(cb, ctx);
        }
        Result<void> deallocate(std::uint64_t lba, std::uint32_t n, block::Callback cb, void* ctx) override { return write_zeroes(lba, n, cb, ctx); }
        Result<unsigned> poll() override {
            d.polls.fetch_add(1, std::memory_order_relaxed);
            std::vector<Pending> now;
            const auto t = clock::now();
            while (!done.empty() && done.front().due <= t) {
                now.push_back(done.front());
                done.pop_front();
            }
            arm();
            for (auto& p : now) p.cb(p.ctx, {});
            return static_cast<unsigned>(now.size());
        }
        Result<unsigned> wait(std::chrono::milliseconds) override { return poll(); }
        unsigned outstanding() const override { return static_cast<unsigned>(done.size()); }
        unsigned depth() const override { return depth_; }
        int completion_fd() const noexcept override { return timer_; }
        void clear_completion_event() noexcept override {
            std::uint64_t n;
            if (timer_ >= 0) (void)!::read(timer_, &n, sizeof n);
        }
    };
    block::Info info_;
};

}  // namespace udrv::testing
