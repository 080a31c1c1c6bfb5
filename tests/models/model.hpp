// Device models: PCI functions in memory that the real drivers bind to through pci::Bus::add_model,
// with no VFIO and no VM. A model's BARs are RAM the driver's Mmio views point at; it hears every
// register write (MmioListener) and does the device's work right then, on the driver's thread, so a run
// is the same every time (unit tests of the drivers' paths, instruction counts in bench/micro). Its DMA
// goes through a SoftwareIommu: an access outside what the driver mapped is a fault the model records.
#pragma once

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "udrv/dma.hpp"
#include "udrv/hw.hpp"
#include "udrv/pci.hpp"

namespace udrv::models {

class ModelFunction : public hw::PciFunction, public hw::MmioListener, public std::enable_shared_from_this<ModelFunction> {
public:
    ModelFunction(std::string address, std::uint16_t vendor, std::uint16_t device, std::uint32_t class_code, std::uint8_t revision = 0);
    ~ModelFunction() override;

    /// What the bus needs to add the model (pci::Bus::add_model(model->info(), model)).
    pci::DeviceInfo info() const;

    // ---- building the function (before it is added to a bus) ----
    /// A memory BAR of `size` bytes (a power of two, at least 4 KiB) backed by zeroed RAM.
    void add_bar(unsigned index, std::size_t size);
    /// MSI-X with `vectors` vectors (its table in BAR `bar` at `offset`).
    void add_msix(unsigned vectors, unsigned bar, std::uint32_t offset);
    /// A vendor-specific capability with these bytes after the header (virtio's structures).
    void add_vendor_capability(std::span<const std::uint8_t> body);

    // ---- for the model's own use ----
    template <typename T>
    T reg(unsigned bar, std::size_t off) const {
        T v;
        std::memcpy(&v, bars_[bar].data() + off, sizeof v);
        return v;
    }
    template <typename T>
    void set_reg(unsigned bar, std::size_t off, T v) {
        std::memcpy(bars_[bar].data() + off, &v, sizeof v);
    }
    /// Signals MSI-X vector `v` if the driver routed it (a write to its eventfd).
    void interrupt(unsigned v);
    /// Interrupts signalled so far.
    std::uint64_t interrupts() const noexcept { return interrupts_; }
    dma::SoftwareIommu& iommu() noexcept { return *iommu_; }
    /// Copies between the model and the driver's DMA memory; false (a DMA fault, counted) when the
    /// driver did not map all of [iova, iova + len).
    bool dma_read(std::uint64_t iova, void* out, std::size_t len);
    bool dma_write(std::uint64_t iova, const void* in, std::size_t len);
    /// DMA faults so far (accesses outside the driver's mappings).
    std::uint64_t dma_faults() const noexcept { return dma_faults_; }

    // ---- hw::MmioListener: the device's work, done in on_mmio_written / on_mmio_read ----
    // Left out of bench/micro's instruction counts (callgrind's collection is off while they run):
    // what is measured is the driver's work, not the model's.
    void mmio_written(unsigned bar, std::size_t offset, unsigned width, std::uint64_t value) final;
    std::optional<std::uint64_t> mmio_read(unsigned bar, std::size_t offset, unsigned width) final;

    // ---- hw::PciFunction ----
    const std::string& address() const noexcept override { return address_; }
    Result<hw::RegionInfo> region(unsigned index) const override;
    Result<std::unique_ptr<hw::BarMapping>> map_bar(unsigned index) const override;
    Result<void> read_config(std::uint32_t offset, std::span<std::uint8_t> out) const override;
    Result<void> write_config(std::uint32_t offset, std::span<const std::uint8_t> in) const override;
    Result<std::uint32_t> irq_count(hw::IrqKind kind) const override;
    Result<void> set_irq_eventfds(hw::IrqKind kind, std::uint32_t start, std::span<const std::int32_t> fds) const override;
    Result<void> disable_irqs(hw::IrqKind kind) const noexcept override;
    Result<void> unmask_intx() const override { return {}; }
    Result<void> reset() const override { return {}; }
    std::shared_ptr<dma::Space> dma_space() const override { return iommu_; }

protected:
    virtual void on_mmio_written(unsigned bar, std::size_t offset, unsigned width, std::uint64_t value) = 0;
    virtual std::optional<std::uint64_t> on_mmio_read(unsigned bar, std::size_t offset, unsigned width) {
        (void)bar, (void)offset, (void)width;
        return std::nullopt;
    }

private:
    std::uint8_t next_cap_offset(std::size_t len);

    std::string address_;
    std::vector<std::uint8_t> config_ = std::vector<std::uint8_t>(4096);
    std::vector<std::vector<std::byte>> bars_ = std::vector<std::vector<std::byte>>(6);
    std::shared_ptr<dma::SoftwareIommu> iommu_ = std::make_shared<dma::SoftwareIommu>();
    unsigned msix_vectors_ = 0;
    mutable std::vector<int> irq_fds_;
    std::uint8_t last_cap_ = 0;
    std::uint8_t cap_end_ = 0x40;
    std::uint64_t interrupts_ = 0, dma_faults_ = 0;
};

}  // namespace udrv::models
