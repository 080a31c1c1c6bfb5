// An NVMe submission/completion queue pair (NVMe 1.4, 4.1 and 4.6): the rings, submission, completion
// processing and the I/O commands a namespace's block queue takes. An I/O queue belongs to one thread:
// no locks and no admin work on its path. The controller (controller.hpp) reaches in only through the
// queue's state: it freezes the queue (and waits, by RCU, until the owner is out of it) before a reset
// or removal touches the rings, and leaves what was in flight for the owner to report on its next call.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "cmd.hpp"
#include "udrv/nvme_spec.hpp"
#include "udrv/block.hpp"
#include "udrv/dma.hpp"
#include "udrv/irq.hpp"
#include "udrv/mmio.hpp"

namespace udrv::nvme {

struct ControllerCore;
class Controller;

/// Where a queue stands. The owner thread runs it `active`; the controller moves it to `frozen` before
/// a reset or removal, then to `recovered` (recreated after a reset) or `removed`. `broken`: the
/// controller posted a completion that cannot be, everything on the queue failed, and the controller's
/// service thread resets it (the queue comes back `recovered`).
enum class QueueState : std::uint8_t { active, frozen, recovered, removed, broken };
std::string_view queue_state_name(QueueState s) noexcept;

/// A queue's two doorbells, checked against the register window once, when the queue is made
/// (ControllerCore::doorbells_for), and their places in the shadow doorbell pages.
struct QueueDoorbells {
    Mmio<kBarMin>::Reg<std::uint32_t> sq, cq;
    std::size_t sq_shadow, cq_shadow;
};

class QueuePair final : public block::Queue {
public:
    ~QueuePair() override;

    // block::Queue
    Result<void> read(std::uint64_t lba, std::uint32_t blocks, std::span<std::byte> buf, block::Callback cb, void* ctx) override;
    Result<void> write(std::uint64_t lba, std::uint32_t blocks, std::span<const std::byte> buf, block::Callback cb, void* ctx) override;
    Result<void> flush(block::Callback cb, void* ctx) override;
    Result<void> write_zeroes(std::uint64_t lba, std::uint32_t blocks, block::Callback cb, void* ctx) override;
    Result<void> deallocate(std::uint64_t lba, std::uint32_t blocks, block::Callback cb, void* ctx) override;
    Result<unsigned> poll() override;
    Result<unsigned> wait(std::chrono::milliseconds timeout) override;
    unsigned outstanding() const override { return outstanding_; }
    unsigned depth() const override { return depth_ - 1u; }  // one slot stays empty: full != empty
    void begin_batch() noexcept override { ++batch_depth_; }
    void end_batch() noexcept override;
    int completion_fd() const noexcept override { return vector_ ? vector_->fd() : -1; }
    void clear_completion_event() noexcept override {
        if (vector_) (void)vector_->poll();  // an MSI-X vector: a read of its eventfd, nothing to rearm
    }
    Result<void> set_interrupt_cpu(int cpu) override;
    std::uint16_t id() const noexcept { return qid_; }
    QueueState state() const noexcept { return state_.load(std::memory_order_acquire); }

private:
    friend class Controller;
    struct Slot {
        block::Callback cb = nullptr;
        void* ctx = nullptr;
        struct Split* split = nullptr;  // part of a request larger than one command
        std::uint64_t submitted = 0;    // ticks(): when it went in, or when its abort was reported
        std::uint8_t timeout_stage = 0; // 1: reported for an abort; 2: the abort did not help either
        bool busy = false;
    };
    struct Posted {
        std::uint16_t cid, status;  // status field (CQE status >> 1)
    };
    QueuePair(std::shared_ptr<ControllerCore> core, std::uint16_t qid, QueueDoorbells doorbells, std::uint16_t depth,
              std::uint16_t cq_depth, std::uint32_t nsid, std::uint32_t block_size, block::Mode mode, dma::Coherent<Sqe> sq,
              dma::Coherent<Cqe> cq, dma::Pool prps);

    // ---- the owner's side ----
    /// What a call does when the queue is not active: reports a reset's or removal's outcome, or fails.
    Result<void> not_active(QueueState s);
    void report_recovered(QueueState was);
    Result<std::uint16_t> submit(const Sqe& sqe, block::Callback cb, void* ctx, Split* split);
    std::uint16_t push(const Sqe& sqe, block::Callback cb, void* ctx, Split* split) noexcept;  // a command id must be free
    Result<void> rw(std::uint8_t opcode, std::uint64_t lba, std::uint32_t blocks, std::byte* data, std::size_t len, block::Callback cb, void* ctx);
    [[gnu::noinline]] Result<void> rw_slow(std::uint8_t opcode, std::uint64_t lba, std::uint32_t blocks, std::byte* data, std::size_t len,
                         block::Callback cb, void* ctx);
    [[gnu::cold]] Result<std::uint16_t> queue_full() const;
    [[gnu::cold]] Result<void> misaligned(std::uint64_t iova) const;
    Result<void> build_prps(Sqe& sqe, std::uint16_t cid, std::uint64_t iova, std::size_t len);
    [[gnu::noinline]] Result<void> build_prp_list(Sqe& sqe, std::uint16_t cid, std::uint64_t next, std::size_t rest);
    std::optional<std::uint64_t> cached_iova(const std::byte* data, std::size_t len) noexcept;
    Result<std::uint64_t> iova_of(const std::byte* data, std::size_t len);
    [[gnu::noinline]] Result<std::uint64_t> iova_of_miss(const std::byte* data, std::size_t len, std::uint64_t gen);
    /// Takes the completions the controller posted (at most one queue's worth), running their callbacks.
    Result<unsigned> process_completions();
    void complete(std::uint16_t cid, const Result<void>& status);
    [[gnu::noinline]] void complete_part(Split* split, const Result<void>& status);
    void fail_all(const Error& why);
    void check_timeouts();
    void ring_sq() noexcept;
    void ring_cq() noexcept;
    bool shadow_needs_mmio(std::size_t index, std::uint16_t value) noexcept;

    // ---- the controller's side (only while the queue is frozen, or for the admin queue) ----
    /// Moves the completions already in the CQ to `posted_` (they are reported by the owner later).
    unsigned salvage() noexcept;
    /// Starts the rings over empty: what the controller expects of a queue it has just (re)created.
    void reset_rings() noexcept;

    std::shared_ptr<ControllerCore> core_;
    const std::uint16_t qid_, depth_, cq_depth_;  // depth_: SQ entries; cq_depth_: CQ entries (>= depth_)
    const QueueDoorbells doorbells_;
    const std::uint32_t nsid_, block_size_;
    const unsigned block_shift_;          // block_size_ == 1 << block_shift_ (NVMe's LBADS)
    const std::uint32_t max_blocks_;      // the most blocks one command moves (MDTS)
    const block::Mode mode_;
    dma::Coherent<Sqe> sq_;
    dma::Coherent<Cqe> cq_;
    dma::Pool prps_;                      // a PRP list page per command id
    std::vector<Slot> slots_;
    std::vector<std::uint16_t> free_cids_;
    std::uint16_t sq_tail_ = 0, cq_head_ = 0;
    std::uint16_t phase_ = 1;
    std::uint16_t cq_unreported_ = 0;     // CQ entries consumed since the controller was last told the head
    unsigned outstanding_ = 0;
    std::uint32_t last_result_ = 0;       // dword 0 of the latest completion (admin commands read it)
    bool in_poll_ = false, ring_pending_ = false;  // commands submitted from callbacks ring once per poll
    unsigned batch_depth_ = 0;                      // inside begin_batch(): commands ring at end_batch()
    std::atomic<QueueState> state_{QueueState::active};
    bool registered_ = false;             // in the controller's list of I/O queues (core_->io_queues)
    std::vector<Posted> posted_;          // completions a reset or removal found: reported by the owner
    /// A command that timed out, for the controller's service thread: cid + 1 | stage << 16 (0: none).
    std::atomic<std::uint32_t> timeout_report_{0};
    std::shared_ptr<irq::Vectors> vectors_;  // kept while the queue lives: its eventfd stays valid after removal
    irq::Vector* vector_ = nullptr;
    std::unique_ptr<irq::HybridWaiter> hybrid_;
    std::uint64_t last_timeout_check_ = 0, timeout_ticks_ = 0, check_interval_ticks_ = 0, ticks_per_ms_ = 0;
    std::uint32_t empty_polls_ = 0;
    struct MemCacheEntry {
        std::uint64_t gen = 0;  // ControllerCore::mem_gen when filled (it starts at 1: 0 is never valid)
        std::uintptr_t base = 0;
        std::size_t size = 0;
        std::uint64_t iova = 0;
    };
    // By buffer page, two ways per set (see iova_of): buffers mapped in separate runs of pages often
    // share a page number modulo the set count, and a direct-mapped cache then missed on most I/Os.
    static constexpr std::size_t kMemCacheSets = 64;
    std::array<std::array<MemCacheEntry, 2>, kMemCacheSets> mem_cache_{};
    std::array<std::uint8_t, kMemCacheSets> mem_cache_victim_{};  // the way to replace next in each set
};

}  // namespace udrv::nvme
