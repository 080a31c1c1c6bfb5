// An NVMe controller bound to udrv_nvme: bring-up in the order of NVMe 1.4 section 7.6.1, the admin
// queue, namespaces as block devices, reset (the one place that disables and re-enables the controller),
// and remove. Control work runs on the caller's thread or on the controller's service thread (timeouts,
// CSTS.CFS), never inside an I/O queue's poll.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "queue.hpp"
#include "udrv/block.hpp"
#include "udrv/nvme.hpp"
#include "udrv/pci.hpp"

namespace udrv::nvme {

class Controller;

/// What a controller and its queues share; it lives as long as either (a queue an application still
/// holds outlives the controller). The register window is used only by a queue that is active, which
/// the controller stops being sure of (freeze + RCU) before it unmaps anything.
struct ControllerCore {
    ControllerCore(std::string n, Mmio<kBarMin> r) : name(std::move(n)), regs(r) {}
    const std::string name;  // the PCI address, kept: the pci::Device goes at unbind
    Mmio<kBarMin> regs;
    std::uint32_t doorbell_stride = 4;
    std::uint32_t max_transfer = 0;
    std::uint16_t oncs = 0;
    std::uint16_t max_queue_entries = 2;
    // Shadow doorbells (Doorbell Buffer Config): doorbell values in memory, MMIO only when the event
    // index asks for it (an emulated controller traps every MMIO write).
    std::optional<dma::Coherent<std::uint32_t>> shadow_db, shadow_ei;
    // Registered I/O memory: CPU address -> IOVA, read on the I/O path without a lock: queues read the
    // current map inside their RCU read section; a change publishes a new map and retires the old one,
    // freed after a grace period by the service thread (or at once when no queue can be reading: after
    // remove). mem_gen changes with every new map (queues cache lookups by it).
    struct Mapping {
        std::size_t size;
        std::uint64_t iova;
    };
    using MemMap = std::map<std::uintptr_t, Mapping>;
    /// Publishes a copy of the map changed by `edit`.
    void edit_mem(const std::function<void(MemMap&)>& edit);
    /// Frees the maps retired before now (waits for a grace period; not inside a read section).
    void reclaim_mem();
    std::atomic<std::uint64_t> mem_gen{1};
    std::atomic<bool> readers_possible{true};  // false once remove has revoked every queue
    std::atomic<bool> removing{false};         // remove has begun: a frozen queue is not coming back
    ~ControllerCore();
    // The controller's control path: the admin queue, the list of I/O queues, queue ids.
    std::mutex mu;
    Controller* controller = nullptr;  // cleared at remove
    std::vector<QueuePair*> io_queues;

    std::size_t doorbell(std::uint16_t qid, bool cq) const { return kRegDoorbells + (2u * qid + cq) * doorbell_stride; }
    /// Index of a queue's doorbell in the shadow pages (laid out as the doorbells are).
    std::size_t shadow_index(std::uint16_t qid, bool cq) const { return (2u * qid + cq) * (doorbell_stride / 4); }
    /// A queue's doorbells; ERANGE if the stride puts them outside the register window.
    Result<QueueDoorbells> doorbells_for(std::uint16_t qid) const {
        auto sq = UDRV_TRY_CTX(Mmio<kBarMin>::reg<std::uint32_t>(doorbell(qid, false)), "{}: queue {}'s doorbell", name, qid);
        auto cq = UDRV_TRY_CTX(Mmio<kBarMin>::reg<std::uint32_t>(doorbell(qid, true)), "{}: queue {}'s doorbell", name, qid);
        return QueueDoorbells{sq, cq, shadow_index(qid, false), shadow_index(qid, true)};
    }
    /// The registration holding [p, p + len): its start, size and IOVA; EFAULT if none.
    Result<std::tuple<std::uintptr_t, std::size_t, std::uint64_t>> find_mem(const void* p, std::size_t len);

private:
    std::atomic<const MemMap*> mem_{new MemMap};
    std::mutex mem_mu_;  // writers of mem_, and mem_retired_
    std::vector<const MemMap*> mem_retired_;
};

/// One namespace as a block device (published as nvme<N>n<nsid>, path <address>/ns<nsid>).
class Namespace final : public block::Device {
public:
    const block::Info& info() const override { return info_; }
    Result<std::unique_ptr<block::Queue>> open_queue(unsigned depth, block::Mode mode) override;
    Result<block::Buffer> alloc_buffer(std::size_t bytes) override;
    Result<void> register_memory(std::span<std::byte> memory) override;
    void unregister_memory(std::span<std::byte> memory) override;
    const NamespaceInfo& nvme_info() const noexcept { return ns_; }
    const std::string& block_name() const noexcept { return block_name_; }

private:
    friend class Controller;
    Namespace(Controller& c, NamespaceInfo ns, block::Info info) : ctrl_(c), ns_(std::move(ns)), info_(std::move(info)) {}
    Controller& ctrl_;
    NamespaceInfo ns_;
    block::Info info_;
    std::string block_name_;
};

/// The controller: published in the nvme class (nvme<N>), its namespaces in the block class.
class Controller final : public nvme::ControllerDevice {
public:
    static constexpr pci::DeviceId ids[] = {pci::DeviceId::by_class(0x010802, 0xffffff)};  // NVM Express
    /// Module parameter io_timeout_ms: how long an I/O command may take before it is aborted (and, if
    /// that does not help, the controller reset). Linux's nvme_core.io_timeout is 30 s.
    static constexpr Param<std::uint32_t> kIoTimeout{"io_timeout_ms", 30000, "I/O command timeout in ms before abort and reset"};
    static Result<std::unique_ptr<Controller>> probe(Bound<pci::Device>& dev, const pci::DeviceId& id, const ThisModule& module);
    /// remove(): what is in flight completes (bounded wait), the I/O queues are deleted, the controller
    /// is shut down (CC.SHN) so that acknowledged writes are on the medium. Queues still held fail with
    /// ENODEV from then on, reporting what they had in flight on their next call.
    ~Controller() override;

    // nvme::ControllerDevice
    const ControllerInfo& info() const noexcept override { return info_; }
    /// Resets the controller (disable, re-enable, restore its features and every I/O queue), as after a
    /// timeout or CSTS.CFS. Commands in flight fail with EIO (or complete, if the controller finished
    /// them first); each queue's owner hears of them on its next call, and may resubmit at once.
    Result<void> reset() override;
    /// Resets so far, requested or after faults.
    unsigned resets() const override;
    std::vector<NamespaceEntry> namespaces() const override;
    Result<Namespace*> find_namespace(std::uint32_t nsid) const;
    /// A new I/O queue pair for namespace `nsid`, for the calling thread.
    Result<std::unique_ptr<QueuePair>> create_queue_pair(std::uint32_t nsid, unsigned depth, block::Mode mode);
    /// Raw Identify data (4096 bytes): CNS 1 controller, CNS 0 namespace `nsid`.
    Result<std::vector<std::byte>> identify(std::uint32_t cns, std::uint32_t nsid) override;
    /// I/O memory mapped for this controller.
    Result<block::Buffer> alloc_buffer(std::size_t bytes);
    /// Maps caller-owned memory (page aligned, whole pages) for zero-copy I/O until unregistered.
    Result<void> register_memory(std::span<std::byte> memory);
    /// Unmaps it once no queue can still be translating through it (a grace period: not from inside a
    /// completion callback). Commands using it must have completed.
    void unregister_memory(std::span<std::byte> memory);

private:
    friend class QueuePair;
    Controller(std::shared_ptr<ControllerCore> core, dma::Allocator dma) : core_(std::move(core)), dma_(std::move(dma)) {}

    // ---- bring-up (probe), in spec order ----
    Result<void> read_capabilities(std::uint64_t cap);
    Result<void> disable_and_wait();
    Result<void> setup_admin_queue();
    Result<void> enable();
    void setup_interrupts(Bound<pci::Device>& dev);
    Result<void> identify_controller();
    Result<void> setup_queues_and_doorbells();
    Result<void> identify_namespaces();
    Result<void> publish(Bound<pci::Device>& dev);
    void start_service();

    // ---- admin commands (callers hold core_->mu) ----
    Result<std::uint32_t> admin(const Sqe& sqe, std::string_view what);
    Result<std::vector<std::byte>> identify_locked(std::uint32_t cns, std::uint32_t nsid);
    Result<std::uint16_t> negotiate_queues();
    Result<void> config_shadow_doorbells();
    Result<void> create_hw_queue(QueuePair& q);
    void delete_hw_queue(std::uint16_t qid, bool quiet = false);
    Result<void> wait_ready(bool ready);

    // ---- reset and the service thread ----
    Result<void> reset_locked(std::string_view why, bool graceful);
    /// Freezes every I/O queue and waits until no owner is inside one (the rings are then ours).
    void freeze_io_queues();
    void service_loop();
    void release_after_remove() noexcept;

    std::shared_ptr<ControllerCore> core_;
    dma::Allocator dma_;
    ControllerInfo info_;
    std::string name_;  // in the nvme class: nvme0, ...
    std::unique_ptr<QueuePair> admin_;
    std::shared_ptr<irq::Vectors> vectors_;
    std::vector<std::unique_ptr<Namespace>> namespaces_;
    std::vector<std::shared_ptr<dma::Streaming>> streaming_;  // registered caller memory
    std::vector<bool> qid_used_;
    unsigned resets_ = 0;
    bool resetting_ = false, failed_ = false;
    std::chrono::milliseconds io_timeout_{30000};
    // The service thread: every 100 ms it looks at CSTS.CFS and the queues' timeout reports.
    std::thread service_;
    std::condition_variable service_cv_;
    bool stopping_ = false;
};

}  // namespace udrv::nvme
