// A block device in RAM whose queue completes everything on the next poll(): for the NVMe/TCP target's
// unit tests and fuzz harness, which need a device but no driver.
#pragma once

#include <cstring>
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
    Result<std::unique_ptr<block::Queue>> open_queue(unsigned depth, block::Mode) override { return std::make_unique<Q>(*this, depth); }
    Result<block::Buffer> alloc_buffer(std::size_t bytes) override {
        auto v = std::make_shared<std::vector<std::byte>>(bytes);
        return block::Buffer(std::span(*v), v);
    }
    std::vector<std::byte> data_;

private:
    struct Q final : block::Queue {
        MemDevice& d;
        unsigned depth_;
        std::vector<std::pair<block::Callback, void*>> done;
        Q(MemDevice& dev, unsigned depth) : d(dev), depth_(depth) {}
        Result<void> add(block::Callback cb, void* ctx) {
            if (done.size() >= depth_) return fail(EAGAIN, "full");
            done.emplace_back(cb, ctx);
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
            auto now = std::move(done);
            done.clear();
            for (auto& [cb, ctx] : now) cb(ctx, {});
            return static_cast<unsigned>(now.size());
        }
        Result<unsigned> wait(std::chrono::milliseconds) override { return poll(); }
        unsigned outstanding() const override { return static_cast<unsigned>(done.size()); }
        unsigned depth() const override { return depth_; }
    };
    block::Info info_;
};

}  // namespace udrv::testing
