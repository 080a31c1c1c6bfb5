// How a bound PCI function's hardware is reached: through VFIO for a real device (vfio::Device), or a
// device model in memory for tests and instruction-count benchmarks (tests/models). The PCI bus opens
// one per binding; drivers never see it, they use Bound<pci::Device>.
//
// A model's registers are plain memory: the driver's MMIO accesses reach them through the same Mmio
// views, and the model hears of each write (and may answer reads) through its MmioListener, so it runs
// synchronously on the driver's thread, the same way every time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "udrv/result.hpp"

namespace udrv::dma {
class Space;
}

namespace udrv::hw {

/// Interrupt kinds of a PCI function (VFIO_PCI_*_IRQ_INDEX).
/// vfio-pci's interrupt indexes: the device's vectors, and two the kernel raises itself: err (an AER
/// error was reported) and req (the kernel asks for the device back: it is being removed or unbound).
enum class IrqKind : unsigned { intx = 0, msi = 1, msix = 2, err = 3, req = 4 };
std::string_view irq_kind_name(IrqKind k) noexcept;

/// A device model's view of the driver's register accesses (tests only; real devices have none).
class MmioListener {
public:
    virtual ~MmioListener() = default;
    /// After the driver wrote `width` bytes of `value` at `offset` of BAR `bar`.
    virtual void mmio_written(unsigned bar, std::size_t offset, unsigned width, std::uint64_t value) = 0;
    /// Before the driver reads: a value to return instead of what the memory holds (clear-on-read
    /// counters), or nullopt for the memory's contents.
    virtual std::optional<std::uint64_t> mmio_read(unsigned bar, std::size_t offset, unsigned width) {
        (void)bar, (void)offset, (void)width;
        return std::nullopt;
    }
};

/// Size and flags of a region: BARs 0-5, the ROM (6), config space (7).
struct RegionInfo {
    std::uint64_t size = 0, offset = 0;
    bool readable = false, writable = false, mmappable = false;
};

/// A BAR mapped into this process. Unmapped when dropped (for VFIO mappings).
class BarMapping {
public:
    BarMapping(void* base, std::size_t size, unsigned bar, MmioListener* listener) noexcept
        : base_(base), size_(size), bar_(bar), listener_(listener) {}
    BarMapping(const BarMapping&) = delete;
    BarMapping& operator=(const BarMapping&) = delete;
    virtual ~BarMapping() = default;
    volatile std::byte* base() const noexcept { return static_cast<volatile std::byte*>(base_); }
    std::size_t size() const noexcept { return size_; }
    unsigned bar() const noexcept { return bar_; }
    MmioListener* listener() const noexcept { return listener_; }

protected:
    void* base_;
    std::size_t size_;
    unsigned bar_;
    MmioListener* listener_;
};

/// A PCI function as the bus's binding reaches it.
class PciFunction {
public:
    virtual ~PciFunction() = default;
    /// "0000:00:03.0"
    virtual const std::string& address() const noexcept = 0;
    virtual Result<RegionInfo> region(unsigned index) const = 0;
    /// Maps a whole BAR region (0-5).
    virtual Result<std::unique_ptr<BarMapping>> map_bar(unsigned index) const = 0;
    virtual Result<void> read_config(std::uint32_t offset, std::span<std::uint8_t> out) const = 0;
    virtual Result<void> write_config(std::uint32_t offset, std::span<const std::uint8_t> in) const = 0;
    /// Number of vectors of `kind` (0 if the function has none).
    virtual Result<std::uint32_t> irq_count(IrqKind kind) const = 0;
    /// Routes vectors [start, start+fds.size()) of `kind` to eventfds (-1 disables that vector).
    virtual Result<void> set_irq_eventfds(IrqKind kind, std::uint32_t start, std::span<const std::int32_t> fds) const = 0;
    /// Disables every vector of `kind`.
    virtual Result<void> disable_irqs(IrqKind kind) const noexcept = 0;
    /// Unmasks INTx after it fired (it is masked automatically on delivery).
    virtual Result<void> unmask_intx() const = 0;
    /// Function-level reset, if the function supports one.
    virtual Result<void> reset() const = 0;
    /// The IOMMU address space this function's DMA goes through.
    virtual std::shared_ptr<dma::Space> dma_space() const = 0;

    Result<std::uint16_t> read_config16(std::uint32_t offset) const;
    Result<void> write_config16(std::uint32_t offset, std::uint16_t v) const;
    /// Sets Bus Master Enable (command register bit 2): VFIO does not, and without it DMA silently fails.
    Result<void> enable_bus_master() const;
};

}  // namespace udrv::hw
