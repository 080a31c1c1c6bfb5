// The VFIO backend: container (one IOMMU address space), groups, devices (the kernel's vfio-pci uAPI).
// Everything is an owned object holding what it depends on (a Device keeps its Group, a Group keeps its
// Container), so whatever order owners drop them in, file descriptors close in a valid order.
// Drivers do not use this header directly: Bound<pci::Device> gives them BARs, DMA and IRQs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "udrv/fileio.hpp"
#include "udrv/hw.hpp"
#include "udrv/result.hpp"

namespace udrv::vfio {

/// An IOVA range the IOMMU can translate (inclusive end), from VFIO_IOMMU_GET_INFO.
struct IovaRange {
    std::uint64_t start = 0, end = 0;
};

/// What VFIO_IOMMU_GET_INFO's capability chain says (the IOVA ranges, the DMA mappings left).
struct IommuCaps {
    std::vector<IovaRange> ranges;
    std::optional<std::uint32_t> dma_avail;
};
/// Walks the chain starting at `cap_offset` in the info buffer `info`: never outside it, only forwards
/// (at most 64 capabilities), unaligned fields copied out; unknown capabilities and inverted ranges
/// are skipped.
IommuCaps parse_iommu_caps(std::span<const std::byte> info, std::uint32_t cap_offset);

class Group;

/// An IOMMU address space (/dev/vfio/vfio with the type1 v2 IOMMU). Several groups may share one.
class Container : public std::enable_shared_from_this<Container> {
    friend class Group;

public:
    /// Opens a new container. `dev_dir` is /dev/vfio (tests may point elsewhere).
    static Result<std::shared_ptr<Container>> open(const std::filesystem::path& dev_dir = "/dev/vfio");
    /// The process-wide container most users share (opened on first use).
    static Result<std::shared_ptr<Container>> shared();
    ~Container() = default;
    Container(const Container&) = delete;
    Container& operator=(const Container&) = delete;

    /// Opens IOMMU group `number` and attaches it (the first group also selects the type1 v2 IOMMU).
    /// A group already open in this container is returned again. ENOENT/EPERM/EBUSY/EINVAL (not viable)
    /// come with what to do about them.
    Result<std::shared_ptr<Group>> group(unsigned number);

    /// IOVA ranges the IOMMU accepts (valid once a group is attached).
    const std::vector<IovaRange>& iova_ranges() const noexcept { return ranges_; }
    /// How many more DMA mappings the kernel allows (vfio_iommu_type1 dma_entry_limit), if it says.
    std::optional<std::uint32_t> dma_mappings_available() const noexcept { return dma_avail_; }
    /// Smallest IOMMU page size.
    std::uint64_t iommu_page_size() const noexcept { return page_size_; }
    /// Changes whenever the IOMMU context goes away (the last group detached): mappings made before
    /// are gone with it and must not be unmapped again.
    std::uint64_t epoch() const noexcept { return epoch_; }

    /// Maps [vaddr, vaddr+size) at `iova` for device reads and writes. Errors name the limit involved.
    Result<void> map_dma(const void* vaddr, std::uint64_t iova, std::size_t size);
    Result<void> unmap_dma(std::uint64_t iova, std::size_t size) noexcept;

private:
    Container(Fd fd, std::filesystem::path dev_dir) : fd_(std::move(fd)), dev_dir_(std::move(dev_dir)) {}
    Result<void> read_iommu_info();

    Fd fd_;
    std::filesystem::path dev_dir_;
    bool iommu_set_ = false;
    unsigned attached_ = 0;
    std::uint64_t epoch_ = 0;
    std::vector<IovaRange> ranges_;
    std::optional<std::uint32_t> dma_avail_;
    std::uint64_t page_size_ = 4096;
    std::recursive_mutex mu_;  // recursive: a Group that fails half-way through group() detaches under it
    std::map<unsigned, std::weak_ptr<Group>> groups_;
};

class Device;

/// An IOMMU group attached to a container.
class Group : public std::enable_shared_from_this<Group> {
public:
    ~Group();
    Group(const Group&) = delete;
    Group& operator=(const Group&) = delete;
    unsigned number() const noexcept { return number_; }
    const std::shared_ptr<Container>& container() const noexcept { return container_; }
    /// Opens the device named by its PCI address ("0000:00:03.0").
    Result<std::unique_ptr<Device>> open_device(const std::string& address);

private:
    friend class Container;
    bool attached_ = false;
    Group(std::shared_ptr<Container> c, unsigned n, Fd fd) : container_(std::move(c)), number_(n), fd_(std::move(fd)) {}
    std::shared_ptr<Container> container_;
    unsigned number_;
    Fd fd_;
};

/// Interrupt kinds of a vfio-pci device (VFIO_PCI_*_IRQ_INDEX).
using hw::IrqKind;
using hw::irq_kind_name;

/// A device opened through VFIO.
class Device final : public hw::PciFunction {
public:
    ~Device() override = default;
    Device(const Device&) = delete;
    Device& operator=(const Device&) = delete;

    const std::string& address() const noexcept override { return address_; }
    const std::shared_ptr<Group>& group() const noexcept { return group_; }

    using RegionInfo = hw::RegionInfo;
    Result<RegionInfo> region(unsigned index) const override;
    /// mmaps a whole BAR region; the mapping is unmapped when dropped.
    Result<std::unique_ptr<hw::BarMapping>> map_bar(unsigned index) const override;

    Result<void> read_config(std::uint32_t offset, std::span<std::uint8_t> out) const override;
    Result<void> write_config(std::uint32_t offset, std::span<const std::uint8_t> in) const override;

    Result<std::uint32_t> irq_count(IrqKind kind) const override;
    Result<void> set_irq_eventfds(IrqKind kind, std::uint32_t start, std::span<const std::int32_t> fds) const override;
    Result<void> disable_irqs(IrqKind kind) const noexcept override;
    Result<void> unmask_intx() const override;
    Result<void> reset() const override;
    /// The space of the container this device's group is attached to (shared by its devices).
    std::shared_ptr<dma::Space> dma_space() const override;

private:
    friend class Group;
    Device(std::shared_ptr<Group> g, std::string address, Fd fd) : group_(std::move(g)), address_(std::move(address)), fd_(std::move(fd)) {}
    std::shared_ptr<Group> group_;
    std::string address_;
    Fd fd_;
    RegionInfo config_;  // the config space region, read once at open (not an ioctl per access)
};

}  // namespace udrv::vfio
