// virtio-net over the virtio 1.x modern PCI transport (virtio spec 1.2, 4.1 and 5.1): configuration
// structures found through the vendor capabilities, feature negotiation, split virtqueues. One
// receive/transmit queue pair, owned by one thread; polled, or woken by the receive queue's MSI-X
// vector (rx_wait).
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "udrv/mmio.hpp"
#include "udrv/net.hpp"
#include "udrv/pci.hpp"

namespace udrv::virtio_net {

/// One split virtqueue (descriptor table, available ring, used ring) in DMA memory. The per-packet
/// operations are inline, below: a call per packet is measurable.
class Virtqueue {
public:
    struct Desc {
        std::uint64_t addr;
        std::uint32_t len;
        std::uint16_t flags, next;
    };
    static_assert(sizeof(Desc) == 16);
    static constexpr std::uint16_t kDescWrite = 2;

    static Result<Virtqueue> create(const dma::Allocator& dma, std::uint16_t size);
    std::uint16_t size() const noexcept { return size_; }
    std::uint16_t free_descs() const noexcept { return static_cast<std::uint16_t>(free_.size()); }
    /// Adds a one-buffer chain; returns its descriptor id.
    std::uint16_t add(std::uint64_t addr, std::uint32_t len, std::uint16_t flags) noexcept;
    /// Makes everything added visible to the device; true if the device wants a notification.
    bool publish() noexcept;
    /// Next used element, if the device returned one: (descriptor id, length written).
    std::optional<std::pair<std::uint32_t, std::uint32_t>> next_used() noexcept;
    void free_desc(std::uint16_t id) noexcept { free_.push_back(id); }
    /// Has the device returned buffers not yet taken by next_used()?
    bool has_used() const noexcept;
    /// Asks the device for interrupts on used buffers (VRING_AVAIL_F_NO_INTERRUPT cleared) or not.
    void set_interrupts(bool on) noexcept;
    std::uint64_t desc_iova() const noexcept { return desc_.iova(); }
    std::uint64_t avail_iova() const noexcept { return avail_.iova(); }
    std::uint64_t used_iova() const noexcept { return used_.iova(); }

private:
    Virtqueue(std::uint16_t size, dma::Coherent<Desc> d, dma::Coherent<std::uint16_t> a, dma::Coherent<std::uint32_t> u);
    std::uint16_t size_;
    dma::Coherent<Desc> desc_;
    dma::Coherent<std::uint16_t> avail_;  // [0] flags, [1] idx, [2 + i] ring, [2 + size] used_event
    dma::Coherent<std::uint32_t> used_;   // [0] flags | idx << 16, [1 + 2i] id, [2 + 2i] len
    std::vector<std::uint16_t> free_;
    std::uint16_t avail_idx_ = 0, last_used_ = 0;
};

// ---- per-packet virtqueue operations ----

inline std::uint16_t Virtqueue::add(std::uint64_t addr, std::uint32_t len, std::uint16_t flags) noexcept {
    std::uint16_t id = free_.back();
    free_.pop_back();
    desc_[id] = Desc{addr, len, flags, 0};
    avail_[2u + avail_idx_ % size_] = id;
    ++avail_idx_;
    return id;
}

inline bool Virtqueue::publish() noexcept {
    dma_wmb();  // descriptors and ring entries before the index that announces them
    avail_[1] = avail_idx_;
    dma_mb();   // the index before reading whether the device wants a kick
    return !(dma::read_once(used_[0]) & 1);  // VRING_USED_F_NO_NOTIFY
}

inline bool Virtqueue::has_used() const noexcept { return static_cast<std::uint16_t>(dma::read_once(used_[0]) >> 16) != last_used_; }

inline void Virtqueue::set_interrupts(bool on) noexcept {
    avail_[0] = on ? 0 : 1;  // VRING_AVAIL_F_NO_INTERRUPT
    dma_mb();                // the flag before the caller looks at the used ring again
}

inline std::optional<std::pair<std::uint32_t, std::uint32_t>> Virtqueue::next_used() noexcept {
    auto idx = static_cast<std::uint16_t>(dma::read_once(used_[0]) >> 16);
    if (idx == last_used_) return std::nullopt;
    dma_rmb();  // the element after the index that says it is there
    std::size_t slot = last_used_ % size_;
    ++last_used_;
    return std::make_pair(used_[1 + 2 * slot], used_[2 + 2 * slot]);
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
    unsigned queues() const override { return 1; }
    Result<unsigned> rx_batch(unsigned queue, std::span<net::Packet> out) override;
    Result<unsigned> tx_batch(unsigned queue, std::span<net::Packet> packets) override;
    net::PacketPool& tx_pool(unsigned) override { return *tx_pool_; }
    Result<bool> rx_wait(unsigned queue, net::WaitMode mode, std::chrono::milliseconds timeout) override;

private:
    struct Regions;
    VirtioNet() = default;
    Result<void> refill_rx();
    void reclaim_tx();
    void notify(unsigned queue) noexcept;

    const pci::Device* dev_ = nullptr;
    std::unique_ptr<Regions> r_;
    net::Mac mac_{};
    bool has_status_ = false;
    std::optional<Virtqueue> rxq_, txq_;
    std::optional<irq::Vectors> vectors_;  // MSI-X vector 0: the receive queue
    std::shared_ptr<net::PacketPool> rx_pool_, tx_pool_;
    std::vector<net::Packet> rx_inflight_, tx_inflight_;  // indexed by descriptor id
    net::Stats stats_;
};

}  // namespace udrv::virtio_net
