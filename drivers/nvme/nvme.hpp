// NVMe over PCIe, in user space. Reads like the spec's initialisation sequence (NVMe 1.4 section 7.6.1):
// reset, admin queue, enable, identify, queues; then lockless I/O queue pairs owned by one thread each.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "spec.hpp"
#include "udrv/block.hpp"
#include "udrv/pci.hpp"
#include "udrv/ticks.hpp"

namespace udrv::nvme {

class Controller;
struct ControllerState;

/// A submission/completion queue pair. I/O queues are owned by one thread each: no locks, no atomics.
class QueuePair final : public block::Queue {
public:
    ~QueuePair() override;
    Result<void> read(std::uint64_t lba, std::uint32_t blocks, std::span<std::byte> buf, block::Callback cb, void* ctx) override;
    Result<void> write(std::uint64_t lba, std::uint32_t blocks, std::span<const std::byte> buf, block::Callback cb, void* ctx) override;
    Result<void> flush(block::Callback cb, void* ctx) override;
    Result<void> write_zeroes(std::uint64_t lba, std::uint32_t blocks, block::Callback cb, void* ctx) override;
    Result<void> deallocate(std::uint64_t lba, std::uint32_t blocks, block::Callback cb, void* ctx) override;
    Result<unsigned> poll() override;
    Result<unsigned> wait(std::chrono::milliseconds timeout) override;
    unsigned outstanding() const override { return outstanding_; }
    unsigned depth() const override { return depth_ - 1; }  // one slot stays empty: full != empty
    std::uint16_t id() const noexcept { return qid_; }

private:
    friend class Controller;
    friend struct ControllerState;
    struct Slot {
        block::Callback cb = nullptr;
        void* ctx = nullptr;
        struct Split* split = nullptr;  // set when part of a request larger than one command
        std::uint64_t submitted = 0;  // ticks()
        bool busy = false;
        bool abort_sent = false;
    };
    QueuePair(std::shared_ptr<ControllerState> ctrl, std::uint16_t qid, std::uint16_t depth, std::uint16_t cq_depth, std::uint32_t nsid,
              std::uint32_t block_size, block::Mode mode, dma::Coherent<Sqe> sq, dma::Coherent<Cqe> cq, dma::Pool prps);
    Result<void> rw(std::uint8_t opcode, std::uint64_t lba, std::uint32_t blocks, std::byte* data, std::size_t len, block::Callback cb,
                    void* ctx);
    Result<std::uint16_t> submit(Sqe& sqe, block::Callback cb, void* ctx, Split* split);
    Sqe lba_command(std::uint8_t opcode, std::uint64_t slba, std::uint32_t blocks) const noexcept;
    Result<void> build_prps(Sqe& sqe, std::uint16_t cid, std::uint64_t iova, std::size_t len);
    void complete(std::uint16_t cid, const Result<void>& status);
    Result<void> check_timeouts();
    Result<void> recover();
    Result<void> reset_controller(const std::string& why, bool graceful);
    void reset_rings() noexcept;
    void fail_all(const Error& why);
    void ring_sq() noexcept;
    void ring_cq() noexcept;
    bool shadow_needs_mmio(std::size_t index, std::uint16_t value) noexcept;
    Result<std::uint64_t> iova_of(const std::byte* data, std::size_t len);

    std::shared_ptr<ControllerState> ctrl_;
    std::uint16_t qid_, depth_;        // depth_: SQ entries (depth_ - 1 command ids)
    std::uint16_t cq_depth_;           // CQ entries: >= depth_; more lets the CQ head doorbell wait (see ring_cq)
    std::uint32_t nsid_, block_size_;
    block::Mode mode_;
    dma::Coherent<Sqe> sq_;
    dma::Coherent<Cqe> cq_;
    dma::Pool prps_;                   // one PRP-list page per command id
    std::vector<Slot> slots_;
    std::vector<std::uint16_t> free_cids_;
    std::uint16_t sq_tail_ = 0, sq_head_ = 0, cq_head_ = 0;
    std::uint16_t phase_ = 1;
    std::uint16_t cq_unreported_ = 0;  // CQ entries consumed since the controller was last told the head
    unsigned outstanding_ = 0;
    std::uint32_t last_result_ = 0;    // dword 0 of the latest completion (admin commands read it)
    bool dead_ = false;
    bool in_poll_ = false, ring_pending_ = false;  // commands submitted from callbacks ring once per poll
    irq::Vector* vector_ = nullptr;
    std::unique_ptr<irq::HybridWaiter> hybrid_;
    std::uint64_t last_timeout_check_ = 0;  // ticks()
    std::uint32_t empty_polls_ = 0;
    struct MemCacheEntry {
        std::uint64_t gen = 0;  // ControllerState::mem_gen when filled (it starts at 1: 0 is never valid)
        std::uintptr_t base = 0;
        std::size_t size = 0;
        std::uint64_t iova = 0;
    };
    std::array<MemCacheEntry, 64> mem_cache_{};  // by buffer page: see iova_of
    std::uint64_t epoch_ = 0;               // the controller reset epoch this queue exists in
    std::uint64_t timeout_ticks_ = 0, check_interval_ticks_ = 0, ticks_per_ms_ = 0;
};

/// One namespace as a block device.
class Namespace final : public block::Device {
public:
    const block::Info& info() const override { return info_; }
    Result<std::unique_ptr<block::Queue>> open_queue(unsigned depth, block::Mode mode) override;
    Result<block::Buffer> alloc_buffer(std::size_t bytes) override;
    const NamespaceInfo& nvme_info() const noexcept { return ns_; }

private:
    friend class Controller;
    Namespace(Controller& c, NamespaceInfo ns, block::Info info) : ctrl_(c), ns_(std::move(ns)), info_(std::move(info)) {}
    Controller& ctrl_;
    NamespaceInfo ns_;
    block::Info info_;
};

/// An NVMe controller bound to the udrv_nvme driver.
class Controller {
public:
    static constexpr pci::DeviceId ids[] = {pci::DeviceId::by_class(0x010802, 0xffffff)};  // NVM Express
    static Result<std::unique_ptr<Controller>> probe(Bound<pci::Device>& dev, const pci::DeviceId& id);
    /// remove(): completes or fails every outstanding command, deletes the I/O queues and shuts the
    /// controller down (CC.SHN) so that acknowledged writes are safe.
    ~Controller();

    const ControllerInfo& info() const noexcept;
    /// Resets the controller (disable, re-enable, restore features), as after a timeout or CSTS.CFS.
    /// Outstanding commands fail with EIO (their callbacks run; they may be resubmitted); each queue
    /// pair recreates itself on its owner thread's next submit or poll.
    Result<void> reset();
    /// Resets so far, requested or after faults.
    unsigned resets() const noexcept;
    const std::vector<std::unique_ptr<Namespace>>& namespaces() const noexcept { return namespaces_; }
    Result<Namespace*> find_namespace(std::uint32_t nsid) const;
    /// A new I/O queue pair for namespace `nsid`, for the calling thread.
    Result<std::unique_ptr<QueuePair>> create_queue_pair(std::uint32_t nsid, unsigned depth, block::Mode mode);
    /// Raw Identify data (4096 bytes): CNS 1 controller, CNS 0 namespace `nsid`.
    Result<std::vector<std::byte>> identify(std::uint32_t cns, std::uint32_t nsid);
    /// Allocates I/O memory mapped for this controller.
    Result<block::Buffer> alloc_buffer(std::size_t bytes);
    /// Maps caller-owned memory (page aligned, whole pages) for zero-copy I/O until unregistered.
    Result<void> register_memory(std::span<std::byte> memory);
    void unregister_memory(std::span<std::byte> memory);

private:
    friend class QueuePair;
    explicit Controller(std::shared_ptr<ControllerState> s) : s_(std::move(s)) {}
    Result<void> identify_all();
    std::shared_ptr<ControllerState> s_;
    std::vector<std::unique_ptr<Namespace>> namespaces_;
    std::vector<std::shared_ptr<dma::Streaming>> streaming_;  // registered caller memory
};

}  // namespace udrv::nvme
