// Network device models: a modern virtio-net function (virtio 1.2 PCI transport, split virtqueues,
// the control queue, multiqueue) and an Intel 82574L (e1000e legacy rings). By default each loops every
// frame it transmits back to its receive queue (virtio: the same pair), so a driver's rx and tx paths
// run end to end; frames can also be injected or collected. Told to, they hand back a used element with
// a descriptor id nobody gave them, a length past the buffer, or a receive descriptor with errors.
#pragma once

#include <climits>
#include <deque>
#include <optional>

#include "model.hpp"

namespace udrv::models {

struct VirtioNetOptions {
    unsigned pairs = 1;               ///< queue pairs (more than one: VIRTIO_NET_F_MQ)
    std::uint16_t queue_size = 256;   ///< the most each virtqueue may have
    bool access_platform = true;      ///< offer VIRTIO_F_ACCESS_PLATFORM (DMA through the IOMMU)
    bool control_queue = true;        ///< offer VIRTIO_NET_F_CTRL_VQ (and CTRL_RX)
    bool loopback = true;             ///< what a pair transmits arrives on its receive queue
};

class VirtioNetModel final : public ModelFunction {
public:
    using Options = VirtioNetOptions;
    explicit VirtioNetModel(std::string address = "0000:00:07.0", Options o = {});

    static constexpr std::uint8_t kMac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    std::uint64_t frames_sent() const noexcept { return sent_; }
    std::uint64_t frames_received() const noexcept { return received_; }
    /// Frames that found no receive buffer.
    std::uint64_t frames_dropped() const noexcept { return dropped_; }
    std::uint64_t notifications() const noexcept { return notifications_; }
    unsigned active_pairs() const noexcept { return active_pairs_; }
    /// Frames transmitted when loopback is off.
    std::deque<std::vector<std::byte>>& transmitted() noexcept { return transmitted_; }
    /// Delivers a frame to receive queue of `pair` (false: no buffer there).
    bool inject(std::span<const std::byte> frame, unsigned pair = 0);
    /// The next used element on a receive queue names this id / this length instead of the real ones.
    void corrupt_next_rx_id(std::uint32_t id) { bad_id_ = id; }
    void corrupt_next_rx_len(std::uint32_t len) { bad_len_ = len; }
    /// The next used element on a transmit queue names this id instead of the real one (that descriptor
    /// is then never given back).
    void corrupt_next_tx_id(std::uint32_t id) { bad_tx_id_ = id; }
    /// A busy device: while held, transmit queues are not served on notification; release_tx sends up
    /// to `n` of what pair `pair` has queued (in order, as QEMU's virtio-net does).
    void hold_tx(bool on) { hold_tx_ = on; }
    void release_tx(unsigned n, unsigned pair = 0) { transmit(static_cast<std::uint16_t>(2 * pair + 1), n, true); }
    /// A device that completes out of order (virtio 1.2, 2.7.14, without VIRTIO_F_IN_ORDER): the next
    /// frame transmitted is sent, but its descriptor is given back only by return_held_tx(), after those
    /// that come after it.
    void hold_back_next_tx() { hold_back_ = true; }
    void return_held_tx(unsigned pair = 0);
    /// The descriptor id of each frame release_tx sent, in order.
    const std::vector<std::uint16_t>& tx_descriptor_ids() const noexcept { return tx_ids_; }

private:
    struct Vq {
        std::uint16_t size = 0, msix = 0xffff, enable = 0;
        std::uint64_t desc = 0, avail = 0, used = 0;
        std::uint16_t last_avail = 0, used_idx = 0;
    };
    struct Desc {
        std::uint64_t addr;
        std::uint32_t len;
        std::uint16_t flags, next;
    };
    void on_mmio_written(unsigned bar, std::size_t offset, unsigned width, std::uint64_t value) override;
    void reset_device();
    void load_queue_registers();
    void queue_register_written(std::size_t off);
    void notified(std::uint16_t q);
    void transmit(std::uint16_t q, unsigned limit = UINT_MAX, bool record_ids = false);
    void control(std::uint16_t q);
    std::optional<std::pair<std::uint16_t, Desc>> next_avail(Vq& vq);
    void put_used(Vq& vq, std::uint32_t id, std::uint32_t len, bool rx);
    bool deliver(unsigned pair, std::span<const std::byte> frame);

    Options o_;
    std::uint64_t features_ = 0, driver_features_ = 0;
    std::vector<Vq> vqs_;
    unsigned active_pairs_ = 1;
    std::deque<std::vector<std::byte>> transmitted_;
    std::optional<std::uint32_t> bad_id_, bad_len_, bad_tx_id_;
    std::uint64_t sent_ = 0, received_ = 0, dropped_ = 0, notifications_ = 0;
    bool hold_tx_ = false, hold_back_ = false;
    std::vector<std::uint32_t> held_back_;  // transmit descriptor ids sent and not yet given back
    std::vector<std::uint16_t> tx_ids_;
};

class E1000eModel final : public ModelFunction {
public:
    explicit E1000eModel(std::string address = "0000:00:06.0", bool loopback = true);

    static constexpr std::uint8_t kMac[6] = {0x52, 0x54, 0x00, 0x00, 0x00, 0x06};
    std::uint64_t frames_sent() const noexcept { return sent_; }
    std::uint64_t frames_received() const noexcept { return received_; }
    std::uint64_t frames_missed() const noexcept { return missed_; }
    std::uint64_t tail_writes() const noexcept { return tail_writes_; }
    std::deque<std::vector<std::byte>>& transmitted() noexcept { return transmitted_; }
    /// Receives a frame; with `errors` the descriptor comes back with those error bits set.
    bool inject(std::span<const std::byte> frame, std::uint8_t errors = 0);
    /// The next receive descriptor reports this length instead of the real one.
    void corrupt_next_rx_len(std::uint16_t len) { bad_len_ = len; }

private:
    void on_mmio_written(unsigned bar, std::size_t offset, unsigned width, std::uint64_t value) override;
    std::optional<std::uint64_t> on_mmio_read(unsigned bar, std::size_t offset, unsigned width) override;
    void reset_device();
    void transmit();

    bool loopback_;
    std::uint32_t ims_ = 0;
    std::deque<std::vector<std::byte>> transmitted_;
    std::optional<std::uint16_t> bad_len_;
    // Statistics since the driver last read them (the registers clear on read).
    std::uint64_t gprc_ = 0, gptc_ = 0, gorc_ = 0, gotc_ = 0, mpc_ = 0;
    std::uint64_t sent_ = 0, received_ = 0, missed_ = 0, tail_writes_ = 0;
};

}  // namespace udrv::models
