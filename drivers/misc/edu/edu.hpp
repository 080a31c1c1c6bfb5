// QEMU's "edu" teaching device (hw/misc/edu.c), the model udrv PCI driver: identification and liveness
// registers, a factorial unit, interrupts (MSI, else INTx) and a DMA engine with a 4 KiB buffer that
// only reaches 28-bit bus addresses (fewer if QEMU is told so: see kDmaBits).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>

#include "udrv/pci.hpp"

namespace udrv::edu {

class Edu {
public:
    static constexpr pci::DeviceId ids[] = {pci::DeviceId::vendor_device(0x1234, 0x11e8)};
    /// Module parameter intx=1: take the legacy INTx line even when the device offers MSI (tests the
    /// level-triggered path that devices without MSI use).
    static constexpr Param<bool> kIntx{"intx", false, "Use the legacy INTx line even when MSI is offered"};
    /// Module parameter dma_bits=N: the address bits the device's DMA engine drives. QEMU's device drives
    /// 28 unless started with a narrower dma_mask; the driver allocates below 2^N and checks at probe
    /// that a transfer through its buffer comes back intact (a device that truncates the address would
    /// otherwise read and write some other buffer of this process).
    static constexpr Param<std::uint32_t> kDmaBits{"dma_bits", 28, "Address bits the device's DMA reaches (12-64; QEMU: its dma_mask)"};
    static Result<std::unique_ptr<Edu>> probe(Bound<pci::Device>& dev, const pci::DeviceId& id, const ThisModule& module);
    ~Edu();

    /// Major.minor from the identification register (1.0 for QEMU's device).
    std::uint32_t version() const noexcept { return version_; }
    /// Writes `v` to the liveness register and checks it reads back inverted.
    Result<void> check_liveness(std::uint32_t v);
    /// n! computed by the device (32-bit, wraps like the device), waiting by polling the status register.
    Result<std::uint32_t> factorial_polled(std::uint32_t n);
    /// n! again, this time sleeping until the device's completion interrupt.
    Result<std::uint32_t> factorial_irq(std::uint32_t n);
    /// Raises interrupt status `bits` from software and waits for the interrupt to arrive.
    Result<void> raise_and_catch(std::uint32_t bits);
    /// DMA `data` from host memory into the device buffer at `offset`, through the IOMMU. The transfer
    /// must end before byte kBufferLimit (see there).
    Result<void> dma_to_device(std::span<const std::byte> data, std::uint32_t offset);
    /// DMA `out.size()` bytes from the device buffer at `offset` back into host memory.
    Result<void> dma_from_device(std::span<std::byte> out, std::uint32_t offset);
    /// Bus address of the host-side DMA buffer (below 2^dma_bits: the device's DMA mask).
    std::uint64_t dma_buffer_iova() const noexcept { return buffer_.iova(); }
    /// The DMA mask in use, in bits (the dma_bits parameter).
    unsigned dma_bits() const noexcept { return dma_bits_; }
    irq::IrqKind irq_kind() const noexcept { return irqs_.kind(); }
    std::uint64_t interrupts() noexcept { return irqs_[0].total(); }
    /// Interrupts whose status register showed nothing we were waiting for (0 on a correct path).
    std::uint64_t spurious_interrupts() const noexcept { return spurious_; }

    static constexpr std::size_t kBufferSize = 4096;
    /// QEMU's edu (through at least 7.2) checks `end < buffer end` and aborts the whole VM with a
    /// "hardware error" for a transfer that ends exactly at byte 4096, so transfers must end by 4095.
    static constexpr std::size_t kBufferLimit = kBufferSize - 1;

private:
    Edu(const pci::Device& dev, Mmio<0x100> regs, irq::Vectors irqs, dma::Coherent<std::byte> buffer, std::uint32_t version,
        unsigned dma_bits)
        : dev_(dev), regs_(regs), irqs_(std::move(irqs)), buffer_(std::move(buffer)), version_(version), dma_bits_(dma_bits) {}
    Result<void> check_dma_reach();
    Result<void> wait_irq(std::uint32_t expect_bits);
    Result<void> run_dma(std::uint64_t src, std::uint64_t dst, std::uint32_t len, bool to_ram);

    const pci::Device& dev_;
    Mmio<0x100> regs_;                 // the register block; the BAR is 1 MiB
    irq::Vectors irqs_;
    dma::Coherent<std::byte> buffer_;  // host side of every DMA transfer
    std::uint32_t version_;
    unsigned dma_bits_;
    std::uint64_t spurious_ = 0;
};

}  // namespace udrv::edu
