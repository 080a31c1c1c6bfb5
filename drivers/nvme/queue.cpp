// The queue pair: submission, completion, the I/O commands. Every entry point takes an RCU read lock
// and looks at the queue's state first; everything else on the path is the owner thread's alone.
#include "queue.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <thread>

#include "controller.hpp"
#include "udrv/log.hpp"
#include "udrv/rcu.hpp"
#include "udrv/ticks.hpp"

namespace udrv::nvme {
namespace {

constexpr std::size_t kPage = 4096;
// Polling loops read the clock (timeouts, wait deadlines) once per this many empty polls: under TCG
// reading the TSC is a call into the emulator.
constexpr unsigned kPollsPerClockRead = 256;

bool holds(std::uintptr_t base, std::size_t size, std::uintptr_t addr, std::size_t len) {
    return addr >= base && addr - base <= size && len <= size - (addr - base);
}

Error status_error(const std::string& dev, std::uint16_t sf) {
    return Error(status_errno(sf), fmt::format("{}: {}", dev, status_name(sf)));
}

}  // namespace

std::string_view queue_state_name(QueueState s) noexcept {
    switch (s) {
        case QueueState::active: return "active";
        case QueueState::frozen: return "frozen";
        case QueueState::recovered: return "recovered";
        case QueueState::removed: return "removed";
        case QueueState::broken: return "broken";
    }
    return "?";
}

// A request larger than one command: its callback runs once, when the last part completes.
struct Split {
    unsigned remaining;
    std::optional<Error> error;
    block::Callback cb;
    void* ctx;
};

// block_size is a power of two (parse_identify_namespace takes it from LBADS) no larger than MDTS,
// which the controller reads once, at probe (the admin queue is made before: it moves no blocks).
QueuePair::QueuePair(std::shared_ptr<ControllerCore> core, std::uint16_t qid, QueueDoorbells doorbells, std::uint16_t depth,
                     std::uint16_t cq_depth, std::uint32_t nsid, std::uint32_t block_size, block::Mode mode, dma::Coherent<Sqe> sq,
                     dma::Coherent<Cqe> cq, dma::Pool prps)
    : core_(std::move(core)), qid_(qid), depth_(depth), cq_depth_(cq_depth), doorbells_(doorbells), nsid_(nsid), block_size_(block_size),
      block_shift_(static_cast<unsigned>(std::countr_zero(block_size))), max_blocks_(core_->max_transfer >> block_shift_), mode_(mode),
      sq_(std::move(sq)), cq_(std::move(cq)), prps_(std::move(prps)), slots_(depth) {
    check_interval_ticks_ = ns_to_ticks(100e6);  // look for timed-out commands every 100 ms at most
    ticks_per_ms_ = std::max<std::uint64_t>(ns_to_ticks(1e6), 1);
    for (std::uint16_t i = depth - 1; i > 0; --i) free_cids_.push_back(i - 1);  // depth-1 ids: the queue is never full
}

// ---------------------------------------------------------------------------------------------------
// The owner: state

Result<void> QueuePair::not_active(QueueState s) {
    switch (s) {
        case QueueState::active: return {};
        case QueueState::frozen:
            if (core_->removing.load(std::memory_order_acquire))
                return fail(ENODEV, "{}: queue {} is going away: the controller is being removed", core_->name, qid_);
            return fail(EAGAIN, "{}: queue {} is being reset by the controller: try again (wait() returns when it is back)", core_->name, qid_);
        case QueueState::recovered:
            report_recovered(s);
            return {};
        case QueueState::removed:
            if (outstanding_) report_recovered(s);
            return fail(ENODEV, "{}: queue {} is gone: the controller was removed (or its reset failed)", core_->name, qid_);
        case QueueState::broken:
            return fail(EPROTO, "{}: queue {} stopped after the controller posted an invalid completion: the controller is being reset, "
                        "try again", core_->name, qid_);
    }
    return {};
}

// The outcome of a reset or removal, reported on the owner's thread: completions the controller
// managed to post with their status, then everything else that was in flight with the reason.
void QueuePair::report_recovered(QueueState was) {
    auto posted = std::move(posted_);
    posted_.clear();
    in_poll_ = true;  // callbacks that resubmit ring once, below
    for (const Posted& p : posted) {
        if (p.cid >= depth_ || !slots_[p.cid].busy) continue;
        if (p.status && slots_[p.cid].timeout_stage >= 2)  // what the reset did to it matters less than why
            complete(p.cid, std::unexpected(Error(ETIMEDOUT, fmt::format("{}: command timed out and the abort did not help; the "
                                                                         "controller was reset ({})", core_->name, status_name(p.status)))));
        else if (p.status)  // aborted by the queue's deletion, typically: say why it was deleted
            complete(p.cid, std::unexpected(Error(status_errno(p.status), fmt::format("{}: the controller was {} before the command completed: {}",
                                                                                   core_->name, was == QueueState::removed ? "removed" : "reset (resubmit it)",
                                                                                   status_name(p.status)))));
        else
            complete(p.cid, {});
    }
    for (std::uint16_t cid = 0; cid < depth_ && outstanding_; ++cid) {
        if (!slots_[cid].busy) continue;
        if (was == QueueState::removed)
            complete(cid, std::unexpected(Error(ENODEV, fmt::format("{}: the controller was removed with the command outstanding", core_->name))));
        else if (slots_[cid].timeout_stage >= 2)
            complete(cid, std::unexpected(Error(ETIMEDOUT, fmt::format("{}: command timed out and could not be aborted", core_->name))));
        else
            complete(cid, std::unexpected(Error(EIO, fmt::format("{}: the controller was reset before the command completed (resubmit it)",
                                                                 core_->name))));
    }
    if (was == QueueState::recovered) {
        QueueState expect = QueueState::recovered;
        state_.compare_exchange_strong(expect, QueueState::active, std::memory_order_acq_rel);
    }
    in_poll_ = false;
    if (ring_pending_ && state_.load(std::memory_order_acquire) == QueueState::active) {
        ring_pending_ = false;
        ring_sq();
    }
}

// ---------------------------------------------------------------------------------------------------
// The owner: doorbells

// Linux's nvme_dbbuf_need_event: did the controller's event index fall between the old and new value?
bool QueuePair::shadow_needs_mmio(std::size_t index, std::uint16_t value) noexcept {
    ControllerCore& c = *core_;
    if (!c.shadow_db || qid_ == 0) return true;
    std::uint32_t& db = (*c.shadow_db)[index];
    auto old = static_cast<std::uint16_t>(db);
    db = value;  // the queue entries were written before this (dma_wmb in the caller)
    dma_mb();    // the shadow value is visible before we read the event index
    auto event = static_cast<std::uint16_t>(dma::read_once((*c.shadow_ei)[index]));
    return static_cast<std::uint16_t>(value - event - 1) < static_cast<std::uint16_t>(value - old);
}

[[gnu::always_inline]] inline void QueuePair::ring_sq() noexcept {
    dma_wmb();
    if (shadow_needs_mmio(doorbells_.sq_shadow, sq_tail_)) core_->regs.write(doorbells_.sq, std::uint32_t{sq_tail_});
}

// The CQ head doorbell only frees CQ entries for the controller; it need not follow every poll. A
// polled I/O queue has a CQ larger than its SQ and reports its head only when the entries it consumed
// since the last report (cq_unreported_), plus every command that may still complete, could otherwise
// fill the CQ (see submit): at QD1 one doorbell per ~250 completions instead of one per completion, and
// each doorbell an emulated controller sees is a trap. Interrupt-driven queues report on every poll.
void QueuePair::ring_cq() noexcept {
    cq_unreported_ = 0;
    if (shadow_needs_mmio(doorbells_.cq_shadow, cq_head_)) core_->regs.write(doorbells_.cq, std::uint32_t{cq_head_});
}

// ---------------------------------------------------------------------------------------------------
// The owner: submission

Result<std::uint16_t> QueuePair::queue_full() const {
    return fail(EAGAIN, "{}: queue {} is full ({} commands outstanding)", core_->name, qid_, outstanding_);
}

Result<std::uint16_t> QueuePair::submit(const Sqe& sqe, block::Callback cb, void* ctx, Split* split) {
    if (free_cids_.empty()) [[unlikely]]
        return queue_full();
    return push(sqe, cb, ctx, split);
}

// Inlined into the I/O paths: the command goes into the ring once, with its id.
[[gnu::always_inline]] inline std::uint16_t QueuePair::push(const Sqe& sqe, block::Callback cb, void* ctx, Split* split) noexcept {
    // The controller must always have a free CQ entry for every command it may complete: the entries
    // it has posted or may post (outstanding_, this command included) plus those we consumed without
    // telling it (cq_unreported_) stay below the CQ's size, or we report the head first. (With none
    // unreported that always holds: outstanding_ < depth_ <= cq_depth_.)
    if (cq_unreported_ + outstanding_ + 1u > cq_depth_ - 1u) ring_cq();
    const std::uint16_t cid = free_cids_.back();
    free_cids_.pop_back();
    Sqe& entry = sq_[sq_tail_];  // the controller reads it only after the doorbell
    entry = sqe;
    entry.cdw0 = (sqe.cdw0 & 0xffff) | static_cast<std::uint32_t>(cid) << 16;
    slots_[cid] = Slot{cb, ctx, split, ticks(), 0, true};
    ++outstanding_;
    if (++sq_tail_ == depth_) sq_tail_ = 0;
    if (in_poll_ || batch_depth_) ring_pending_ = true;  // one doorbell at the end of poll() or of the batch
    else ring_sq();
    return cid;
}

// The batch's commands are in the ring: one doorbell for all. Inside a callback poll() rings at its end;
// on a queue that is not active the reset or removal owns the rings (and forgets what was pending).
void QueuePair::end_batch() noexcept {
    if (batch_depth_ == 0 || --batch_depth_ > 0 || in_poll_) return;
    rcu::ReadLock lock;
    if (state_.load(std::memory_order_acquire) != QueueState::active || !ring_pending_) return;
    ring_pending_ = false;
    ring_sq();
}

// PRP1 and, for a transfer that crosses one page boundary, PRP2; a list page beyond that.
[[gnu::always_inline]] inline Result<void> QueuePair::build_prps(Sqe& sqe, std::uint16_t cid, std::uint64_t iova, std::size_t len) {
    sqe.prp1 = iova;
    const std::size_t first = kPage - (iova & (kPage - 1));
    if (len <= first) return {};
    if (len - first <= kPage) {
        sqe.prp2 = iova + first;
        return {};
    }
    return build_prp_list(sqe, cid, iova + first, len - first);
}

Result<void> QueuePair::build_prp_list(Sqe& sqe, std::uint16_t cid, std::uint64_t next, std::size_t rest) {
    const std::size_t len = rest + (kPage - (sqe.prp1 & (kPage - 1)));
    const std::size_t pages = (rest + kPage - 1) / kPage;
    if (pages > kPage / 8) return fail(EINVAL, "transfer of {} bytes needs {} PRP entries (max {})", len, pages, kPage / 8);
    dma::PoolBuffer list = prps_.buffer(cid);
    for (std::size_t i = 0; i < pages; ++i) {
        const std::uint64_t e = next + i * kPage;
        std::memcpy(list.bytes.data() + i * 8, &e, 8);
    }
    sqe.prp2 = list.iova;
    return {};
}

// The bus address of a caller's buffer. A small per-queue cache (by page, two-way) in front of the
// controller's registry: the registry's lock and tree walk showed as 4% of a QD1 guest profile. Any
// change to the registry bumps mem_gen, which empties every queue's cache.
[[gnu::always_inline]] inline std::optional<std::uint64_t> QueuePair::cached_iova(const std::byte* data, std::size_t len) noexcept {
    const std::uintptr_t addr = dma::address_of(data);
    const std::uint64_t gen = core_->mem_gen.load(std::memory_order_acquire);
    const std::size_t set = (addr >> 12) % kMemCacheSets;
    auto& ways = mem_cache_[set];
    for (unsigned w = 0; w < 2; ++w) {
        const MemCacheEntry& e = ways[w];
        if (e.gen == gen && holds(e.base, e.size, addr, len)) {
            mem_cache_victim_[set] = static_cast<std::uint8_t>(w ^ 1);  // keep the one just used
            return e.iova + (addr - e.base);
        }
    }
    return std::nullopt;
}

[[gnu::always_inline]] inline Result<std::uint64_t> QueuePair::iova_of(const std::byte* data, std::size_t len) {
    if (auto iova = cached_iova(data, len)) return *iova;
    return iova_of_miss(data, len, core_->mem_gen.load(std::memory_order_acquire));
}

Result<std::uint64_t> QueuePair::iova_of_miss(const std::byte* data, std::size_t len, std::uint64_t gen) {
    const std::uintptr_t addr = dma::address_of(data);
    const std::size_t set = (addr >> 12) % kMemCacheSets;
    auto& ways = mem_cache_[set];
    auto [base, size, iova] = UDRV_TRY(core_->find_mem(data, len));
    const unsigned w = mem_cache_victim_[set];
    ways[w] = MemCacheEntry{gen, base, size, iova};  // gen read before the lookup: a change since makes it stale
    mem_cache_victim_[set] = static_cast<std::uint8_t>(w ^ 1);
    return iova + (addr - base);
}

// The common case inline: the queue active, one command (up to MDTS). The rest, refusals included, in
// rw_slow().
Result<void> QueuePair::misaligned(std::uint64_t iova) const {
    return fail(EINVAL, "{}: buffer at bus address {:#x} is not 4-byte aligned, as NVMe's PRPs require", core_->name, iova);
}

[[gnu::always_inline]] inline Result<void> QueuePair::rw(std::uint8_t opcode, std::uint64_t lba, std::uint32_t blocks, std::byte* data,
                                                         std::size_t len, block::Callback cb, void* ctx) {
    rcu::ReadLock lock;
    const std::uint64_t bytes = std::uint64_t{blocks} << block_shift_;
    if (state_.load(std::memory_order_acquire) != QueueState::active || blocks == 0 || blocks > max_blocks_ || len < bytes ||
        free_cids_.empty()) [[unlikely]]
        return rw_slow(opcode, lba, blocks, data, len, cb, ctx);
    const std::uint64_t iova = UDRV_TRY(iova_of(data, bytes));
    if (iova & 3) [[unlikely]]
        return misaligned(iova);
    Sqe sqe = cmd::block_command(opcode, nsid_, lba, blocks);
    UDRV_TRY(build_prps(sqe, free_cids_.back(), iova, bytes));  // push() takes this id
    (void)push(sqe, cb, ctx, nullptr);
    return {};
}

// rw() for the rest: a queue that is not active, arguments to refuse, a buffer to look up, a PRP list,
// a request above MDTS (several commands; the callback runs once, when the last completes).
Result<void> QueuePair::rw_slow(std::uint8_t opcode, std::uint64_t lba, std::uint32_t blocks, std::byte* data, std::size_t len,
                                block::Callback cb, void* ctx) {
    if (const QueueState s = state_.load(std::memory_order_acquire); s != QueueState::active) UDRV_TRY(not_active(s));
    const std::uint64_t bytes = std::uint64_t{blocks} << block_shift_;
    if (blocks == 0) return fail(EINVAL, "{}: transfer of 0 blocks", core_->name);
    if (len < bytes) return fail(EINVAL, "{}: buffer of {} bytes is smaller than {} blocks of {}", core_->name, len, blocks, block_size_);
    const std::uint64_t iova = UDRV_TRY(iova_of(data, bytes));
    if (iova & 3) return misaligned(iova);
    if (max_blocks_ == 0) return fail(EINVAL, "{}: queue {} moves no data (the admin queue)", core_->name, qid_);
    const std::uint32_t parts = (blocks + max_blocks_ - 1) / max_blocks_;
    if (parts > free_cids_.size())
        return fail(EAGAIN, "{}: queue {} has room for {} commands, the request needs {}", core_->name, qid_, free_cids_.size(), parts);
    std::unique_ptr<Split> split(parts > 1 ? new Split{parts, std::nullopt, cb, ctx} : nullptr);
    for (std::uint32_t i = 0; i < parts; ++i) {
        const std::uint32_t n = std::min(max_blocks_, blocks - i * max_blocks_);
        const std::uint64_t off = std::uint64_t{i} * max_blocks_ << block_shift_;
        Sqe sqe = cmd::block_command(opcode, nsid_, lba + std::uint64_t{i} * max_blocks_, n);
        const std::uint16_t cid = free_cids_.back();  // push() takes exactly this id
        auto r = build_prps(sqe, cid, iova + off, std::size_t{n} << block_shift_);
        if (r) {
            (void)push(sqe, cb, ctx, split.get());  // there are ids for every part (above)
            continue;
        }
        // Either the call fails and the callback never runs, or the call succeeds and it runs once. The
        // parts already submitted will complete: while any is outstanding the callback reports this
        // error once they have.
        if (i == 0 || (split->remaining -= parts - i) == 0) return r;
        split->error = r.error();
        break;
    }
    (void)split.release();  // the last part's completion deletes it
    return {};
}

Result<void> QueuePair::read(std::uint64_t lba, std::uint32_t blocks, std::span<std::byte> buf, block::Callback cb, void* ctx) {
    return rw(kIoRead, lba, blocks, buf.data(), buf.size(), cb, ctx);
}

Result<void> QueuePair::write(std::uint64_t lba, std::uint32_t blocks, std::span<const std::byte> buf, block::Callback cb, void* ctx) {
    // The device only reads this memory; the PRPs need its bus address, not write access.
    return rw(kIoWrite, lba, blocks, const_cast<std::byte*>(buf.data()), buf.size(), cb, ctx);
}

Result<void> QueuePair::flush(block::Callback cb, void* ctx) {
    rcu::ReadLock lock;
    if (const QueueState s = state_.load(std::memory_order_acquire); s != QueueState::active) [[unlikely]]
        UDRV_TRY(not_active(s));
    UDRV_TRY(submit(cmd::flush(nsid_), cb, ctx, nullptr));
    return {};
}

Result<void> QueuePair::write_zeroes(std::uint64_t lba, std::uint32_t blocks, block::Callback cb, void* ctx) {
    rcu::ReadLock lock;
    if (const QueueState s = state_.load(std::memory_order_acquire); s != QueueState::active) [[unlikely]]
        UDRV_TRY(not_active(s));
    if (!(core_->oncs & kOncsWriteZeroes)) return fail(ENOTSUP, "{}: the controller does not support Write Zeroes", core_->name);
    if (blocks == 0 || blocks > 65536) return fail(EINVAL, "{}: Write Zeroes of {} blocks (1-65536)", core_->name, blocks);
    UDRV_TRY(submit(cmd::write_zeroes(nsid_, lba, blocks), cb, ctx, nullptr));
    return {};
}

Result<void> QueuePair::deallocate(std::uint64_t lba, std::uint32_t blocks, block::Callback cb, void* ctx) {
    rcu::ReadLock lock;
    if (const QueueState s = state_.load(std::memory_order_acquire); s != QueueState::active) [[unlikely]]
        UDRV_TRY(not_active(s));
    if (!(core_->oncs & kOncsDatasetManagement))
        return fail(ENOTSUP, "{}: the controller does not support Dataset Management", core_->name);
    if (blocks == 0 || free_cids_.empty()) return fail(blocks ? EAGAIN : EINVAL, "{}: cannot deallocate {} blocks now", core_->name, blocks);
    // One range, in this command's PRP page.
    const std::uint16_t cid = free_cids_.back();
    dma::PoolBuffer page = prps_.buffer(cid);
    const DsmRange range{0, blocks, lba};
    std::memcpy(page.bytes.data(), &range, sizeof range);
    UDRV_TRY(submit(cmd::dataset_management(nsid_, page.iova, 1, kDsmDeallocate), cb, ctx, nullptr));
    return {};
}

// ---------------------------------------------------------------------------------------------------
// The owner: completion

// Inlined into completion processing. The slot keeps its other fields until push() overwrites them:
// only `busy` says whether it is in use.
[[gnu::always_inline]] inline void QueuePair::complete(std::uint16_t cid, const Result<void>& status) {
    Slot& slot = slots_[cid];
    const block::Callback cb = slot.cb;
    void* const ctx = slot.ctx;
    Split* const split = slot.split;
    slot.busy = false;
    free_cids_.push_back(cid);
    --outstanding_;
    if (split) [[unlikely]]
        complete_part(split, status);
    else if (cb)
        cb(ctx, status);
}

void QueuePair::complete_part(Split* sp, const Result<void>& status) {
    if (!status && !sp->error) sp->error = status.error();
    if (--sp->remaining == 0) {
        Result<void> r = sp->error ? Result<void>(std::unexpected(*sp->error)) : Result<void>();
        block::Callback cb = sp->cb;
        void* ctx = sp->ctx;
        delete sp;
        if (cb) cb(ctx, r);
    }
}

void QueuePair::fail_all(const Error& why) {
    for (std::uint16_t cid = 0; cid < depth_; ++cid)
        if (slots_[cid].busy) complete(cid, std::unexpected(why));
}

Result<unsigned> QueuePair::process_completions() {
    unsigned n = 0;
    in_poll_ = true;
    // At most one queue's worth per call: callbacks resubmit, and a controller that completes as fast
    // as it is fed would otherwise keep the caller here for ever.
    while (n < depth_) {
        const Cqe& slot = cq_[cq_head_];
        const std::uint16_t status = dma::read_once(slot.status);
        if ((status & 1) != phase_) break;
        dma_rmb();  // the rest of the entry is read after its phase bit
        const Cqe c = slot;
        cq_head_ = static_cast<std::uint16_t>(cq_head_ + 1);
        ++cq_unreported_;  // before complete(): a callback that submits sees this entry as not yet free
        if (cq_head_ == cq_depth_) {
            cq_head_ = 0;
            phase_ ^= 1;
        }
        // The device's word: a completion for a command we did not submit means the controller (or its
        // memory view) is broken. Fail everything rather than complete the wrong request.
        if (!completion_plausible(c, qid_, depth_, [&](std::uint16_t cid) { return slots_[cid].busy; })) [[unlikely]] {
            Error e(EPROTO, fmt::format("{}: queue {} got an invalid completion (cid {}, sq {}, sq head {}): failing all commands",
                                        core_->name, qid_, c.cid, c.sq_id, c.sq_head));
            if (qid_ != 0) state_.store(QueueState::broken, std::memory_order_release);
            in_poll_ = ring_pending_ = false;
            fail_all(e);
            return std::unexpected(e);
        }
        last_result_ = c.result;
        const std::uint16_t sf = status >> 1;
        if (sf == 0) [[likely]] complete(c.cid, {});
        else complete(c.cid, std::unexpected(status_error(core_->name, sf)));
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
    if (!n && outstanding_ && ++empty_polls_ % kPollsPerClockRead == 0) check_timeouts();
    return n;
}

Result<unsigned> QueuePair::poll() {
    rcu::ReadLock lock;
    if (const QueueState s = state_.load(std::memory_order_acquire); s != QueueState::active) [[unlikely]] {
        // Nothing finishes during a reset: what it did is reported after. A removal is not coming back.
        if (s == QueueState::frozen && !core_->removing.load(std::memory_order_acquire)) return 0;
        UDRV_TRY(not_active(s));
    }
    return process_completions();
}

// A command past its deadline is reported to the controller's service thread, which aborts it; past a
// second deadline (the abort did not help) it is reported again, and the controller is reset. Nothing
// here blocks or sends an admin command.
void QueuePair::check_timeouts() {
    if (!timeout_ticks_ || timeout_report_.load(std::memory_order_relaxed)) return;  // one report at a time
    const std::uint64_t now = ticks();  // not clock_gettime: this runs on empty polls
    if (now - last_timeout_check_ < check_interval_ticks_) return;
    last_timeout_check_ = now;
    for (std::uint16_t cid = 0; cid < depth_; ++cid) {
        Slot& s = slots_[cid];
        if (!s.busy || now - s.submitted < timeout_ticks_ || s.timeout_stage >= 2) continue;
        ++s.timeout_stage;
        s.submitted = now;  // the abort gets a deadline of its own
        timeout_report_.store((cid + 1u) | static_cast<std::uint32_t>(s.timeout_stage) << 16, std::memory_order_release);
        return;
    }
}

Result<void> QueuePair::set_interrupt_cpu(int cpu) {
    if (!vector_) return fail(ENOTSUP, "{}: queue {} is polled: it has no interrupt to direct to CPU {}", core_->name, qid_, cpu);
    UDRV_TRY_CTX(vector_->set_affinity(cpu), "{}: queue {}", core_->name, qid_);
    return {};
}

Result<unsigned> QueuePair::wait(std::chrono::milliseconds timeout) {
    // While the controller resets, there is nothing to wait on but the reset itself.
    if (state() == QueueState::frozen) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (state() == QueueState::frozen && !core_->removing.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
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
        case block::Mode::interrupt: {  // the sleep is outside any read section: poll() takes its own
            const auto deadline = std::chrono::steady_clock::now() + timeout;
            while (std::chrono::steady_clock::now() < deadline) {
                auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
                auto r = vector_->wait(std::max(left, std::chrono::milliseconds(1)));
                if (!r && r.error().code() != ETIMEDOUT) return std::unexpected(r.error());
                if ((n = UDRV_TRY(poll())) || outstanding_ == 0) return n;
            }
            return 0;
        }
        case block::Mode::hybrid: {
            Result<unsigned> got = 0u;
            auto r = hybrid_->wait([&] {
                got = poll();
                return !got || *got > 0 || outstanding_ == 0;
            }, timeout);
            if (!got) return got;
            if (!r && r.error().code() != ETIMEDOUT) return std::unexpected(r.error());
            return *got;
        }
    }
    return n;
}

// ---------------------------------------------------------------------------------------------------
// The controller's side, with the queue frozen (or the admin queue, under the controller's lock)

unsigned QueuePair::salvage() noexcept {
    unsigned n = 0;
    for (unsigned guard = 0; guard < cq_depth_; ++guard) {
        const Cqe& slot = cq_[cq_head_];
        const std::uint16_t status = dma::read_once(slot.status);
        if ((status & 1) != phase_) break;
        dma_rmb();
        const Cqe c = slot;
        if (++cq_head_ == cq_depth_) cq_head_ = 0, phase_ ^= 1;
        ++cq_unreported_;
        const bool posted_before = std::any_of(posted_.begin(), posted_.end(), [&](const Posted& p) { return p.cid == c.cid; });
        if (completion_plausible(c, qid_, depth_, [&](std::uint16_t cid) { return slots_[cid].busy; }) && !posted_before) {
            posted_.push_back({c.cid, static_cast<std::uint16_t>(status >> 1)});
            ++n;
        }
    }
    return n;
}

void QueuePair::reset_rings() noexcept {
    for (auto& c : cq_.span()) c = Cqe{};  // phase 0 everywhere: nothing posted yet
    sq_tail_ = cq_head_ = cq_unreported_ = 0;
    phase_ = 1;
    in_poll_ = ring_pending_ = false;
}

QueuePair::~QueuePair() {
    if (!registered_) return;  // the admin queue, or one the controller never created: nothing in flight
    // What is still in flight gets a bounded while to finish here, on the owner's thread; then the
    // controller deletes the queue (SQ before CQ) and whatever is left fails.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (outstanding_ && state() == QueueState::active && std::chrono::steady_clock::now() < deadline)
        if (!poll()) break;
    {
        std::lock_guard lock(core_->mu);
        std::erase(core_->io_queues, this);
        if (core_->controller && state() != QueueState::removed) core_->controller->delete_hw_queue(qid_);
    }
    if (state() == QueueState::recovered || state() == QueueState::removed) report_recovered(state());
    fail_all(Error(ECANCELED, fmt::format("{}: queue {} deleted with the command outstanding", core_->name, qid_)));
}

}  // namespace udrv::nvme
