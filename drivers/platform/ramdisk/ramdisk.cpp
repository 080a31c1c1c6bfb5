#include "ramdisk.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>

#include "udrv/fileio.hpp"
#include "udrv/log.hpp"
#include "udrv/rcu.hpp"

namespace udrv::ramdisk {
namespace {

constexpr unsigned kMaxQueueDepth = 4096;

// Offset of blocks [lba, lba + bytes / block size) in the medium; EINVAL/ERANGE otherwise.
Result<std::size_t> locate(const block::Info& info, std::uint64_t lba, std::size_t bytes) {
    if (bytes % info.block_size != 0)
        return fail(EINVAL, "{}: transfer of {} bytes is not a multiple of the {}-byte block", info.name, bytes, info.block_size);
    const std::uint64_t blocks = bytes / info.block_size;
    if (lba > info.blocks || blocks > info.blocks - lba)
        return fail(ERANGE, "{}: blocks {}+{} lie past the end ({} blocks)", info.name, lba, blocks, info.blocks);
    return static_cast<std::size_t>(lba * info.block_size);
}

// The medium's bytes, inside the caller's RCU read section: ENODEV once the device is gone.
Result<std::span<std::byte>> bytes_of(const Medium& m) {
    if (m.removed.load(std::memory_order_acquire)) [[unlikely]]
        return fail(ENODEV, "{}: the device was removed: close this queue", m.info.name);
    return std::span<std::byte>(UDRV_TRY(m.storage.access()).get());
}

// A queue: each request is done when submitted; its callback runs at the owner's next poll().
class Queue final : public block::Queue {
public:
    Queue(std::shared_ptr<const Medium> m, unsigned depth) : m_(std::move(m)), depth_(depth) {}

    Result<void> read(std::uint64_t lba, std::uint32_t blocks, std::span<std::byte> buf, block::Callback cb, void* ctx) override {
        return run(lba, blocks, buf.size(), cb, ctx, [&](std::span<std::byte> at) { std::copy_n(at.begin(), at.size(), buf.begin()); });
    }
    Result<void> write(std::uint64_t lba, std::uint32_t blocks, std::span<const std::byte> buf, block::Callback cb, void* ctx) override {
        return run(lba, blocks, buf.size(), cb, ctx, [&](std::span<std::byte> at) { std::copy_n(buf.begin(), at.size(), at.begin()); });
    }
    Result<void> write_zeroes(std::uint64_t lba, std::uint32_t blocks, block::Callback cb, void* ctx) override {
        return run(lba, blocks, SIZE_MAX, cb, ctx, [](std::span<std::byte> at) { std::fill(at.begin(), at.end(), std::byte{0}); });
    }
    Result<void> deallocate(std::uint64_t lba, std::uint32_t blocks, block::Callback cb, void* ctx) override {
        return write_zeroes(lba, blocks, cb, ctx);  // a deallocated block of RAM reads as zeroes
    }
    Result<void> flush(block::Callback cb, void* ctx) override {
        rcu::ReadLock lock;
        UDRV_TRY(bytes_of(*m_));
        return queue_completion(cb, ctx);
    }
    Result<unsigned> poll() override {
        // Only what was done when poll() began: callbacks that resubmit complete on the next call.
        unsigned n = 0;
        for (std::size_t ready = done_.size(); n < ready; ++n) {
            auto [cb, ctx] = done_.front();
            done_.pop_front();
            if (cb) cb(ctx, {});
        }
        return n;
    }
    Result<unsigned> wait(std::chrono::milliseconds) override { return poll(); }  // nothing is ever in flight longer
    unsigned outstanding() const override { return static_cast<unsigned>(done_.size()); }
    unsigned depth() const override { return depth_; }

private:
    template <typename Op>
    Result<void> run(std::uint64_t lba, std::uint32_t blocks, std::size_t buf_len, block::Callback cb, void* ctx, Op op) {
        rcu::ReadLock lock;  // the medium stays while we copy (see Ramdisk::~Ramdisk)
        std::span<std::byte> medium = UDRV_TRY(bytes_of(*m_));
        const std::size_t bytes = std::size_t{blocks} * m_->info.block_size;
        if (blocks == 0) return fail(EINVAL, "{}: transfer of 0 blocks", m_->info.name);
        if (buf_len < bytes)
            return fail(EINVAL, "{}: buffer of {} bytes is smaller than {} blocks of {}", m_->info.name, buf_len, blocks, m_->info.block_size);
        if (done_.size() >= depth_) return fail(EAGAIN, "{}: queue is full ({} requests outstanding)", m_->info.name, depth_);
        const std::size_t off = UDRV_TRY(locate(m_->info, lba, bytes));
        op(medium.subspan(off, bytes));
        return queue_completion(cb, ctx);
    }
    Result<void> queue_completion(block::Callback cb, void* ctx) {
        if (done_.size() >= depth_) return fail(EAGAIN, "{}: queue is full ({} requests outstanding)", m_->info.name, depth_);
        done_.emplace_back(cb, ctx);
        return {};
    }

    std::shared_ptr<const Medium> m_;
    unsigned depth_;
    std::deque<std::pair<block::Callback, void*>> done_;
};

}  // namespace

Result<std::unique_ptr<Ramdisk>> Ramdisk::probe(Bound<platform::Device>& dev, std::string_view) {
    // Capacity comes from the memory resource: by name if the description names it, else the first.
    const platform::MemResource* mem = nullptr;
    if (auto named = dev->memory("storage")) mem = *named;
    else mem = UDRV_TRY_CTX(dev->memory(0), "udrv,ramdisk needs a memory resource giving its capacity");

    std::int64_t bs = UDRV_TRY(dev->property_or<std::int64_t>("block-size", 512));
    if (bs < 512 || bs > 65536 || (bs & (bs - 1)) != 0)
        return fail(EINVAL, "{}: block-size {} must be a power of two from 512 to 65536", dev->name(), bs);
    if (mem->size % static_cast<std::uint64_t>(bs) != 0)
        return fail(EINVAL, "{}: capacity {} bytes is not a multiple of block-size {}", dev->name(), mem->size, bs);
    constexpr std::uint64_t kMaxBytes = 1ull << 32;
    if (mem->size > kMaxBytes) return fail(EFBIG, "{}: capacity {} bytes exceeds the ramdisk limit of 4 GiB", dev->name(), mem->size);

    std::vector<std::byte> bytes(mem->size);
    std::string image = UDRV_TRY(dev->property_or<std::string>("image", ""));
    if (!image.empty()) {
        std::size_t n = UDRV_TRY_CTX(read_file(image, bytes), "{}: image", dev->name());
        dev_info(dev.device(), "loaded {} bytes from {}", n, image);
    }
    bool persist = UDRV_TRY(dev->property_or<bool>("persist", false));
    if (persist && image.empty()) return fail(EINVAL, "{}: persist = true needs an image = \"path\" to write to", dev->name());

    auto medium = std::make_shared<Medium>();
    medium->storage = dev.manage("storage", std::move(bytes));
    medium->info.name = dev->name();
    medium->info.block_size = static_cast<std::uint32_t>(bs);
    medium->info.blocks = mem->size / static_cast<std::uint64_t>(bs);
    medium->info.max_transfer = static_cast<std::uint32_t>(std::min<std::uint64_t>(mem->size, 1u << 30));
    medium->info.max_queue_depth = kMaxQueueDepth;
    medium->info.write_zeroes = medium->info.deallocate = true;
    std::unique_ptr<Ramdisk> rd(new Ramdisk(dev.device(), medium));
    if (persist) rd->persist_to_ = image;
    const std::string name = UDRV_TRY(block::publish(dev, *rd, ClassName::next("ram"), dev->name()));
    dev_info(dev.device(), "{}: {} blocks of {} bytes ({} KiB)", name, rd->block_count(), rd->block_size(), mem->size / 1024);
    return rd;
}

// The queues are refused from here on, and the core releases the medium only after this returns: the
// grace period makes sure no queue is still copying.
Ramdisk::~Ramdisk() {
    medium_->removed.store(true, std::memory_order_release);
    rcu::synchronize();
    if (persist_to_.empty()) return;
    auto s = medium_->storage.access();
    if (!s) return;
    const std::vector<std::byte>& v = s->get();
    if (auto r = write_file(persist_to_, v); !r) dev_err(dev_, "saving contents failed: {}", r.error().message());
    else dev_info(dev_, "saved {} bytes to {}", v.size(), persist_to_);
}

Result<std::unique_ptr<block::Queue>> Ramdisk::open_queue(unsigned depth, block::Mode) {
    if (depth == 0 || depth > kMaxQueueDepth) return fail(EINVAL, "{}: queue depth {} (1-{})", info().name, depth, kMaxQueueDepth);
    return std::unique_ptr<block::Queue>(new Queue(medium_, depth));
}

Result<block::Buffer> Ramdisk::alloc_buffer(std::size_t bytes) {
    const std::size_t len = (std::max<std::size_t>(bytes, 1) + 4095) & ~std::size_t{4095};
    void* p = std::aligned_alloc(4096, len);
    if (!p) return fail(ENOMEM, "{}: cannot allocate {} bytes", info().name, len);
    std::shared_ptr<void> owner(p, [](void* q) { std::free(q); });
    return block::Buffer(std::span<std::byte>(static_cast<std::byte*>(p), bytes), std::move(owner));
}

Result<void> Ramdisk::read(std::uint64_t lba, std::span<std::byte> out) const {
    const std::size_t off = UDRV_TRY(locate(medium_->info, lba, out.size()));
    std::span<std::byte> m = UDRV_TRY(bytes_of(*medium_));
    std::copy_n(m.begin() + static_cast<std::ptrdiff_t>(off), out.size(), out.begin());
    return {};
}

Result<void> Ramdisk::write(std::uint64_t lba, std::span<const std::byte> in) {
    const std::size_t off = UDRV_TRY(locate(medium_->info, lba, in.size()));
    std::span<std::byte> m = UDRV_TRY(bytes_of(*medium_));
    std::copy(in.begin(), in.end(), m.begin() + static_cast<std::ptrdiff_t>(off));
    return {};
}

}  // namespace udrv::ramdisk
