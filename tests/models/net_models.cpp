#include "net_models.hpp"

#include <algorithm>

namespace udrv::models {
namespace {

// virtio 1.2: common configuration (4.1.4.3), features, status, virtqueue flags.
constexpr std::size_t kCommon = 0x0000, kIsr = 0x1000, kDevice = 0x2000, kNotify = 0x3000, kNotifyMultiplier = 4;
constexpr std::size_t kDeviceFeatureSelect = 0x00, kDeviceFeature = 0x04, kDriverFeatureSelect = 0x08, kDriverFeature = 0x0c,
                      kNumQueues = 0x12, kDeviceStatus = 0x14, kQueueSelect = 0x16, kQueueSize = 0x18, kQueueMsixVector = 0x1a,
                      kQueueEnable = 0x1c, kQueueNotifyOff = 0x1e, kQueueDesc = 0x20, kQueueDriver = 0x28, kQueueDevice = 0x30;
constexpr std::uint64_t kFeatMac = 1ull << 5, kFeatStatus = 1ull << 16, kFeatCtrlVq = 1ull << 17, kFeatCtrlRx = 1ull << 18,
                        kFeatMq = 1ull << 22, kFeatVersion1 = 1ull << 32, kFeatAccessPlatform = 1ull << 33;
constexpr std::uint8_t kStatusFeaturesOk = 8;
constexpr std::uint16_t kDescNext = 1, kDescWrite = 2, kAvailNoInterrupt = 1;
constexpr std::size_t kNetHdr = 12;

// 82574L registers.
constexpr std::size_t CTRL = 0x0000, STATUS = 0x0008, EERD = 0x0014, IMS = 0x00d0, IMC = 0x00d8, RCTL = 0x0100, TCTL = 0x0400,
                      RDBAL = 0x2800, RDBAH = 0x2804, RDLEN = 0x2808, RDH = 0x2810, RDT = 0x2818, TDBAL = 0x3800, TDBAH = 0x3804,
                      TDLEN = 0x3808, TDH = 0x3810, TDT = 0x3818, RAL0 = 0x5400, RAH0 = 0x5404, MPC = 0x4010, GPRC = 0x4074,
                      GPTC = 0x4080, GORCL = 0x4088, GORCH = 0x408c, GOTCL = 0x4090, GOTCH = 0x4094, CRCERRS = 0x4000, RXERRC = 0x400c;
constexpr std::uint32_t CTRL_RST = 1u << 26, STATUS_LU = 1u << 1, RCTL_EN = 1u << 1, TCTL_EN = 1u << 1, ICR_RXQ0 = 1u << 20;
constexpr std::uint8_t DESC_DD = 1, DESC_EOP = 2, TX_CMD_RS = 8;
constexpr std::size_t kRxBuffer = 2048;

struct RxDesc {
    std::uint64_t addr;
    std::uint16_t length, checksum;
    std::uint8_t status, errors;
    std::uint16_t special;
};
struct TxDesc {
    std::uint64_t addr;
    std::uint16_t length;
    std::uint8_t cso, cmd, status, css;
    std::uint16_t special;
};

void virtio_cap(ModelFunction& m, std::uint8_t type, std::uint32_t offset, std::uint32_t length, bool notify = false) {
    std::vector<std::uint8_t> body(notify ? 18 : 14, 0);
    body[0] = notify ? 20 : 16;  // cap_len
    body[1] = type;
    body[2] = 0;                 // bar
    std::memcpy(&body[6], &offset, 4);
    std::memcpy(&body[10], &length, 4);
    if (notify) {
        const std::uint32_t mult = kNotifyMultiplier;
        std::memcpy(&body[14], &mult, 4);
    }
    m.add_vendor_capability(body);
}

}  // namespace

// ---- virtio-net ----

VirtioNetModel::VirtioNetModel(std::string address, Options o)
    : ModelFunction(std::move(address), 0x1af4, 0x1041, 0x020000, 1), o_(o), vqs_(2 * o.pairs + (o.control_queue ? 1 : 0)) {
    add_bar(0, 0x4000);
    virtio_cap(*this, 1, kCommon, 0x38);
    virtio_cap(*this, 3, kIsr, 1);
    virtio_cap(*this, 4, kDevice, 0x1000);
    virtio_cap(*this, 2, kNotify, 0x1000, true);
    add_msix(o.pairs + 1, 0, 0x3800);
    features_ = kFeatVersion1 | kFeatMac | kFeatStatus | (o.access_platform ? kFeatAccessPlatform : 0) |
                (o.control_queue ? kFeatCtrlVq | kFeatCtrlRx : 0) | (o.control_queue && o.pairs > 1 ? kFeatMq : 0);
    for (std::size_t i = 0; i < 6; ++i) set_reg<std::uint8_t>(0, kDevice + i, kMac[i]);
    set_reg<std::uint16_t>(0, kDevice + 6, 1);  // status: link up
    set_reg<std::uint16_t>(0, kDevice + 8, static_cast<std::uint16_t>(o.pairs));
    reset_device();
}

void VirtioNetModel::reset_device() {
    for (auto& q : vqs_) q = Vq{};
    driver_features_ = 0;
    active_pairs_ = 1;
    set_reg<std::uint8_t>(0, kCommon + kDeviceStatus, 0);
    set_reg<std::uint16_t>(0, kCommon + kNumQueues, static_cast<std::uint16_t>(vqs_.size()));
    set_reg<std::uint32_t>(0, kCommon + kDeviceFeature, static_cast<std::uint32_t>(features_));
    set_reg<std::uint16_t>(0, kCommon + kQueueSelect, 0);
    load_queue_registers();
}

// queue_size, queue_msix_vector, queue_enable, queue_notify_off and the ring addresses show the
// selected queue.
void VirtioNetModel::load_queue_registers() {
    const std::uint16_t sel = reg<std::uint16_t>(0, kCommon + kQueueSelect);
    const Vq q = sel < vqs_.size() ? vqs_[sel] : Vq{};
    const bool exists = sel < vqs_.size();
    set_reg<std::uint16_t>(0, kCommon + kQueueSize, exists ? (q.size ? q.size : o_.queue_size) : 0);
    set_reg<std::uint16_t>(0, kCommon + kQueueMsixVector, q.msix);
    set_reg<std::uint16_t>(0, kCommon + kQueueEnable, q.enable);
    set_reg<std::uint16_t>(0, kCommon + kQueueNotifyOff, sel);
    set_reg<std::uint64_t>(0, kCommon + kQueueDesc, q.desc);
    set_reg<std::uint64_t>(0, kCommon + kQueueDriver, q.avail);
    set_reg<std::uint64_t>(0, kCommon + kQueueDevice, q.used);
}

void VirtioNetModel::queue_register_written(std::size_t off) {
    const std::uint16_t sel = reg<std::uint16_t>(0, kCommon + kQueueSelect);
    if (sel >= vqs_.size()) return;
    Vq& q = vqs_[sel];
    if (off == kQueueSize) {
        const std::uint16_t size = reg<std::uint16_t>(0, kCommon + kQueueSize);
        q.size = size && size <= o_.queue_size && !(size & (size - 1)) ? size : o_.queue_size;
    } else if (off == kQueueMsixVector) {
        const std::uint16_t v = reg<std::uint16_t>(0, kCommon + kQueueMsixVector);
        q.msix = v < irq_count(hw::IrqKind::msix).value_or(0) ? v : 0xffff;  // NO_VECTOR when it cannot take it
        set_reg<std::uint16_t>(0, kCommon + kQueueMsixVector, q.msix);
    } else if (off == kQueueEnable) {
        q.enable = reg<std::uint16_t>(0, kCommon + kQueueEnable);
    } else if (off >= kQueueDesc && off < kQueueDevice + 8) {
        q.desc = reg<std::uint64_t>(0, kCommon + kQueueDesc);
        q.avail = reg<std::uint64_t>(0, kCommon + kQueueDriver);
        q.used = reg<std::uint64_t>(0, kCommon + kQueueDevice);
    }
}

void VirtioNetModel::on_mmio_written(unsigned bar, std::size_t offset, unsigned, std::uint64_t value) {
    if (bar != 0) return;
    if (offset >= kNotify && offset < kNotify + 0x1000) {
        notified(static_cast<std::uint16_t>(value));
        return;
    }
    if (offset >= kCommon + 0x38) return;
    const std::size_t off = offset - kCommon;
    if (off == kDeviceFeatureSelect) {
        const std::uint32_t sel = reg<std::uint32_t>(0, kCommon + kDeviceFeatureSelect);
        set_reg<std::uint32_t>(0, kCommon + kDeviceFeature, sel < 2 ? static_cast<std::uint32_t>(features_ >> (32 * sel)) : 0);
    } else if (off == kDriverFeature) {
        const std::uint32_t sel = reg<std::uint32_t>(0, kCommon + kDriverFeatureSelect);
        if (sel < 2) {
            const std::uint64_t mask = 0xffffffffull << (32 * sel);
            driver_features_ = (driver_features_ & ~mask) | (std::uint64_t{reg<std::uint32_t>(0, kCommon + kDriverFeature)} << (32 * sel));
        }
    } else if (off == kDeviceStatus) {
        const auto st = static_cast<std::uint8_t>(value);
        if (st == 0) reset_device();
        else if ((st & kStatusFeaturesOk) && (driver_features_ & ~features_))  // features we never offered
            set_reg<std::uint8_t>(0, kCommon + kDeviceStatus, static_cast<std::uint8_t>(st & ~kStatusFeaturesOk));
    } else if (off == kQueueSelect) {
        load_queue_registers();
    } else if (off >= kQueueSize) {
        queue_register_written(off);
    }
}

std::optional<std::pair<std::uint16_t, VirtioNetModel::Desc>> VirtioNetModel::next_avail(Vq& vq) {
    std::uint16_t idx = 0;
    if (!vq.size || !dma_read(vq.avail + 2, &idx, 2) || idx == vq.last_avail) return std::nullopt;
    std::uint16_t head = 0;
    if (!dma_read(vq.avail + 4 + 2ull * (vq.last_avail % vq.size), &head, 2)) return std::nullopt;
    ++vq.last_avail;
    Desc d{};
    if (head >= vq.size || !dma_read(vq.desc + 16ull * head, &d, sizeof d)) return std::pair<std::uint16_t, Desc>{head, Desc{}};
    return std::pair{head, d};
}

void VirtioNetModel::put_used(Vq& vq, std::uint32_t id, std::uint32_t len, bool rx) {
    if (rx && bad_id_) id = *bad_id_, bad_id_.reset();
    if (rx && bad_len_) len = *bad_len_, bad_len_.reset();
    if (!rx && bad_tx_id_) id = *bad_tx_id_, bad_tx_id_.reset();
    const std::uint32_t elem[2] = {id, len};
    (void)dma_write(vq.used + 4 + 8ull * (vq.used_idx % vq.size), elem, sizeof elem);
    ++vq.used_idx;
    (void)dma_write(vq.used + 2, &vq.used_idx, 2);  // the index after the element it announces
}

bool VirtioNetModel::deliver(unsigned pair, std::span<const std::byte> frame) {
    if (pair >= o_.pairs) return false;
    Vq& rx = vqs_[2 * pair];
    if (!rx.enable) return false;
    auto a = next_avail(rx);
    if (!a) {
        ++dropped_;
        return false;
    }
    auto [id, d] = *a;
    const std::size_t need = kNetHdr + frame.size();
    if (!(d.flags & kDescWrite) || d.len < need) {  // a buffer the driver should not have offered
        put_used(rx, id, 0, true);
        ++dropped_;
        return false;
    }
    std::vector<std::byte> buf(need);
    std::copy(frame.begin(), frame.end(), buf.begin() + kNetHdr);
    (void)dma_write(d.addr, buf.data(), buf.size());
    put_used(rx, id, static_cast<std::uint32_t>(need), true);
    ++received_;
    std::uint16_t flags = 0;
    if (dma_read(rx.avail, &flags, 2) && !(flags & kAvailNoInterrupt) && rx.msix != 0xffff) interrupt(rx.msix);
    return true;
}

bool VirtioNetModel::inject(std::span<const std::byte> frame, unsigned pair) { return deliver(pair, frame); }

void VirtioNetModel::notified(std::uint16_t q) {
    ++notifications_;
    if (q >= vqs_.size()) return;
    if (o_.control_queue && q == vqs_.size() - 1) control(q);
    else if (q % 2 == 1 && !hold_tx_) transmit(q);
    // A receive queue's notification says buffers were added; frames are delivered as they come.
}

void VirtioNetModel::transmit(std::uint16_t q, unsigned limit, bool record_ids) {
    if (q >= vqs_.size()) return;
    Vq& tx = vqs_[q];
    for (; limit > 0; --limit) {
        auto a = next_avail(tx);
        if (!a) break;
        auto [id, d] = *a;
        if (record_ids) tx_ids_.push_back(id);
        std::vector<std::byte> buf(d.len);
        if (d.len >= kNetHdr && d.len <= 65536 && dma_read(d.addr, buf.data(), buf.size())) {
            std::vector<std::byte> frame(buf.begin() + kNetHdr, buf.end());
            ++sent_;
            if (o_.loopback) (void)deliver(q / 2, frame);
            else transmitted_.push_back(std::move(frame));
        }
        if (hold_back_) {
            hold_back_ = false;
            held_back_.push_back(id);
            continue;
        }
        put_used(tx, id, 0, false);
    }
}

void VirtioNetModel::return_held_tx(unsigned pair) {
    if (2 * pair + 1 >= vqs_.size()) return;
    for (std::uint32_t id : held_back_) put_used(vqs_[2 * pair + 1], id, 0, false);
    held_back_.clear();
}

void VirtioNetModel::control(std::uint16_t q) {
    Vq& cq = vqs_[q];
    while (auto a = next_avail(cq)) {
        auto [id, out] = *a;
        Desc in{};
        std::uint8_t cmd[16] = {};
        std::uint8_t ack = 1;  // VIRTIO_NET_ERR
        if ((out.flags & kDescNext) && out.next < cq.size && dma_read(cq.desc + 16ull * out.next, &in, sizeof in) &&
            out.len >= 2 && out.len <= sizeof cmd && dma_read(out.addr, cmd, out.len)) {
            if (cmd[0] == 4 && cmd[1] == 0 && out.len >= 4) {  // MQ, VQ_PAIRS_SET
                const unsigned n = cmd[2] | cmd[3] << 8;
                if (n >= 1 && n <= o_.pairs) active_pairs_ = n, ack = 0;
            } else if (cmd[0] == 0) {  // RX mode
                ack = 0;
            }
            (void)dma_write(in.addr, &ack, 1);
        }
        put_used(cq, id, 1, false);
    }
}

// ---- e1000e ----

E1000eModel::E1000eModel(std::string address, bool loopback) : ModelFunction(std::move(address), 0x8086, 0x10d3, 0x020000), loopback_(loopback) {
    add_bar(0, 0x20000);
    add_msix(5, 0, 0x1c000);  // as QEMU's: the vector table in BAR0's last part
    reset_device();
}

void E1000eModel::reset_device() {
    for (std::size_t off : {CTRL, RCTL, TCTL, RDBAL, RDBAH, RDLEN, RDH, RDT, TDBAL, TDBAH, TDLEN, TDH, TDT}) set_reg<std::uint32_t>(0, off, 0);
    set_reg<std::uint32_t>(0, STATUS, STATUS_LU | 0x80);  // link up, 1000 Mb/s
    // The receive address comes from the EEPROM at reset.
    set_reg<std::uint32_t>(0, RAL0, static_cast<std::uint32_t>(kMac[0] | kMac[1] << 8 | kMac[2] << 16 | kMac[3] << 24));
    set_reg<std::uint32_t>(0, RAH0, static_cast<std::uint32_t>(kMac[4] | kMac[5] << 8) | 1u << 31);
    ims_ = 0;
}

void E1000eModel::on_mmio_written(unsigned bar, std::size_t offset, unsigned, std::uint64_t value) {
    if (bar != 0) return;
    const auto v = static_cast<std::uint32_t>(value);
    switch (offset) {
        case CTRL:
            if (v & CTRL_RST) reset_device();  // done at once; the bit reads back clear
            break;
        case EERD:
            if (v & 1) {
                const unsigned word = (v >> 2) & 0x3fff;
                const std::uint16_t data = word < 3 ? static_cast<std::uint16_t>(kMac[2 * word] | kMac[2 * word + 1] << 8) : 0;
                set_reg<std::uint32_t>(0, EERD, std::uint32_t{data} << 16 | (word << 2) | 2);
            }
            break;
        case IMS: ims_ |= v; break;
        case IMC: ims_ &= ~v; break;
        case TDT:
            ++tail_writes_;
            transmit();
            break;
        case RDT: ++tail_writes_; break;
        default: break;
    }
    set_reg<std::uint32_t>(0, IMS, ims_);
}

std::optional<std::uint64_t> E1000eModel::on_mmio_read(unsigned bar, std::size_t offset, unsigned) {
    if (bar != 0) return std::nullopt;
    auto take = [](std::uint64_t& counter, std::uint64_t mask = 0xffffffff) {
        const std::uint64_t v = counter & mask;
        counter = 0;
        return v;
    };
    switch (offset) {  // statistics clear on read; 64-bit octet counters low half first
        case GPRC: return take(gprc_);
        case GPTC: return take(gptc_);
        case GORCL: return gorc_ & 0xffffffff;
        case GORCH: return take(gorc_) >> 32;
        case GOTCL: return gotc_ & 0xffffffff;
        case GOTCH: return take(gotc_) >> 32;
        case MPC: return take(mpc_);
        case CRCERRS:
        case RXERRC: return 0;
        default: return std::nullopt;
    }
}

void E1000eModel::transmit() {
    if (!(reg<std::uint32_t>(0, TCTL) & TCTL_EN)) return;
    const std::uint32_t n = reg<std::uint32_t>(0, TDLEN) / sizeof(TxDesc);
    const std::uint64_t base = reg<std::uint32_t>(0, TDBAL) | std::uint64_t{reg<std::uint32_t>(0, TDBAH)} << 32;
    std::uint32_t head = reg<std::uint32_t>(0, TDH);
    const std::uint32_t tail = reg<std::uint32_t>(0, TDT);
    if (!n || tail >= n) return;
    while (head != tail) {
        TxDesc d{};
        if (!dma_read(base + head * sizeof(TxDesc), &d, sizeof d)) break;
        std::vector<std::byte> frame(d.length);
        if (d.length && dma_read(d.addr, frame.data(), frame.size())) {
            ++sent_;
            ++gptc_;
            gotc_ += d.length;
            if (loopback_) (void)inject(frame);
            else transmitted_.push_back(std::move(frame));
        }
        if (d.cmd & TX_CMD_RS) {
            d.status |= DESC_DD;
            (void)dma_write(base + head * sizeof(TxDesc) + offsetof(TxDesc, status), &d.status, 1);
        }
        head = (head + 1) % n;
    }
    set_reg<std::uint32_t>(0, TDH, head);
}

bool E1000eModel::inject(std::span<const std::byte> frame, std::uint8_t errors) {
    if (!(reg<std::uint32_t>(0, RCTL) & RCTL_EN)) return false;
    const std::uint32_t n = reg<std::uint32_t>(0, RDLEN) / sizeof(RxDesc);
    const std::uint64_t base = reg<std::uint32_t>(0, RDBAL) | std::uint64_t{reg<std::uint32_t>(0, RDBAH)} << 32;
    const std::uint32_t head = reg<std::uint32_t>(0, RDH), tail = reg<std::uint32_t>(0, RDT);
    if (!n || head >= n || head == tail) {  // no descriptor the device owns: the frame is missed
        ++missed_;
        ++mpc_;
        return false;
    }
    RxDesc d{};
    if (!dma_read(base + head * sizeof(RxDesc), &d, sizeof d)) return false;
    const std::size_t len = std::min(frame.size(), kRxBuffer);
    (void)dma_write(d.addr, frame.data(), len);
    d.length = static_cast<std::uint16_t>(len);
    if (bad_len_) d.length = *bad_len_, bad_len_.reset();
    d.errors = errors;
    d.status = DESC_DD | DESC_EOP;
    (void)dma_write(base + head * sizeof(RxDesc), &d, sizeof d);
    set_reg<std::uint32_t>(0, RDH, (head + 1) % n);
    ++received_;
    ++gprc_;
    gorc_ += len;
    if (ims_ & ICR_RXQ0) interrupt(0);
    return true;
}

}  // namespace udrv::models
