#include "nvme.hpp"

#include <algorithm>
#include <cstring>
#include <optional>
#include <thread>
#include <tuple>

#include "udrv/log.hpp"

namespace udrv::nvme {
namespace {

using clock = std::chrono::steady_clock;
constexpr std::size_t kPage = 4096;
// Polling loops read the clock (timeouts, wait deadlines) once per this many empty polls: under TCG
// reading the TSC is a call into the emulator.
constexpr unsigned kPollsPerClockRead = 256;

// Does the registration [base, base + size) hold [addr, addr + len)?
bool holds(std::uintptr_t base, std::size_t size, std::uintptr_t addr, std::size_t len) {
    return addr >= base && addr - base <= size && len <= size - (addr - base);
}
constexpr std::uint16_t kAdminDepth = 32;
constexpr std::uint16_t kWantedIoQueues = 16;
constexpr std::uint32_t kMaxTransfer = 512 * 1024;             // one PRP list page covers it
constexpr auto kAdminTimeout = std::chrono::seconds(10);
constexpr auto kIoTimeout = std::chrono::seconds(30);            // as Linux's nvme io_timeout

}  // namespace

struct Split {
    unsigned remaining;
    std::optional<Error> error;
    block::Callback cb;
    void* ctx;
};

struct ControllerState {
    ControllerState(const pci::Device& d, Mmio<kBarMin> r, dma::Allocator a) : dev(d), regs(r), dma(std::move(a)) {}

    const pci::Device& dev;
    Mmio<kBarMin> regs;
    dma::Allocator dma;
    ControllerInfo info;
    std::optional<irq::Vectors> vectors;
    // Admin queue, queue ids, queue list. Recursive: remove() polls queues, and a poll may abort a
    // timed-out command through the admin queue.
    std::recursive_mutex mu;
    std::unique_ptr<QueuePair> admin;
    std::vector<bool> qid_used;
    std::vector<QueuePair*> io_queues;
    // Shadow doorbells (NVMe 1.3 Doorbell Buffer Config): the host writes doorbell values to memory and
    // rings the MMIO doorbell only when the controller's event index asks for it. On an emulated
    // controller every MMIO write is a trap into the emulator, so this removes most of them.
    std::optional<dma::Coherent<std::uint32_t>> shadow_db, shadow_ei;
    std::shared_mutex mem_mu;                 // registered I/O memory: cpu address -> iova
    struct Mapping {
        std::size_t size;
        std::uint64_t iova;
    };
    std::map<std::uintptr_t, Mapping> mem;
    std::atomic<std::uint64_t> mem_gen{1};    // bumped on every change to `mem`: queues' cached lookups check it
    bool alive = true;
    // Controller resets. The resetting thread recreates the admin queue; each I/O queue pair notices the
    // new epoch on its owner's next submit or poll and recreates itself there (its owner is the only
    // thread that may touch it). `failed`: the last reset did not bring the controller back.
    std::atomic<std::uint64_t> epoch{0};
    bool resetting = false, failed = false;
    unsigned resets = 0;

    std::size_t doorbell(std::uint16_t qid, bool cq) const { return kRegDoorbells + (2u * qid + cq) * info.doorbell_stride; }

    // The registration holding [p, p + len): its start, size and iova.
    Result<std::tuple<std::uintptr_t, std::size_t, std::uint64_t>> find_mem(const void* p, std::size_t len) {
        const std::uintptr_t addr = dma::address_of(p);
        std::shared_lock lock(mem_mu);
        auto it = mem.upper_bound(addr);
        if (it != mem.begin()) {
            --it;
            if (holds(it->first, it->second.size, addr, len)) return std::tuple{it->first, it->second.size, it->second.iova};
        }
        return fail(EFAULT, "{}: buffer at {:#x} ({} bytes) is not DMA-mapped memory: allocate it with alloc_buffer() or "
                    "register it with register_memory()", dev.name(), addr, len);
    }

    Result<void> wait_ready(bool ready) {
        auto deadline = clock::now() + std::chrono::milliseconds(std::max<std::uint32_t>(info.timeout_ms, 500));
        for (;;) {
            std::uint32_t csts = regs.read32<kRegCsts>();
            if (csts == 0xffffffff) return fail(ENODEV, "{}: controller registers read all ones: device gone", dev.name());
            // Disabling is how a controller with CSTS.CFS is recovered: only enabling fails on it.
            if (ready && (csts & kCstsFatal)) return fail(EIO, "{}: controller fatal status (CSTS.CFS) while enabling", dev.name());
            if (bool(csts & kCstsReady) == ready) return {};
            if (clock::now() > deadline)
                return fail(ETIMEDOUT, "{}: controller did not become {} within CAP.TO ({} ms)", dev.name(), ready ? "ready" : "disabled",
                            info.timeout_ms);
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
    }

    // Runs one admin command to completion (callers hold mu). Returns the completion's dword 0.
    Result<std::uint32_t> admin_cmd(Sqe sqe, const char* what) {
        struct Wait {
            bool done = false;
            std::optional<Error> error;
        } w;
        UDRV_TRY_CTX(admin->submit(sqe, [](void* c, const Result<void>& r) {
            auto* w = static_cast<Wait*>(c);
            w->done = true;
            if (!r) w->error = r.error();
        }, &w, nullptr), "{}: {}", dev.name(), what);
        auto deadline = clock::now() + kAdminTimeout;
        while (!w.done) {
            UDRV_TRY(admin->poll());
            if (!w.done && clock::now() > deadline) {
                admin->fail_all(Error(ETIMEDOUT, "admin command timed out"));
                Error e(ETIMEDOUT, fmt::format("{}: {} timed out after {} s", dev.name(), what, kAdminTimeout.count()));
                if (!resetting) (void)reset(e.message(), false);  // the admin queue cannot be trusted any more
                return std::unexpected(e);
            }
        }
        if (w.error) return std::unexpected(std::move(*w.error).context(fmt::format("{}: {}", dev.name(), what)));
        return admin->last_result_;
    }

    // Registers the admin queue's rings and enables the controller (bring-up and reset).
    Result<void> enable() {
        const auto depth = admin->depth_;
        regs.write32<kRegAqa>(static_cast<std::uint32_t>(depth - 1) << 16 | (depth - 1u));
        regs.write64<kRegAsq>(admin->sq_.iova());
        regs.write64<kRegAcq>(admin->cq_.iova());
        regs.write32<kRegIntms>(0xffffffff);  // admin interrupts masked: we poll it
        regs.write32<kRegCc>(kCcEnable | kCcIosqes | kCcIocqes);
        return wait_ready(true);
    }

    // Set Features (Number of Queues); returns how many I/O queue pairs the controller grants and the
    // driver can use: no more than have their doorbells in the mapped window (and so their shadow
    // doorbells in the shadow page), which probe checked is at least one.
    Result<std::uint16_t> negotiate_queues() {
        Sqe sf{};
        sf.cdw0 = kAdminSetFeatures;
        sf.cdw10 = kFeatureNumQueues;
        sf.cdw11 = static_cast<std::uint32_t>(kWantedIoQueues - 1) << 16 | (kWantedIoQueues - 1u);
        std::uint32_t granted = UDRV_TRY(admin_cmd(sf, "set features (number of queues)"));
        const auto in_window = static_cast<std::uint32_t>(io_queues_in_window(info.doorbell_stride, kBarMin));
        return static_cast<std::uint16_t>(std::min<std::uint32_t>({(granted & 0xffff) + 1, (granted >> 16) + 1, kWantedIoQueues, in_window}));
    }

    // Hands the shadow doorbell buffers (zeroed: no queue exists yet) to the controller.
    Result<void> config_shadow_doorbells() {
        for (auto& v : shadow_db->span()) v = 0;
        for (auto& v : shadow_ei->span()) v = 0;
        Sqe db{};
        db.cdw0 = kAdminDoorbellBuffer;
        db.prp1 = shadow_db->iova();
        db.prp2 = shadow_ei->iova();
        UDRV_TRY(admin_cmd(db, "doorbell buffer config"));
        return {};
    }

    // Creates I/O queue pair `qid` on the controller: the CQ, then the SQ (deleting the CQ if that fails).
    Result<void> create_io_queue(std::uint16_t qid, std::uint16_t depth, std::uint16_t cq_depth, std::uint64_t cq_iova,
                                 std::uint64_t sq_iova, bool irq) {
        Sqe c{};
        c.cdw0 = kAdminCreateCq;
        c.prp1 = cq_iova;
        c.cdw10 = static_cast<std::uint32_t>(cq_depth - 1) << 16 | qid;
        c.cdw11 = (irq ? (static_cast<std::uint32_t>(qid) << 16 | 0x2) : 0) | 0x1;  // IV, IEN, PC
        UDRV_TRY(admin_cmd(c, "create I/O completion queue"));
        Sqe q{};
        q.cdw0 = kAdminCreateSq;
        q.prp1 = sq_iova;
        q.cdw10 = static_cast<std::uint32_t>(depth - 1) << 16 | qid;
        q.cdw11 = static_cast<std::uint32_t>(qid) << 16 | 0x1;  // CQID, PC
        if (auto r = admin_cmd(q, "create I/O submission queue"); !r) {
            Sqe d{};
            d.cdw0 = kAdminDeleteCq;
            d.cdw10 = qid;
            (void)admin_cmd(d, "delete I/O completion queue");
            return std::unexpected(r.error());
        }
        return {};
    }

    // Controller reset (NVMe 1.4, 7.3.2; Linux's nvme_reset_ctrl): disable, which drops every queue and
    // stops the controller's DMA, then bring the admin queue and the features back. Commands in the
    // admin queue fail here; each I/O queue pair fails its own and recreates itself on its owner's
    // next call. Callers hold mu.
    Result<void> reset(std::string_view why, bool graceful) {
        if (resetting) return fail(EBUSY, "{}: controller reset already in progress", dev.name());
        resetting = true;
        struct Done {
            bool& flag;
            ~Done() { flag = false; }
        } done{resetting};
        ++resets;
        dev_warn(dev, "resetting the controller: {}", why);
        epoch.fetch_add(1, std::memory_order_release);
        auto r = [&]() -> Result<void> {
            // A controller that still answers deletes its I/O queues first (as Linux's nvme_dev_disable
            // does): it finishes or aborts their commands before it is disabled. QEMU 7.2's controller
            // crashes when disabled with reads still in flight in its block layer.
            if (graceful && !(regs.read32<kRegCsts>() & kCstsFatal)) {
                for (std::uint16_t qid = 1; qid < qid_used.size(); ++qid) {
                    if (!qid_used[qid]) continue;
                    Sqe del{};
                    del.cdw0 = kAdminDeleteSq;
                    del.cdw10 = qid;
                    auto d = admin_cmd(del, "delete I/O submission queue");
                    if (!d && d.error().code() == ETIMEDOUT) break;
                    del.cdw0 = kAdminDeleteCq;
                    (void)admin_cmd(del, "delete I/O completion queue");  // fails for a queue not recreated since the last reset
                }
            }
            regs.write32<kRegCc>(regs.read32<kRegCc>() & ~kCcEnable);
            UDRV_TRY(wait_ready(false));
            admin->reset_rings();
            admin->fail_all(Error(EIO, fmt::format("{}: controller reset ({})", dev.name(), why)));
            admin->epoch_ = epoch.load(std::memory_order_acquire);
            UDRV_TRY(enable());
            const std::uint16_t granted = UDRV_TRY(negotiate_queues());
            if (granted < info.io_queues)
                return fail(EIO, "{}: after reset the controller grants {} I/O queues, {} were in use", dev.name(), granted, info.io_queues);
            if (shadow_db) UDRV_TRY(config_shadow_doorbells());
            return {};
        }();
        failed = !r;
        if (r) dev_info(dev, "controller reset done; I/O queues are recreated by their threads");
        else dev_err(dev, "controller reset failed: {}", r.error().message());
        return r;
    }
};

// ---------------------------------------------------------------------------------------------------
// Queue pairs

QueuePair::QueuePair(std::shared_ptr<ControllerState> ctrl, std::uint16_t qid, std::uint16_t depth, std::uint16_t cq_depth,
                     std::uint32_t nsid, std::uint32_t block_size, block::Mode mode, dma::Coherent<Sqe> sq, dma::Coherent<Cqe> cq,
                     dma::Pool prps)
    : ctrl_(std::move(ctrl)), qid_(qid), depth_(depth), cq_depth_(cq_depth), nsid_(nsid), block_size_(block_size), mode_(mode),
      sq_(std::move(sq)), cq_(std::move(cq)), prps_(std::move(prps)), slots_(depth) {
    timeout_ticks_ = to_ticks(kIoTimeout);
    check_interval_ticks_ = ns_to_ticks(100e6);  // look for timed-out commands every 100 ms at most
    ticks_per_ms_ = std::max<std::uint64_t>(ns_to_ticks(1e6), 1);
    for (std::uint16_t i = depth - 1; i > 0; --i) free_cids_.push_back(i - 1);  // depth-1 ids: the queue is never full
}

// Linux's nvme_dbbuf_need_event: did the controller's event index fall between the old and new value?
bool QueuePair::shadow_needs_mmio(std::size_t index, std::uint16_t value) noexcept {
    ControllerState& s = *ctrl_;
    if (!s.shadow_db || qid_ == 0) return true;
    std::uint32_t& db = (*s.shadow_db)[index];
    auto old = static_cast<std::uint16_t>(db);
    db = value;  // the queue entries were written before this (dma_wmb in the caller)
    dma_mb();    // the shadow value is visible before we read the event index
    auto event = static_cast<std::uint16_t>(dma::read_once((*s.shadow_ei)[index]));
    return static_cast<std::uint16_t>(value - event - 1) < static_cast<std::uint16_t>(value - old);
}

void QueuePair::ring_sq() noexcept {
    dma_wmb();
    if (shadow_needs_mmio(std::size_t{2} * qid_ * (ctrl_->info.doorbell_stride / 4), sq_tail_))
        (void)ctrl_->regs.try_write32(ctrl_->doorbell(qid_, false), sq_tail_);
}

// The CQ head doorbell only frees CQ entries for the controller; it need not follow every poll. A
// polled I/O queue has a CQ larger than its SQ and reports its head only when the entries it consumed
// since the last report (cq_unreported_), plus every command that may still complete, could otherwise
// fill the CQ (see submit): at QD1 one doorbell per ~250 completions instead of one per completion, and
// each doorbell an emulated controller sees is a trap. Interrupt-driven queues report on every poll.
void QueuePair::ring_cq() noexcept {
    cq_unreported_ = 0;
    if (shadow_needs_mmio((std::size_t{2} * qid_ + 1) * (ctrl_->info.doorbell_stride / 4), cq_head_))
        (void)ctrl_->regs.try_write32(ctrl_->doorbell(qid_, true), cq_head_);
}

// Called by the owner thread when the controller was reset since this queue last looked: the rings
// start over empty, the queue is recreated on the controller, and the commands it had outstanding
// fail (their callbacks run; they may resubmit, into the new queue).
Result<void> QueuePair::recover() {
    ControllerState& s = *ctrl_;
    std::lock_guard lock(s.mu);
    const std::uint64_t epoch = s.epoch.load(std::memory_order_acquire);
    // Completions the controller posted before it was reset are real: collect them (the controller is
    // stopped, the ring no longer changes) and report them once the queue exists again.
    std::vector<std::pair<std::uint16_t, std::uint16_t>> posted;  // cid, status field
    for (std::uint16_t head = cq_head_, phase = phase_;;) {
        const Cqe& c = cq_[head];
        const std::uint16_t status = dma::read_once(c.status);
        if ((status & 1) != phase) break;
        dma_rmb();
        if (completion_plausible(c, qid_, depth_, [&](std::uint16_t cid) { return slots_[cid].busy; })) posted.emplace_back(c.cid, status >> 1);
        if (++head == cq_depth_) head = 0, phase ^= 1;
        if (posted.size() > cq_depth_) break;  // a ring full of garbage: stop
    }
    reset_rings();
    if (s.failed || !s.alive) {
        dead_ = true;
        fail_all(Error(ENODEV, fmt::format("{}: controller reset failed: queue {} is gone", s.dev.name(), qid_)));
        return fail(ENODEV, "{}: controller reset failed: queue {} is gone (rebind the controller)", s.dev.name(), qid_);
    }
    if (s.shadow_db) {  // this queue's doorbells start from zero again, as the controller's do
        const std::size_t sq = std::size_t{2} * qid_ * (s.info.doorbell_stride / 4), cq = sq + s.info.doorbell_stride / 4;
        (*s.shadow_db)[sq] = (*s.shadow_db)[cq] = 0;
        (*s.shadow_ei)[sq] = (*s.shadow_ei)[cq] = 0;
    }
    if (auto r = s.create_io_queue(qid_, depth_, cq_depth_, cq_.iova(), sq_.iova(), mode_ != block::Mode::polled); !r) {
        dead_ = true;
        fail_all(r.error());
        return r;
    }
    epoch_ = epoch;
    for (auto [cid, sf] : posted) {
        if (!slots_[cid].busy) continue;  // the device named it twice
        if (sf == 0) complete(cid, {});
        else complete(cid, std::unexpected(Error(status_errno(sf), fmt::format("{}: {}", s.dev.name(), status_name(sf)))));
    }
    fail_all(Error(EIO, fmt::format("{}: the controller was reset before the command completed (resubmit it)", s.dev.name())));
    dev_info(s.dev, "queue {} recreated after the controller reset", qid_);
    return {};
}

void QueuePair::reset_rings() noexcept {
    for (auto& c : cq_.span()) c = Cqe{};  // phase 0 everywhere: nothing posted yet
    sq_tail_ = sq_head_ = cq_head_ = cq_unreported_ = 0;
    phase_ = 1;
    in_poll_ = ring_pending_ = false;
    dead_ = false;
}

// Resets the controller after a fault this queue saw, then brings this queue back.
Result<void> QueuePair::reset_controller(const std::string& why, bool graceful) {
    std::lock_guard lock(ctrl_->mu);
    if (qid_ != 0 && ctrl_->epoch.load(std::memory_order_acquire) != epoch_) return recover();  // another thread just reset it
    auto r = ctrl_->reset(why, graceful);
    if (qid_ == 0) return r;  // the reset rebuilt the admin queue itself
    if (!r) {
        dead_ = true;
        fail_all(r.error());
        return r;
    }
    return recover();
}

Result<std::uint16_t> QueuePair::submit(Sqe& sqe, block::Callback cb, void* ctx, Split* split) {
    if (qid_ != 0 && ctrl_->epoch.load(std::memory_order_acquire) != epoch_) [[unlikely]]
        UDRV_TRY(recover());
    if (dead_) return fail(ENODEV, "{}: queue {} is gone (controller removed or failed)", ctrl_->dev.name(), qid_);
    if (free_cids_.empty()) return fail(EAGAIN, "{}: queue {} is full ({} commands outstanding)", ctrl_->dev.name(), qid_, outstanding_);
    // The controller must always have a free CQ entry for every command it may complete: the entries
    // it has posted or may post (outstanding_, this command included) plus those we consumed without
    // telling it (cq_unreported_) stay below the CQ's size, or we report the head first.
    if (cq_unreported_ && cq_unreported_ + outstanding_ + 1u > cq_depth_ - 1u) ring_cq();
    std::uint16_t cid = free_cids_.back();
    free_cids_.pop_back();
    sqe.cdw0 = (sqe.cdw0 & 0xffff) | static_cast<std::uint32_t>(cid) << 16;
    sq_[sq_tail_] = sqe;
    slots_[cid] = Slot{cb, ctx, split, ticks(), true, false};
    ++outstanding_;
    sq_tail_ = static_cast<std::uint16_t>((sq_tail_ + 1) % depth_);
    if (in_poll_) ring_pending_ = true;  // a callback resubmitting: one doorbell at the end of poll()
    else ring_sq();
    return cid;
}

Result<void> QueuePair::build_prps(Sqe& sqe, std::uint16_t cid, std::uint64_t iova, std::size_t len) {
    sqe.prp1 = iova;
    std::size_t first = kPage - (iova & (kPage - 1));
    if (len <= first) return {};
    std::uint64_t next = iova + first;
    std::size_t rest = len - first;
    if (rest <= kPage) {
        sqe.prp2 = next;
        return {};
    }
    std::size_t pages = (rest + kPage - 1) / kPage;
    if (pages > kPage / 8) return fail(EINVAL, "transfer of {} bytes needs {} PRP entries (max {})", len, pages, kPage / 8);
    dma::PoolBuffer list = prps_.buffer(cid);
    for (std::size_t i = 0; i < pages; ++i) {
        std::uint64_t e = next + i * kPage;
        std::memcpy(list.bytes.data() + i * 8, &e, 8);
    }
    sqe.prp2 = list.iova;
    return {};
}

// The common layout of the NVM commands that address blocks: SLBA in CDW10-11, 0-based NLB in CDW12.
Sqe QueuePair::lba_command(std::uint8_t opcode, std::uint64_t slba, std::uint32_t blocks) const noexcept {
    Sqe sqe{};
    sqe.cdw0 = opcode;
    sqe.nsid = nsid_;
    sqe.cdw10 = static_cast<std::uint32_t>(slba);
    sqe.cdw11 = static_cast<std::uint32_t>(slba >> 32);
    sqe.cdw12 = blocks - 1;
    return sqe;
}

Result<void> QueuePair::rw(std::uint8_t opcode, std::uint64_t lba, std::uint32_t blocks, std::byte* data, std::size_t len,
                           block::Callback cb, void* ctx) {
    const std::uint64_t bytes = std::uint64_t{blocks} * block_size_;
    if (blocks == 0) return fail(EINVAL, "{}: transfer of 0 blocks", ctrl_->dev.name());
    if (len < bytes) return fail(EINVAL, "{}: buffer of {} bytes is smaller than {} blocks of {}", ctrl_->dev.name(), len, blocks, block_size_);
    std::uint64_t iova = UDRV_TRY(iova_of(data, bytes));
    if (iova & 3) return fail(EINVAL, "{}: buffer at bus address {:#x} is not 4-byte aligned, as NVMe's PRPs require", ctrl_->dev.name(), iova);
    const std::uint32_t max_blocks = ctrl_->info.max_transfer / block_size_;
    const std::uint32_t parts = (blocks + max_blocks - 1) / max_blocks;
    if (parts > free_cids_.size())
        return fail(EAGAIN, "{}: queue {} has room for {} commands, the request needs {}", ctrl_->dev.name(), qid_, free_cids_.size(), parts);
    // Above MDTS: several commands, and the callback runs once, when the last of them completes.
    std::unique_ptr<Split> split(parts > 1 ? new Split{parts, std::nullopt, cb, ctx} : nullptr);
    for (std::uint32_t i = 0; i < parts; ++i) {
        std::uint32_t n = std::min(max_blocks, blocks - i * max_blocks);
        std::uint64_t slba = lba + std::uint64_t{i} * max_blocks;
        std::uint64_t off = std::uint64_t{i} * max_blocks * block_size_;
        Sqe sqe = lba_command(opcode, slba, n);
        std::uint16_t cid = free_cids_.back();  // submit() takes exactly this id
        auto r = build_prps(sqe, cid, iova + off, std::size_t{n} * block_size_);
        if (r) {
            if (auto sub = submit(sqe, cb, ctx, split.get())) continue;
            else r = std::unexpected(std::move(sub.error()));
        }
        // Either the call fails and the callback never runs, or the call succeeds and it runs once. The
        // parts already submitted will complete (a controller reset in submit() may have failed them
        // already): while any is outstanding the callback reports this error once they have.
        if (i == 0 || (split->remaining -= parts - i) == 0) return r;
        split->error = r.error();
        break;
    }
    (void)split.release();  // the last part's completion deletes it
    return {};
}

// The bus address of a caller's buffer. A small per-queue cache (by page) in front of the controller's
// registry: the registry's lock and tree walk showed as 4% of a QD1 guest profile. Any change to the
// registry bumps mem_gen, which empties every queue's cache.
Result<std::uint64_t> QueuePair::iova_of(const std::byte* data, std::size_t len) {
    const std::uintptr_t addr = dma::address_of(data);
    const std::uint64_t gen = ctrl_->mem_gen.load(std::memory_order_acquire);
    MemCacheEntry& e = mem_cache_[(addr >> 12) % mem_cache_.size()];
    if (e.gen != gen || !holds(e.base, e.size, addr, len)) {
        auto [base, size, iova] = UDRV_TRY(ctrl_->find_mem(data, len));
        e = MemCacheEntry{gen, base, size, iova};  // gen read before the lookup: a change since makes it stale
    }
    return e.iova + (addr - e.base);
}

Result<void> QueuePair::read(std::uint64_t lba, std::uint32_t blocks, std::span<std::byte> buf, block::Callback cb, void* ctx) {
    return rw(kIoRead, lba, blocks, buf.data(), buf.size(), cb, ctx);
}

Result<void> QueuePair::write(std::uint64_t lba, std::uint32_t blocks, std::span<const std::byte> buf, block::Callback cb, void* ctx) {
    // The device only reads this memory; the PRPs need its bus address, not write access.
    return rw(kIoWrite, lba, blocks, const_cast<std::byte*>(buf.data()), buf.size(), cb, ctx);
}

Result<void> QueuePair::flush(block::Callback cb, void* ctx) {
    Sqe sqe{};
    sqe.cdw0 = kIoFlush;
    sqe.nsid = nsid_;
    UDRV_TRY(submit(sqe, cb, ctx, nullptr));
    return {};
}

Result<void> QueuePair::write_zeroes(std::uint64_t lba, std::uint32_t blocks, block::Callback cb, void* ctx) {
    if (!(ctrl_->info.oncs & 0x8)) return fail(ENOTSUP, "{}: the controller does not support Write Zeroes", ctrl_->dev.name());
    if (blocks == 0 || blocks > 65536) return fail(EINVAL, "{}: Write Zeroes of {} blocks (1-65536)", ctrl_->dev.name(), blocks);
    Sqe sqe = lba_command(kIoWriteZeroes, lba, blocks);
    UDRV_TRY(submit(sqe, cb, ctx, nullptr));
    return {};
}

Result<void> QueuePair::deallocate(std::uint64_t lba, std::uint32_t blocks, block::Callback cb, void* ctx) {
    if (!(ctrl_->info.oncs & 0x4)) return fail(ENOTSUP, "{}: the controller does not support Dataset Management", ctrl_->dev.name());
    if (blocks == 0 || free_cids_.empty()) return fail(blocks ? EAGAIN : EINVAL, "{}: cannot deallocate {} blocks now", ctrl_->dev.name(), blocks);
    // One range (context attributes, length, starting LBA) in this command's PRP page.
    std::uint16_t cid = free_cids_.back();
    dma::PoolBuffer page = prps_.buffer(cid);
    std::uint32_t attrs = 0;
    std::memcpy(page.bytes.data(), &attrs, 4);
    std::memcpy(page.bytes.data() + 4, &blocks, 4);
    std::memcpy(page.bytes.data() + 8, &lba, 8);
    Sqe sqe{};
    sqe.cdw0 = kIoDsm;
    sqe.nsid = nsid_;
    sqe.prp1 = page.iova;
    sqe.cdw10 = 0;       // one range
    sqe.cdw11 = 1u << 2; // AD: deallocate
    UDRV_TRY(submit(sqe, cb, ctx, nullptr));
    return {};
}

void QueuePair::complete(std::uint16_t cid, const Result<void>& status) {
    Slot s = slots_[cid];
    slots_[cid] = Slot{};
    free_cids_.push_back(cid);
    --outstanding_;
    if (Split* sp = s.split) {
        if (!status && !sp->error) sp->error = status.error();
        if (--sp->remaining == 0) {
            Result<void> r = sp->error ? Result<void>(std::unexpected(*sp->error)) : Result<void>();
            block::Callback cb = sp->cb;
            void* ctx = sp->ctx;
            delete sp;
            if (cb) cb(ctx, r);
        }
    } else if (s.cb) {
        s.cb(s.ctx, status);
    }
}

void QueuePair::fail_all(const Error& why) {
    for (std::uint16_t cid = 0; cid < depth_; ++cid)
        if (slots_[cid].busy) complete(cid, std::unexpected(why));
}

Result<unsigned> QueuePair::poll() {
    if (qid_ != 0 && ctrl_->epoch.load(std::memory_order_acquire) != epoch_) [[unlikely]]
        UDRV_TRY(recover());
    if (dead_) return fail(ENODEV, "{}: queue {} is gone (controller removed or failed)", ctrl_->dev.name(), qid_);
    unsigned n = 0;
    in_poll_ = true;
    // At most one queue's worth per call: callbacks resubmit, and a controller that completes as fast
    // as it is fed would otherwise keep the caller here for ever.
    for (; n < depth_;) {
        const Cqe& slot = cq_[cq_head_];
        std::uint16_t status = dma::read_once(slot.status);
        if ((status & 1) != phase_) break;
        dma_rmb();  // the rest of the entry is read after its phase bit
        Cqe c = slot;
        cq_head_ = static_cast<std::uint16_t>(cq_head_ + 1);
        ++cq_unreported_;  // before complete(): a callback that submits sees this entry as not yet free
        if (cq_head_ == cq_depth_) {
            cq_head_ = 0;
            phase_ ^= 1;
        }
        // The device's word: a completion for a command we did not submit means the controller (or its
        // memory view) is broken. Fail everything rather than complete the wrong request.
        if (!completion_plausible(c, qid_, depth_, [&](std::uint16_t cid) { return slots_[cid].busy; })) {
            Error e(EPROTO, fmt::format("{}: queue {} got an invalid completion (cid {}, sq {}, sq head {}): failing all commands",
                                        ctrl_->dev.name(), qid_, c.cid, c.sq_id, c.sq_head));
            dead_ = true;
            in_poll_ = ring_pending_ = false;
            fail_all(e);
            return std::unexpected(e);
        }
        sq_head_ = c.sq_head;
        last_result_ = c.result;
        const std::uint16_t sf = status >> 1;
        if (sf == 0) complete(c.cid, {});
        else complete(c.cid, std::unexpected(Error(status_errno(sf), fmt::format("{}: {}", ctrl_->dev.name(), status_name(sf)))));
        ++n;
    }
    in_poll_ = false;
    if (ring_pending_) {  // new work first: the controller starts on it while we report the CQ head
        ring_pending_ = false;
        ring_sq();
    }
    if (n && (cq_depth_ == depth_ || mode_ != block::Mode::polled)) ring_cq();
    // Timeouts are looked for every kPollsPerClockRead empty polls (the clock was 13% of a polling vCPU's
    // time in a host profile of QD1 reads when read on every poll, 3% of a guest profile at every 64th).
    if (!n && outstanding_ && ++empty_polls_ % kPollsPerClockRead == 0) UDRV_TRY(check_timeouts());
    return n;
}

Result<void> QueuePair::check_timeouts() {
    const std::uint64_t now = ticks();  // not clock_gettime: this runs on every empty poll
    if (now - last_timeout_check_ < check_interval_ticks_) return {};
    last_timeout_check_ = now;
    if (ctrl_->regs.read32<kRegCsts>() & kCstsFatal) return reset_controller("controller fatal status (CSTS.CFS)", false);
    for (std::uint16_t cid = 0; cid < depth_; ++cid) {
        Slot& s = slots_[cid];
        if (!s.busy || now - s.submitted < timeout_ticks_) continue;
        if (!s.abort_sent && qid_ != 0) {
            // First step: ask the controller to abort it (NVMe Abort, on the admin queue).
            s.abort_sent = true;
            s.submitted = now;
            Sqe abort{};
            abort.cdw0 = kAdminAbort;
            abort.cdw10 = qid_ | static_cast<std::uint32_t>(cid) << 16;
            std::lock_guard lock(ctrl_->mu);
            auto r = ctrl_->admin_cmd(abort, "abort of a timed-out command");
            dev_warn(ctrl_->dev, "queue {} command {} timed out; abort {}", qid_, cid, r ? "sent" : r.error().message());
            continue;
        }
        // The abort did not help: the command fails, and a controller reset brings the queues back
        // (their other outstanding commands fail too, and may be resubmitted).
        complete(cid, std::unexpected(Error(ETIMEDOUT, fmt::format("{}: command timed out and could not be aborted", ctrl_->dev.name()))));
        return reset_controller(fmt::format("queue {} command {} timed out and the abort did not help", qid_, cid), true);
    }
    return {};
}

Result<unsigned> QueuePair::wait(std::chrono::milliseconds timeout) {
    unsigned n = UDRV_TRY(poll());
    if (n || outstanding_ == 0) return n;
    switch (mode_) {
        case block::Mode::polled: {
            // The TSC only, read every kPollsPerClockRead polls as in poll(): clock_gettime is a system
            // call and an HPET read in a TCG guest, and the HPET read takes QEMU's big lock, which its
            // main loop holds while it processes the command just submitted.
            const std::uint64_t ms = static_cast<std::uint64_t>(std::max<std::chrono::milliseconds::rep>(timeout.count(), 0));
            const std::uint64_t now = ticks(), span = ms > (UINT64_MAX - now) / ticks_per_ms_ ? UINT64_MAX - now : ms * ticks_per_ms_;
            const std::uint64_t end = now + span;
            for (unsigned i = 1;; ++i) {
                if ((n = UDRV_TRY(poll()))) return n;
                if (i % kPollsPerClockRead == 0 && ticks() >= end) return 0;
            }
        }
        case block::Mode::interrupt: {
            const auto deadline = clock::now() + timeout;
            while (clock::now() < deadline) {
                auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
                auto r = vector_->wait(std::max(left, std::chrono::milliseconds(1)));
                if (!r && r.error().code() != ETIMEDOUT) return std::unexpected(r.error());
                if ((n = UDRV_TRY(poll()))) return n;
            }
            return 0;
        }
        case block::Mode::hybrid: {
            Result<unsigned> got = 0u;
            auto r = hybrid_->wait([&] {
                got = poll();
                return !got || *got > 0;
            }, timeout);
            if (!got) return got;
            if (!r && r.error().code() != ETIMEDOUT) return std::unexpected(r.error());
            return *got;
        }
    }
    return n;
}

QueuePair::~QueuePair() {
    if (qid_ == 0) return;  // the admin queue goes with the controller
    std::lock_guard lock(ctrl_->mu);
    std::erase(ctrl_->io_queues, this);
    if (ctrl_->alive && !dead_ && epoch_ == ctrl_->epoch.load(std::memory_order_acquire)) {
        // Let in-flight commands finish (bounded), then delete the SQ before its CQ, as the spec requires.
        auto deadline = clock::now() + std::chrono::seconds(5);
        while (outstanding_ && clock::now() < deadline)
            if (!poll()) break;
        fail_all(Error(ECANCELED, "queue deleted with the command outstanding"));
        Sqe del{};
        del.cdw0 = kAdminDeleteSq;
        del.cdw10 = qid_;
        if (auto r = ctrl_->admin_cmd(del, "delete I/O submission queue"); !r) dev_warn(ctrl_->dev, "{}", r.error().message());
        del.cdw0 = kAdminDeleteCq;
        if (auto r = ctrl_->admin_cmd(del, "delete I/O completion queue"); !r) dev_warn(ctrl_->dev, "{}", r.error().message());
    } else {  // gone with the controller, or with a reset (then it no longer exists on the controller)
        fail_all(Error(ENODEV, "queue deleted after the controller went away or was reset"));
    }
    if (qid_ < ctrl_->qid_used.size()) ctrl_->qid_used[qid_] = false;
}

// ---------------------------------------------------------------------------------------------------
// Controller bring-up (NVMe 1.4, 7.6.1)

Result<std::unique_ptr<Controller>> Controller::probe(Bound<pci::Device>& dev, const pci::DeviceId&) {
    Mmio<kBarMin> regs = UDRV_TRY(dev.map_bar<kBarMin>(0));
    UDRV_TRY(dev.enable_bus_master());
    auto state = std::make_shared<ControllerState>(dev.device(), regs, UDRV_TRY(dev.dma()));
    ControllerInfo& info = state->info;

    // 1. Capabilities.
    const std::uint64_t cap = regs.read64<kRegCap>();
    if (cap == ~0ull) return fail(ENODEV, "{}: registers read all ones: device gone", dev->name());
    info.max_queue_entries = static_cast<std::uint16_t>(std::min<std::uint64_t>((cap & 0xffff) + 1, 4096));
    info.timeout_ms = static_cast<std::uint32_t>((cap >> 24) & 0xff) * 500;
    info.doorbell_stride = 4u << ((cap >> 32) & 0xf);
    info.version = regs.read32<kRegVs>();
    if (!((cap >> 37) & 1)) return fail(ENOTSUP, "{}: controller does not support the NVM command set (CAP.CSS)", dev->name());
    if (((cap >> 48) & 0xf) != 0) return fail(ENOTSUP, "{}: controller's minimum page size is above 4 KiB (CAP.MPSMIN)", dev->name());
    if (info.max_queue_entries < 2) return fail(EPROTO, "{}: CAP.MQES allows no usable queue", dev->name());
    // Every doorbell write goes through the window's bounds check: a doorbell beyond it would be lost
    // silently, and a shadow doorbell beyond the shadow page would be written out of bounds.
    if (io_queues_in_window(info.doorbell_stride, kBarMin) < 1)
        return fail(ENOTSUP, "{}: doorbell stride of {} bytes (CAP.DSTRD) leaves no I/O queue's doorbells within the {}-byte register window",
                    dev->name(), info.doorbell_stride, kBarMin);
    if (const int fit = io_queues_in_window(info.doorbell_stride, kBarMin); fit < kWantedIoQueues)
        dev_info(dev.device(), "doorbell stride of {} bytes: at most {} I/O queues", info.doorbell_stride, fit);

    // 2. Disable, so the admin queue can be set up.
    if (regs.read32<kRegCc>() & kCcEnable) regs.write32<kRegCc>(regs.read32<kRegCc>() & ~kCcEnable);
    UDRV_TRY(state->wait_ready(false));

    // 3. Admin queue.
    const std::uint16_t adepth = std::min(kAdminDepth, info.max_queue_entries);
    auto asq = UDRV_TRY(state->dma.coherent<Sqe>(adepth));
    auto acq = UDRV_TRY(state->dma.coherent<Cqe>(adepth));
    auto aprps = UDRV_TRY(state->dma.pool(kPage, adepth));
    state->admin.reset(
        new QueuePair(state, 0, adepth, adepth, 0, 512, block::Mode::polled, std::move(asq), std::move(acq), std::move(aprps)));

    // 4. Enable: admin queue registers (AQA/ASQ/ACQ), then 4 KiB pages, NVM command set, 64-byte SQEs and
    //    16-byte CQEs; admin interrupts masked (we poll).
    UDRV_TRY(state->enable());

    // 5. Interrupt vectors: one per I/O queue (vector = queue id; vector 0 unused by the polled admin queue).
    auto vectors = dev.alloc_irq_vectors(irq::IrqKind::msix, kWantedIoQueues + 1);
    if (!vectors) vectors = dev.alloc_irq_vectors_any(1);
    if (vectors) state->vectors.emplace(std::move(*vectors));
    else dev_warn(dev.device(), "no interrupts ({}): queues can only be polled", vectors.error().message());

    std::unique_ptr<Controller> c(new Controller(state));
    {
        std::lock_guard lock(state->mu);
        UDRV_TRY(c->identify_all());
    }
    dev_info(dev.device(), "{} (serial {}, firmware {}), NVMe {}.{}, {} namespace(s), {} I/O queues, {} KiB per command{}",
             info.model, info.serial, info.firmware, info.version >> 16, (info.version >> 8) & 0xff, c->namespaces_.size(), info.io_queues,
             info.max_transfer / 1024, info.shadow_doorbells ? ", shadow doorbells" : "");
    return c;
}

Result<void> Controller::identify_all() {
    ControllerState& s = *s_;
    ControllerInfo& info = s.info;
    auto id = UDRV_TRY(identify(kCnsController, 0));
    UDRV_TRY_CTX(parse_identify_controller(id, info, kMaxTransfer), "{}", s.dev.name());

    // Number of queues: ask for kWantedIoQueues pairs; the answer is what we may use.
    info.io_queues = UDRV_TRY(s.negotiate_queues());
    s.qid_used.assign(info.io_queues + 1u, false);
    s.qid_used[0] = true;

    // Shadow doorbells, when the controller offers them (emulated controllers do; real SSDs rarely).
    if (info.oacs & kOacsDoorbellBuffer) {
        auto dbs = s.dma.coherent<std::uint32_t>(kShadowBufferBytes / 4);
        auto eis = s.dma.coherent<std::uint32_t>(kShadowBufferBytes / 4);
        if (dbs && eis) {
            s.shadow_db.emplace(std::move(*dbs));
            s.shadow_ei.emplace(std::move(*eis));
            if (auto r = s.config_shadow_doorbells(); r) {
                info.shadow_doorbells = true;
            } else {
                dev_warn(s.dev, "{}: using MMIO doorbells only", r.error().message());
                s.shadow_db.reset();
                s.shadow_ei.reset();
            }
        }
    }

    // Active namespaces, then each one.
    auto list = UDRV_TRY(identify(kCnsActiveNsList, 0));
    for (std::size_t i = 0; i < 1024; ++i) {
        std::uint32_t nsid;
        std::memcpy(&nsid, list.data() + i * 4, sizeof nsid);
        if (nsid == 0) break;
        if (info.namespaces && nsid > info.namespaces) {
            dev_warn(s.dev, "active namespace list names {} beyond NN={}: ignored", nsid, info.namespaces);
            continue;
        }
        auto nsd = UDRV_TRY(identify(kCnsNamespace, nsid));
        auto parsed = parse_identify_namespace(nsid, nsd, info.max_transfer);
        if (!parsed) {  // one bad namespace does not cost the others
            dev_warn(s.dev, "{}: ignored", parsed.error().message());
            continue;
        }
        NamespaceInfo ns = std::move(*parsed);
        block::Info bi;
        bi.name = fmt::format("{}/ns{}", s.dev.name(), nsid);
        bi.block_size = ns.block_size();
        bi.blocks = ns.size;
        bi.max_transfer = info.max_transfer;
        bi.splits = true;
        bi.max_queue_depth = info.max_queue_entries - 1u;  // one SQ slot stays empty (full != empty)
        bi.write_zeroes = info.oncs & 0x8;
        bi.deallocate = info.oncs & 0x4;
        bi.volatile_cache = info.vwc & 1;
        namespaces_.push_back(std::unique_ptr<Namespace>(new Namespace(*this, std::move(ns), std::move(bi))));
    }
    return {};
}

Result<std::vector<std::byte>> Controller::identify(std::uint32_t cns, std::uint32_t nsid) {
    auto buf = UDRV_TRY(s_->dma.region(kPage));
    Sqe sqe{};
    sqe.cdw0 = kAdminIdentify;
    sqe.nsid = nsid;
    sqe.prp1 = buf.iova();
    sqe.cdw10 = cns;
    UDRV_TRY(s_->admin_cmd(sqe, cns == kCnsController ? "identify controller" : cns == kCnsNamespace ? "identify namespace" : "identify"));
    auto b = buf.bytes();
    return std::vector<std::byte>(b.begin(), b.begin() + kPage);
}

const ControllerInfo& Controller::info() const noexcept { return s_->info; }

Result<void> Controller::reset() {
    std::lock_guard lock(s_->mu);
    if (!s_->alive) return fail(ENODEV, "{}: controller is being removed", s_->dev.name());
    return s_->reset("requested", true);
}

unsigned Controller::resets() const noexcept {
    std::lock_guard lock(s_->mu);
    return s_->resets;
}

Result<Namespace*> Controller::find_namespace(std::uint32_t nsid) const {
    for (auto& n : namespaces_)
        if (n->nvme_info().nsid == nsid) return n.get();
    return fail(ENOENT, "{}: no active namespace {}", s_->dev.name(), nsid);
}

Result<std::unique_ptr<QueuePair>> Controller::create_queue_pair(std::uint32_t nsid, unsigned depth, block::Mode mode) {
    Namespace* ns = UDRV_TRY(find_namespace(nsid));
    ControllerState& s = *s_;
    std::lock_guard lock(s.mu);
    if (!s.alive) return fail(ENODEV, "{}: controller is being removed", s.dev.name());
    std::uint16_t qid = 0;
    for (std::uint16_t q = 1; q < s.qid_used.size(); ++q)
        if (!s.qid_used[q]) {
            qid = q;
            break;
        }
    if (!qid) return fail(EBUSY, "{}: all {} I/O queues are in use", s.dev.name(), s.info.io_queues);
    if (mode != block::Mode::polled && (!s.vectors || s.vectors->kind() != irq::IrqKind::msix || qid >= s.vectors->size()))
        return fail(ENOTSUP, "{}: no MSI-X vector for queue {}: use polled mode", s.dev.name(), qid);
    if (depth == 0 || depth > s.info.max_queue_entries - 1u)
        return fail(EINVAL, "{}: queue depth {}: the controller allows at most {} commands per queue (CAP.MQES)", s.dev.name(), depth,
                    s.info.max_queue_entries - 1u);
    const auto qdepth = static_cast<std::uint16_t>(depth + 1);
    // A polled queue's CQ is larger than its SQ (4x, at least a page of entries) so that its head
    // doorbell can wait (see QueuePair::ring_cq).
    const unsigned cq_wanted = std::max<unsigned>(4u * qdepth, kPage / sizeof(Cqe));
    const std::uint16_t cq_depth =
        mode == block::Mode::polled ? static_cast<std::uint16_t>(std::clamp<unsigned>(cq_wanted, qdepth, s.info.max_queue_entries)) : qdepth;
    auto sq = UDRV_TRY(s.dma.coherent<Sqe>(qdepth));
    auto cq = UDRV_TRY(s.dma.coherent<Cqe>(cq_depth));
    auto prps = UDRV_TRY(s.dma.pool(kPage, qdepth));
    UDRV_TRY(s.create_io_queue(qid, qdepth, cq_depth, cq.iova(), sq.iova(), mode != block::Mode::polled));
    std::unique_ptr<QueuePair> qp(new QueuePair(s_, qid, qdepth, cq_depth, nsid, ns->info().block_size, mode, std::move(sq), std::move(cq),
                                                std::move(prps)));
    qp->epoch_ = s.epoch.load(std::memory_order_acquire);
    if (mode != block::Mode::polled) qp->vector_ = &(*s.vectors)[qid];
    if (mode == block::Mode::hybrid) qp->hybrid_ = std::make_unique<irq::HybridWaiter>(*qp->vector_);
    s.qid_used[qid] = true;
    s.io_queues.push_back(qp.get());
    return qp;
}

Result<block::Buffer> Controller::alloc_buffer(std::size_t bytes) {
    auto region = std::make_shared<dma::Region>(UDRV_TRY(s_->dma.region(bytes)));
    const std::uintptr_t start = dma::address_of(region->bytes().data());
    {
        std::unique_lock lock(s_->mem_mu);
        s_->mem[start] = {region->size(), region->iova()};
        s_->mem_gen.fetch_add(1, std::memory_order_release);
    }
    std::weak_ptr<ControllerState> weak = s_;
    std::shared_ptr<void> owner(nullptr, [region, weak, start](void*) {
        if (auto s = weak.lock()) {
            std::unique_lock lock(s->mem_mu);
            s->mem.erase(start);
            s->mem_gen.fetch_add(1, std::memory_order_release);
        }
    });
    return block::Buffer(region->bytes().first(bytes), std::move(owner));
}

Result<void> Controller::register_memory(std::span<std::byte> memory) {
    auto m = std::make_shared<dma::Streaming>(UDRV_TRY(s_->dma.streaming(memory)));
    std::unique_lock lock(s_->mem_mu);
    s_->mem[dma::address_of(memory.data())] = {memory.size(), m->iova()};
    s_->mem_gen.fetch_add(1, std::memory_order_release);
    streaming_.push_back(std::move(m));
    return {};
}

void Controller::unregister_memory(std::span<std::byte> memory) {
    std::unique_lock lock(s_->mem_mu);
    const std::uintptr_t key = dma::address_of(memory.data());
    auto it = s_->mem.find(key);
    if (it == s_->mem.end()) return;
    std::erase_if(streaming_, [&](auto& m) { return m->iova() == it->second.iova; });
    s_->mem.erase(it);
    s_->mem_gen.fetch_add(1, std::memory_order_release);
}

Controller::~Controller() {
    ControllerState& s = *s_;
    std::lock_guard lock(s.mu);
    // Outstanding I/O completes (bounded wait) or fails; queues are deleted; then a normal shutdown so
    // that the controller flushes its volatile cache: acknowledged writes are on the medium.
    for (QueuePair* q : std::vector<QueuePair*>(s.io_queues)) {
        if (q->epoch_ != s.epoch.load(std::memory_order_acquire)) {  // reset, not yet recreated: nothing on the controller
            q->fail_all(Error(ECANCELED, fmt::format("{}: controller removed after a reset, with the command outstanding", s.dev.name())));
            q->dead_ = true;
            continue;
        }
        auto deadline = clock::now() + std::chrono::seconds(5);
        while (q->outstanding_ && !q->dead_ && clock::now() < deadline)
            if (!q->poll()) break;
        q->fail_all(Error(ECANCELED, fmt::format("{}: controller removed with the command outstanding", s.dev.name())));
        Sqe del{};
        del.cdw0 = kAdminDeleteSq;
        del.cdw10 = q->qid_;
        (void)s.admin_cmd(del, "delete I/O submission queue");
        del.cdw0 = kAdminDeleteCq;
        (void)s.admin_cmd(del, "delete I/O completion queue");
        q->dead_ = true;
    }
    s.alive = false;
    s.regs.write32<kRegCc>((s.regs.read32<kRegCc>() & ~kCcShnMask) | kCcShnNormal);
    auto deadline = clock::now() + std::chrono::milliseconds(std::max<std::uint32_t>(s.info.timeout_ms, 1000));
    while ((s.regs.read32<kRegCsts>() & kCstsShstMask) != kCstsShstDone && clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    bool clean = (s.regs.read32<kRegCsts>() & kCstsShstMask) == kCstsShstDone;
    if (!clean) dev_warn(s.dev, "shutdown did not complete within CAP.TO");
    else dev_info(s.dev, "shut down cleanly");
    s.regs.write32<kRegCc>(s.regs.read32<kRegCc>() & ~kCcEnable);
    s.vectors.reset();
    namespaces_.clear();
    streaming_.clear();
    s.admin.reset();  // it holds the state too: break the cycle
}

Result<std::unique_ptr<block::Queue>> Namespace::open_queue(unsigned depth, block::Mode mode) {
    auto q = UDRV_TRY(ctrl_.create_queue_pair(ns_.nsid, depth, mode));
    return std::unique_ptr<block::Queue>(std::move(q));
}

Result<block::Buffer> Namespace::alloc_buffer(std::size_t bytes) { return ctrl_.alloc_buffer(bytes); }

}  // namespace udrv::nvme
