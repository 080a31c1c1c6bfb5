#include "e1000e.hpp"

#include <bit>
#include <cstddef>
#include <thread>

#include "udrv/log.hpp"

namespace udrv::e1000e {
namespace {

// Registers (82574 datasheet, chapter 10).
constexpr std::size_t CTRL = 0x0000, STATUS = 0x0008, EERD = 0x0014, IMS = 0x00d0, IMC = 0x00d8, EIAC = 0x00dc, IVAR = 0x00e4,
                      RCTL = 0x0100, TCTL = 0x0400, TIPG = 0x0410, RDBAL = 0x2800, RDBAH = 0x2804, RDLEN = 0x2808, RDH = 0x2810,
                      RDT = 0x2818, TDBAL = 0x3800, TDBAH = 0x3804, TDLEN = 0x3808, TDH = 0x3810, TDT = 0x3818, MTA = 0x5200,
                      RAL0 = 0x5400, RAH0 = 0x5404;
// Statistics (clear on read).
constexpr std::size_t CRCERRS = 0x4000, RXERRC = 0x400c, MPC = 0x4010, GPRC = 0x4074, GPTC = 0x4080, GORCL = 0x4088, GORCH = 0x408c,
                      GOTCL = 0x4090, GOTCH = 0x4094;
constexpr std::uint32_t CTRL_SLU = 1u << 6, CTRL_ASDE = 1u << 5, CTRL_RST = 1u << 26, STATUS_LU = 1u << 1;
constexpr std::uint32_t RCTL_EN = 1u << 1, RCTL_UPE = 1u << 3, RCTL_MPE = 1u << 4, RCTL_BAM = 1u << 15, RCTL_SECRC = 1u << 26;
constexpr std::uint32_t TCTL_EN = 1u << 1, TCTL_PSP = 1u << 3, TCTL_CT = 0x0fu << 4, TCTL_COLD = 0x3fu << 12;
constexpr std::uint32_t TIPG_DEFAULT = 8 | 8 << 10 | 6 << 20;  // IPGT, IPGR1, IPGR2 for copper
constexpr std::uint32_t ICR_RXQ0 = 1u << 20;      // receive queue 0 cause in MSI-X mode
constexpr std::uint32_t IVAR_RXQ0_VECTOR0 = 0x8;  // RxQ0 -> MSI-X vector 0, entry valid; other causes unrouted
constexpr std::uint8_t DESC_DD = 1, TX_CMD_EOP = 1, TX_CMD_IFCS = 2, TX_CMD_RS = 8;
// Transmit descriptors ask for a status write-back (RS) once per group of this many: each write-back is
// a DMA write by the device, and the driver frees a whole group when its last descriptor is done.
constexpr std::uint16_t kTxGroup = 32;
static_assert(E1000e::kRingSize % kTxGroup == 0);
constexpr std::uint32_t kBufSize = 2048;  // RCTL.BSIZE 00b

}  // namespace

Result<std::unique_ptr<E1000e>> E1000e::probe(Bound<pci::Device>& dev, const pci::DeviceId&) {
    Mmio<kBarSize> regs = UDRV_TRY(dev.map_bar<kBarSize>(0));
    UDRV_TRY(dev.enable_bus_master());
    std::unique_ptr<E1000e> e(new E1000e(dev.device(), regs));

    // 1. Mask interrupts, reset, mask again (reset re-enables some).
    regs.write32<IMC>(0xffffffff);
    regs.write32<CTRL>(regs.read32<CTRL>() | CTRL_RST);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    for (int i = 0; i < 100 && (regs.read32<CTRL>() & CTRL_RST); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (regs.read32<CTRL>() & CTRL_RST) return fail(ETIMEDOUT, "{}: reset did not complete", dev->name());
    regs.write32<IMC>(0xffffffff);

    // 2. MAC: receive address 0, loaded from the EEPROM at reset; read the EEPROM if it is empty.
    std::uint32_t ral = regs.read32<RAL0>(), rah = regs.read32<RAH0>();
    if (ral == 0 && (rah & 0xffff) == 0) {
        for (std::uint32_t w = 0; w < 3; ++w) {
            regs.write32<EERD>(1u | w << 2);
            std::uint32_t v = 0;
            for (int i = 0; i < 1000 && !((v = regs.read32<EERD>()) & 2); ++i) std::this_thread::sleep_for(std::chrono::microseconds(10));
            if (!(v & 2)) return fail(ETIMEDOUT, "{}: EEPROM read of word {} did not complete", dev->name(), w);
            e->mac_[2 * w] = static_cast<std::uint8_t>(v >> 16);
            e->mac_[2 * w + 1] = static_cast<std::uint8_t>(v >> 24);
        }
    } else {
        for (int i = 0; i < 4; ++i) e->mac_[i] = static_cast<std::uint8_t>(ral >> (8 * i));
        e->mac_[4] = static_cast<std::uint8_t>(rah);
        e->mac_[5] = static_cast<std::uint8_t>(rah >> 8);
    }
    if (e->mac_ == net::Mac{} || (e->mac_[0] & 1)) return fail(EPROTO, "{}: invalid MAC address {}", dev->name(), net::format_mac(e->mac_));
    regs.write32<RAL0>(static_cast<std::uint32_t>(e->mac_[0] | e->mac_[1] << 8 | e->mac_[2] << 16 | e->mac_[3] << 24));
    regs.write32<RAH0>(static_cast<std::uint32_t>(e->mac_[4] | e->mac_[5] << 8) | 1u << 31);  // address valid
    for (std::size_t i = 0; i < 128; ++i) (void)regs.try_write32(MTA + 4 * i, 0);

    // 3. Link: set link up with auto speed detection.
    regs.write32<CTRL>(regs.read32<CTRL>() | CTRL_SLU | CTRL_ASDE);

    // 4. Receive ring, full of 2 KiB buffers.
    auto dma = UDRV_TRY(dev.dma());
    e->rx_ring_ = std::make_unique<dma::Coherent<RxDesc>>(UDRV_TRY(dma.coherent<RxDesc>(kRingSize)));
    e->tx_ring_ = std::make_unique<dma::Coherent<TxDesc>>(UDRV_TRY(dma.coherent<TxDesc>(kRingSize)));
    // Receive buffers can be in the receive ring, in a transmit ring (frames forwarded by reference) and
    // in the application's bursts at once: a third ring's worth keeps the receive ring refilled then.
    e->rx_pool_ = UDRV_TRY(net::PacketPool::create(dma, 3u * kRingSize, kBufSize + 64, 64));
    e->tx_pool_ = UDRV_TRY(net::PacketPool::create(dma, 2u * kRingSize, kBufSize + 64, 64));
    for (std::uint16_t i = 0; i < kRingSize; ++i) UDRV_TRY(e->give_rx(i));
    regs.write32<RDBAL>(static_cast<std::uint32_t>(e->rx_ring_->iova()));
    regs.write32<RDBAH>(static_cast<std::uint32_t>(e->rx_ring_->iova() >> 32));
    regs.write32<RDLEN>(kRingSize * sizeof(RxDesc));
    regs.write32<RDH>(0);
    regs.write32<RDT>(kRingSize - 1);  // one descriptor stays with us: head == tail means empty
    regs.write32<RCTL>(RCTL_EN | RCTL_BAM | RCTL_SECRC);

    // 5. Transmit ring.
    regs.write32<TDBAL>(static_cast<std::uint32_t>(e->tx_ring_->iova()));
    regs.write32<TDBAH>(static_cast<std::uint32_t>(e->tx_ring_->iova() >> 32));
    regs.write32<TDLEN>(kRingSize * sizeof(TxDesc));
    regs.write32<TDH>(0);
    regs.write32<TDT>(0);
    regs.write32<TIPG>(TIPG_DEFAULT);
    regs.write32<TCTL>(TCTL_EN | TCTL_PSP | TCTL_CT | TCTL_COLD);

    // 6. Receive interrupt (for rx_wait): RxQ0 on MSI-X vector 0, its cause auto-cleared (EIAC);
    //    masked until rx_wait arms it through IMS.
    if (auto v = dev.alloc_irq_vectors(irq::IrqKind::msix, 1)) {
        e->vectors_.emplace(std::move(*v));
        regs.write32<IVAR>(IVAR_RXQ0_VECTOR0);
        regs.write32<EIAC>(ICR_RXQ0);
    } else {
        dev_warn(dev.device(), "no MSI-X ({}): receive queue can only be polled", v.error().message());
    }

    // 7. Wait for the link (up to 2 s; QEMU's link comes up at once).
    for (int i = 0; i < 200 && !e->link_up(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    (void)e->stats();  // start the counters from zero
    e->totals_ = {};
    // 8. Publish: the net class names it (net0, ...) and others open it by that name or its address.
    const std::string name = UDRV_TRY(net::publish(dev, *e, dev->name()));
    dev_info(dev.device(), "{}: 82574L, MAC {}, link {}", name, net::format_mac(e->mac_), e->link_up() ? "up" : "down");
    return e;
}

E1000e::~E1000e() {
    // The pools give out nothing more; packets come back under their lock from here on (udrv/packet.hpp).
    for (auto* pool : {rx_pool_.get(), tx_pool_.get()})
        if (pool) pool->detach();
    // Frames already handed to tx_batch go out: wait (bounded) for the ring to drain.
    for (int i = 0; i < 1000 && regs_.read32<TDH>() != regs_.read32<TDT>(); ++i) std::this_thread::sleep_for(std::chrono::microseconds(100));
    // Stop the rings before their memory goes; masking and a reset leave the device quiet.
    regs_.write32<RCTL>(0);
    regs_.write32<TCTL>(0);
    regs_.write32<IMC>(0xffffffff);
    regs_.write32<CTRL>(regs_.read32<CTRL>() | CTRL_RST);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

bool E1000e::link_up() const { return regs_.read32<STATUS>() & STATUS_LU; }

Result<void> E1000e::set_promiscuous(bool on) {
    std::uint32_t r = regs_.read32<RCTL>();
    regs_.write32<RCTL>(on ? (r | RCTL_UPE | RCTL_MPE) : (r & ~(RCTL_UPE | RCTL_MPE)));
    return {};
}

Result<net::Stats> E1000e::stats() {
    // Good packets/octets and errors from the device; 64-bit octet counters read low half first.
    std::lock_guard lock(stats_mu_);
    totals_.rx_packets += regs_.read32<GPRC>();
    totals_.tx_packets += regs_.read32<GPTC>();
    totals_.rx_bytes += regs_.read32<GORCL>() | std::uint64_t{regs_.read32<GORCH>()} << 32;
    totals_.tx_bytes += regs_.read32<GOTCL>() | std::uint64_t{regs_.read32<GOTCH>()} << 32;
    totals_.rx_dropped += regs_.read32<MPC>();
    totals_.rx_errors += regs_.read32<CRCERRS>() + regs_.read32<RXERRC>();
    net::Stats s = totals_;
    if (vectors_) s.rx_interrupts = (*vectors_)[0].total();
    net::add_counters(s, soft_);
    return s;
}

// Has the device written a receive descriptor back (its write-back half `wb`)?
inline bool rx_done(std::uint64_t wb) noexcept { return (E1000e::rx_write_back(wb).status & DESC_DD) != 0; }

Result<bool> E1000e::rx_wait(unsigned queue, net::WaitMode mode, std::chrono::milliseconds timeout) {
    if (queue != 0) return fail(EINVAL, "{}: queue {} does not exist (1 queue)", dev_.name(), queue);
    irq::Vector* v = vectors_ ? &(*vectors_)[0] : nullptr;
    auto r = net::wait_for_rx(
        mode, timeout, v, [&] { return rx_done(dma::read_once((*rx_ring_)[rx_next_].wb)); },
        [&] { regs_.write32<IMS>(ICR_RXQ0); }, [&] { regs_.write32<IMC>(ICR_RXQ0); });
    if (!r) return std::unexpected(std::move(r.error()).context(dev_.name()));
    return r;
}

// A receive descriptor given to the device: the buffer's address, the write-back half cleared (the
// done bit the loops look for is in it).
constexpr E1000e::RxDesc rx_descriptor(std::uint64_t iova) noexcept { return {iova, 0}; }

Result<void> E1000e::give_rx(std::uint16_t slot) {
    rx_slots_.put(slot, UDRV_TRY(rx_pool_->alloc()));
    (*rx_ring_)[slot] = rx_descriptor(rx_slots_.frame_iova(slot, rx_pool_->layout()));
    return {};
}

// Takes up to `max` received frames into `out`. A frame leaves the ring only with a fresh buffer to put
// in its place (taken from the pool as the loop goes, in one owner section); frames beyond what the pool
// can replace wait in the ring for the next call.
Result<unsigned> E1000e::rx_burst(unsigned queue, net::Burst& out, unsigned max) {
    if (queue != 0) return fail(EINVAL, "{}: queue {} does not exist (1 queue)", dev_.name(), queue);
    if (!out.prepare_for(rx_pool_.get()))
        return fail(EINVAL, "{}: rx_burst: the burst holds packets of another pool (transmit or clear them first)", dev_.name());
    RxDesc* const ring = rx_ring_->span().data();  // kRingSize descriptors, as many as rx_slots_
    const std::uint16_t next = rx_next_;
    if (!rx_done(dma::read_once(ring[next].wb))) return 0;  // nothing arrived: no harvest set up
    const unsigned before = out.size();
    std::uint64_t errors = 0;
    // The harvest reads each write-back once, as one 64-bit word: the done bit and the length and errors
    // it vouches for arrive together (no barrier between them), and the first not written back ends it.
    const unsigned done = out.harvest(
        rx_slots_, next, std::min(max, out.room()),
        [&](std::size_t slot) {
            // The device's word: a frame split over descriptors (we never asked for that), an error, or
            // a length beyond the buffer is dropped and counted, and its buffer goes back in the ring.
            const std::uint64_t wb = dma::read_once(ring[slot].wb);
            if (rx_descriptor_good<kBufSize>(wb)) [[likely]]
                return int{rx_write_back(wb).length};
            if (!rx_done(wb)) return net::Burst::kNotDone;
            ++errors;
            return net::Burst::kDrop;
        },
        [&](std::size_t slot, std::uint64_t iova) { ring[slot] = rx_descriptor(iova); });
    rx_next_ = static_cast<std::uint16_t>((next + done) % kRingSize);
    if (errors) [[unlikely]]
        net::count(soft_.rx_errors, errors);
    if (done) regs_.write32<RDT>((rx_next_ + kRingSize - 1) % kRingSize);  // hand the refilled descriptors back
    return out.size() - before;
}

Result<unsigned> E1000e::rx_batch(unsigned queue, std::span<net::Packet> out) {
    net::Burst got;
    const unsigned n = UDRV_TRY(rx_burst(queue, got, static_cast<unsigned>(std::min<std::size_t>(out.size(), net::Burst::kMax))));
    for (unsigned i = 0; i < n; ++i) out[i] = got.pop_front();
    return n;
}

// Descriptors queued from `from` up to the tail (the device's, sent or not).
inline unsigned E1000e::tx_queued(std::uint16_t from) const noexcept { return (unsigned{tx_tail_} + kRingSize - from) % kRingSize; }

// Is the group starting at descriptor `first` queued and sent (its last done)?
inline bool E1000e::tx_group_sent(std::uint16_t first) const noexcept {
    return tx_queued(first) >= kTxGroup &&
           (tx_command(dma::read_once(tx_ring_->span()[first + kTxGroup - 1].command)).status & DESC_DD);
}

// Reclaims whole groups the device has sent: DD in a group's last descriptor (the one with RS) means the
// device is done with all of it; the buffers go back to their pools together. tx_clean_ stays at a group
// start. Returns the free descriptors (one always stays unused: tail == clean means empty).
unsigned E1000e::reclaim_tx() {
    // Most calls find no whole group sent: they return here, without the set-up of giving back.
    if (!tx_group_sent(tx_clean_)) [[likely]]
        return kRingSize - 1 - tx_queued(tx_clean_);
    return reclaim_tx_groups();
}

unsigned E1000e::reclaim_tx_groups() {
    std::uint16_t clean = tx_clean_;
    do {
        tx_slots_.give_back(clean, kTxGroup);
        clean = static_cast<std::uint16_t>((clean + kTxGroup) % kRingSize);
    } while (tx_group_sent(clean));
    tx_clean_ = clean;
    return kRingSize - 1 - tx_queued(clean);
}

Result<unsigned> E1000e::tx_done_cleanup(unsigned queue) {
    if (queue != 0) return fail(EINVAL, "{}: queue {} does not exist (1 queue)", dev_.name(), queue);
    const unsigned queued = tx_queued(tx_clean_);
    (void)reclaim_tx();
    return queued - tx_queued(tx_clean_);
}

// The cmd byte's place in a transmit descriptor's second half, as one number (E1000e::TxDesc::command).
constexpr std::uint64_t tx_cmd_bits(std::uint8_t cmd) noexcept {
    static_assert(std::endian::native == std::endian::little && offsetof(E1000e::TxCommand, cmd) == 3 && sizeof(E1000e::TxCommand) == 8);
    return std::uint64_t{cmd} << 24;
}

// Transmit descriptor for a frame at `iova` of `len` bytes: one frame per descriptor, CRC by the
// device, no status write-back yet (ask_for_reports() adds those at the groups' ends).
constexpr E1000e::TxDesc tx_descriptor(std::uint64_t iova, std::uint16_t len) noexcept {
    constexpr std::uint8_t cmd = TX_CMD_EOP | TX_CMD_IFCS;
    return {iova, std::uint64_t{len} | tx_cmd_bits(cmd)};  // status and the rest 0
}

// Asks for a status write-back (RS) in the last descriptor of each group among the `n` just written
// from `first` on, before the tail hands them over: once per group, not a test per frame.
void E1000e::ask_for_reports(std::uint16_t first, unsigned n) noexcept {
    TxDesc* const ring = tx_ring_->span().data();
    for (unsigned d = first | (kTxGroup - 1); d < first + n; d += kTxGroup) ring[d % kRingSize].command |= tx_cmd_bits(TX_CMD_RS);
}

Result<unsigned> E1000e::tx_batch(unsigned queue, std::span<net::Packet> packets) {
    if (queue != 0) return fail(EINVAL, "{}: queue {} does not exist (1 queue)", dev_.name(), queue);
    const unsigned space = reclaim_tx();
    unsigned n = 0;
    std::uint16_t tail = tx_tail_;
    for (; n < packets.size() && n < space; ++n) {
        net::Packet& p = packets[n];
        if (!p) {
            if (n) break;  // as below: what was good goes out first
            return fail(EINVAL, "{}: tx_batch got an empty packet handle", dev_.name());
        }
        if (auto ok = tx_pool_->accept_for_tx(p); !ok) {
            if (n) break;  // send what was good; the caller gets the error with this packet first next time
            return std::unexpected(std::move(ok.error()).context(dev_.name()));
        }
        const std::uint64_t iova = net::PacketPool::frame_iova(p);
        const auto len = static_cast<std::uint16_t>(p.size());
        tx_slots_.put(tail, std::move(p));
        tx_ring_->span().data()[tail] = tx_descriptor(iova, len);
        tail = static_cast<std::uint16_t>((tail + 1) % kRingSize);
    }
    ask_for_reports(tx_tail_, n);
    tx_tail_ = tail;
    if (n) regs_.write32<TDT>(tail);  // write32 orders the descriptors before the tail
    return n;
}

Result<unsigned> E1000e::tx_burst(unsigned queue, net::Burst& b) {
    if (queue != 0) return fail(EINVAL, "{}: queue {} does not exist (1 queue)", dev_.name(), queue);
    if (b.empty()) return 0;
    if (auto ok = tx_pool_->accept_pool_for_tx(b.pool()); !ok) return std::unexpected(std::move(ok.error()).context(dev_.name()));
    TxDesc* const ring = tx_ring_->span().data();  // kRingSize descriptors, as many as tx_slots_
    const unsigned n = b.lend_front(reclaim_tx(), tx_slots_, tx_tail_, [&](std::size_t slot, std::uint64_t iova, std::uint16_t len, std::byte*) {
        ring[slot] = tx_descriptor(iova, len);
    });
    ask_for_reports(tx_tail_, n);
    const auto tail = static_cast<std::uint16_t>((tx_tail_ + n) % kRingSize);
    tx_tail_ = tail;
    if (n) regs_.write32<TDT>(tail);  // write32 orders the descriptors before the tail
    return n;
}

}  // namespace udrv::e1000e
