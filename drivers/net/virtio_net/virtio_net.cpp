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
constexpr std::uint64_t kFeatMac = 1ull << 5, kFeatStatus = 1ull << 16, kFeatCtrlVq = 1ull << 17, kFeatCtrlRx = 1ull << 18,
                        kFeatMq = 1ull << 22, kFeatVersion1 = 1ull << 32, kFeatAccessPlatform = 1ull << 33;
// Control queue requests (virtio 1.2, 5.1.6.5): class, command, then the command's data.
constexpr std::uint8_t kCtrlRx = 0, kCtrlRxPromisc = 0, kCtrlMq = 4, kCtrlMqPairsSet = 0, kCtrlOk = 0;
constexpr std::size_t kCtrlAck = 16;               // where the device writes its answer in ctrl_buf_
constexpr unsigned kMaxPairs = 8;                  // pairs udrv sets up at most (the spec allows 0x8000)
constexpr std::uint16_t kCtrlQueueSize = 16;
constexpr std::uint16_t kNoVector = 0xffff;
constexpr std::uint16_t kQueueSizeWanted = 256;
constexpr std::size_t kNetHdr = 12;  // struct virtio_net_hdr_v1 (VERSION_1)
// Receive buffers: 2 KiB with 64 bytes of headroom, the net header in its last 12 bytes before the
// frame. Constants, so the receive loop checks a used length against an immediate.
constexpr std::uint32_t kRxBufferSize = 2048, kRxHeadroom = 64, kRxCapacity = kRxBufferSize - kRxHeadroom;
static_assert(kRxHeadroom >= kNetHdr);
// A frame to transmit gets its net header zeroed by one 16-byte store that starts 4 bytes before the
// header, in headroom no one else uses (a packet's user sees its data() only; the device reads from the
// header on): transmit takes packets with at least this much headroom (pools have 64 unless made
// with less).
constexpr std::uint32_t kTxHeadroom = 16;
static_assert(kTxHeadroom >= kNetHdr && kRxHeadroom >= kTxHeadroom);  // received frames can be sent on
// Ring upkeep in batches: refilled receive descriptors are published once this many wait (DPDK's
// rx_free_thresh), and transmitted buffers reclaimed once fewer than this many are free (see
// make_tx_room). Each pass, and each notification it may take, then serves many packets even when the
// caller's batches are small.
constexpr std::uint16_t kRingUpkeep = 32;
// ... or a quarter of a smaller ring.
std::uint16_t upkeep(const Virtqueue& vq) { return static_cast<std::uint16_t>(std::clamp(vq.size() / 4, 1, int{kRingUpkeep})); }
constexpr std::size_t kBarSize = 0x4000;

}  // namespace

// The configuration structures, each a window into the BAR its capability names.
struct VirtioNet::Regions {
    Mmio<kBarSize> bar;
    std::size_t common = 0, device = 0, notify = 0;
    std::uint32_t notify_multiplier = 0;
    // Each virtqueue's notify register (by queue index), checked once at set-up: a notification is a
    // plain 16-bit write on the data path.
    std::vector<std::optional<Mmio<kBarSize>::Reg<std::uint16_t>>> kick;

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

Virtqueue::Virtqueue(std::uint16_t size, dma::Coherent<Desc> d, dma::Region avail, dma::Region used)
    : size_(size), desc_(std::move(d)), avail_mem_(std::move(avail)), used_mem_(std::move(used)), free_(new std::uint16_t[size]) {
    for (std::uint16_t i = 0; i < size; ++i) free_[free_put_++] = i;
}

Result<Virtqueue> Virtqueue::create(const dma::Allocator& dma, std::uint16_t size) {
    if (size == 0 || (size & (size - 1))) return fail(EINVAL, "virtqueue size {} is not a power of two (split rings index by mask)", size);
    auto d = UDRV_TRY(dma.coherent<Desc>(size));
    auto avail = UDRV_TRY(dma.region(vring::avail_bytes(size)));  // one UDRV_TRY per statement
    auto used = UDRV_TRY(dma.region(vring::used_bytes(size)));     // (a return mid-argument-list leaks what was built)
    Virtqueue vq(size, std::move(d), std::move(avail), std::move(used));
    // The views are taken once the regions are where they stay (a Region's memory does not move with it).
    vq.avail_ = UDRV_TRY(vq.avail_mem_.view<vring::Header>(0, 1)).data();
    vq.avail_ring_ = UDRV_TRY(vq.avail_mem_.view<std::uint16_t>(sizeof(vring::Header), size));
    vq.used_ = UDRV_TRY(vq.used_mem_.view<const vring::Header>(0, 1)).data();
    vq.used_ring_ = UDRV_TRY(vq.used_mem_.view<const vring::UsedElem>(sizeof(vring::Header), size));
    vq.avail_->flags = vring::kAvailNoInterrupt;  // we poll
    return vq;
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
                                              notify->offset, notify->notify_multiplier.value_or(0), {}});
    const Regions& r = *n->r_;
    UDRV_TRY(dev.enable_bus_master());

    // 2. Reset, then ACKNOWLEDGE and DRIVER (virtio 1.2, 3.1.1).
    UDRV_TRY(r.w8(r.common + kDeviceStatus, 0));
    for (int i = 0; i < 1000 && UDRV_TRY(r.r8(r.common + kDeviceStatus)) != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    UDRV_TRY(r.w8(r.common + kDeviceStatus, kStatusAck));
    UDRV_TRY(r.w8(r.common + kDeviceStatus, kStatusAck | kStatusDriver));

    // 3. Features: VERSION_1 and ACCESS_PLATFORM are required; MAC and STATUS are used. Without
    //    ACCESS_PLATFORM the device takes the bus addresses it is given as physical addresses: its DMA
    //    bypasses the IOMMU and reads and writes whatever memory those numbers happen to name.
    std::uint64_t offered = 0;
    for (std::uint32_t sel = 0; sel < 2; ++sel) {
        UDRV_TRY(r.w32(r.common + kDeviceFeatureSelect, sel));
        offered |= std::uint64_t{UDRV_TRY(r.r32(r.common + kDeviceFeature))} << (32 * sel);
    }
    auto refuse = [&](std::unexpected<Error> e) {
        (void)r.w8(r.common + kDeviceStatus, kStatusFailed);  // the driver gives up on it (virtio 1.2, 3.1.1)
        return e;
    };
    if (!(offered & kFeatVersion1))
        return refuse(fail(ENOTSUP, "{}: the device does not offer VIRTIO_F_VERSION_1: legacy-only, not supported", dev->name()));
    if (!(offered & kFeatAccessPlatform))
        return refuse(fail(ENOTSUP, "{}: the device does not offer VIRTIO_F_ACCESS_PLATFORM: its DMA would bypass the IOMMU, using bus "
                           "addresses as physical ones (unrelated memory); start QEMU's device with iommu_platform=on "
                           "(-device virtio-net-pci,...,iommu_platform=on) or leave it to the kernel's virtio driver", dev->name()));
    std::uint64_t wanted = offered & (kFeatVersion1 | kFeatMac | kFeatStatus | kFeatAccessPlatform | kFeatCtrlVq);
    if (wanted & kFeatCtrlVq) wanted |= offered & (kFeatMq | kFeatCtrlRx);  // both need the control queue
    for (std::uint32_t sel = 0; sel < 2; ++sel) {
        UDRV_TRY(r.w32(r.common + kDriverFeatureSelect, sel));
        UDRV_TRY(r.w32(r.common + kDriverFeature, static_cast<std::uint32_t>(wanted >> (32 * sel))));
    }
    UDRV_TRY(r.w8(r.common + kDeviceStatus, kStatusAck | kStatusDriver | kStatusFeaturesOk));
    if (!(UDRV_TRY(r.r8(r.common + kDeviceStatus)) & kStatusFeaturesOk))
        return fail(ENOTSUP, "{}: the device refused the feature set {:#x}", dev->name(), wanted);
    n->has_status_ = wanted & kFeatStatus;
    n->has_ctrl_rx_ = wanted & kFeatCtrlRx;

    // 4. Queues: receive 2i and transmit 2i+1 for each pair, then the control queue, which comes after
    //    all the pairs the device has (index 2 * max_virtqueue_pairs), however many we use. Receive
    //    queue i gets MSI-X vector i (for rx_wait's interrupt mode) when the device has the vectors;
    //    the device answers NO_VECTOR if it cannot take one.
    std::uint16_t device_pairs = 1;
    if (wanted & kFeatMq) {
        device_pairs = UDRV_TRY(r.r16(r.device + 8));  // max_virtqueue_pairs
        if (device_pairs < 1 || device_pairs > 0x8000)
            return fail(EPROTO, "{}: max_virtqueue_pairs is {} (the spec allows 1 to 32768)", dev->name(), device_pairs);
    }
    const unsigned pairs = std::min<unsigned>(device_pairs, kMaxPairs);
    const bool ctrl = wanted & kFeatCtrlVq;
    const unsigned device_queues = 2u * device_pairs + (ctrl ? 1u : 0u);
    if (const std::uint16_t num = UDRV_TRY(r.r16(r.common + kNumQueues)); num < device_queues)
        return fail(EPROTO, "{}: the device has {} virtqueues; {} pair(s){} need {}", dev->name(), num, device_pairs,
                    ctrl ? " and a control queue" : "", device_queues);
    auto vectors = dev.alloc_irq_vectors(irq::IrqKind::msix, pairs);
    if (!vectors && pairs > 1) vectors = dev.alloc_irq_vectors(irq::IrqKind::msix, 1);  // then pair 0 alone can sleep
    if (vectors) n->vectors_.emplace(std::move(*vectors));
    else dev_warn(dev.device(), "no MSI-X ({}): receive queues can only be polled", vectors.error().message());
    n->dma_.emplace(UDRV_TRY(dev.dma()));
    const dma::Allocator& dma = *n->dma_;
    n->r_->kick.resize(device_queues);
    n->pairs_.resize(pairs);
    // Sets up virtqueue `q` of at most `wanted_size` entries with MSI-X `vector` (or kNoVector).
    auto setup = [&](std::uint16_t q, std::uint16_t wanted_size, std::uint16_t vector) -> Result<Virtqueue> {
        UDRV_TRY(r.w16(r.common + kQueueSelect, q));
        std::uint16_t max = UDRV_TRY(r.r16(r.common + kQueueSize));
        if (max == 0) return fail(EPROTO, "{}: virtqueue {} is not available", dev->name(), q);
        std::uint16_t size = std::min(max, wanted_size);
        if (size & (size - 1)) return fail(EPROTO, "{}: virtqueue {} size {} is not a power of two", dev->name(), q, size);
        Virtqueue vq = UDRV_TRY(Virtqueue::create(dma, size));
        UDRV_TRY(r.w16(r.common + kQueueSize, size));
        UDRV_TRY(r.w16(r.common + kQueueMsixVector, vector));
        if (vector != kNoVector && UDRV_TRY(r.r16(r.common + kQueueMsixVector)) != vector) {
            dev_warn(dev.device(), "the device refused MSI-X vector {} for virtqueue {}: polling only", vector, q);
            n->vectors_.reset();
        }
        UDRV_TRY(r.w64(r.common + kQueueDesc, vq.desc_iova()));
        UDRV_TRY(r.w64(r.common + kQueueDriver, vq.avail_iova()));
        UDRV_TRY(r.w64(r.common + kQueueDevice, vq.used_iova()));
        const std::uint16_t off = UDRV_TRY(r.r16(r.common + kQueueNotifyOff));
        std::size_t kick = r.notify + std::size_t{off} * r.notify_multiplier;
        if (kick + 2 > r.notify + notify->length)
            return fail(ERANGE, "{}: notify offset of virtqueue {} lies outside the notify structure", dev->name(), q);
        n->r_->kick[q] = UDRV_TRY_CTX(Mmio<kBarSize>::reg<std::uint16_t>(kick), "{}: virtqueue {}'s notify register", dev->name(), q);
        UDRV_TRY(r.w16(r.common + kQueueEnable, 1));
        return vq;
    };
    for (unsigned i = 0; i < pairs; ++i) {
        const auto rx = static_cast<std::uint16_t>(2 * i);
        const std::uint16_t vector = n->vectors_ && i < n->vectors_->size() ? static_cast<std::uint16_t>(i) : kNoVector;
        n->pairs_[i].rxq.emplace(UDRV_TRY(setup(rx, kQueueSizeWanted, vector)));
        n->pairs_[i].txq.emplace(UDRV_TRY(setup(static_cast<std::uint16_t>(rx + 1), kQueueSizeWanted, kNoVector)));
    }
    if (ctrl) {
        n->ctrl_index_ = static_cast<std::uint16_t>(2u * device_pairs);
        n->ctrlq_.emplace(UDRV_TRY(setup(n->ctrl_index_, kCtrlQueueSize, kNoVector)));
        n->ctrl_buf_.emplace(UDRV_TRY(dma.coherent<std::uint8_t>(kCtrlAck + 1)));
    }
    UDRV_TRY(n->start_pair(0));

    // 5. MAC (from the device when it has one), receive buffers, DRIVER_OK.
    if (wanted & kFeatMac)
        for (std::size_t i = 0; i < 6; ++i) n->mac_[i] = UDRV_TRY(r.r8(r.device + i));
    UDRV_TRY(r.w8(r.common + kDeviceStatus, kStatusAck | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk));
    std::uint8_t st = UDRV_TRY(r.r8(r.common + kDeviceStatus));
    if (st & (kStatusNeedsReset | kStatusFailed)) return fail(EIO, "{}: device status {:#x} after DRIVER_OK", dev->name(), st);
    n->notify(0);
    // 6. Publish: the net class names it (net0, ...) and others open it by that name or its address.
    const std::string name = UDRV_TRY(net::publish(dev, *n, dev->name()));
    dev_info(dev.device(), "{}: virtio-net, MAC {}, link {}, {} queue pair(s) of {}/{} entries (1 in use){}", name, net::format_mac(n->mac_),
             n->link_up() ? "up" : "down", pairs, n->pairs_[0].rxq->size(), n->pairs_[0].txq->size(), ctrl ? ", control queue" : "");
    return n;
}

VirtioNet::~VirtioNet() {
    // The pools give out nothing more, and packets come back under their lock from here on: the queues'
    // owners may still be dropping theirs (see udrv/packet.hpp).
    for (Pair& p : pairs_)
        for (auto* pool : {p.rx_pool.get(), p.tx_pool.get()})
            if (pool) pool->detach();
    if (!r_) return;
    // Frames already handed to tx_batch go out: wait (bounded) until the device has used them all.
    for (Pair& p : pairs_) {
        if (!p.tx_pool) continue;
        for (int i = 0; i < 1000 && p.txq->in_flight(); ++i) {
            reclaim_tx(p);
            if (p.txq->in_flight()) std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
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
    if (!has_ctrl_rx_) {
        // Without VIRTIO_NET_F_CTRL_RX the device cannot filter: it receives everything.
        if (on) return {};
        return fail(ENOTSUP, "{}: the device does not offer VIRTIO_NET_F_CTRL_RX: it cannot filter receive traffic", dev_->name());
    }
    const std::uint8_t v = on ? 1 : 0;
    return control(kCtrlRx, kCtrlRxPromisc, std::span(&v, 1));
}

Result<void> VirtioNet::set_queues(unsigned n) {
    if (n < 1 || n > pairs_.size())
        return fail(EINVAL, "{}: {} queue pairs asked for; this device has {} (udrv sets up at most {})", dev_->name(), n, pairs_.size(),
                    kMaxPairs);
    if (n == active_) return {};
    for (unsigned i = active_; i < n; ++i) UDRV_TRY(start_pair(i));
    const std::uint16_t pairs = static_cast<std::uint16_t>(n);  // virtqueue_pairs, little-endian
    const std::uint8_t data[2] = {static_cast<std::uint8_t>(pairs), static_cast<std::uint8_t>(pairs >> 8)};
    UDRV_TRY(control(kCtrlMq, kCtrlMqPairsSet, data));
    active_ = n;
    return {};
}

// One control request, synchronously (virtio 1.2, 5.1.6.5): class, command and data in one buffer the
// device reads, its one-byte ack in one it writes. Only the thread that configures the device sends them.
Result<void> VirtioNet::control(std::uint8_t cls, std::uint8_t cmd, std::span<const std::uint8_t> data) {
    if (!ctrlq_) return fail(ENOTSUP, "{}: the device has no control queue (VIRTIO_NET_F_CTRL_VQ)", dev_->name());
    if (data.size() > kCtrlAck - 2) return fail(EINVAL, "{}: control request of {} bytes", dev_->name(), data.size());
    if (ctrlq_->free_descs() < 2)
        return fail(EBUSY, "{}: the control queue is full: an earlier request got no answer (rebind the device)", dev_->name());
    dma::Coherent<std::uint8_t>& buf = *ctrl_buf_;
    buf[0] = cls;
    buf[1] = cmd;
    for (std::size_t i = 0; i < data.size(); ++i) buf[2 + i] = data[i];
    buf[kCtrlAck] = 0xff;
    const std::uint16_t head = ctrlq_->add_request(buf.iova(), static_cast<std::uint32_t>(2 + data.size()), buf.iova() + kCtrlAck, 1);
    if (ctrlq_->publish()) notify(ctrl_index_);
    for (int i = 0; i < 100000; ++i) {  // QEMU answers at once; a real device within microseconds; give up after ~1 s
        if (auto used = ctrlq_->next_used()) {
            if (used->id != head)  // the device's word is wrong: keep the chain (it may still use it)
                return fail(EPROTO, "{}: control queue returned descriptor {}, sent {}", dev_->name(), used->id, head);
            ctrlq_->free_request(head);
            const std::uint8_t ack = dma::read_once(buf[kCtrlAck]);
            if (ack != kCtrlOk) return fail(EIO, "{}: the device refused control command {}.{} (ack {})", dev_->name(), cls, cmd, ack);
            return {};
        }
        std::this_thread::sleep_for(std::chrono::microseconds(10));
    }
    // The request stays in the ring; the descriptors are lost until reset, which is what a hung device gets.
    return fail(ETIMEDOUT, "{}: no answer to control command {}.{} within 1 s", dev_->name(), cls, cmd);
}

void VirtioNet::notify(unsigned vq) noexcept {
    r_->bar.write(*r_->kick[vq], static_cast<std::uint16_t>(vq));  // set up with the queue: vq is one of ours
}

Result<net::Stats> VirtioNet::stats() {
    net::Stats s;
    for (const Pair& p : pairs_) net::add_counters(s, p.stats);
    if (vectors_)
        for (unsigned i = 0; i < vectors_->size(); ++i) s.rx_interrupts += (*vectors_)[i].total();
    return s;
}

std::unexpected<Error> VirtioNet::no_queue(unsigned queue) const {
    return fail(EINVAL, "{}: queue {} does not exist ({} in use)", dev_->name(), queue, active_);
}

// A pair's pools and receive buffers, made when it is first used.
Result<void> VirtioNet::start_pair(unsigned i) {
    Pair& p = pairs_[i];
    if (p.rx_pool) return {};
    // Receive buffers can be in the receive ring, in a transmit ring (a frame forwarded by reference:
    // a ring gives its buffers back only when it runs short, see make_tx_room) and in the application's
    // bursts at once; the third ring's worth keeps replacements for the receive ring while the other
    // two are full, so receiving, and with it the forwarding that gives buffers back, never stops.
    p.rx_pool = UDRV_TRY(net::PacketPool::create(*dma_, 3u * p.rxq->size(), kRxBufferSize, kRxHeadroom));
    p.tx_pool = UDRV_TRY(net::PacketPool::create(*dma_, 2u * p.txq->size()));
    p.rx_len = static_cast<std::uint32_t>(kNetHdr + kRxCapacity);
    p.rx_slots = std::make_unique<net::Slots>(p.rxq->size());  // sizes are powers of two (checked at set-up)
    p.tx_slots = std::make_unique<net::Slots>(p.txq->size());
    p.txq->prepare_descs(0);  // a frame per descriptor, the device reads it (queue_tx)
    p.txq->prepare_own_entries();  // descriptor i in entry i, while the device keeps to that (tx_slot)
    return fill_rx(i);
}

Result<bool> VirtioNet::rx_wait(unsigned queue, net::WaitMode mode, std::chrono::milliseconds timeout) {
    Pair& p = *UDRV_TRY(pair(queue));
    irq::Vector* v = vectors_ && queue < vectors_->size() ? &(*vectors_)[queue] : nullptr;
    auto r = net::wait_for_rx(
        mode, timeout, v, [&] { return p.rxq->has_used(); }, [&] { p.rxq->set_interrupts(true); }, [&] { p.rxq->set_interrupts(false); });
    if (!r) return std::unexpected(std::move(r.error()).context(dev_->name()));
    return r;
}

// Every receive descriptor carries a buffer from here on, descriptor i the one in slot i: a frame the
// device returns leaves with a fresh buffer in its place, and the descriptor goes back in the ring.
Result<void> VirtioNet::fill_rx(unsigned i) {
    Pair& q = pairs_[i];
    const net::PacketLayout layout = q.rx_pool->layout();
    {
        Virtqueue::Adder ring(*q.rxq);
        for (std::size_t slot = 0; slot < q.rx_slots->size(); ++slot) {
            q.rx_slots->put(slot, UDRV_TRY(q.rx_pool->alloc()));  // the pool holds three rings' worth
            ring.add(slot, q.rx_slots->frame_iova(slot, layout) - kNetHdr, q.rx_len, Virtqueue::kDescWrite);
        }
    }
    if (q.rxq->publish()) notify(2 * i);
    return {};
}

Result<unsigned> VirtioNet::rx_batch(unsigned queue, std::span<net::Packet> out) {
    net::Burst got;
    const unsigned n = UDRV_TRY(rx_burst(queue, got, static_cast<unsigned>(std::min<std::size_t>(out.size(), net::Burst::kMax))));
    for (unsigned i = 0; i < n; ++i) out[i] = got.pop_front();
    return n;
}

// Takes up to `max` received frames into `out`, checking what the device says about each before
// believing it. A frame leaves the ring only with a fresh buffer to put in its place (taken from the pool
// as the loop goes, in one owner section); frames beyond what the pool can replace wait in the used ring.
Result<unsigned> VirtioNet::rx_burst(unsigned queue, net::Burst& out, unsigned max) {
    Pair& q = *UDRV_TRY(pair(queue));
    if (!out.prepare_for(q.rx_pool.get()))
        return fail(EINVAL, "{}: rx_burst on queue {}: the burst holds packets of another pool (transmit or clear them first)", dev_->name(), queue);
    const unsigned before = out.size();
    std::uint64_t bytes = 0, errors = 0;
    std::optional<std::uint32_t> bad_id;
    {  // the reader and the adder write the ring state back before publish()
        // The adder first: the queue's size is then read once for both, before the reader's barrier.
        Virtqueue::Adder ring(*q.rxq);
        Virtqueue::Reader used(*q.rxq);
        if (!used.pending()) return 0;  // nothing came (the common case for a poll)
        // Short of replacements: this pair's transmit ring may hold received frames sent back out, which
        // only a transmit would give back otherwise (as Linux's virtio-net cleans transmit in its
        // receive poll).
        const unsigned want = std::min<unsigned>(used.pending(), max);
        if (q.rx_pool->available() < want) [[unlikely]]
            reclaim_tx(q);
        out.harvest_each(
            *q.rx_slots, want,
            [&](std::size_t) {
                const auto [id, len] = used.next();
                // The device's word: an id beyond the ring, or a length beyond the buffer, is a device bug.
                // Every id below the ring's size holds a buffer (each is refilled where it is taken).
                const UsedCheck check = check_used(id, len, used.last_id(), [](std::uint32_t) { return true; }, kNetHdr, kRxCapacity);
                if (check == UsedCheck::bad_id) [[unlikely]] {
                    if (!bad_id) bad_id = id;
                    ++errors;
                    return net::Burst::Harvested{0, net::Burst::kNotASlot};
                }
                if (check == UsedCheck::bad_length) [[unlikely]] {
                    ++errors;
                    return net::Burst::Harvested{id, net::Burst::kDrop};  // the buffer goes back to the device
                }
                bytes += len - kNetHdr;
                return net::Burst::Harvested{id, static_cast<int>(len - kNetHdr)};
            },
            [&](std::size_t slot, std::uint64_t iova) { ring.readd(slot, iova - kNetHdr); });  // length and flags from fill_rx
    }
    const unsigned n = out.size() - before;
    if (errors) [[unlikely]]
        net::count(q.stats.rx_errors, errors);
    net::count(q.stats.rx_packets, n);  // once per batch: stats() may read them at any time, never torn
    net::count(q.stats.rx_bytes, bytes);
    if (q.rxq->unpublished() >= upkeep(*q.rxq) && q.rxq->publish()) notify(2 * queue);
    if (bad_id) [[unlikely]]
        return fail(EPROTO, "{}: receive queue {} returned descriptor {} that is not in flight", dev_->name(), queue, *bad_id);
    return n;
}

// Buffers the device is done with go back to their pools, together.
void VirtioNet::reclaim_tx(Pair& q, std::uint16_t at_least) {
    Virtqueue::Reader used(*q.txq);
    if (used.pending() < at_least) return;
    // An id that names no buffer in flight (beyond the ring, or given back already) is the device's error.
    std::size_t errors = 0;
    while (used.pending()) {  // one run, or two where the elements wrap around the ring's end
        const std::span<const vring::UsedElem> run = used.run();
        errors += q.tx_slots->give_back_each(run.size(), [run](std::size_t k) { return net::Slots::DeviceSlot{dma::read_once(run[k].id)}; });
        used.skip(static_cast<std::uint16_t>(run.size()));
    }
    if (errors) [[unlikely]]
        net::count(q.stats.tx_errors, errors);
}

Result<unsigned> VirtioNet::tx_done_cleanup(unsigned queue) {
    Pair& q = *UDRV_TRY(pair(queue));
    // The used elements passed, less those that named no buffer (counted in tx_errors).
    const std::uint16_t in_flight = q.txq->in_flight();
    const std::uint64_t errors = net::read_counter(q.stats.tx_errors);
    reclaim_tx(q);
    return static_cast<unsigned>(in_flight - q.txq->in_flight() - (net::read_counter(q.stats.tx_errors) - errors));
}

// Transmitted buffers are reclaimed once fewer than 32 descriptors are free (or fewer than the call
// wants; DPDK's tx_free_thresh), and a ring with fewer than 32 free takes no frames until it has 32,
// however few the call brings: the device has plenty queued meanwhile. Both keep the driver out of the
// ring lines the device is working on: a publish of one or two frames into a nearly full ring writes
// the avail-ring line right behind the device's cursor, and reading the used ring element by element
// as the device writes it makes each of its next stores there miss. Measured in the VM against testpmd
// (bench/README.md, "Network, 2026-12-06, second run"): where the trickle happened (it depends on the
// driver outpacing the device), QEMU's ring loads took 5x the samples they took under testpmd. Says
// whether the ring has room now.
inline bool VirtioNet::make_tx_room(Pair& q, std::size_t wanted) {
    const std::uint16_t run = upkeep(*q.txq);
    std::uint16_t free = tx_free(q);
    if (free >= run && free >= wanted) [[likely]] return true;
    reclaim_tx(q, static_cast<std::uint16_t>(free < run ? run - free : 1));
    return tx_free(q) >= run;
}

// Descriptors the device does not hold (0 when a device that returned ids it never had makes the count
// run past the ring: the slots, which a transmit stops at while full, are what keeps the ring right).
inline std::uint16_t VirtioNet::tx_free(const Pair& q) noexcept {
    const std::uint16_t size = q.txq->size(), in_flight = q.txq->in_flight();
    return in_flight <= size ? static_cast<std::uint16_t>(size - in_flight) : 0;
}

// The slot for the next frame to transmit: the available ring's next entry's, as long as the device
// gives buffers back in the order it took them (QEMU does; the rings and the table are then written
// front to back together, and each entry keeps its own number: see OwnAdder). A device may use them
// out of order (virtio 1.2, 2.7.14: only with VIRTIO_F_IN_ORDER must it not): the entry's slot is then
// still held, and any empty one will do (the entry is written with the descriptor it offers, until a
// ring's worth in a row is back in entry order). slots.size() when none is empty: a device that
// returned ids it was never given (counted in tx_errors) made the count of free descriptors wrong.
inline std::size_t VirtioNet::tx_slot(const net::Slots& slots, std::size_t next_entry) noexcept {
    const std::size_t first = next_entry & (slots.size() - 1);
    if (!slots.holds(first)) [[likely]]
        return first;
    return slots.next_empty(first);
}

// A frame to transmit in slot `slot` (descriptor `slot`, the available ring's next entry). The net header
// goes in the headroom, right before the frame (no offloads: all zero; see kTxHeadroom). kOwnEntry: the
// adder said own_next() for the slot (or the run it begins): the entry is not written, and the caller
// passes it with offer_own.
template <bool kOwnEntry>
inline void VirtioNet::queue_tx(Virtqueue::OwnAdder& ring, std::size_t slot, std::uint64_t iova, std::uint16_t len, std::byte* frame) noexcept {
    std::memset(frame - kTxHeadroom, 0, kTxHeadroom);
    if constexpr (kOwnEntry)
        ring.add_own(slot, iova - kNetHdr, static_cast<std::uint32_t>(kNetHdr + len));
    else
        ring.add_prepared(slot, iova - kNetHdr, static_cast<std::uint32_t>(kNetHdr + len));
}

Result<unsigned> VirtioNet::tx_batch(unsigned queue, std::span<net::Packet> packets) {
    Pair& q = *UDRV_TRY(pair(queue));
    if (!make_tx_room(q, packets.size())) return 0;
    unsigned n = 0;
    std::uint64_t bytes = 0;
    struct Count {  // once per batch, whichever way the loop ends
        net::Stats& stats;
        unsigned& n;
        std::uint64_t& bytes;
        ~Count() {
            net::count(stats.tx_packets, n);
            net::count(stats.tx_bytes, bytes);
        }
    } count{q.stats, n, bytes};
    {
        Virtqueue::OwnAdder ring(*q.txq);  // writes the ring state back before publish()
        net::Slots& slots = *q.tx_slots;
        for (const std::uint16_t free = tx_free(q); n < packets.size() && n < free; ++n) {
            net::Packet& p = packets[n];
            if (!p) {
                if (n) break;  // as below: what was good goes out first
                return fail(EINVAL, "{}: tx_batch got an empty packet handle", dev_->name());
            }
            if (auto ok = q.tx_pool->accept_for_tx(p, kTxHeadroom); !ok) {
                if (n) break;  // send what was good; the caller gets the error with this packet first next time
                return std::unexpected(std::move(ok.error()).context(dev_->name()));
            }
            const std::size_t slot = tx_slot(slots, ring.next_entry());
            if (slot == slots.size()) break;  // every slot is the device's (it lost some: see tx_slot)
            bytes += p.size();
            const net::PacketLayout layout = p.pool()->layout();
            if (ring.own_next(slot)) [[likely]] {
                queue_tx<true>(ring, slot, layout.frame_iova(p), static_cast<std::uint16_t>(p.size()), layout.frame(p));
                ring.offer_own(1);
            } else
                queue_tx<false>(ring, slot, layout.frame_iova(p), static_cast<std::uint16_t>(p.size()), layout.frame(p));
            slots.put(slot, std::move(p));
        }
    }
    if (n && q.txq->publish()) notify(2 * queue + 1);
    return n;
}

Result<unsigned> VirtioNet::tx_burst(unsigned queue, net::Burst& b) {
    Pair& q = *UDRV_TRY(pair(queue));
    if (b.empty()) return 0;
    if (auto ok = q.tx_pool->accept_pool_for_tx(b.pool(), kTxHeadroom); !ok) return std::unexpected(std::move(ok.error()).context(dev_->name()));
    if (!make_tx_room(q, b.size())) return 0;
    std::uint64_t bytes = 0;
    unsigned n;
    {
        Virtqueue::OwnAdder ring(*q.txq);
        net::Slots& slots = *q.tx_slots;
        auto describe = [&](std::size_t slot, std::uint64_t iova, std::uint16_t len, std::byte* frame) {
            bytes += len;
            queue_tx<false>(ring, slot, iova, len, frame);
        };
        auto describe_own = [&](std::size_t slot, std::uint64_t iova, std::uint16_t len, std::byte* frame) {
            bytes += len;
            queue_tx<true>(ring, slot, iova, len, frame);
        };
        // A run of slots from the next entry's; more runs only when the device holds one of them (see tx_slot).
        // Lent from the next entry's own slot, each frame goes in the entry of its own number.
        const std::uint16_t free = tx_free(q);
        n = 0;
        while (n < free && !b.empty()) {
            const std::size_t slot = tx_slot(slots, ring.next_entry());
            unsigned lent = 0;
            if (ring.own_next(slot)) [[likely]] {
                lent = b.lend_front(free - n, slots, slot, describe_own);
                ring.offer_own(lent);
            } else if (slot != slots.size())
                lent = b.lend_front(free - n, slots, slot, describe);
            if (!lent) break;
            n += lent;
        }
    }
    net::count(q.stats.tx_packets, n);
    net::count(q.stats.tx_bytes, bytes);
    if (n && q.txq->publish()) notify(2 * queue + 1);
    return n;
}

}  // namespace udrv::virtio_net
