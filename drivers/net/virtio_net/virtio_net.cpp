#include "virtio_net.hpp"

#include <cstring>
#include <thread>

#include "udrv/log.hpp"

namespace udrv::virtio_net {
namespace {

// virtio_pci_common_cfg (virtio 1.2, 4.1.4.3).
constexpr std::size_t kDeviceFeatureSelect = 0x00, kDeviceFeature = 0x04, kDriverFeatureSelect = 0x08, kDriverFeature = 0x0c,
                      kNumQueues = 0x12, kDeviceStatus = 0x14, kQueueSelect = 0x16, kQueueSize = 0x18, kQueueMsixVector = 0x1a,
                      kQueueEnable = 0x1c, kQueueNotifyOff = 0x1e, kQueueDesc = 0x20, kQueueDriver = 0x28, kQueueDevice = 0x30;
constexpr std::uint8_t kStatusAck = 1, kStatusDriver = 2, kStatusDriverOk = 4, kStatusFeaturesOk = 8, kStatusNeedsReset = 0x40,
                       kStatusFailed = 0x80;
constexpr std::uint64_t kFeatMac = 1ull << 5, kFeatStatus = 1ull << 16, kFeatVersion1 = 1ull << 32, kFeatAccessPlatform = 1ull << 33;
constexpr std::uint16_t kNoVector = 0xffff;
constexpr std::uint16_t kQueueSizeWanted = 256;
constexpr std::size_t kNetHdr = 12;  // struct virtio_net_hdr_v1 (VERSION_1)
constexpr std::size_t kBarSize = 0x4000;

}  // namespace

// The configuration structures, each a window into the BAR its capability names.
struct VirtioNet::Regions {
    Mmio<kBarSize> bar;
    std::size_t common = 0, device = 0, notify = 0;
    std::uint32_t notify_multiplier = 0;
    std::uint16_t notify_off[2] = {0, 0};

    Result<std::uint8_t> r8(std::size_t o) const { return bar.try_read8(o); }
    Result<std::uint16_t> r16(std::size_t o) const { return bar.try_read16(o); }
    Result<std::uint32_t> r32(std::size_t o) const { return bar.try_read32(o); }
    Result<void> w8(std::size_t o, std::uint8_t v) const { return bar.try_write8(o, v); }
    Result<void> w16(std::size_t o, std::uint16_t v) const { return bar.try_write16(o, v); }
    Result<void> w32(std::size_t o, std::uint32_t v) const { return bar.try_write32(o, v); }
    // 64-bit fields are written as two 32-bit halves, low first (virtio 1.2, 4.1.3.1).
    Result<void> w64(std::size_t o, std::uint64_t v) const {
        UDRV_TRY(w32(o, static_cast<std::uint32_t>(v)));
        return w32(o + 4, static_cast<std::uint32_t>(v >> 32));
    }
};

// ---- virtqueue ----

Virtqueue::Virtqueue(std::uint16_t size, dma::Coherent<Desc> d, dma::Coherent<std::uint16_t> a, dma::Coherent<std::uint32_t> u)
    : size_(size), desc_(std::move(d)), avail_(std::move(a)), used_(std::move(u)) {
    for (std::uint16_t i = size; i > 0; --i) free_.push_back(static_cast<std::uint16_t>(i - 1));
}

Result<Virtqueue> Virtqueue::create(const dma::Allocator& dma, std::uint16_t size) {
    auto d = UDRV_TRY(dma.coherent<Desc>(size));
    auto a = UDRV_TRY(dma.coherent<std::uint16_t>(3u + size));
    auto u = UDRV_TRY(dma.coherent<std::uint32_t>(2u + 2u * size));
    a[0] = 1;  // VRING_AVAIL_F_NO_INTERRUPT: we poll
    return Virtqueue(size, std::move(d), std::move(a), std::move(u));
}

// ---- device ----

Result<std::unique_ptr<VirtioNet>> VirtioNet::probe(Bound<pci::Device>& dev, const pci::DeviceId&) {
    // 1. Find the configuration structures through the vendor capabilities (all in one BAR here).
    const pci::VirtioCap *common = nullptr, *device = nullptr, *notify = nullptr;
    for (const pci::Capability* c : dev->info().config.find_caps(pci::kCapVendor)) {
        if (!c->virtio) continue;
        if (c->virtio->cfg_type == 1 && !common) common = &*c->virtio;
        if (c->virtio->cfg_type == 4 && !device) device = &*c->virtio;
        if (c->virtio->cfg_type == 2 && !notify) notify = &*c->virtio;
    }
    if (!common || !notify || !device)
        return fail(ENODEV, "{}: no virtio 1.x common/notify/device capabilities: a legacy-only virtio device, which udrv does "
                    "not drive (start QEMU with disable-legacy=on, or use a modern device)", dev->name());
    for (const pci::VirtioCap* c : {common, device, notify}) {
        if (c->bar != common->bar) return fail(ENOTSUP, "{}: virtio structures in different BARs are not supported", dev->name());
        if (c->offset > kBarSize || c->length > kBarSize - c->offset)
            return fail(ERANGE, "{}: virtio structure at BAR{}+{:#x} (+{:#x}) lies outside the {:#x}-byte window", dev->name(), c->bar,
                        c->offset, c->length, kBarSize);
    }
    if (common->length < 0x38) return fail(EPROTO, "{}: virtio common configuration is {} bytes (needs 56)", dev->name(), common->length);
    std::unique_ptr<VirtioNet> n(new VirtioNet());
    n->dev_ = &dev.device();
    n->r_ = std::make_unique<Regions>(Regions{UDRV_TRY(dev.map_bar<kBarSize>(common->bar)), common->offset, device->offset,
                                              notify->offset, notify->notify_multiplier.value_or(0), {0, 0}});
    const Regions& r = *n->r_;
    UDRV_TRY(dev.enable_bus_master());

    // 2. Reset, then ACKNOWLEDGE and DRIVER (virtio 1.2, 3.1.1).
    UDRV_TRY(r.w8(r.common + kDeviceStatus, 0));
    for (int i = 0; i < 1000 && UDRV_TRY(r.r8(r.common + kDeviceStatus)) != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    UDRV_TRY(r.w8(r.common + kDeviceStatus, kStatusAck));
    UDRV_TRY(r.w8(r.common + kDeviceStatus, kStatusAck | kStatusDriver));

    // 3. Features: VERSION_1 is required; MAC and STATUS are used; ACCESS_PLATFORM must be accepted
    //    when offered (DMA goes through the IOMMU, which is what we want).
    std::uint64_t offered = 0;
    for (std::uint32_t sel = 0; sel < 2; ++sel) {
        UDRV_TRY(r.w32(r.common + kDeviceFeatureSelect, sel));
        offered |= std::uint64_t{UDRV_TRY(r.r32(r.common + kDeviceFeature))} << (32 * sel);
    }
    if (!(offered & kFeatVersion1))
        return fail(ENOTSUP, "{}: the device does not offer VIRTIO_F_VERSION_1: legacy-only, not supported", dev->name());
    std::uint64_t wanted = offered & (kFeatVersion1 | kFeatMac | kFeatStatus | kFeatAccessPlatform);
    for (std::uint32_t sel = 0; sel < 2; ++sel) {
        UDRV_TRY(r.w32(r.common + kDriverFeatureSelect, sel));
        UDRV_TRY(r.w32(r.common + kDriverFeature, static_cast<std::uint32_t>(wanted >> (32 * sel))));
    }
    UDRV_TRY(r.w8(r.common + kDeviceStatus, kStatusAck | kStatusDriver | kStatusFeaturesOk));
    if (!(UDRV_TRY(r.r8(r.common + kDeviceStatus)) & kStatusFeaturesOk))
        return fail(ENOTSUP, "{}: the device refused the feature set {:#x}", dev->name(), wanted);
    n->has_status_ = wanted & kFeatStatus;

    // 4. Queues: 0 receive, 1 transmit. The receive queue gets MSI-X vector 0 when the device has
    //    MSI-X (for rx_wait's interrupt mode); the device answers NO_VECTOR if it cannot take it.
    if (UDRV_TRY(r.r16(r.common + kNumQueues)) < 2) return fail(EPROTO, "{}: fewer than 2 virtqueues", dev->name());
    if (auto v = dev.alloc_irq_vectors(irq::IrqKind::msix, 1)) n->vectors_.emplace(std::move(*v));
    else dev_warn(dev.device(), "no MSI-X ({}): receive queue can only be polled", v.error().message());
    auto dma = UDRV_TRY(dev.dma());
    for (std::uint16_t q = 0; q < 2; ++q) {
        UDRV_TRY(r.w16(r.common + kQueueSelect, q));
        std::uint16_t max = UDRV_TRY(r.r16(r.common + kQueueSize));
        if (max == 0) return fail(EPROTO, "{}: virtqueue {} is not available", dev->name(), q);
        std::uint16_t size = std::min(max, kQueueSizeWanted);
        if (size & (size - 1)) return fail(EPROTO, "{}: virtqueue {} size {} is not a power of two", dev->name(), q, size);
        Virtqueue vq = UDRV_TRY(Virtqueue::create(dma, size));
        UDRV_TRY(r.w16(r.common + kQueueSize, size));
        const std::uint16_t vector = q == 0 && n->vectors_ ? 0 : kNoVector;
        UDRV_TRY(r.w16(r.common + kQueueMsixVector, vector));
        if (vector != kNoVector && UDRV_TRY(r.r16(r.common + kQueueMsixVector)) != vector) {
            dev_warn(dev.device(), "the device refused MSI-X vector {} for the receive queue: polling only", vector);
            n->vectors_.reset();
        }
        UDRV_TRY(r.w64(r.common + kQueueDesc, vq.desc_iova()));
        UDRV_TRY(r.w64(r.common + kQueueDriver, vq.avail_iova()));
        UDRV_TRY(r.w64(r.common + kQueueDevice, vq.used_iova()));
        n->r_->notify_off[q] = UDRV_TRY(r.r16(r.common + kQueueNotifyOff));
        std::size_t kick = r.notify + std::size_t{n->r_->notify_off[q]} * r.notify_multiplier;
        if (kick + 2 > r.notify + notify->length)
            return fail(ERANGE, "{}: notify offset of queue {} lies outside the notify structure", dev->name(), q);
        UDRV_TRY(r.w16(r.common + kQueueEnable, 1));
        (q == 0 ? n->rxq_ : n->txq_).emplace(std::move(vq));
    }
    n->rx_pool_ = UDRV_TRY(net::PacketPool::create(dma, 2u * n->rxq_->size()));
    n->tx_pool_ = UDRV_TRY(net::PacketPool::create(dma, 2u * n->txq_->size()));
    n->rx_inflight_.resize(n->rxq_->size());
    n->tx_inflight_.resize(n->txq_->size());

    // 5. MAC (from the device when it has one), receive buffers, DRIVER_OK.
    if (wanted & kFeatMac)
        for (std::size_t i = 0; i < 6; ++i) n->mac_[i] = UDRV_TRY(r.r8(r.device + i));
    UDRV_TRY(n->refill_rx());
    UDRV_TRY(r.w8(r.common + kDeviceStatus, kStatusAck | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk));
    std::uint8_t st = UDRV_TRY(r.r8(r.common + kDeviceStatus));
    if (st & (kStatusNeedsReset | kStatusFailed)) return fail(EIO, "{}: device status {:#x} after DRIVER_OK", dev->name(), st);
    n->notify(0);
    dev_info(dev.device(), "virtio-net, MAC {}, link {}, queues of {}/{} entries", net::format_mac(n->mac_), n->link_up() ? "up" : "down",
             n->rxq_->size(), n->txq_->size());
    return n;
}

VirtioNet::~VirtioNet() {
    if (!r_) return;
    // Frames already handed to tx_batch go out: wait (bounded) until the device has used them all.
    for (int i = 0; i < 1000 && txq_ && txq_->free_descs() < txq_->size(); ++i) {
        reclaim_tx();
        if (txq_->free_descs() < txq_->size()) std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    // Reset stops all DMA before the rings and buffers go.
    (void)r_->w8(r_->common + kDeviceStatus, 0);
}

bool VirtioNet::link_up() const {
    if (!has_status_) return true;  // without VIRTIO_NET_F_STATUS the link is assumed up
    auto s = r_->r16(r_->device + 6);
    return s && (*s & 1);
}

Result<void> VirtioNet::set_promiscuous(bool on) {
    // Without the control queue QEMU's virtio-net receives everything.
    if (on) return {};
    return fail(ENOTSUP, "{}: receive filtering needs the virtio control queue, which this driver does not negotiate", dev_->name());
}

void VirtioNet::notify(unsigned q) noexcept {
    (void)r_->w16(r_->notify + std::size_t{r_->notify_off[q]} * r_->notify_multiplier, static_cast<std::uint16_t>(q));
}

Result<net::Stats> VirtioNet::stats() {
    net::Stats s = stats_;
    if (vectors_) s.rx_interrupts = (*vectors_)[0].total();
    return s;
}

Result<bool> VirtioNet::rx_wait(unsigned queue, net::WaitMode mode, std::chrono::milliseconds timeout) {
    if (queue != 0) return fail(EINVAL, "{}: queue {} does not exist (1 queue)", dev_->name(), queue);
    irq::Vector* v = vectors_ ? &(*vectors_)[0] : nullptr;
    auto r = net::wait_for_rx(
        mode, timeout, v, [&] { return rxq_->has_used(); }, [&] { rxq_->set_interrupts(true); }, [&] { rxq_->set_interrupts(false); });
    if (!r) return std::unexpected(std::move(r.error()).context(dev_->name()));
    return r;
}

Result<void> VirtioNet::refill_rx() {
    bool added = false;
    while (rxq_->free_descs() && rx_pool_->available()) {
        net::Packet p = UDRV_TRY(rx_pool_->alloc());
        // The device writes the 12-byte header into the headroom, the frame where data() starts.
        std::uint64_t iova = net::PacketPool::frame_iova(p) - kNetHdr;
        auto len = static_cast<std::uint32_t>(kNetHdr + p.capacity());
        std::uint16_t id = rxq_->add(iova, len, Virtqueue::kDescWrite);
        rx_inflight_[id] = std::move(p);
        added = true;
    }
    if (added && rxq_->publish()) notify(0);
    return {};
}

Result<unsigned> VirtioNet::rx_batch(unsigned queue, std::span<net::Packet> out) {
    if (queue != 0) return fail(EINVAL, "{}: queue {} does not exist (1 queue)", dev_->name(), queue);
    unsigned n = 0;
    while (n < out.size()) {
        auto used = rxq_->next_used();
        if (!used) break;
        auto [id, len] = *used;
        // The device's word: an id we did not hand out, or a length beyond the buffer, is a device bug.
        if (id >= rx_inflight_.size() || !rx_inflight_[id]) {
            ++stats_.rx_errors;
            return fail(EPROTO, "{}: receive queue returned descriptor {} that is not in flight", dev_->name(), id);
        }
        net::Packet p = std::move(rx_inflight_[id]);
        rxq_->free_desc(static_cast<std::uint16_t>(id));
        if (len < kNetHdr || len - kNetHdr > p.capacity()) {
            ++stats_.rx_errors;
            continue;  // dropped; the buffer goes back to the pool with p
        }
        (void)p.resize(len - kNetHdr);
        ++stats_.rx_packets;
        stats_.rx_bytes += p.size();
        out[n++] = std::move(p);
    }
    UDRV_TRY(refill_rx());
    return n;
}

void VirtioNet::reclaim_tx() {
    while (auto used = txq_->next_used()) {
        auto id = used->first;
        if (id >= tx_inflight_.size() || !tx_inflight_[id]) {
            ++stats_.tx_errors;
            continue;
        }
        tx_inflight_[id] = net::Packet();  // back to the pool: the device is done with it
        txq_->free_desc(static_cast<std::uint16_t>(id));
    }
}

Result<unsigned> VirtioNet::tx_batch(unsigned queue, std::span<net::Packet> packets) {
    if (queue != 0) return fail(EINVAL, "{}: queue {} does not exist (1 queue)", dev_->name(), queue);
    reclaim_tx();
    unsigned n = 0;
    for (; n < packets.size() && txq_->free_descs(); ++n) {
        net::Packet& p = packets[n];
        if (!p) {
            if (n) break;  // as below: what was good goes out first
            return fail(EINVAL, "{}: tx_batch got an empty packet handle", dev_->name());
        }
        if (auto ok = tx_pool_->accept_for_tx(p, kNetHdr); !ok) {
            if (n) break;  // send what was good; the caller gets the error with this packet first next time
            return std::unexpected(std::move(ok.error()).context(dev_->name()));
        }
        // The net header goes in the headroom, right before the frame.
        auto buf = net::PacketPool::buffer(p);
        std::memset(buf.data() + net::PacketPool::headroom_of(p) - kNetHdr, 0, kNetHdr);  // no offloads
        std::uint64_t iova = net::PacketPool::frame_iova(p) - kNetHdr;
        std::uint16_t id = txq_->add(iova, static_cast<std::uint32_t>(kNetHdr + p.size()), 0);
        ++stats_.tx_packets;
        stats_.tx_bytes += p.size();
        tx_inflight_[id] = std::move(p);
    }
    if (n && txq_->publish()) notify(1);
    return n;
}

}  // namespace udrv::virtio_net
