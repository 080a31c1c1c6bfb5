// virtio-net over the virtio 1.x modern PCI transport (virtio spec 1.2, 4.1 and 5.1): configuration
// structures found through the vendor capabilities, feature negotiation, split virtqueues. Receive/
// transmit queue pairs, each owned by one thread; polled, or woken by its receive queue's MSI-X vector
// (rx_wait). With VIRTIO_NET_F_MQ the device has several pairs: all are set up at probe, one is in
// use until set_queues() asks the device (control queue, VQ_PAIRS_SET) to spread traffic over more.
#pragma once

#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include "udrv/mmio.hpp"
#include "udrv/net.hpp"
#include "udrv/pci.hpp"

namespace udrv::virtio_net {

/// What a used-ring element says, checked before it is believed: the descriptor id must be one this
/// driver has in flight (at most `last_id`, the ring's size - 1: what a loop over the ring keeps anyway,
/// as its mask; `in_flight(id)` is asked only then), and a receive buffer's length must hold the
/// `header` and at most `capacity` bytes after it (a buffer's size: far below 2^32, so a length short
/// of the header, which wraps in the subtraction, is beyond it too).
enum class UsedCheck { ok, bad_id, bad_length };
template <typename InFlight>
constexpr UsedCheck check_used(std::uint32_t id, std::uint32_t len, std::size_t last_id, InFlight&& in_flight, std::size_t header,
                               std::uint32_t capacity) noexcept {
    if (id > last_id || !in_flight(id)) return UsedCheck::bad_id;
    if (std::size_t{len} - header > capacity) return UsedCheck::bad_length;  // one comparison for both ends
    return UsedCheck::ok;
}

/// The split virtqueue's layout (virtio 1.2, 2.7): a descriptor table, the available ring (the driver
/// writes it: a header, `size` descriptor ids, used_event) and the used ring (the device writes it: a
/// header, `size` elements, avail_event). Little-endian, as x86 is.
namespace vring {
struct Desc {
    std::uint64_t addr;
    std::uint32_t len;
    std::uint16_t flags, next;
};
static_assert(sizeof(Desc) == 16);
inline constexpr std::uint16_t kDescNext = 1, kDescWrite = 2;
struct Header {  // of either ring
    std::uint16_t flags, idx;
};
static_assert(sizeof(Header) == 4);
inline constexpr std::uint16_t kAvailNoInterrupt = 1;  // VRING_AVAIL_F_NO_INTERRUPT
inline constexpr std::uint16_t kUsedNoNotify = 1;      // VRING_USED_F_NO_NOTIFY
struct UsedElem {
    std::uint32_t id;   // head of the descriptor chain the device is done with
    std::uint32_t len;  // bytes it wrote into the chain
};
static_assert(sizeof(UsedElem) == 8);
constexpr std::size_t avail_bytes(std::uint16_t size) { return sizeof(Header) + 2u * size + 2u; }
constexpr std::size_t used_bytes(std::uint16_t size) { return sizeof(Header) + sizeof(UsedElem) * size + 2u; }
}  // namespace vring

/// One split virtqueue in DMA memory. The per-packet operations are inline, below: a call per packet
/// is measurable.
class Virtqueue {
public:
    using Desc = vring::Desc;
    static constexpr std::uint16_t kDescNext = vring::kDescNext, kDescWrite = vring::kDescWrite;

    static Result<Virtqueue> create(const dma::Allocator& dma, std::uint16_t size);
    std::uint16_t size() const noexcept { return size_; }
    // Two ways to use the descriptors: the receive and transmit queues keep descriptor i for the buffer
    // in slot i of the driver's net::Slots (Adder, Reader); the control queue takes them from a free list.
    /// Chains made available and not yet returned (a queue used through Adder and Reader).
    std::uint16_t in_flight() const noexcept { return static_cast<std::uint16_t>(avail_idx_ - last_used_); }
    /// Entries added since the last publish().
    std::uint16_t unpublished() const noexcept { return static_cast<std::uint16_t>(avail_idx_ - published_); }
    /// Descriptors on the free list (the control queue).
    std::uint16_t free_descs() const noexcept { return static_cast<std::uint16_t>(free_put_ - free_take_); }
    /// Adds a two-buffer chain, one the device reads then one it writes (a control request and its
    /// reply); returns the head id. Needs two free descriptors; free_request() gives both back.
    std::uint16_t add_request(std::uint64_t out, std::uint32_t out_len, std::uint64_t in, std::uint32_t in_len) noexcept;
    void free_request(std::uint16_t head) noexcept;
    /// Writes every descriptor as one buffer with these flags and no address yet, for a queue whose
    /// buffers then go in with Adder::add_prepared (before any is added).
    void prepare_descs(std::uint16_t flags) noexcept {
        for (Desc& d : desc_.span()) d = Desc{0, 0, flags, 0};
    }
    /// Writes every available-ring entry as its own number, for a queue that puts descriptor i in
    /// entry i as a rule (a transmit queue, while the device gives descriptors back in order): such an
    /// entry is then offered with OwnAdder::add_own, which leaves the entry as it is. Before any is added.
    void prepare_own_entries() noexcept {
        for (std::size_t i = 0; i < avail_ring_.size(); ++i) avail_ring_[i] = static_cast<std::uint16_t>(i);
        own_entries_ = size_;
    }
    /// Makes everything added visible to the device; true if the device wants a notification.
    bool publish() noexcept;
    /// Next used element, if the device returned one (unchecked: see check_used).
    std::optional<vring::UsedElem> next_used() noexcept;
    template <bool kOwnEntries>
    class BasicAdder;
    /// Adds buffers to a queue whose entries name whichever descriptor each offers (a receive queue).
    using Adder = BasicAdder<false>;
    /// The same for a queue that may keep descriptor i in entry i (prepare_own_entries(): a transmit queue).
    using OwnAdder = BasicAdder<true>;
    class Reader;
    /// Has the device returned buffers not yet taken by next_used()?
    bool has_used() const noexcept;
    /// Asks the device for interrupts on used buffers (VRING_AVAIL_F_NO_INTERRUPT cleared) or not.
    void set_interrupts(bool on) noexcept;
    std::uint64_t desc_iova() const noexcept { return desc_.iova(); }
    std::uint64_t avail_iova() const noexcept { return avail_mem_.iova(); }
    std::uint64_t used_iova() const noexcept { return used_mem_.iova(); }

private:
    Virtqueue(std::uint16_t size, dma::Coherent<Desc> d, dma::Region avail, dma::Region used);
    std::uint16_t size_;
    dma::Coherent<Desc> desc_;
    dma::Region avail_mem_, used_mem_;
    // Views into the two rings' memory (valid while the regions live; moving a Region keeps its memory).
    vring::Header* avail_ = nullptr;
    std::span<std::uint16_t> avail_ring_;
    const vring::Header* used_ = nullptr;
    std::span<const vring::UsedElem> used_ring_;
    // Free descriptor ids of the control queue, first in first out (room for all of them).
    // free_put_ - free_take_ is the count; both wrap with uint16_t, which the (power-of-two) size divides.
    std::unique_ptr<std::uint16_t[]> free_;
    std::uint16_t free_take_ = 0, free_put_ = 0;
    std::uint16_t avail_idx_ = 0, published_ = 0, last_used_ = 0;
    // How many entries right before avail_idx_ hold their own number, up to size_ (then all do).
    std::uint16_t own_entries_ = 0;
    std::uint16_t take_desc() noexcept { return free_[free_take_++ & (size_ - 1)]; }  // needs free_descs() > 0
    void free_desc(std::uint16_t id) noexcept { free_[free_put_++ & (size_ - 1)] = id; }
};

// ---- per-packet virtqueue operations ----

inline bool Virtqueue::publish() noexcept {
    dma_wmb();  // descriptors and ring entries before the index that announces them
    avail_->idx = avail_idx_;
    published_ = avail_idx_;
    dma_mb();   // the index before reading whether the device wants a kick
    return !(dma::read_once(used_->flags) & vring::kUsedNoNotify);
}

inline std::uint16_t Virtqueue::add_request(std::uint64_t out, std::uint32_t out_len, std::uint64_t in, std::uint32_t in_len) noexcept {
    std::uint16_t head = take_desc();  // the caller checked free_descs() >= 2
    std::uint16_t tail = take_desc();
    desc_[head] = Desc{out, out_len, kDescNext, tail};
    desc_[tail] = Desc{in, in_len, kDescWrite, 0};
    avail_ring_[avail_idx_ & (size_ - 1)] = head;
    ++avail_idx_;
    own_entries_ = 0;
    return head;
}

inline void Virtqueue::free_request(std::uint16_t head) noexcept {
    free_desc(head);
    free_desc(desc_[head].next);  // the tail add_request linked: the table is ours, the device only reads it
}

inline bool Virtqueue::has_used() const noexcept { return dma::read_once(used_->idx) != last_used_; }

inline void Virtqueue::set_interrupts(bool on) noexcept {
    avail_->flags = on ? 0 : vring::kAvailNoInterrupt;
    dma_mb();  // the flag before the caller looks at the used ring again
}

// The per-batch views below hold the queue's indices in locals while a loop runs: the loop's stores into
// the rings and the packets' tables could alias the queue's fields as far as the compiler knows, and it
// would reload them for every packet. They keep them as std::size_t, a type none of those stores has
// (the available ring's and a burst's lengths are 16-bit, as the queue's indices are). Each writes them
// back when it goes; one at a time per queue.

/// A loop adding one-buffer chains (then publish()): descriptor `slot` describes the buffer and goes
/// in the available ring's next entry.
template <bool kOwnEntries>
class Virtqueue::BasicAdder {
public:
    explicit BasicAdder(Virtqueue& q) noexcept
        : q_(q), desc_(q.desc_.span().data()), avail_(q.avail_ring_.data()), mask_(q.size_ - 1u), idx_(q.avail_idx_),
          own_(kOwnEntries ? q.own_entries_ : 0) {
        if constexpr (!kOwnEntries) q.own_entries_ = 0;  // what this one writes in the entries is not kept track of
    }
    BasicAdder(const BasicAdder&) = delete;
    BasicAdder& operator=(const BasicAdder&) = delete;
    ~BasicAdder() {
        q_.avail_idx_ = static_cast<std::uint16_t>(idx_);
        if constexpr (kOwnEntries) q_.own_entries_ = static_cast<std::uint16_t>(own_);
    }
    /// The available ring's next entry: the slot a transmit queue fills next (its entry i names
    /// descriptor i, so the table is written front to back as the rings are).
    std::size_t next_entry() const noexcept { return idx_; }
    /// Is `slot` the next entry's own number, and does every entry hold its own (prepare_own_entries(),
    /// and each entry written since named the descriptor of its own number)? add_own() may then describe
    /// it, and the slots after it for the entries after the next.
    bool own_next(std::size_t slot) const noexcept { return kOwnEntries && slot == (idx_ & mask_) && own_ > mask_; }
    void add(std::size_t slot, std::uint64_t addr, std::uint32_t len, std::uint16_t flags) noexcept {
        const std::size_t id = slot & mask_;
        // SAFETY: masked into the table's and the ring's size_ entries (a power of two, checked at set-up).
        desc_[id] = Desc{addr, len, flags, 0};
        avail_[idx_ & mask_] = static_cast<std::uint16_t>(id);
        ++idx_;
        if constexpr (kOwnEntries) own_ = 0;
    }
    /// The same for a descriptor whose flags prepare_descs() wrote (a transmit buffer): its address
    /// and length. The device only reads the table; what else it may write there changes only what
    /// it reads.
    void add_prepared(std::size_t slot, std::uint64_t addr, std::uint32_t len) noexcept {
        const std::size_t id = slot & mask_, entry = idx_ & mask_;
        // SAFETY: as in add().
        desc_[id].addr = addr;
        desc_[id].len = len;
        avail_[entry] = static_cast<std::uint16_t>(id);
        ++idx_;
        if constexpr (kOwnEntries) own_ = id == entry ? std::min(own_ + 1, mask_ + 1) : 0;  // a ring's worth in a row: all are
    }
    /// add_prepared() for descriptor `slot` when it is the own number of entry next_entry() + k and
    /// own_next() said so for k = 0: that entry names it already, and is left as it is (the device only
    /// reads the ring: what else it may write there misleads only it, as above). offer_own(n) then
    /// passes the n entries so described, k = 0 .. n - 1.
    void add_own(std::size_t slot, std::uint64_t addr, std::uint32_t len) noexcept {
        static_assert(kOwnEntries, "an OwnAdder's");
        const std::size_t id = slot & mask_;
        // SAFETY: as in add().
        desc_[id].addr = addr;
        desc_[id].len = len;
    }
    void offer_own(std::size_t n) noexcept { idx_ += n; }
    /// The same for a descriptor that keeps its length and flags (a receive buffer refilled in place):
    /// only its address is written (what else the device may write there, as above, misleads only it).
    void readd(std::size_t slot, std::uint64_t addr) noexcept {
        const std::size_t id = slot & mask_;
        // SAFETY: as in add().
        desc_[id].addr = addr;
        avail_[idx_ & mask_] = static_cast<std::uint16_t>(id);
        ++idx_;
        if constexpr (kOwnEntries) own_ = 0;
    }

private:
    Virtqueue& q_;
    Desc* desc_;
    std::uint16_t* avail_;
    std::size_t mask_, idx_;  // idx_ wraps at 65536 when written back
    std::size_t own_;         // own_entries_, while the adder runs (kOwnEntries)
};

/// A loop over the elements the device returned: one read of its index for the whole batch.
class Virtqueue::Reader {
public:
    explicit Reader(Virtqueue& q) noexcept
        : q_(q), used_(q.used_ring_.data()), mask_(q.size_ - 1u), last_(q.last_used_) {
        const auto n = static_cast<std::uint16_t>(dma::read_once(q.used_->idx) - q.last_used_);
        dma_rmb();                        // the elements after the index that says they are there
        pending_ = std::min(n, q.size_);  // an index further ahead is the device's error: the ring holds no more
    }
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;
    ~Reader() { q_.last_used_ = static_cast<std::uint16_t>(last_); }
    /// Elements returned and not yet taken.
    std::uint16_t pending() const noexcept { return static_cast<std::uint16_t>(pending_); }
    /// The ring's last descriptor id, its size - 1 (the value the loop keeps anyway, as its mask).
    std::size_t last_id() const noexcept { return mask_; }
    /// The next one (needs pending() > 0), unchecked: see check_used.
    vring::UsedElem next() noexcept {
        // SAFETY: masked into the ring's size_ entries.
        const vring::UsedElem& e = used_[last_ & mask_];
        ++last_;
        --pending_;
        return vring::UsedElem{dma::read_once(e.id), dma::read_once(e.len)};
    }
    /// The pending elements from the next up to the ring's end (all of them unless they wrap), unchecked:
    /// a run a loop reads without a mask per element; skip() passes them.
    std::span<const vring::UsedElem> run() const noexcept {
        const std::size_t at = last_ & mask_;
        // SAFETY: at <= mask_, and the run ends at the ring's last element, mask_: all within its size_.
        return {used_ + at, std::min(pending_, mask_ + 1 - at)};
    }
    /// Passes the next n elements (n <= pending()).
    void skip(std::uint16_t n) noexcept {
        last_ += n;
        pending_ -= n;
    }

private:
    Virtqueue& q_;
    const vring::UsedElem* used_;
    std::size_t mask_, last_, pending_;  // last_ wraps at 65536 when written back
};

inline std::optional<vring::UsedElem> Virtqueue::next_used() noexcept {
    if (dma::read_once(used_->idx) == last_used_) return std::nullopt;
    dma_rmb();  // the element after the index that says it is there
    const vring::UsedElem& e = used_ring_[last_used_ & (size_ - 1)];
    ++last_used_;
    return vring::UsedElem{dma::read_once(e.id), dma::read_once(e.len)};
}

class VirtioNet final : public net::Device {
public:
    static constexpr pci::DeviceId ids[] = {pci::DeviceId::vendor_device(0x1af4, 0x1041), pci::DeviceId::vendor_device(0x1af4, 0x1000)};
    static Result<std::unique_ptr<VirtioNet>> probe(Bound<pci::Device>& dev, const pci::DeviceId& id);
    ~VirtioNet() override;

    net::Mac mac() const override { return mac_; }
    bool link_up() const override;
    Result<net::Stats> stats() override;
    Result<void> set_promiscuous(bool on) override;
    unsigned queues() const override { return active_; }
    unsigned max_queues() const override { return static_cast<unsigned>(pairs_.size()); }
    Result<void> set_queues(unsigned n) override;
    Result<unsigned> rx_batch(unsigned queue, std::span<net::Packet> out) override;
    Result<unsigned> tx_batch(unsigned queue, std::span<net::Packet> packets) override;
    Result<unsigned> rx_burst(unsigned queue, net::Burst& out, unsigned max = net::Burst::kMax) override;
    Result<unsigned> tx_burst(unsigned queue, net::Burst& b) override;
    Result<unsigned> tx_done_cleanup(unsigned queue) override;
    /// A queue not in use gets pair 0's pool: its packets are valid everywhere on this device, and
    /// tx_batch on that queue says what is wrong.
    Result<std::shared_ptr<net::PacketPool>> tx_pool(unsigned queue) override { return pairs_[queue < active_ ? queue : 0].tx_pool; }
    Result<bool> rx_wait(unsigned queue, net::WaitMode mode, std::chrono::milliseconds timeout) override;

private:
    struct Regions;
    /// Receive queue 2i and transmit queue 2i+1: the state one owner thread touches.
    struct Pair {
        std::optional<Virtqueue> rxq, txq;
        std::shared_ptr<net::PacketPool> rx_pool, tx_pool;  // created when the pair is first used
        // The buffers lent to the device, slot i's described by descriptor i; after the pools, so they
        // go back before the pools do.
        std::unique_ptr<net::Slots> rx_slots, tx_slots;
        // What a receive descriptor describes: the net header (the device writes it into the headroom)
        // and a frame where the packet's data() starts.
        std::uint32_t rx_len = 0;
        net::Stats stats;  // kept with net::count(): stats() reads it from any thread
    };
    VirtioNet() = default;
    Result<void> start_pair(unsigned pair);
    Result<Pair*> pair(unsigned queue) {  // inline: once per call on the data path
        if (queue >= active_) [[unlikely]]
            return no_queue(queue);
        return &pairs_[queue];
    }
    std::unexpected<Error> no_queue(unsigned queue) const;
    Result<void> fill_rx(unsigned pair);
    /// Gives back what the device has transmitted, if that is at least `at_least` buffers.
    void reclaim_tx(Pair& p, std::uint16_t at_least = 1);
    bool make_tx_room(Pair& q, std::size_t wanted);
    static std::uint16_t tx_free(const Pair& q) noexcept;
    static std::size_t tx_slot(const net::Slots& slots, std::size_t next_entry) noexcept;
    template <bool kOwnEntry>
    static void queue_tx(Virtqueue::OwnAdder& ring, std::size_t slot, std::uint64_t iova, std::uint16_t len, std::byte* frame) noexcept;
    void notify(unsigned vq) noexcept;
    Result<void> control(std::uint8_t cls, std::uint8_t cmd, std::span<const std::uint8_t> data);

    const pci::Device* dev_ = nullptr;
    std::unique_ptr<Regions> r_;
    net::Mac mac_{};
    bool has_status_ = false, has_ctrl_rx_ = false;
    std::vector<Pair> pairs_;  // every pair set up on the device (at most kMaxPairs)
    unsigned active_ = 1;      // pairs the device spreads traffic over
    std::optional<Virtqueue> ctrlq_;                        // with VIRTIO_NET_F_CTRL_VQ
    std::optional<dma::Coherent<std::uint8_t>> ctrl_buf_;   // [0..15] request, [16] the device's ack
    std::uint16_t ctrl_index_ = 0;                          // the control queue's virtqueue index
    std::optional<dma::Allocator> dma_;    // pairs get their pools when first used
    std::optional<irq::Vectors> vectors_;  // MSI-X vector i: receive queue of pair i
};

}  // namespace udrv::virtio_net
