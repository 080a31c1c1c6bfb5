#include "ublk_export.hpp"

#include <fcntl.h>
#include <linux/ublk_cmd.h>
#include <unistd.h>

#include <signal.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>

#include "udrv/log.hpp"

namespace udrv::exports {

using clock = std::chrono::steady_clock;

// One ublk queue and the udrv block queue that serves it, both owned by the worker's thread.
struct UblkExport::Worker {
    UblkExport* owner = nullptr;
    std::uint16_t qid = 0;
    std::optional<ublk::Queue> q;
    std::unique_ptr<block::Queue> bq;
    block::Buffer buffers;  // depth request buffers of max_io_bytes, I/O memory of the device
    struct Slot {
        Worker* w;
        std::uint16_t tag;
        std::int32_t bytes;  // what a successful request reports (reads and writes: their size)
    };
    std::vector<Slot> slots;
    unsigned live = 0;  // slots the kernel has not aborted
    std::thread thread;
    std::atomic<std::uint64_t> requests{0}, errors{0};
    std::atomic<bool> stopping{false};
    // Set up on the thread; the creator waits for it.
    std::mutex mu;
    std::condition_variable cv;
    bool set_up = false;
    std::optional<Error> setup_error;

    std::byte* buffer(std::uint16_t tag) const { return buffers.bytes().data() + std::size_t{tag} * owner->params_.max_io_bytes; }
    void commit(std::uint16_t tag, std::int32_t result) { q->commit_and_fetch(tag, result, buffer(tag)); }
    static void done(void* ctx, const Result<void>& r) {
        auto* s = static_cast<Slot*>(ctx);
        Worker& w = *s->w;
        if (!r) {
            w.errors.fetch_add(1, std::memory_order_relaxed);
            if (r.error().code() == ENODEV) w.owner->broken_.store(true, std::memory_order_release);
        }
        w.commit(s->tag, r ? s->bytes : -EIO);
    }
};

UblkExport::UblkExport(block::Handle dev, UblkOptions o, ublk::Params p) : dev_(std::move(dev)), o_(o), params_(p) {}

Result<std::unique_ptr<UblkExport>> UblkExport::create(block::Handle dev, UblkOptions o) {
    const block::Info& info = dev.info();
    const std::string name = dev.id().name;  // a copy: dev moves into the export
    if (o.queues == 0 || (info.max_queues && o.queues > info.max_queues))
        return fail(EINVAL, "{} has at most {} queues: {} ublk queues cannot each have one", name, info.max_queues, o.queues);
    if (o.queues > 64) return fail(EINVAL, "{} ublk queues (at most 64)", o.queues);
    if (o.depth == 0 || o.depth > UBLK_MAX_QUEUE_DEPTH) return fail(EINVAL, "queue depth {} (1-{})", o.depth, UBLK_MAX_QUEUE_DEPTH);
    if (info.block_size > 4096)
        return fail(EINVAL, "{} has {}-byte blocks; the kernel's block layer takes at most the page size (4096)", name, info.block_size);
    ublk::Params p;
    p.queues = static_cast<std::uint16_t>(o.queues);
    p.depth = static_cast<std::uint16_t>(o.depth);
    p.max_io_bytes = info.splits || !info.max_transfer ? o.max_io_bytes : std::min(o.max_io_bytes, info.max_transfer);
    p.max_io_bytes -= p.max_io_bytes % info.block_size;
    p.block_size = info.block_size;
    p.blocks = info.blocks;
    p.volatile_cache = info.volatile_cache;
    p.discard = info.deallocate;
    p.write_zeroes = info.write_zeroes;
    // A request above the device's largest command becomes several commands, each a queue slot.
    const std::uint64_t per_request = info.max_transfer ? (p.max_io_bytes + info.max_transfer - 1) / info.max_transfer : 1;
    if (info.max_queue_depth && o.depth * per_request > info.max_queue_depth)
        return fail(EINVAL, "queue depth {} with {}-byte requests needs {} commands per queue; {} allows {}", o.depth, p.max_io_bytes,
                    o.depth * per_request, name, info.max_queue_depth);

    std::unique_ptr<UblkExport> e(new UblkExport(std::move(dev), o, p));
    ublk::Control ctrl = UDRV_TRY(ublk::Control::open());
    if (o.recover) {
        // The kernel quiesces the device once it has noticed its server died; until then recovery is EBUSY.
        e->dev_id_ = o.dev_id;
        const auto until = clock::now() + std::chrono::seconds(30);
        for (;;) {
            auto di = UDRV_TRY_CTX(ctrl.info(o.dev_id), "taking over {}", ublk::block_path(o.dev_id));
            if (di.state == UBLK_S_DEV_QUIESCED) {
                if (auto r = ctrl.start_recovery(o.dev_id); r) break;
                else if (r.error().code() != EBUSY) return std::unexpected(r.error());
            } else if (di.state == UBLK_S_DEV_LIVE && di.server_pid > 0 && ::kill(di.server_pid, 0) == 0) {
                return fail(EBUSY, "{} is served by process {} still", ublk::block_path(o.dev_id), di.server_pid);
            }
            if (clock::now() > until)
                return fail(ETIMEDOUT, "{} did not become ready for recovery within 30 s (it is {})", ublk::block_path(o.dev_id),
                            ublk::state_name(di.state));
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    } else {
        auto di = UDRV_TRY(ctrl.add(-1, p));
        e->dev_id_ = di.dev_id;
        if (auto r = ctrl.set_params(e->dev_id_, p); !r) {
            (void)ctrl.remove(e->dev_id_);
            return std::unexpected(r.error());
        }
    }
    if (auto r = e->start(ctrl); !r) {
        e->removed_ = true;  // start() cleaned up what it could
        return std::unexpected(r.error());
    }
    pr_info("{}: exported as {} ({} queue(s) of {} requests, {}-byte blocks){}", name, e->path(), o.queues, o.depth, p.block_size,
            o.recover ? ", taken over after its server died: requests in flight reissued" : "");
    return e;
}

Result<void> UblkExport::start(ublk::Control& ctrl) {
    const std::string cdev = ublk::char_path(dev_id_);
    for (int i = 0; i < 200 && !char_dev_; ++i) {  // the node appears when the kernel has added the device
        char_dev_ = Fd(::open(cdev.c_str(), O_RDWR | O_CLOEXEC));
        if (!char_dev_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    auto unwind = [&](Error e) -> Result<void> {
        // A new device goes (stopped, its queues closed, deleted); one being taken over stays for the
        // next try. The kernel deletes a device only once nothing holds its char device (fd, rings, mmaps).
        if (!o_.recover) (void)ctrl.stop(dev_id_);
        for (auto& w : workers_) w->stopping = true;
        for (auto& w : workers_)
            if (w->thread.joinable()) w->thread.join();
        workers_.clear();
        char_dev_.reset();
        if (!o_.recover) (void)ctrl.remove(dev_id_);
        return std::unexpected(std::move(e));
    };
    if (!char_dev_) return unwind(Error(errno, fmt::format("cannot open {}: {}", cdev, std::strerror(errno))));
    for (unsigned i = 0; i < o_.queues; ++i) {
        auto w = std::make_unique<Worker>();
        w->owner = this;
        w->qid = static_cast<std::uint16_t>(i);
        Worker& ref = *w;
        workers_.push_back(std::move(w));
        ref.thread = std::thread([this, &ref] { serve(ref); });
    }
    for (auto& w : workers_) {
        std::unique_lock lock(w->mu);
        w->cv.wait(lock, [&] { return w->set_up; });
        if (w->setup_error) return unwind(*w->setup_error);
    }
    // Every queue has asked for its requests: the kernel may start (or resume) the disk.
    auto r = o_.recover ? ctrl.end_recovery(dev_id_, ::getpid()) : ctrl.start(dev_id_, ::getpid());
    if (!r) return unwind(r.error());
    return {};
}

void UblkExport::serve(Worker& w) {
    auto setup = [&]() -> Result<void> {
        w.q.emplace(UDRV_TRY(ublk::Queue::open(char_dev_.get(), w.qid, params_.depth)));
        const block::Info& info = dev_.info();
        const unsigned per_request = info.max_transfer ? (params_.max_io_bytes + info.max_transfer - 1) / info.max_transfer : 1;
        w.bq = UDRV_TRY(dev_.open_queue(params_.depth * per_request, block::Mode::polled));
        w.buffers = UDRV_TRY(dev_.alloc_buffer(std::size_t{params_.depth} * params_.max_io_bytes));
        w.slots.resize(params_.depth);
        for (std::uint16_t tag = 0; tag < params_.depth; ++tag) {
            w.slots[tag] = Worker::Slot{&w, tag, 0};
            w.q->fetch(tag, w.buffer(tag));
        }
        w.live = params_.depth;
        return w.q->submit();
    };
    {
        auto r = setup();
        std::lock_guard lock(w.mu);
        if (!r) w.setup_error = r.error();
        w.set_up = true;
    }
    w.cv.notify_all();
    if (w.setup_error) return;

    const unsigned sectors_shift = static_cast<unsigned>(__builtin_ctz(params_.block_size / 512));
    ublk::Queue::Completion got[64];
    auto idle_since = clock::now();
    while (w.live > 0) {
        const unsigned n = w.q->take(got, 64);
        std::optional<block::Batch> batch;  // the requests taken together reach the device together
        if (n > 1) batch.emplace(*w.bq);
        for (unsigned i = 0; i < n; ++i) {
            const std::uint16_t tag = got[i].tag;
            if (tag >= params_.depth) continue;  // not one of ours: nothing to answer
            if (got[i].res != UBLK_IO_RES_OK) {  // ABORT (-ENODEV): the device is going away; anything else: the slot is lost
                if (got[i].res != UBLK_IO_RES_ABORT) pr_warn("{} queue {} slot {}: the kernel answered {}", path(), w.qid, tag, got[i].res);
                --w.live;
                continue;
            }
            w.requests.fetch_add(1, std::memory_order_relaxed);
            const ublk::Request r = w.q->request(tag);
            if (auto ok = ublk::check_request(r, params_); !ok) {
                pr_warn("{} queue {}: {}", path(), w.qid, ok.error().message());
                w.errors.fetch_add(1, std::memory_order_relaxed);
                w.commit(tag, -EIO);
                continue;
            }
            Worker::Slot& s = w.slots[tag];
            const std::uint64_t lba = r.start >> sectors_shift;
            const auto blocks = static_cast<std::uint32_t>(r.sectors >> sectors_shift);
            const std::size_t bytes = std::size_t{r.sectors} * 512;
            s.bytes = (r.op == UBLK_IO_OP_READ || r.op == UBLK_IO_OP_WRITE) ? static_cast<std::int32_t>(bytes) : 0;
            Result<void> sub;
            switch (r.op) {
                case UBLK_IO_OP_READ: sub = w.bq->read(lba, blocks, std::span(w.buffer(tag), bytes), &Worker::done, &s); break;
                case UBLK_IO_OP_WRITE: sub = w.bq->write(lba, blocks, std::span<const std::byte>(w.buffer(tag), bytes), &Worker::done, &s); break;
                case UBLK_IO_OP_FLUSH: sub = w.bq->flush(&Worker::done, &s); break;
                case UBLK_IO_OP_DISCARD: sub = w.bq->deallocate(lba, blocks, &Worker::done, &s); break;
                default: sub = w.bq->write_zeroes(lba, blocks, &Worker::done, &s); break;  // WRITE_ZEROES (check_request)
            }
            if (!sub) {
                w.errors.fetch_add(1, std::memory_order_relaxed);
                if (sub.error().code() == ENODEV) broken_.store(true, std::memory_order_release);
                w.commit(tag, -EIO);
            }
        }
        batch.reset();
        // The device's completions run their callbacks here, which queue the commits.
        if (w.bq->outstanding()) {
            if (auto p = w.bq->poll(); !p && p.error().code() == ENODEV) broken_.store(true, std::memory_order_release);
        }
        if (n || w.bq->outstanding()) {
            if (auto s = w.q->submit(); !s) pr_warn("{} queue {}: {}", path(), w.qid, s.error().message());
            idle_since = clock::now();
            continue;  // busy: keep polling both sides
        }
        // Idle: hand over the commits and sleep on the kernel's side in one system call (a new request
        // is a completion there). While stopping, a queue that hears nothing for 5 s gives up its
        // slots: the kernel has stopped answering them.
        if (auto s = w.q->submit_and_wait(std::chrono::milliseconds(100)); !s) pr_warn("{} queue {}: {}", path(), w.qid, s.error().message());
        if (w.stopping.load(std::memory_order_acquire) && clock::now() - idle_since > std::chrono::seconds(5)) break;
    }
    // What the device still holds completes (or fails) before its queue goes.
    while (w.bq && w.bq->outstanding())
        if (!w.bq->wait(std::chrono::milliseconds(100))) break;
}

std::uint64_t UblkExport::requests() const noexcept {
    std::uint64_t n = 0;
    for (const auto& w : workers_) n += w->requests.load(std::memory_order_relaxed);
    return n;
}

std::uint64_t UblkExport::errors() const noexcept {
    std::uint64_t n = 0;
    for (const auto& w : workers_) n += w->errors.load(std::memory_order_relaxed);
    return n;
}

Result<void> UblkExport::remove() {
    if (removed_) return {};
    removed_ = true;
    auto ctrl = ublk::Control::open();
    Result<void> r;
    if (ctrl) r = ctrl->stop(dev_id_);  // requests in flight complete or fail; the kernel aborts our fetches
    else r = std::unexpected(ctrl.error());
    for (auto& w : workers_) w->stopping = true;
    for (auto& w : workers_)
        if (w->thread.joinable()) w->thread.join();
    // DEL_DEV waits until nothing holds the char device: the queues' rings, mappings and our fd go first.
    workers_.clear();
    char_dev_.reset();
    if (ctrl)
        if (auto d = ctrl->remove(dev_id_); !d && r) r = d;
    if (r) pr_info("{}: {} removed", dev_.id().name, path());
    return r;
}

UblkExport::~UblkExport() {
    if (auto r = remove(); !r) pr_warn("{}: {}", path(), r.error().message());
}

}  // namespace udrv::exports
