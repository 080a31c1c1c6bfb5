// VFIO uAPI (include/uapi/linux/vfio.h): the only place udrv issues VFIO ioctls.
#include "udrv/vfio.hpp"

#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

#include "udrv/dma.hpp"
#include "udrv/log.hpp"

namespace udrv::vfio {
namespace {

std::string memlock_limit_text() {
    rlimit rl{};
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0) return "unknown";
    if (rl.rlim_cur == RLIM_INFINITY) return "unlimited";
    return fmt::format("{} KiB", rl.rlim_cur / 1024);
}

}  // namespace

Result<std::shared_ptr<Container>> Container::open(const std::filesystem::path& dev_dir) {
    auto path = dev_dir / "vfio";
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return fail(ENOENT, "{} does not exist: load the VFIO modules (modprobe vfio-pci vfio_iommu_type1)", path.string());
        errno = e;
        return fail_errno("cannot open {}", path.string());
    }
    std::shared_ptr<Container> c(new Container(Fd(fd), dev_dir));
    // SAFETY: VFIO_GET_API_VERSION / VFIO_CHECK_EXTENSION take no argument pointer.
    if (ioctl(fd, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
        return fail(EPROTO, "{}: unknown VFIO API version (expected {})", path.string(), VFIO_API_VERSION);
    if (ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) != 1)
        return fail(ENOTSUP, "{}: the type1 v2 IOMMU is not available: load vfio_iommu_type1 and enable the IOMMU "
                    "(intel_iommu=on or amd_iommu=on)", path.string());
    return c;
}

Result<std::shared_ptr<Container>> Container::shared() {
    static std::mutex mu;
    static std::weak_ptr<Container> cached;
    std::lock_guard lock(mu);
    if (auto c = cached.lock()) return c;
    auto c = UDRV_TRY(open());
    cached = c;
    return c;
}

Result<std::shared_ptr<Group>> Container::group(unsigned number) {
    std::lock_guard lock(mu_);
    if (auto g = groups_[number].lock()) return g;
    auto path = dev_dir_ / std::to_string(number);
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return fail(ENOENT, "{} does not exist: bind the group's devices to vfio-pci first (udrv bind)", path.string());
        if (e == EBUSY) return fail(EBUSY, "{} is in use by another process (one VFIO user per group)", path.string());
        errno = e;
        return fail_errno("cannot open {}", path.string());
    }
    std::shared_ptr<Group> g(new Group(shared_from_this(), number, Fd(fd)));
    vfio_group_status status{};
    status.argsz = sizeof(status);
    // SAFETY: status is a properly sized vfio_group_status with argsz set.
    if (ioctl(fd, VFIO_GROUP_GET_STATUS, &status) != 0) return fail_errno("{}: VFIO_GROUP_GET_STATUS", path.string());
    if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
        return fail(EINVAL, "IOMMU group {} is not viable: every device in it must be bound to vfio-pci (or no driver); "
                    "see /sys/kernel/iommu_groups/{}/devices", number, number);
    // SAFETY: the argument is a pointer to the container fd, as VFIO_GROUP_SET_CONTAINER expects.
    const int container_fd = fd_.get();
    if (ioctl(fd, VFIO_GROUP_SET_CONTAINER, &container_fd) != 0) return fail_errno("{}: cannot attach to the VFIO container", path.string());
    g->attached_ = true;
    ++attached_;
    if (!iommu_set_) {
        // SAFETY: VFIO_SET_IOMMU takes the IOMMU type by value.
        if (ioctl(fd_.get(), VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) != 0) return fail_errno("VFIO_SET_IOMMU(type1v2)");
        iommu_set_ = true;
        UDRV_TRY(read_iommu_info());
    }
    groups_[number] = g;
    return g;
}

IommuCaps parse_iommu_caps(std::span<const std::byte> info, std::uint32_t cap_offset) {
    IommuCaps caps;
    // Capabilities are only 4-aligned (the kernel packs them after the 24-byte info, so an 8-byte field
    // may sit at 4 mod 8): each is copied out, never accessed in place.
    auto copy_out = [&]<typename T>(std::size_t at, T& out) { std::memcpy(&out, info.data() + at, sizeof out); };
    std::size_t off = cap_offset;
    for (int guard = 0; off && guard < 64; ++guard) {
        // The chain comes from the kernel; still, never read outside the buffer.
        if (off % 4 != 0 || off + sizeof(vfio_info_cap_header) > info.size()) break;
        vfio_info_cap_header hdr;
        copy_out(off, hdr);
        if (hdr.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE && off + sizeof(vfio_iommu_type1_info_cap_iova_range) <= info.size()) {
            std::uint32_t n = 0;
            copy_out(off + offsetof(vfio_iommu_type1_info_cap_iova_range, nr_iovas), n);
            const std::size_t first = off + offsetof(vfio_iommu_type1_info_cap_iova_range, iova_ranges);
            if (first + std::size_t{n} * sizeof(vfio_iova_range) <= info.size())
                for (std::size_t i = 0; i < n; ++i) {
                    vfio_iova_range r;
                    copy_out(first + i * sizeof r, r);
                    if (r.start <= r.end) caps.ranges.push_back({r.start, r.end});
                }
        } else if (hdr.id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL && off + sizeof(vfio_iommu_type1_info_dma_avail) <= info.size()) {
            vfio_iommu_type1_info_dma_avail avail;
            copy_out(off, avail);
            caps.dma_avail = avail.avail;
        }
        if (hdr.next <= off) break;  // the kernel appends capabilities: a chain that goes back is a loop
        off = hdr.next;
    }
    return caps;
}

Result<void> Container::read_iommu_info() {
    // Two calls: the first tells how large the capability chain is.
    vfio_iommu_type1_info probe{};
    probe.argsz = sizeof(probe);
    // SAFETY: probe is a vfio_iommu_type1_info with argsz = its size.
    if (ioctl(fd_.get(), VFIO_IOMMU_GET_INFO, &probe) != 0) return fail_errno("VFIO_IOMMU_GET_INFO");
    std::vector<std::uint64_t> buf((std::max<std::size_t>(probe.argsz, sizeof(probe)) + 7) / 8);
    auto* info = reinterpret_cast<vfio_iommu_type1_info*>(buf.data());  // SAFETY: 8-aligned buffer of argsz bytes
    info->argsz = static_cast<std::uint32_t>(buf.size() * 8);
    if (ioctl(fd_.get(), VFIO_IOMMU_GET_INFO, info) != 0) return fail_errno("VFIO_IOMMU_GET_INFO");
    if (info->flags & VFIO_IOMMU_INFO_PGSIZES) page_size_ = info->iova_pgsizes & (~info->iova_pgsizes + 1);
    ranges_.clear();
    if (info->flags & VFIO_IOMMU_INFO_CAPS) {
        // SAFETY: buf is buf.size() * 8 bytes the kernel filled; the span covers exactly those.
        auto caps = parse_iommu_caps(std::span(reinterpret_cast<const std::byte*>(buf.data()), buf.size() * 8), info->cap_offset);
        ranges_ = std::move(caps.ranges);
        dma_avail_ = caps.dma_avail;
    }
    if (ranges_.empty()) ranges_.push_back({0, (1ull << 39) - 1});  // old kernels: assume the smallest common width
    for (auto& r : ranges_) pr_debug("vfio: IOVA range [{:#x}, {:#x}]", r.start, r.end);
    return {};
}

Result<void> Container::map_dma(const void* vaddr, std::uint64_t iova, std::size_t size) {
    vfio_iommu_type1_dma_map m{};
    m.argsz = sizeof(m);
    m.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
    m.vaddr = reinterpret_cast<std::uintptr_t>(vaddr);  // SAFETY: the kernel pins and translates this range
    m.iova = iova;
    m.size = size;
    // SAFETY: m is a complete vfio_iommu_type1_dma_map.
    if (ioctl(fd_.get(), VFIO_IOMMU_MAP_DMA, &m) != 0) {
        int e = errno;
        if (e == ENOMEM)
            return fail(ENOMEM, "mapping {} bytes for DMA failed: the locked-memory limit (RLIMIT_MEMLOCK, now {}) is reached; "
                        "raise it with `ulimit -l unlimited` or in /etc/security/limits.conf", size, memlock_limit_text());
        if (e == ENOSPC)
            return fail(ENOSPC, "mapping for DMA failed: the IOMMU allows no more mappings (vfio_iommu_type1 dma_entry_limit); "
                        "use fewer, larger DMA allocations or raise the module parameter");
        errno = e;
        return fail_errno("VFIO_IOMMU_MAP_DMA of {} bytes at IOVA {:#x}", size, iova);
    }
    return {};
}

Result<void> Container::unmap_dma(std::uint64_t iova, std::size_t size) noexcept {
    vfio_iommu_type1_dma_unmap u{};
    u.argsz = sizeof(u);
    u.iova = iova;
    u.size = size;
    // SAFETY: u is a complete vfio_iommu_type1_dma_unmap.
    if (ioctl(fd_.get(), VFIO_IOMMU_UNMAP_DMA, &u) != 0) return fail_errno("VFIO_IOMMU_UNMAP_DMA at IOVA {:#x}", iova);
    return {};
}

Group::~Group() {
    if (attached_) {
        // SAFETY: detaching takes no argument; then the fd is ours to close.
        ioctl(fd_.get(), VFIO_GROUP_UNSET_CONTAINER);
        std::lock_guard lock(container_->mu_);
        if (--container_->attached_ == 0) {
            // The last group took the IOMMU context (and every mapping) with it.
            container_->iommu_set_ = false;
            ++container_->epoch_;
        }
    }
}  // the group fd closes after the detach

Result<std::unique_ptr<Device>> Group::open_device(const std::string& address) {
    // SAFETY: VFIO_GROUP_GET_DEVICE_FD takes a NUL-terminated device name.
    int fd = ioctl(fd_.get(), VFIO_GROUP_GET_DEVICE_FD, address.c_str());
    if (fd < 0) return fail_errno("{}: cannot open through VFIO group {} (is it bound to vfio-pci?)", address, number_);
    std::unique_ptr<Device> dev(new Device(shared_from_this(), address, Fd(fd)));
    dev->config_ = UDRV_TRY(dev->region(VFIO_PCI_CONFIG_REGION_INDEX));
    return dev;
}

namespace {

// A BAR mmapped from the device fd: unmapped when the mapping is dropped.
class MappedRegion final : public hw::BarMapping {
public:
    using BarMapping::BarMapping;
    ~MappedRegion() override {
        // SAFETY: base_/size_ describe a mapping made by Device::map_bar and not unmapped elsewhere.
        munmap(base_, size_);
    }
};

}  // namespace

Result<Device::RegionInfo> Device::region(unsigned index) const {
    vfio_region_info r{};
    r.argsz = sizeof(r);
    r.index = index;
    // SAFETY: r is a vfio_region_info with argsz set; capabilities beyond it are not requested.
    if (ioctl(fd_.get(), VFIO_DEVICE_GET_REGION_INFO, &r) != 0) return fail_errno("{}: region {} info", address_, index);
    return RegionInfo{r.size, r.offset, bool(r.flags & VFIO_REGION_INFO_FLAG_READ), bool(r.flags & VFIO_REGION_INFO_FLAG_WRITE),
                      bool(r.flags & VFIO_REGION_INFO_FLAG_MMAP)};
}

Result<std::unique_ptr<hw::BarMapping>> Device::map_bar(unsigned index) const {
    if (index > 5) return fail(EINVAL, "{}: BAR index {} is out of range (0-5)", address_, index);
    RegionInfo r = UDRV_TRY(region(index));
    if (r.size == 0) return fail(ENXIO, "{}: BAR{} is not implemented", address_, index);
    if (!r.mmappable) return fail(ENOTSUP, "{}: BAR{} cannot be mmapped (an I/O port BAR?)", address_, index);
    // SAFETY: maps the region at the offset VFIO reported, with its full size; MappedRegion unmaps it.
    void* p = mmap(nullptr, r.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), static_cast<off_t>(r.offset));
    if (p == MAP_FAILED) return fail_errno("{}: mmap of BAR{} ({} bytes)", address_, index, r.size);
    return std::unique_ptr<hw::BarMapping>(new MappedRegion(p, r.size, index, nullptr));
}

std::shared_ptr<dma::Space> Device::dma_space() const { return dma::Space::of(group_->container()); }

Result<void> Device::read_config(std::uint32_t offset, std::span<std::uint8_t> out) const {
    const RegionInfo& r = config_;
    if (offset > r.size || out.size() > r.size - offset)
        return fail(ERANGE, "{}: config read of {} bytes at {:#x} beyond {} bytes", address_, out.size(), offset, r.size);
    ssize_t n = pread(fd_.get(), out.data(), out.size(), static_cast<off_t>(r.offset + offset));
    if (n != static_cast<ssize_t>(out.size())) return fail_errno("{}: config read at {:#x}", address_, offset);
    return {};
}

Result<void> Device::write_config(std::uint32_t offset, std::span<const std::uint8_t> in) const {
    const RegionInfo& r = config_;
    if (offset > r.size || in.size() > r.size - offset)
        return fail(ERANGE, "{}: config write of {} bytes at {:#x} beyond {} bytes", address_, in.size(), offset, r.size);
    ssize_t n = pwrite(fd_.get(), in.data(), in.size(), static_cast<off_t>(r.offset + offset));
    if (n != static_cast<ssize_t>(in.size())) return fail_errno("{}: config write at {:#x}", address_, offset);
    return {};
}

Result<std::uint32_t> Device::irq_count(IrqKind kind) const {
    vfio_irq_info info{};
    info.argsz = sizeof(info);
    info.index = static_cast<std::uint32_t>(kind);
    // SAFETY: info is a vfio_irq_info with argsz set.
    if (ioctl(fd_.get(), VFIO_DEVICE_GET_IRQ_INFO, &info) != 0) return fail_errno("{}: {} info", address_, irq_kind_name(kind));
    return info.count;
}

Result<void> Device::set_irq_eventfds(IrqKind kind, std::uint32_t start, std::span<const std::int32_t> fds) const {
    std::vector<std::uint8_t> buf(sizeof(vfio_irq_set) + fds.size_bytes() + 8);
    auto* set = reinterpret_cast<vfio_irq_set*>(buf.data());  // SAFETY: buffer holds the header plus the fd array
    set->argsz = static_cast<std::uint32_t>(sizeof(vfio_irq_set) + fds.size_bytes());
    set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    set->index = static_cast<std::uint32_t>(kind);
    set->start = start;
    set->count = static_cast<std::uint32_t>(fds.size());
    std::memcpy(set->data, fds.data(), fds.size_bytes());
    // SAFETY: set points to argsz bytes: the vfio_irq_set header followed by count eventfds, as
    // VFIO_DEVICE_SET_IRQS with DATA_EVENTFD reads them.
    if (ioctl(fd_.get(), VFIO_DEVICE_SET_IRQS, set) != 0)
        return fail_errno("{}: routing {} vectors {}..{} to eventfds", address_, irq_kind_name(kind), start, start + fds.size() - 1);
    return {};
}

Result<void> Device::disable_irqs(IrqKind kind) const noexcept {
    vfio_irq_set set{};
    set.argsz = sizeof(set);
    set.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
    set.index = static_cast<std::uint32_t>(kind);
    // SAFETY: count 0 with DATA_NONE disables the index; no payload.
    if (ioctl(fd_.get(), VFIO_DEVICE_SET_IRQS, &set) != 0) return fail_errno("{}: disabling {}", address_, irq_kind_name(kind));
    return {};
}

Result<void> Device::unmask_intx() const {
    vfio_irq_set set{};
    set.argsz = sizeof(set);
    set.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK;
    set.index = VFIO_PCI_INTX_IRQ_INDEX;
    set.count = 1;
    // SAFETY: as disable_irqs.
    if (ioctl(fd_.get(), VFIO_DEVICE_SET_IRQS, &set) != 0) return fail_errno("{}: unmasking INTx", address_);
    return {};
}

Result<void> Device::reset() const {
    // SAFETY: VFIO_DEVICE_RESET takes no argument.
    if (ioctl(fd_.get(), VFIO_DEVICE_RESET) != 0) return fail_errno("{}: reset", address_);
    return {};
}

}  // namespace udrv::vfio
