// The packet API: buffers from a per-queue DMA pool, batched rx/tx, device statistics.
//
// Ownership: a Packet is a move-only handle to one pool buffer. rx_batch hands the caller packets;
// tx_batch takes them (the handles it accepted are left empty), and the driver gives the buffer back to
// the pool once the device is done with it. Dropping a handle returns its buffer. So a packet cannot
// be freed twice or touched after it was handed to the device. A pool and its queue belong to one
// thread: no locks.
//
// Zero-copy forwarding: tx_batch also takes packets received on another port, when that port's pool
// lies in the same IOMMU address space (udrv puts all devices of a process in one VFIO container) and
// below this device's DMA limit. The transmitting queue then keeps the other pool alive until it is
// done with the buffer, so ports can be removed in any order. Both queues must belong to the same
// thread, as the buffer returns to its pool from the transmitting queue's reclaim. Handles the
// application itself holds must be dropped (or transmitted) before the port they came from is removed.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "udrv/dma.hpp"
#include "udrv/irq.hpp"
#include "udrv/result.hpp"

namespace udrv::net {

using Mac = std::array<std::uint8_t, 6>;
std::string format_mac(const Mac& m);

class PacketPool;

class Packet {
public:
    Packet() = default;
    Packet(Packet&& o) noexcept : pool_(o.pool_), index_(o.index_), len_(o.len_) { o.pool_ = nullptr; }
    Packet& operator=(Packet&& o) noexcept {
        if (this != &o) {
            release();
            pool_ = o.pool_;
            index_ = o.index_;
            len_ = o.len_;
            o.pool_ = nullptr;
        }
        return *this;
    }
    Packet(const Packet&) = delete;
    Packet& operator=(const Packet&) = delete;
    ~Packet() { release(); }

    explicit operator bool() const noexcept { return pool_ != nullptr; }
    /// The frame: `size()` bytes starting at the Ethernet header.
    std::span<std::byte> data() const noexcept;
    std::size_t size() const noexcept { return len_; }
    /// Sets the frame length (for building packets); EINVAL beyond capacity().
    Result<void> resize(std::size_t n) noexcept {
        if (!pool_ || n > capacity()) [[unlikely]]
            return bad_resize(n);
        len_ = static_cast<std::uint16_t>(n);
        return {};
    }
    std::size_t capacity() const noexcept;
    /// The pool the buffer belongs to (for drivers).
    PacketPool* pool() const noexcept { return pool_; }

private:
    friend class PacketPool;
    Packet(PacketPool* p, std::uint32_t i) : pool_(p), index_(i) {}
    [[gnu::always_inline]] void release() noexcept;  // once per packet: never a call
    std::unexpected<Error> bad_resize(std::size_t n) const;
    PacketPool* pool_ = nullptr;
    std::uint32_t index_ = 0;
    std::uint16_t len_ = 0;
};

/// Fixed-size packet buffers in DMA memory. Each buffer has `headroom` bytes before the frame for the
/// driver's descriptors/headers (virtio's net header lives there).
class PacketPool : public std::enable_shared_from_this<PacketPool> {
public:
    static Result<std::shared_ptr<PacketPool>> create(const dma::Allocator& dma, std::uint32_t count, std::uint32_t buffer_size = 2048,
                                                      std::uint32_t headroom = 64);
    /// ENOMEM when every buffer is in use.
    Result<Packet> alloc() noexcept {
        auto b = pool_.alloc();
        if (!b) [[unlikely]]
            return std::unexpected(std::move(b.error()));
        return Packet(this, b->index);
    }
    /// Fills out[0..n) with up to out.size() buffers (DPDK's rte_pktmbuf_alloc_bulk); returns n.
    unsigned alloc_bulk(std::span<Packet> out) noexcept {
        unsigned n = 0;
        for (std::uint32_t i; n < out.size() && pool_.take(i); ++n) out[n] = Packet(this, i);
        return n;
    }
    std::uint32_t available() const noexcept { return pool_.available(); }
    std::uint32_t capacity() const noexcept { return pool_.capacity(); }
    /// Frame bytes one buffer holds (the buffer less the headroom).
    std::size_t capacity_per_buffer() const noexcept { return pool_.buffer_size() - headroom_; }
    std::uint32_t headroom() const noexcept { return headroom_; }
    bool owns(const Packet& p) const noexcept { return p.pool_ == this; }

    // For drivers. These work on a packet of any pool (each uses the packet's own pool):
    /// The whole buffer, headroom included.
    static std::span<std::byte> buffer(const Packet& p) noexcept { return p.pool_->pool_.buffer(p.index_).bytes; }
    /// Bus address of the frame's first byte (data()); the headroom lies before it.
    static std::uint64_t frame_iova(const Packet& p) noexcept { return p.pool_->pool_.buffer(p.index_).iova + p.pool_->headroom_; }
    static std::uint32_t headroom_of(const Packet& p) noexcept { return p.pool_->headroom_; }

    /// For a transmit queue whose own pool this is: checks that the device can DMA from `p`'s buffer
    /// (this pool, or one in the same IOMMU space below this pool's DMA limit with at least
    /// `min_headroom` bytes of headroom), and keeps a foreign pool alive as long as this one.
    Result<void> accept_for_tx(const Packet& p, std::uint32_t min_headroom = 0) {
        if (p.pool_ == this || (p.pool_ && !foreign_.empty() && foreign_.back().get() == p.pool_)) [[likely]]
            return {};
        return accept_foreign(p, min_headroom);
    }

private:
    friend class Packet;
    PacketPool(dma::Pool pool, std::uint32_t headroom, const dma::Space* space, std::uint64_t limit)
        : pool_(std::move(pool)), headroom_(headroom), space_(space), limit_(limit) {}
    Result<void> accept_foreign(const Packet& p, std::uint32_t min_headroom);
    dma::Pool pool_;
    std::uint32_t headroom_;
    const dma::Space* space_;
    std::uint64_t limit_;                                // the owning device's DMA limit
    std::vector<std::shared_ptr<PacketPool>> foreign_;  // pools whose packets this queue transmitted
};

inline std::span<std::byte> Packet::data() const noexcept {
    if (!pool_) return {};
    return PacketPool::buffer(*this).subspan(pool_->headroom_, len_);
}
inline std::size_t Packet::capacity() const noexcept { return pool_ ? pool_->pool_.buffer_size() - pool_->headroom_ : 0; }
inline void Packet::release() noexcept {
    if (!pool_) return;
    (void)pool_->pool_.free(index_);  // cannot fail: a handle is the only owner of its index
    pool_ = nullptr;
}

/// Counters; from the device's own registers where it has them, else counted by the driver.
struct Stats {
    std::uint64_t rx_packets = 0, rx_bytes = 0, rx_dropped = 0, rx_errors = 0;
    std::uint64_t tx_packets = 0, tx_bytes = 0, tx_errors = 0;
    std::uint64_t rx_interrupts = 0;  ///< receive interrupts taken by rx_wait
};

/// Counters a queue's owner thread keeps while stats() may read them from another thread: count() is a
/// relaxed atomic load and store (one writer, so no locked read-modify-write on the packet path) and
/// read_counter() a relaxed load, so a reader never sees a torn or half-updated value.
inline void count(std::uint64_t& counter, std::uint64_t n = 1) noexcept {
    std::atomic_ref<std::uint64_t> c(counter);
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline std::uint64_t read_counter(const std::uint64_t& counter) noexcept {
    // atomic_ref<const T> is C++26; the load does not write.
    return std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(counter)).load(std::memory_order_relaxed);
}
/// Adds the counters of `from` (kept with count()) to `to`.
inline void add_counters(Stats& to, const Stats& from) noexcept {
    to.rx_packets += read_counter(from.rx_packets);
    to.rx_bytes += read_counter(from.rx_bytes);
    to.rx_dropped += read_counter(from.rx_dropped);
    to.rx_errors += read_counter(from.rx_errors);
    to.tx_packets += read_counter(from.tx_packets);
    to.tx_bytes += read_counter(from.tx_bytes);
    to.tx_errors += read_counter(from.tx_errors);
    to.rx_interrupts += read_counter(from.rx_interrupts);
}

/// How rx_wait waits for frames (DPDK's polling or rx interrupt mode).
enum class WaitMode {
    poll,       ///< spin on the ring: lowest latency, one busy CPU
    interrupt,  ///< arm the queue's interrupt (MSI-X -> eventfd) and sleep
    hybrid,     ///< spin for kHybridSpin, then sleep as in interrupt mode
};
inline constexpr std::chrono::microseconds kHybridSpin{200};
Result<WaitMode> parse_wait_mode(std::string_view s);

/// A network device as drivers expose it. Queue n belongs to one thread.
class Device {
public:
    virtual ~Device() = default;
    virtual Mac mac() const = 0;
    virtual bool link_up() const = 0;
    virtual Result<Stats> stats() = 0;
    virtual Result<void> set_promiscuous(bool on) = 0;
    /// Queue pairs in use (rx and tx queue n belong together); traffic may arrive on any of them.
    virtual unsigned queues() const = 0;
    /// Queue pairs the device and driver can use at most.
    virtual unsigned max_queues() const { return queues(); }
    /// Spreads traffic over n queue pairs (1 <= n <= max_queues()). Call it before handing queues to
    /// their threads: it touches every queue.
    virtual Result<void> set_queues(unsigned n) {
        if (n == queues()) return {};
        return std::unexpected(Error(ENOTSUP, "the device has " + std::to_string(queues()) + " queue pair(s) and no way to change that"));
    }
    /// Receives up to out.size() packets into out[0..n); returns n.
    virtual Result<unsigned> rx_batch(unsigned queue, std::span<Packet> out) = 0;
    /// Queues the first n packets for transmission and returns n; those handles are left empty.
    virtual Result<unsigned> tx_batch(unsigned queue, std::span<Packet> packets) = 0;
    /// The pool that transmit buffers for `queue` come from.
    virtual PacketPool& tx_pool(unsigned queue) = 0;
    /// Waits until receive queue `queue` has frames (true) or `timeout` passes (false); take them
    /// with rx_batch. interrupt and hybrid need the device's interrupts: ENOTSUP without them.
    virtual Result<bool> rx_wait(unsigned queue, WaitMode mode, std::chrono::milliseconds timeout) = 0;
};

/// For drivers: rx_wait over three hooks. ready(): frames in the ring; arm()/disarm(): enable and
/// disable the queue's interrupt; `irq`: its vector (nullptr when the device has none). After arm()
/// the ring is checked again, so frames that arrived before the interrupt was armed are not missed.
Result<bool> wait_for_rx(WaitMode mode, std::chrono::milliseconds timeout, irq::Vector* irq, const std::function<bool()>& ready,
                         const std::function<void()>& arm, const std::function<void()>& disarm);

}  // namespace udrv::net
