// Intel 82574L (e1000e) as QEMU emulates it: reset, MAC from RAL/RAH (or the EEPROM), legacy receive
// and transmit descriptor rings, link status, the device's statistics registers. One queue, polled.
#pragma once

#include <bit>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "udrv/net.hpp"
#include "udrv/pci.hpp"

namespace udrv::e1000e {

/// Whether a receive descriptor the device wrote back holds a frame to pass on: done and end of packet
/// (frames split over descriptors are never asked for), no error bits, a length of 1 to `Buffer` bytes.
/// `wb`: the descriptor's write-back half as one number (E1000e::RxDesc::wb: length in bits 0-15,
/// checksum 16-31, status 32-39, errors 40-47). `Buffer`: a power of two below 64 KiB (RCTL's sizes).
template <std::uint32_t Buffer>
constexpr bool rx_descriptor_good(std::uint64_t wb) noexcept {
    static_assert(std::has_single_bit(Buffer) && Buffer < 0x10000);
    // One test for all three: an add and a test against zero. In wb - 1 the length field holds length
    // - 1, whose bits from Buffer's up are clear exactly for a length of 1 to Buffer; a length of 0 sets
    // them all (the borrow may run on into the checksum and status, but the length bits fail the test
    // already). For a length of 1 or more nothing borrows out of the length. Taking kDoneEndOfPacket
    // away as well leaves its two bits clear exactly when both were set, and then borrows nothing: the
    // errors byte tested is the device's (when they were not both set, those bits fail the test).
    constexpr std::uint64_t kLengthBeyond = 0xffff & ~std::uint64_t{Buffer - 1};
    constexpr std::uint64_t kDoneEndOfPacket = std::uint64_t{0x03} << 32, kErrors = std::uint64_t{0xff} << 40;
    return ((wb - (kDoneEndOfPacket + 1)) & (kErrors | kDoneEndOfPacket | kLengthBeyond)) == 0;
}

class E1000e final : public net::Device {
public:
    static constexpr pci::DeviceId ids[] = {pci::DeviceId::vendor_device(0x8086, 0x10d3)};  // 82574L
    static Result<std::unique_ptr<E1000e>> probe(Bound<pci::Device>& dev, const pci::DeviceId& id);
    ~E1000e() override;

    net::Mac mac() const override { return mac_; }
    bool link_up() const override;
    Result<net::Stats> stats() override;
    Result<void> set_promiscuous(bool on) override;
    unsigned queues() const override { return 1; }
    Result<unsigned> rx_batch(unsigned queue, std::span<net::Packet> out) override;
    Result<unsigned> tx_batch(unsigned queue, std::span<net::Packet> packets) override;
    Result<unsigned> rx_burst(unsigned queue, net::Burst& out, unsigned max = net::Burst::kMax) override;
    Result<unsigned> tx_burst(unsigned queue, net::Burst& b) override;
    /// Whole groups of 32 only: the device reports sending at each group's end.
    Result<unsigned> tx_done_cleanup(unsigned queue) override;
    Result<std::shared_ptr<net::PacketPool>> tx_pool(unsigned) override { return tx_pool_; }
    Result<bool> rx_wait(unsigned queue, net::WaitMode mode, std::chrono::milliseconds timeout) override;

    struct RxWriteBack {  // a receive descriptor's second half, as the device writes it back
        std::uint16_t length, checksum;
        std::uint8_t status, errors;
        std::uint16_t special;
    };
    struct RxDesc {
        std::uint64_t addr;
        std::uint64_t wb;  // an RxWriteBack (rx_write_back()); 0 when given to the device
    };
    static RxWriteBack rx_write_back(std::uint64_t wb) noexcept { return std::bit_cast<RxWriteBack>(wb); }
    struct TxCommand {  // a transmit descriptor's second half
        std::uint16_t length;
        std::uint8_t cso, cmd, status, css;
        std::uint16_t special;
    };
    struct TxDesc {
        std::uint64_t addr;
        std::uint64_t command;  // a TxCommand (tx_command()): one store, where its fields would be four
    };
    static TxCommand tx_command(std::uint64_t command) noexcept { return std::bit_cast<TxCommand>(command); }
    static constexpr std::size_t kBarSize = 0x20000;
    static constexpr std::uint16_t kRingSize = 256;  // descriptors per ring (multiple of 8; 4 KiB of descriptors)

private:
    E1000e(const pci::Device& dev, Mmio<kBarSize> regs) : dev_(dev), regs_(regs) {}
    Result<void> give_rx(std::uint16_t slot);
    unsigned reclaim_tx();
    [[gnu::noinline]] unsigned reclaim_tx_groups();
    unsigned tx_queued(std::uint16_t from) const noexcept;
    bool tx_group_sent(std::uint16_t first) const noexcept;
    void ask_for_reports(std::uint16_t first, unsigned n) noexcept;

    const pci::Device& dev_;
    Mmio<kBarSize> regs_;
    net::Mac mac_{};
    std::optional<irq::Vectors> vectors_;  // MSI-X vector 0: receive queue 0
    std::unique_ptr<dma::Coherent<RxDesc>> rx_ring_;
    std::unique_ptr<dma::Coherent<TxDesc>> tx_ring_;
    std::shared_ptr<net::PacketPool> rx_pool_, tx_pool_;
    net::Slots rx_slots_{kRingSize}, tx_slots_{kRingSize};  // the buffers the rings hold, by descriptor slot
    std::uint16_t rx_next_ = 0, tx_tail_ = 0, tx_clean_ = 0;
    std::mutex stats_mu_;                         // stats() may be called from any thread
    net::Stats totals_;                           // the device's counters clear on read; we add them up
    net::Stats soft_;                             // what the driver itself saw (net::count)
};

}  // namespace udrv::e1000e
