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
// Bursts: a Burst holds up to Burst::kMax packets of one pool without a handle per packet (DPDK's array
// of mbufs). rx_burst fills one, tx_burst takes from its front, and what it still holds goes back to the
// pool together when it is dropped: the same ownership as handles, for fewer instructions per packet
// (bench/README.md).
//
// Rings: a driver keeps the buffers it lent to its device in Slots, one per descriptor; bursts move in
// and out of them without a handle per packet, and what the slots hold goes back when they are dropped.
//
// Unbind: the driver detaches its pools (detach()). From then on a pool gives out nothing (ENODEV),
// a device refuses its packets (ENODEV), and packets the application still holds stay valid memory
// until dropped; the pool goes when its last packet and its last reference have. Detaching may happen
// on another thread while the owner works: the owner's fast path marks itself busy with two plain
// stores, and detach() waits for it after an asymmetric fence (membarrier), so the owner pays no
// atomic read-modify-write and no lock.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "udrv/dma.hpp"
#include "udrv/result.hpp"

namespace udrv::net {

class PacketPool;
class Burst;
class Slots;

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
    friend class Burst;
    friend class Slots;
    friend struct PacketLayout;
    Packet(PacketPool* p, std::uint32_t i, std::uint16_t len = 0) : pool_(p), index_(i), len_(len) {}
    [[gnu::always_inline]] void release() noexcept;  // once per packet: never a call on the fast path
    std::unexpected<Error> bad_resize(std::size_t n) const;
    PacketPool* pool_ = nullptr;
    std::uint32_t index_ = 0;
    std::uint16_t len_ = 0;
};

/// Where one pool's buffers lie (PacketPool::layout()), for a driver's loop over packets of that pool
/// (a burst's): PacketPool::frame_iova() and buffer() without going through the pool for each packet.
/// Valid for packets of the pool it came from only.
struct PacketLayout {
    std::byte* first_frame;           // buffer 0's frame: the pool's base past the headroom
    std::uint64_t first_frame_iova;   // and its bus address (one addition per packet, not two)
    std::size_t stride;               // the buffer size
    std::uint64_t frame_iova(const Packet& p) const noexcept { return frame_iova(p.index_); }
    std::uint64_t frame_iova(std::uint32_t index) const noexcept { return first_frame_iova + index * stride; }
    std::byte* frame(const Packet& p) const noexcept { return frame(p.index_); }
    std::byte* frame(std::uint32_t index) const noexcept { return first_frame + index * stride; }
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
    /// Appends up to `n` buffers (fewer when the pool runs short or the burst fills) to `b`, each with a
    /// frame of `len` bytes; returns how many. EINVAL when `b` holds another pool's packets or `len`
    /// exceeds capacity_per_buffer(); ENODEV once the device is gone.
    Result<unsigned> alloc_burst(Burst& b, unsigned n, std::size_t len = 0) noexcept;
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
    PacketLayout layout() const noexcept { return {pool_.base() + headroom_, pool_.iova() + headroom_, pool_.buffer_size()}; }

    /// For a transmit queue whose own pool this is: checks that the device can DMA from `p`'s buffer
    /// (this pool, or one in the same IOMMU space below this pool's DMA limit with at least
    /// `min_headroom` bytes of headroom, whose device is still bound), and keeps a foreign pool alive as
    /// long as this one.
    Result<void> accept_for_tx(const Packet& p, std::uint32_t min_headroom = 0) { return accept_pool_for_tx(p.pool_, min_headroom); }
    /// The same for every packet of a burst at once.
    Result<void> accept_pool_for_tx(PacketPool* other, std::uint32_t min_headroom = 0) {
        if (other == this || (other && !foreign_.empty() && foreign_.back().get() == other && !other->detached_.load(std::memory_order_relaxed)))
            [[likely]]
            return {};
        return accept_foreign(other, min_headroom);
    }

private:
    friend class Packet;
    friend class Burst;
    friend class Slots;
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
    std::unexpected<Error> bad_burst(const Burst& b, std::size_t len) const;
    Result<void> accept_foreign(PacketPool* other, std::uint32_t min_headroom);
    /// Gives back `indices` (buffers of this pool that a burst owned) in one owner section.
    void give_back(std::span<const std::uint32_t> indices) noexcept;
    /// Gives back the buffers of slots slot_of(0), slot_of(1), ... (up to n) of `s` while they are this
    /// pool's, in one owner section; returns how many slots it emptied (0 once detached: those go back
    /// one by one).
    template <typename SlotOf>
    std::size_t give_back(Slots& s, std::size_t n, SlotOf&& slot_of) noexcept;

    dma::Pool pool_;
    std::uint32_t headroom_;
    const dma::Space* space_;
    std::uint64_t limit_;                                // the owning device's DMA limit
    std::vector<std::shared_ptr<PacketPool>> foreign_;  // pools whose packets this queue transmitted
    std::atomic<bool> owner_busy_{false};
    std::atomic<bool> detached_{false};
    bool unreferenced_ = false;  // the last shared_ptr went while packets were out (under the detach lock)
};

/// Up to kMax packets of one pool, owned together: what rx_burst fills and tx_burst takes from. Packets
/// leave from the front (tx_burst, pop_front) and join at the back (rx_burst, alloc_burst, push_back);
/// dropping the burst, or clear(), gives back what it holds in one owner section. Like a Packet, it
/// belongs to one thread at a time; packets are numbered 0..size() from the front.
class Burst {
public:
    static constexpr unsigned kMax = 256;
    Burst() noexcept {}
    Burst(const Burst&) = delete;
    Burst& operator=(const Burst&) = delete;
    ~Burst() { clear(); }

    unsigned size() const noexcept { return static_cast<unsigned>(end_ - begin_); }
    bool empty() const noexcept { return begin_ == end_; }
    /// Packets that can still join.
    unsigned room() const noexcept { return kMax - size(); }
    /// The pool every packet is from; nullptr while empty.
    PacketPool* pool() const noexcept { return empty() ? nullptr : pool_; }
    /// Packet i's frame (empty for i >= size()).
    std::span<std::byte> data(unsigned i) const noexcept {
        if (i >= size()) return {};
        const std::size_t k = begin_ + i;
        return {pool_->pool_.base() + std::size_t{index_[k]} * pool_->pool_.buffer_size() + pool_->headroom_, len_[k]};
    }
    /// Packet i's frame length (0 for i >= size()).
    std::size_t length(unsigned i) const noexcept { return i < size() ? len_[begin_ + i] : 0; }
    /// Sets packet i's frame length; EINVAL for i >= size() or beyond the buffer.
    Result<void> resize(unsigned i, std::size_t n) noexcept {
        if (i >= size() || n > pool_->capacity_per_buffer()) [[unlikely]]
            return bad_resize(i, n);
        len_[begin_ + i] = static_cast<std::uint16_t>(n);
        return {};
    }
    /// Takes the front packet out as a handle (empty when the burst is).
    Packet pop_front() noexcept {
        if (empty()) return {};
        Packet p(pool_, index_[begin_], len_[begin_]);
        ++begin_;
        return p;
    }
    /// Appends `p`; false (and `p` kept) when `p` is empty, of another pool than the burst's, or the
    /// burst is full.
    bool push_back(Packet&& p) noexcept {
        if (!p.pool_ || !prepare_for(p.pool_) || end_ == kMax) return false;
        append(std::move(p), p.len_);
        return true;
    }
    /// Puts `p` back at the front, where pop_front() made room; false (and `p` kept) when `p` is empty,
    /// of another pool, or there is no room at the front.
    bool push_front(Packet&& p) noexcept {
        if (!p.pool_ || (!empty() && p.pool_ != pool_)) return false;
        if (empty()) {
            begin_ = end_ = kMax;
            pool_ = p.pool_;
        }
        if (begin_ == 0) return false;
        --begin_;
        index_[begin_] = p.index_;
        len_[begin_] = p.len_;
        p.pool_ = nullptr;
        return true;
    }
    /// Gives every packet back to its pool.
    void clear() noexcept {
        if (!empty()) pool_->give_back(std::span<const std::uint32_t>(index_ + begin_, end_ - begin_));
        begin_ = end_ = 0;
    }

    // ---- for drivers ----
    /// Readies the burst for `pool`'s packets: true with room() slots free at the back, false if it
    /// holds another pool's packets (the caller's mistake to report).
    bool prepare_for(const PacketPool* pool) noexcept {
        if (empty()) {
            begin_ = end_ = 0;
            pool_ = const_cast<PacketPool*>(pool);
            return true;
        }
        if (pool_ != pool) return false;
        compact();
        return true;
    }
    /// Appends `p` with frame length `len`, after prepare_for(p's pool) and within room(): what a
    /// receive loop bounded by room() does, without checking each packet again.
    void append(Packet&& p, std::uint16_t len) noexcept {
        index_[end_] = p.index_;
        len_[end_] = len;
        ++end_;
        p.pool_ = nullptr;
    }
    // Burst <-> Slots: a driver's loops between a burst and its rings. Each keeps the burst's and the
    // slots' positions in locals: the driver's descriptor stores could alias the fields otherwise.
    /// Lends the first packets, at most n, to the device: packet k goes into slot `first + k` of `s`
    /// and `describe(slot, frame_iova, length, frame)` writes its descriptor (`frame`: the frame's
    /// first byte, for a header in the headroom before it). Stops at a slot that still holds a buffer
    /// (the device has not given it back). Returns how many.
    template <typename Describe>
    unsigned lend_front(unsigned n, Slots& s, std::size_t first, Describe&& describe) noexcept;
    /// What a receive loop found in slot `slot` (Burst::harvest_each; slot numbers wrap): a frame of
    /// `len` bytes to keep, kDrop (a bad frame: its buffer stays in the slot), kNotASlot (the device
    /// named no slot of ours, an error the caller counts: nothing is taken or described), or kNotDone
    /// (the device has not written this slot back yet: the harvest ends before it).
    struct Harvested {
        std::size_t slot;
        int len;
    };
    static constexpr int kDrop = -1, kNotASlot = -2, kNotDone = -3;
    /// A receive ring's harvest into this burst, prepare_for()'d the pool whose buffers `s` holds: for
    /// k = 0, 1, ... up to n, in order and once each, `at(k)` says which slot the device is done with
    /// and what it holds (a Harvested); a kept frame's buffer moves to the back of this burst and a
    /// fresh one from the pool takes its slot; then `describe(slot, frame_iova)` gives the slot's buffer
    /// back to the device. Stops at the first kNotDone, or early when the pool runs short or this burst
    /// fills (0 once the pool's device is gone); returns the k it stopped at (the frames kept are the
    /// growth of size()).
    template <typename At, typename Describe>
    unsigned harvest_each(Slots& s, unsigned n, At&& at, Describe&& describe) noexcept;
    /// harvest_each over slots first, first + 1, ... of a ring the device fills in order: `inspect(slot)`
    /// returns the frame's length, kDrop, or kNotDone where the device's writing has not got to yet.
    template <typename Inspect, typename Describe>
    unsigned harvest(Slots& s, std::size_t first, unsigned n, Inspect&& inspect, Describe&& describe) noexcept;

private:
    friend class PacketPool;
    friend class Slots;
    // harvest()'s finding when the slots it visits do not wrap: a slot number below the slots' size by
    // construction, used without a mask.
    struct HarvestedInRange {
        std::size_t slot;
        int len;
    };
    template <typename H>
    static std::size_t slot_of(const H& h, std::size_t mask) noexcept {
        if constexpr (std::is_same_v<H, HarvestedInRange>)
            return h.slot;
        else
            return h.slot & mask;
    }
    std::unexpected<Error> bad_resize(unsigned i, std::size_t n) const;
    void compact() noexcept {
        if (begin_ == 0) return;
        for (unsigned k = begin_; k < end_; ++k) {
            index_[k - begin_] = index_[k];
            len_[k - begin_] = len_[k];
        }
        end_ -= begin_;
        begin_ = 0;
    }
    PacketPool* pool_ = nullptr;
    // The packets are [begin_, end_). size_t: a type the index and length stores cannot alias, so a
    // loop over the burst keeps them in registers.
    std::size_t begin_ = 0, end_ = 0;
    std::uint32_t index_[kMax];          // uninitialised beyond end_: written before read
    std::uint16_t len_[kMax];
};

/// The buffers a driver has lent to its device, by descriptor slot (ixy's per-descriptor buffer table):
/// each slot is empty or holds one packet's buffer. Whatever the slots hold when they are dropped goes
/// back to its pool. Handles go in and out with put() and take(); bursts move their packets in and out
/// without a handle each (Burst::lend_front, Burst::harvest), and give_back() returns what the device
/// is done with. The number of slots is a power of two and every slot number is taken modulo it, so no
/// number reaches outside the table.
class Slots {
public:
    /// `n`: a power of two (a ring's size); std::invalid_argument otherwise (a driver's mistake).
    explicit Slots(std::size_t n);
    Slots(const Slots&) = delete;
    Slots& operator=(const Slots&) = delete;
    ~Slots() { clear(); }

    std::size_t size() const noexcept { return mask_ + 1; }
    bool holds(std::size_t i) const noexcept { return at(i).pool != nullptr; }
    /// The first empty slot from `from` on, wrapping around; size() when every slot holds a buffer.
    std::size_t next_empty(std::size_t from) const noexcept {
        for (std::size_t k = 0; k <= mask_; ++k)
            if (!holds(from + k)) return (from + k) & mask_;
        return size();
    }
    /// Where slot i's frame lies for the device, its buffer being of the pool `layout` describes (0 for
    /// an empty slot).
    std::uint64_t frame_iova(std::size_t i, const PacketLayout& layout) const noexcept {
        const Entry& e = at(i);
        return e.pool ? layout.frame_iova(e.index) : 0;
    }
    /// Puts `p` in slot i (an empty handle empties it); what the slot held goes back first.
    void put(std::size_t i, Packet&& p) noexcept {
        Entry& e = at(i);
        if (e.pool) [[unlikely]]
            (void)take(i);
        e = {p.pool_, p.index_};
        p.pool_ = nullptr;
    }
    /// Takes slot i's buffer out as a handle with frame length `len` (empty handle for an empty slot).
    Packet take(std::size_t i, std::uint16_t len = 0) noexcept {
        Entry& e = at(i);
        Packet p(e.pool, e.index, e.pool ? len : 0);
        e.pool = nullptr;
        return p;
    }
    /// A slot number as a device gave it (a used ring's id): one beyond the slots names none. A plain
    /// std::size_t is a driver's own count, and wraps.
    struct DeviceSlot {
        std::size_t number;
    };
    /// Gives the buffers in slots `slot_of(0)`, ..., `slot_of(n - 1)` (each a std::size_t or a
    /// DeviceSlot) back to their pools (the device is done with them), a run of one pool's in one owner
    /// section. Returns how many of those named no buffer: an empty slot, or a DeviceSlot beyond the
    /// slots (skipped).
    template <typename SlotOf>
    std::size_t give_back_each(std::size_t n, SlotOf&& slot_of) noexcept;
    /// The same for slots first .. first + n - 1 (numbers wrap).
    void give_back(std::size_t first, std::size_t n) noexcept {
        first &= mask_;
        if (first + n <= size()) [[likely]]  // no wrap: no mask per slot
            (void)give_back_each(n, [first](std::size_t k) { return InRange{first + k}; });
        else
            (void)give_back_each(n, [first, mask = mask_](std::size_t k) { return (first + k) & mask; });
    }
    /// Gives every buffer back.
    void clear() noexcept {
        for (std::size_t i = 0; i <= mask_; ++i) (void)take(i);
    }

private:
    friend class Burst;
    friend class PacketPool;
    struct Entry {
        PacketPool* pool = nullptr;
        std::uint32_t index = 0;
    };
    Entry& at(std::size_t i) noexcept { return entries_[i & mask_]; }
    const Entry& at(std::size_t i) const noexcept { return entries_[i & mask_]; }
    // A driver's own count wraps; a number a device gave is checked first (decided at compile time),
    // and is a slot's number as it is once beyond() has said no: number() is used only after that.
    // give_back()'s numbers when they do not wrap: below size() by construction.
    struct InRange {
        std::size_t number;
    };
    static bool beyond(std::size_t, std::size_t) noexcept { return false; }
    static bool beyond(DeviceSlot s, std::size_t mask) noexcept { return s.number > mask; }
    static bool beyond(InRange, std::size_t) noexcept { return false; }
    static std::size_t number(std::size_t i, std::size_t mask) noexcept { return i & mask; }
    static std::size_t number(DeviceSlot s, std::size_t) noexcept { return s.number; }
    static std::size_t number(InRange s, std::size_t) noexcept { return s.number; }
    std::unique_ptr<Entry[]> entries_;
    std::size_t mask_;
};

template <typename Describe>
unsigned Burst::lend_front(unsigned n, Slots& s, std::size_t first, Describe&& describe) noexcept {
    n = std::min(n, size());
    if (!n) return 0;
    PacketPool* const pool = pool_;
    const PacketLayout layout = pool->layout();
    Slots::Entry* const entries = s.entries_.get();
    const std::size_t mask = s.mask_, from = begin_;
    auto lend = [&](auto slot_at) {
        std::size_t k = 0;
        for (; k < n; ++k) {
            const std::size_t slot = slot_at(k);
            if (entries[slot].pool) [[unlikely]]
                break;
            const std::uint32_t index = index_[from + k];
            entries[slot] = {pool, index};
            describe(slot, layout.frame_iova(index), len_[from + k], layout.frame(index));
        }
        return k;
    };
    first &= mask;
    const std::size_t k = first + n <= mask + 1 ? lend([first](std::size_t i) { return first + i; })  // no wrap: no mask per slot
                                                : lend([first, mask](std::size_t i) { return (first + i) & mask; });
    begin_ = from + k;
    return static_cast<unsigned>(k);
}

template <typename Inspect, typename Describe>
unsigned Burst::harvest(Slots& s, std::size_t first, unsigned n, Inspect&& inspect, Describe&& describe) noexcept {
    const std::size_t mask = s.mask_;
    first &= mask;
    if (first + n <= mask + 1) [[likely]]  // no wrap: the slots' table and the ring are walked without a mask
        return harvest_each(
            s, n,
            [&](std::size_t k) {
                const std::size_t slot = first + k;
                return HarvestedInRange{slot, inspect(slot)};
            },
            describe);
    return harvest_each(
        s, n,
        [&](std::size_t k) {
            const std::size_t slot = (first + k) & mask;
            return Harvested{slot, inspect(slot)};
        },
        describe);
}

template <typename At, typename Describe>
unsigned Burst::harvest_each(Slots& s, unsigned n, At&& at, Describe&& describe) noexcept {
    PacketPool* const pool = pool_;
    if (!pool) return 0;
    const std::size_t mask = s.mask_;  // before enter()'s fence, where a caller's copy of it is still known to be equal
    // One owner section around the loop: a kept frame's replacement is taken from the pool as it goes.
    pool->enter();
    if (pool->detached_.load(std::memory_order_relaxed)) [[unlikely]] {
        pool->leave();
        return 0;
    }
    std::size_t got;
    {
        dma::Pool::Taker fresh(pool->pool_);
        got = std::min<std::size_t>({n, room(), fresh.available()});  // so fresh.take() below always has one
        const PacketLayout layout = pool->layout();
        Slots::Entry* const entries = s.entries_.get();
        std::size_t end = end_, k = 0;
        for (; k < got; ++k) {
            const auto h = at(k);
            if (h.len == kNotASlot) [[unlikely]]
                continue;
            if (h.len == kNotDone) break;
            const std::size_t slot = slot_of(h, mask);
            Slots::Entry& e = entries[slot];
            if (h.len >= 0 && e.pool == pool) [[likely]] {
                index_[end] = e.index;
                len_[end] = static_cast<std::uint16_t>(h.len);
                ++end;
                e.index = fresh.take();
            } else if (e.pool != pool) [[unlikely]] {  // not a buffer of the ring's pool (never, in a driver's ring)
                (void)s.take(slot);
                e = {pool, fresh.take()};
            }
            describe(slot, layout.frame_iova(e.index));
        }
        end_ = end;
        got = k;
    }
    pool->leave();
    return static_cast<unsigned>(got);
}

inline Result<unsigned> PacketPool::alloc_burst(Burst& b, unsigned n, std::size_t len) noexcept {
    if (len > capacity_per_buffer() || !b.prepare_for(this)) [[unlikely]]
        return bad_burst(b, len);
    n = std::min(n, b.room());
    enter();
    if (detached_.load(std::memory_order_relaxed)) [[unlikely]] {
        leave();
        return detached_error();
    }
    const auto got = static_cast<unsigned>(pool_.take_many(std::span(b.index_ + b.end_, n)));
    leave();
    std::fill_n(b.len_ + b.end_, got, static_cast<std::uint16_t>(len));
    b.end_ += got;
    return got;
}

template <typename SlotOf>
std::size_t PacketPool::give_back(Slots& s, std::size_t n, SlotOf&& slot_of) noexcept {
    enter();
    if (detached_.load(std::memory_order_relaxed)) [[unlikely]] {
        leave();
        return 0;
    }
    Slots::Entry* const entries = s.entries_.get();
    const std::size_t mask = s.mask_;
    std::size_t done = 0;
    {
        dma::Pool::Giver back(pool_);
        if constexpr (std::is_same_v<std::remove_cvref_t<decltype(slot_of(0))>, Slots::InRange>) {
            // A run of slots that does not wrap: walked by one pointer.
            Slots::Entry* const from = entries + slot_of(0).number;
            Slots::Entry* e = from;
            for (Slots::Entry* const to = from + n; e != to && e->pool == this; ++e) {
                e->pool = nullptr;
                (void)back.give(e->index);  // an index out of range or already free stays out
            }
            done = static_cast<std::size_t>(e - from);
        } else {
            for (; done < n; ++done) {
                const auto named = slot_of(done);
                if (Slots::beyond(named, mask)) [[unlikely]]
                    break;
                Slots::Entry& e = entries[Slots::number(named, mask)];
                if (e.pool != this) break;
                e.pool = nullptr;
                (void)back.give(e.index);
            }
        }
    }
    leave();
    return done;
}

template <typename SlotOf>
std::size_t Slots::give_back_each(std::size_t n, SlotOf&& slot_of) noexcept {
    std::size_t missing = 0;
    for (std::size_t k = 0; k < n;) {
        const auto named = slot_of(k);
        const std::size_t slot = number(named, mask_);
        PacketPool* const pool = beyond(named, mask_) ? nullptr : entries_[slot].pool;
        const std::size_t done = pool ? pool->give_back(*this, n - k, [&](std::size_t j) { return slot_of(k + j); }) : 0;
        if (done) {
            k += done;
            continue;
        }
        if (pool)
            (void)take(slot);  // its pool detached: one by one, under the pool's lock
        else
            ++missing;
        ++k;
    }
    return missing;
}

inline void PacketPool::give_back(std::span<const std::uint32_t> indices) noexcept {
    enter();
    if (!detached_.load(std::memory_order_relaxed)) [[likely]] {
        (void)pool_.give_many(indices);  // cannot fail: a burst is the only owner of its indices
        leave();
        return;
    }
    leave();
    for (std::uint32_t i : indices) give_back_detached(this, i);  // the last may free the pool: nothing touches it after
}

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
        (void)p->pool_.give(index_);  // cannot fail: a handle is the only owner of its index
        p->leave();
        return;
    }
    p->leave();
    PacketPool::give_back_detached(p, index_);  // may free the pool: this was its last packet
}

}  // namespace udrv::net
