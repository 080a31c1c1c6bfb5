// Packets: move-only handles to buffers of a per-queue DMA pool (ixy's mempool, DPDK's mbufs).
//
// Ownership: rx_batch hands the caller packets; tx_batch takes them (the handles it accepted are left
// empty) and the driver gives the buffer back once the device is done with it. Dropping a handle
// returns its buffer. So a packet cannot be freed twice or touched after it was handed to the device.
// A pool and the queue it serves belong to one thread (the owner): allocation and return take no lock.
//
// Zero-copy forwarding: tx_batch also takes packets received on another port, when that port's pool
// lies in the same IOMMU address space (udrv puts all devices of a process in one VFIO container) and
// below this device's DMA limit. The transmitting queue then keeps the other pool alive until it is
// done with the buffer, so ports can be removed in any order. Both queues must belong to one thread.
//
// Unbind: the driver detaches its pools (detach()). From then on a pool gives out nothing (ENODEV),
// a device refuses its packets (ENODEV), and packets the application still holds stay valid memory
// until dropped; the pool goes when its last packet and its last reference have. Detaching may happen
// on another thread while the owner works: the owner's fast path marks itself busy with two plain
// stores, and detach() waits for it after an asymmetric fence (membarrier), so the owner pays no
// atomic read-modify-write and no lock.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "udrv/dma.hpp"
#include "udrv/result.hpp"

namespace udrv::net {

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
    /// Has the device this packet came from been unbound? (Its bytes stay readable until dropped.)
    bool orphaned() const noexcept;

private:
    friend class PacketPool;
    Packet(PacketPool* p, std::uint32_t i) : pool_(p), index_(i) {}
    [[gnu::always_inline]] void release() noexcept;  // once per packet: never a call on the fast path
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
    PacketPool(const PacketPool&) = delete;
    PacketPool& operator=(const PacketPool&) = delete;

    /// ENOMEM when every buffer is in use; ENODEV once the pool's device is gone.
    Result<Packet> alloc() noexcept {
        enter();
        if (detached_.load(std::memory_order_relaxed)) [[unlikely]] {
            leave();
            return detached_error();
        }
        auto b = pool_.alloc();
        leave();
        if (!b) [[unlikely]]
            return std::unexpected(std::move(b.error()));
        return Packet(this, b->index);
    }
    /// Fills out[0..n) with up to out.size() buffers (DPDK's rte_pktmbuf_alloc_bulk); returns n (0 once
    /// the device is gone).
    unsigned alloc_bulk(std::span<Packet> out) noexcept {
        unsigned n = 0;
        enter();
        if (!detached_.load(std::memory_order_relaxed)) [[likely]]
            for (std::uint32_t i; n < out.size() && pool_.take(i); ++n) out[n] = Packet(this, i);
        leave();
        return n;
    }
    /// alloc() for drivers' per-packet paths: a buffer into `out` (empty before), or false when none is
    /// free or the device is gone, without building an error.
    bool try_alloc(Packet& out) noexcept {
        std::uint32_t i;
        enter();
        const bool ok = !detached_.load(std::memory_order_relaxed) && pool_.take(i);
        leave();
        if (ok) [[likely]]
            out = Packet(this, i);
        return ok;
    }
    /// Up to `max` buffers, each handed to `take(Packet&&)` as it is allocated, under one owner section
    /// (a driver refilling a receive ring); returns how many (0 once the device is gone).
    template <typename F>
    unsigned alloc_each(unsigned max, F&& take) noexcept {
        unsigned n = 0;
        enter();
        if (!detached_.load(std::memory_order_relaxed)) [[likely]]
            for (std::uint32_t i; n < max && pool_.take(i); ++n) take(Packet(this, i));
        leave();
        return n;
    }
    std::uint32_t available() const noexcept { return pool_.available(); }
    std::uint32_t capacity() const noexcept { return pool_.capacity(); }
    /// Frame bytes one buffer holds (the buffer less the headroom).
    std::size_t capacity_per_buffer() const noexcept { return pool_.buffer_size() - headroom_; }
    std::uint32_t headroom() const noexcept { return headroom_; }
    bool owns(const Packet& p) const noexcept { return p.pool_ == this; }
    bool detached() const noexcept { return detached_.load(std::memory_order_acquire); }

    // ---- for drivers ----
    /// At unbind, from the driver's teardown (any thread; not from inside this pool's owner's call):
    /// the pool gives out nothing more, devices refuse its packets, and packets returned from now on
    /// (the driver's own in-flight ones included) go back under a lock. Waits for an owner operation in
    /// progress. Idempotent.
    void detach() noexcept;
    /// These work on a packet of any pool (each uses the packet's own pool):
    /// The whole buffer, headroom included.
    static std::span<std::byte> buffer(const Packet& p) noexcept { return p.pool_->pool_.buffer(p.index_).bytes; }
    /// Bus address of the frame's first byte (data()); the headroom lies before it.
    static std::uint64_t frame_iova(const Packet& p) noexcept { return p.pool_->pool_.buffer(p.index_).iova + p.pool_->headroom_; }
    static std::uint32_t headroom_of(const Packet& p) noexcept { return p.pool_->headroom_; }

    /// For a transmit queue whose own pool this is: checks that the device can DMA from `p`'s buffer
    /// (this pool, or one in the same IOMMU space below this pool's DMA limit with at least
    /// `min_headroom` bytes of headroom, whose device is still bound), and keeps a foreign pool alive as
    /// long as this one.
    Result<void> accept_for_tx(const Packet& p, std::uint32_t min_headroom = 0) {
        if (p.pool_ == this || (p.pool_ && !foreign_.empty() && foreign_.back().get() == p.pool_ && !p.pool_->detached_.load(std::memory_order_relaxed)))
            [[likely]]
            return {};
        return accept_foreign(p, min_headroom);
    }

private:
    friend class Packet;
    PacketPool(dma::Pool pool, std::uint32_t headroom, const dma::Space* space, std::uint64_t limit)
        : pool_(std::move(pool)), headroom_(headroom), space_(space), limit_(limit) {}
    ~PacketPool() = default;
    static void last_reference_dropped(PacketPool* p) noexcept;
    static void give_back_detached(PacketPool* p, std::uint32_t index) noexcept;
    // The owner's fast path: busy while it touches the free list (see detach()).
    void enter() noexcept {
        owner_busy_.store(true, std::memory_order_relaxed);
        std::atomic_signal_fence(std::memory_order_seq_cst);  // the store before the detached_ load; detach()'s membarrier orders it for the CPU
    }
    void leave() noexcept { owner_busy_.store(false, std::memory_order_release); }
    std::unexpected<Error> detached_error() const;
    Result<void> accept_foreign(const Packet& p, std::uint32_t min_headroom);

    dma::Pool pool_;
    std::uint32_t headroom_;
    const dma::Space* space_;
    std::uint64_t limit_;                                // the owning device's DMA limit
    std::vector<std::shared_ptr<PacketPool>> foreign_;  // pools whose packets this queue transmitted
    std::atomic<bool> owner_busy_{false};
    std::atomic<bool> detached_{false};
    bool unreferenced_ = false;  // the last shared_ptr went while packets were out (under the detach lock)
};

inline std::span<std::byte> Packet::data() const noexcept {
    if (!pool_) return {};
    return PacketPool::buffer(*this).subspan(pool_->headroom_, len_);
}
inline std::size_t Packet::capacity() const noexcept { return pool_ ? pool_->pool_.buffer_size() - pool_->headroom_ : 0; }
inline bool Packet::orphaned() const noexcept { return pool_ && pool_->detached(); }
inline void Packet::release() noexcept {
    PacketPool* p = pool_;
    if (!p) return;
    pool_ = nullptr;
    p->enter();
    if (!p->detached_.load(std::memory_order_relaxed)) [[likely]] {
        (void)p->pool_.free(index_);  // cannot fail: a handle is the only owner of its index
        p->leave();
        return;
    }
    p->leave();
    PacketPool::give_back_detached(p, index_);  // may free the pool: this was its last packet
}

}  // namespace udrv::net
