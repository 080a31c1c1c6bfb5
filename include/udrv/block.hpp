// Block devices: a small asynchronous interface that drivers implement (NVMe, one per namespace; the
// file-backed and RAM platform devices), and the block class through which everyone else finds and
// opens them by name ("nvme0n1") or stable path ("0000:00:04.0/ns1"). SPDK-style: a Queue belongs to
// one thread and has no locks; commands complete by callback from that thread's poll()/wait().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "udrv/classdev.hpp"
#include "udrv/result.hpp"

namespace udrv::block {

struct Info {
    std::string name;                   ///< "0000:00:04.0/ns1", "file:disk.img"
    std::uint32_t block_size = 512;
    std::uint64_t blocks = 0;
    std::uint32_t max_transfer = 0;     ///< largest single command in bytes
    bool splits = false;                ///< requests above max_transfer become several commands (NVMe); else they are refused
    std::uint32_t max_queue_depth = 0;  ///< commands one queue can hold; open_queue refuses more
    std::uint32_t max_queues = 0;       ///< queues that can be open at once (0: no fixed limit)
    bool write_zeroes = false, deallocate = false, volatile_cache = false;
};

/// Called on the queue's thread when a command finishes; `status` is success or what went wrong.
using Callback = void (*)(void* ctx, const Result<void>& status);

/// How a queue waits for completions.
enum class Mode {
    polled,     ///< wait() spins on the completion queue: lowest latency, one busy core
    interrupt,  ///< wait() sleeps on the queue's interrupt (MSI-X vector / eventfd)
    hybrid,     ///< spins while completions come fast, sleeps when they slow down
};

/// A submission/completion queue pair owned by one thread.
class Queue {
public:
    virtual ~Queue() = default;
    /// Reads `blocks` blocks at `lba` into `buf` (memory from Device::alloc_buffer or register_memory).
    virtual Result<void> read(std::uint64_t lba, std::uint32_t blocks, std::span<std::byte> buf, Callback cb, void* ctx) = 0;
    virtual Result<void> write(std::uint64_t lba, std::uint32_t blocks, std::span<const std::byte> buf, Callback cb, void* ctx) = 0;
    virtual Result<void> flush(Callback cb, void* ctx) = 0;
    virtual Result<void> write_zeroes(std::uint64_t lba, std::uint32_t blocks, Callback cb, void* ctx) = 0;
    virtual Result<void> deallocate(std::uint64_t lba, std::uint32_t blocks, Callback cb, void* ctx) = 0;
    /// Runs the callbacks of finished commands without blocking; returns how many finished.
    virtual Result<unsigned> poll() = 0;
    /// Like poll(), but when nothing has finished waits (per the queue's Mode) up to `timeout` for something.
    virtual Result<unsigned> wait(std::chrono::milliseconds timeout) = 0;
    /// Commands submitted and not yet completed.
    virtual unsigned outstanding() const = 0;
    /// How many commands may be outstanding at once (EAGAIN beyond).
    virtual unsigned depth() const = 0;
    /// Commands submitted from begin_batch() to the matching end_batch() reach the device together: an
    /// NVMe queue writes its doorbell once, at end_batch(), not once per command (SPDK's delayed
    /// submission, the kernel's plug). poll() and wait() hand over what a batch holds so far, so waiting
    /// inside one cannot stall. Batches nest; use Batch, which ends one on every path. No-ops for a
    /// device that has nothing to gain.
    virtual void begin_batch() noexcept {}
    virtual void end_batch() noexcept {}
    /// For an event loop that sleeps on many things at once (epoll): in interrupt and hybrid modes, a file
    /// descriptor that becomes readable when the device signals a completion. When it does, call
    /// clear_completion_event() and then poll(). -1 for a polled queue (poll it instead). The descriptor
    /// belongs to the queue and is valid while the queue is (after the device is unbound it never fires
    /// again: poll now and then to see the queue's commands fail).
    virtual int completion_fd() const noexcept { return -1; }
    virtual void clear_completion_event() noexcept {}
    /// Directs the interrupt behind completion_fd() to `cpu`, where the thread that waits on it runs, so
    /// a completion wakes it without a hop between CPUs (needs root). ENOTSUP for a queue without one.
    virtual Result<void> set_interrupt_cpu(int cpu) { return fail(ENOTSUP, "the queue has no interrupt to direct to CPU {}", cpu); }
};

/// The submissions of a scope reach the device together (Queue::begin_batch).
class Batch {
public:
    explicit Batch(Queue& q) noexcept : q_(q) { q_.begin_batch(); }
    ~Batch() { q_.end_batch(); }
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;

private:
    Queue& q_;
};

/// I/O memory: DMA-mapped for devices that need it. Owns the memory; valid while the device is.
class Buffer {
public:
    Buffer() = default;
    Buffer(std::span<std::byte> bytes, std::shared_ptr<void> owner) : bytes_(bytes), owner_(std::move(owner)) {}
    std::span<std::byte> bytes() const noexcept { return bytes_; }

private:
    std::span<std::byte> bytes_;
    std::shared_ptr<void> owner_;
};

class Device {
public:
    virtual ~Device() = default;
    virtual const Info& info() const = 0;
    virtual Result<std::unique_ptr<Queue>> open_queue(unsigned depth, Mode mode) = 0;
    /// Memory the device can transfer to and from directly.
    virtual Result<Buffer> alloc_buffer(std::size_t bytes) = 0;
    /// Makes caller-owned memory (page aligned, whole pages) usable for I/O in place, until
    /// unregistered. ENOTSUP where the device needs no registration (any memory works) or has none.
    virtual Result<void> register_memory(std::span<std::byte>) { return fail(ENOTSUP, "{}: takes no registered memory", info().name); }
    virtual void unregister_memory(std::span<std::byte>) {}
};

// ---- the block class ----

/// A block device opened through the class. Implements Device by forwarding to the driver's, until
/// the device is unbound: from then on every call fails with ENODEV (queues opened before have their
/// own lifetime, and fail the same way). Movable; any thread.
class Handle final : public Device {
public:
    const ClassDeviceInfo& id() const noexcept { return id_; }
    /// What the device was when opened (a block device does not change size while bound).
    const Info& info() const override { return info_; }
    bool alive() const noexcept { return !object_->revoked(); }
    Result<std::unique_ptr<Queue>> open_queue(unsigned depth, Mode mode) override;
    Result<Buffer> alloc_buffer(std::size_t bytes) override;
    Result<void> register_memory(std::span<std::byte> memory) override;
    void unregister_memory(std::span<std::byte> memory) override;

private:
    friend Result<Handle> open(std::string_view);
    Handle(ClassDeviceInfo id, Info info, std::shared_ptr<Revocable<Device>> o) : id_(std::move(id)), info_(std::move(info)), object_(std::move(o)) {}
    ClassDeviceInfo id_;
    Info info_;
    std::shared_ptr<Revocable<Device>> object_;
};

/// Opens a published block device by name ("nvme0n1") or path ("0000:00:04.0/ns1"; "00:04.0/ns1").
Result<Handle> open(std::string_view name_or_path);

/// What `udrv block list` shows.
struct Listing {
    ClassDeviceInfo id;
    Info info;
};
std::vector<Listing> list();

/// For drivers: publishes `dev` as a block device while `bound` stays bound (withdrawn at unbind before
/// the driver's remove). Returns the name given. EEXIST if the name or path is taken.
template <typename D>
Result<std::string> publish(const BoundBase<D>& bound, Device& dev, ClassName name, std::string path);

namespace detail {
udrv::detail::ClassRegistry<Device>& registry();
}
template <typename D>
Result<std::string> publish(const BoundBase<D>& bound, Device& dev, ClassName name, std::string path) {
    return udrv::detail::publish(detail::registry(), bound, dev, std::move(name), std::move(path), "block");
}

}  // namespace udrv::block
