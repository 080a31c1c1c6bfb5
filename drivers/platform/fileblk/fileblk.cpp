#include "fileblk.hpp"

#include <fcntl.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <vector>

#include "udrv/fileio.hpp"
#include "udrv/log.hpp"

namespace udrv::fileblk {
namespace {

// Largest read or write one request may ask for. io_uring moves at most 2 GiB - 4 KiB per operation
// (the kernel's MAX_RW_COUNT) and the length field is 32 bits; 1 GiB keeps well inside both.
constexpr std::uint64_t kMaxRequestBytes = std::uint64_t{1} << 30;
constexpr unsigned kMaxQueueDepth = 4096;  // entries of one io_uring

}  // namespace

// The file and what it is, shared by the device and its queues: a queue an application still holds
// after unbind keeps the file open (no descriptor is reused under it) and is refused new requests.
struct Backing {
    Fd fd;
    block::Info info;
    std::atomic<bool> removed{false};
};

namespace {

// One io_uring per queue, owned by one thread like an NVMe queue pair.
class Queue final : public block::Queue {
public:
    static Result<std::unique_ptr<Queue>> create(std::shared_ptr<const Backing> b, unsigned depth, block::Mode mode) {
        std::unique_ptr<Queue> q(new Queue(std::move(b), depth, mode));
        const block::Info& info = q->info_;
        int e = io_uring_queue_init(depth, &q->ring_, 0);
        if (e < 0) return fail(-e, "{}: io_uring_queue_init({}) failed: {}", info.name, depth, std::strerror(-e));
        q->ready_ = true;
        return q;
    }
    ~Queue() override {
        if (!ready_) return;
        while (outstanding_)  // every submitted request comes back before the ring goes
            if (!wait(std::chrono::milliseconds(1000))) break;
        io_uring_queue_exit(&ring_);
    }

    Result<void> read(std::uint64_t lba, std::uint32_t blocks, std::span<std::byte> buf, block::Callback cb, void* ctx) override {
        auto [sqe, bytes] = UDRV_TRY(prepare_rw(lba, blocks, buf.size(), cb, ctx));
        io_uring_prep_read(sqe, fd_, buf.data(), bytes, lba * info_.block_size);
        return submit();
    }
    Result<void> write(std::uint64_t lba, std::uint32_t blocks, std::span<const std::byte> buf, block::Callback cb, void* ctx) override {
        auto [sqe, bytes] = UDRV_TRY(prepare_rw(lba, blocks, buf.size(), cb, ctx));
        io_uring_prep_write(sqe, fd_, buf.data(), bytes, lba * info_.block_size);
        return submit();
    }
    Result<void> flush(block::Callback cb, void* ctx) override {
        auto* sqe = UDRV_TRY(take(cb, ctx));
        io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC);
        return submit();
    }
    Result<void> write_zeroes(std::uint64_t lba, std::uint32_t blocks, block::Callback cb, void* ctx) override {
        auto* sqe = UDRV_TRY(prepare(lba, blocks, std::size_t{blocks} * info_.block_size, cb, ctx));
        io_uring_prep_fallocate(sqe, fd_, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, lba * info_.block_size,
                                std::uint64_t{blocks} * info_.block_size);
        return submit();
    }
    Result<void> deallocate(std::uint64_t lba, std::uint32_t blocks, block::Callback cb, void* ctx) override {
        auto* sqe = UDRV_TRY(prepare(lba, blocks, std::size_t{blocks} * info_.block_size, cb, ctx));
        io_uring_prep_fallocate(sqe, fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, lba * info_.block_size,
                                std::uint64_t{blocks} * info_.block_size);
        return submit();
    }
    // Bounded: only the completions that were there when it was called. A callback may resubmit, and
    // the kernel completes some requests inline (an O_DIRECT read of a file hole), so taking whatever
    // appears would never return to the caller. Requests submitted from callbacks go to the kernel
    // in one io_uring_submit at the end.
    Result<unsigned> poll() override {
        const unsigned ready = io_uring_cq_ready(&ring_);
        in_poll_ = true;
        unsigned n = 0;
        io_uring_cqe* cqe = nullptr;
        for (; n < ready && io_uring_peek_cqe(&ring_, &cqe) == 0; ++n) complete(cqe);
        in_poll_ = false;
        if (unsubmitted_) UDRV_TRY(submit());
        return n;
    }
    Result<unsigned> wait(std::chrono::milliseconds timeout) override {
        unsigned n = UDRV_TRY(poll());
        if (n || outstanding_ == 0) return n;
        if (mode_ == block::Mode::polled) {
            auto end = std::chrono::steady_clock::now() + timeout;
            while (std::chrono::steady_clock::now() < end)
                if ((n = UDRV_TRY(poll()))) return n;
            return 0;
        }
        __kernel_timespec ts{timeout.count() / 1000, (timeout.count() % 1000) * 1000000};
        io_uring_cqe* cqe = nullptr;
        int e = io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
        if (e == -ETIME || e == -EINTR) return 0;
        if (e < 0) return fail(-e, "{}: io_uring wait: {}", info_.name, std::strerror(-e));
        return poll();
    }
    unsigned outstanding() const override { return outstanding_; }
    unsigned depth() const override { return depth_; }

private:
    struct Slot {
        block::Callback cb;
        void* ctx;
        std::uint32_t bytes;  // a read or write must move exactly this many; 0 for other commands
    };
    Queue(std::shared_ptr<const Backing> b, unsigned depth, block::Mode mode)
        : backing_(std::move(b)), fd_(backing_->fd.get()), info_(backing_->info), depth_(depth), mode_(mode), slots_(depth) {
        for (unsigned i = depth; i > 0; --i) free_.push_back(i - 1);
    }
    Result<io_uring_sqe*> take(block::Callback cb, void* ctx, std::uint32_t bytes = 0) {
        if (backing_->removed.load(std::memory_order_relaxed)) [[unlikely]]
            return fail(ENODEV, "{}: the device was removed: close this queue", info_.name);
        if (free_.empty()) return fail(EAGAIN, "{}: queue is full ({} requests outstanding)", info_.name, outstanding_);
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        if (!sqe) return fail(EAGAIN, "{}: io_uring submission ring is full", info_.name);
        unsigned slot = free_.back();
        free_.pop_back();
        slots_[slot] = {cb, ctx, bytes};
        io_uring_sqe_set_data64(sqe, slot);
        ++outstanding_;
        return sqe;
    }
    Result<io_uring_sqe*> prepare(std::uint64_t lba, std::uint32_t blocks, std::size_t len, block::Callback cb, void* ctx,
                                  std::uint32_t bytes = 0) {
        if (blocks == 0) return fail(EINVAL, "{}: transfer of 0 blocks", info_.name);
        if (len < std::size_t{blocks} * info_.block_size)
            return fail(EINVAL, "{}: buffer of {} bytes is smaller than {} blocks of {}", info_.name, len, blocks, info_.block_size);
        if (lba >= info_.blocks || blocks > info_.blocks - lba)
            return fail(ERANGE, "{}: blocks {}+{} lie past the end ({} blocks)", info_.name, lba, blocks, info_.blocks);
        return take(cb, ctx, bytes);
    }
    // A read or write: its length in bytes, computed in 64 bits (blocks * block size overflows 32).
    Result<std::pair<io_uring_sqe*, std::uint32_t>> prepare_rw(std::uint64_t lba, std::uint32_t blocks, std::size_t len, block::Callback cb,
                                                               void* ctx) {
        const std::uint64_t bytes = std::uint64_t{blocks} * info_.block_size;
        if (bytes > kMaxRequestBytes)
            return fail(EINVAL, "{}: transfer of {} bytes; a file-backed device takes at most {} per request: split it", info_.name, bytes,
                        kMaxRequestBytes);
        io_uring_sqe* sqe = UDRV_TRY(prepare(lba, blocks, len, cb, ctx, static_cast<std::uint32_t>(bytes)));
        return std::pair{sqe, static_cast<std::uint32_t>(bytes)};
    }
    Result<void> submit() {
        if (in_poll_) {  // from a completion callback: poll() submits once it is done
            ++unsubmitted_;
            return {};
        }
        unsubmitted_ = 0;
        int e = io_uring_submit(&ring_);
        if (e < 0) return fail(-e, "{}: io_uring_submit: {}", info_.name, std::strerror(-e));
        return {};
    }
    void complete(io_uring_cqe* cqe) {
        auto slot = static_cast<unsigned>(io_uring_cqe_get_data64(cqe));
        int res = cqe->res;
        io_uring_cqe_seen(&ring_, cqe);
        Slot s = slots_[slot];
        free_.push_back(slot);
        --outstanding_;
        if (!s.cb) return;
        if (res < 0) s.cb(s.ctx, fail(-res, "{}: {}", info_.name, std::strerror(-res)));
        // A short transfer (the file shrank under us, say) is an error, not a success with stale data.
        else if (s.bytes && static_cast<std::uint32_t>(res) != s.bytes)
            s.cb(s.ctx, fail(EIO, "{}: short transfer: {} of {} bytes (was the file truncated?)", info_.name, res, s.bytes));
        else s.cb(s.ctx, {});
    }

    std::shared_ptr<const Backing> backing_;
    int fd_;                   // backing_'s, open while this queue lives
    const block::Info& info_;  // backing_'s
    unsigned depth_;
    block::Mode mode_;
    io_uring ring_{};
    bool ready_ = false;
    std::vector<Slot> slots_;
    std::vector<unsigned> free_;
    unsigned outstanding_ = 0;
    bool in_poll_ = false;
    unsigned unsubmitted_ = 0;  // requests prepared by callbacks during poll(), not yet handed to the kernel
};

}  // namespace

Result<std::unique_ptr<FileBlock>> FileBlock::probe(Bound<platform::Device>& dev, std::string_view) {
    std::string path = UDRV_TRY_CTX(dev->property<std::string>("path"), "udrv,file-block needs path = \"file\"");
    std::int64_t bs = UDRV_TRY(dev->property_or<std::int64_t>("block-size", 512));
    if (bs < 512 || bs > 65536 || (bs & (bs - 1)))
        return fail(EINVAL, "{}: block-size {} must be a power of two from 512 to 65536", dev->name(), bs);
    std::int64_t size = UDRV_TRY(dev->property_or<std::int64_t>("size", 0));
    bool direct = UDRV_TRY(dev->property_or<bool>("direct", true));
    int flags = O_RDWR | O_CLOEXEC | (size > 0 ? O_CREAT : 0);
    Fd fd(::open(path.c_str(), flags | (direct ? O_DIRECT : 0), 0644));
    if (!fd && direct && errno == EINVAL) {  // tmpfs and some others refuse O_DIRECT
        dev_warn(dev.device(), "{} does not support O_DIRECT: using the page cache", path);
        fd.reset(::open(path.c_str(), flags, 0644));
    }
    if (!fd) return fail_errno("{}: cannot open {}", dev->name(), path);
    struct stat st {};
    if (fstat(fd.get(), &st) != 0) return fail_errno("{}: fstat {}", dev->name(), path);
    if (size > 0 && S_ISREG(st.st_mode) && st.st_size < size && ftruncate(fd.get(), size) != 0)
        return fail_errno("{}: cannot extend {} to {} bytes", dev->name(), path, size);
    std::uint64_t bytes = S_ISREG(st.st_mode) ? static_cast<std::uint64_t>(std::max<std::int64_t>(st.st_size, size)) : 0;
    if (S_ISBLK(st.st_mode)) bytes = static_cast<std::uint64_t>(lseek(fd.get(), 0, SEEK_END));
    if (bytes < static_cast<std::uint64_t>(bs))
        return fail(EINVAL, "{}: {} holds {} bytes, less than one block (give size = N to create it)", dev->name(), path, bytes);
    block::Info info;
    info.name = "file:" + path;
    info.block_size = static_cast<std::uint32_t>(bs);
    info.blocks = bytes / static_cast<std::uint64_t>(bs);
    info.max_transfer = static_cast<std::uint32_t>(kMaxRequestBytes);  // one io_uring operation
    info.max_queue_depth = kMaxQueueDepth;
    info.write_zeroes = info.deallocate = true;
    auto backing = std::make_shared<Backing>();
    backing->fd = std::move(fd);
    backing->info = std::move(info);
    std::unique_ptr<FileBlock> fb(new FileBlock(backing));
    const std::string name = UDRV_TRY(block::publish(dev, *fb, ClassName::next("fileblk"), dev->name()));
    dev_info(dev.device(), "{}: {}: {} blocks of {} bytes{}", name, path, backing->info.blocks, bs, direct ? ", O_DIRECT" : "");
    return fb;
}

FileBlock::~FileBlock() { backing_->removed.store(true, std::memory_order_relaxed); }

const block::Info& FileBlock::info() const { return backing_->info; }

Result<std::unique_ptr<block::Queue>> FileBlock::open_queue(unsigned depth, block::Mode mode) {
    if (depth == 0 || depth > kMaxQueueDepth) return fail(EINVAL, "{}: queue depth {} (1-{})", info().name, depth, kMaxQueueDepth);
    auto q = UDRV_TRY(Queue::create(backing_, depth, mode));
    return std::unique_ptr<block::Queue>(std::move(q));
}

Result<block::Buffer> FileBlock::alloc_buffer(std::size_t bytes) {
    std::size_t len = (bytes + 4095) & ~std::size_t{4095};
    void* p = std::aligned_alloc(4096, len);  // O_DIRECT wants page-aligned memory
    if (!p) return fail(ENOMEM, "{}: cannot allocate {} bytes", info().name, len);
    std::shared_ptr<void> owner(p, [](void* q) { std::free(q); });
    return block::Buffer(std::span<std::byte>(static_cast<std::byte*>(p), bytes), std::move(owner));
}

}  // namespace udrv::fileblk
