// DMA memory: the only place udrv mmaps memory for devices.
#include "udrv/dma.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <optional>

#include "udrv/log.hpp"

namespace udrv::dma {
namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kHugePage = 2u << 20;

std::uint64_t round_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) & ~(a - 1); }

std::string nr_hugepages() {
    std::ifstream in("/proc/sys/vm/nr_hugepages");
    std::string s;
    return (in >> s) ? s : "unknown";
}

}  // namespace

namespace {

void add_range(std::map<std::uint64_t, std::uint64_t>& m, std::uint64_t start, std::uint64_t end) {
    if (start < end) m[start] = end;
}

// First fit in `m`: the lowest aligned block of `size` ending at or below `limit`.
std::optional<std::uint64_t> take(std::map<std::uint64_t, std::uint64_t>& m, std::uint64_t size, std::uint64_t align, std::uint64_t limit) {
    for (auto it = m.begin(); it != m.end(); ++it) {
        std::uint64_t start = round_up(it->first, align);
        if (start < it->first || start >= it->second || it->second - start < size) continue;
        if (start + size - 1 > limit) break;  // ranges are sorted: nothing further fits under the limit
        std::uint64_t end = it->second, old = it->first;
        m.erase(it);
        if (old < start) m[old] = start;
        if (start + size < end) m[start + size] = end;
        return start;
    }
    return std::nullopt;
}

void give(std::map<std::uint64_t, std::uint64_t>& m, std::uint64_t start, std::uint64_t end) noexcept {
    auto next = m.lower_bound(start);
    if (next != m.end() && next->first == end) {  // merge with the following range
        end = next->second;
        next = m.erase(next);
    }
    if (next != m.begin()) {
        auto prev = std::prev(next);
        if (prev->second == start) {  // merge with the preceding range
            prev->second = end;
            return;
        }
    }
    m[start] = end;
}

}  // namespace

IovaAllocator::IovaAllocator(const std::vector<vfio::IovaRange>& ranges, std::uint64_t floor, std::uint64_t low) : floor_(floor) {
    for (const auto& r : ranges) {
        // Exclusive end, kept representable for a range that reaches the top of the address space.
        const std::uint64_t start = std::max(r.start, low), end = r.end == UINT64_MAX ? UINT64_MAX : r.end + 1;
        if (start >= end) continue;
        add_range(low_, start, std::min(end, floor));
        add_range(free_, std::max(start, floor), end);
    }
}

Result<std::uint64_t> IovaAllocator::alloc(std::uint64_t size, std::uint64_t align, std::uint64_t limit) {
    if (size == 0 || (align & (align - 1)) != 0) return fail(EINVAL, "bad IOVA request: size {} align {}", size, align);
    // A device that reaches the floor is served above it; only narrower ones take the low zone.
    if (auto a = take(limit >= floor_ ? free_ : low_, size, align, limit)) return *a;
    return fail(ENOSPC, "no free IOVA range of {} bytes at or below {:#x} ({} bytes of IOVA space free in all): free DMA "
                "memory, or widen the device's DMA mask if it can address more", size, limit, free_bytes());
}

void IovaAllocator::free(std::uint64_t iova, std::uint64_t size) noexcept {
    give(iova < floor_ ? low_ : free_, iova, iova + size);
}

std::uint64_t IovaAllocator::free_bytes() const noexcept {
    std::uint64_t n = 0;
    for (const Ranges* m : {&free_, &low_})
        for (auto& [s, e] : *m) n += e - s;
    return n;
}

VfioSpace::VfioSpace(std::shared_ptr<vfio::Container> c) : container_(std::move(c)), iova_(container_->iova_ranges()) {}

std::shared_ptr<Space> Space::of(const std::shared_ptr<vfio::Container>& container) {
    static std::mutex mu;
    static std::map<const vfio::Container*, std::weak_ptr<Space>> spaces;
    std::lock_guard lock(mu);
    std::erase_if(spaces, [](auto& kv) { return kv.second.expired(); });
    if (auto s = spaces[container.get()].lock()) return s;
    auto s = std::make_shared<VfioSpace>(container);
    spaces[container.get()] = s;
    return s;
}

Result<std::uint64_t> VfioSpace::map(const void* vaddr, std::size_t size, std::uint64_t align, std::uint64_t limit) {
    std::lock_guard lock(mu_);
    std::uint64_t iova = UDRV_TRY(iova_.alloc(size, std::max<std::uint64_t>(align, container_->iommu_page_size()), limit));
    if (auto r = container_->map_dma(vaddr, iova, size); !r) {
        iova_.free(iova, size);
        return std::unexpected(std::move(r).error());
    }
    epochs_[iova] = container_->epoch();
    return iova;
}

void VfioSpace::unmap(std::uint64_t iova, std::size_t size) noexcept {
    std::lock_guard lock(mu_);
    auto it = epochs_.find(iova);
    // A mapping from an IOMMU context that is gone (its devices were unbound) went with it.
    if (it != epochs_.end() && it->second == container_->epoch())
        if (auto r = container_->unmap_dma(iova, size); !r) pr_err("dma: {}", r.error().message());
    if (it != epochs_.end()) epochs_.erase(it);
    iova_.free(iova, size);
}

std::uint64_t VfioSpace::free_iova_bytes() const {
    std::lock_guard lock(mu_);
    return iova_.free_bytes();
}

SoftwareIommu::SoftwareIommu(unsigned width) : iova_({vfio::IovaRange{0, (std::uint64_t{1} << width) - 1}}) {}

Result<std::uint64_t> SoftwareIommu::map(const void* vaddr, std::size_t size, std::uint64_t align, std::uint64_t limit) {
    std::lock_guard lock(mu_);
    const std::uint64_t iova = UDRV_TRY(iova_.alloc(size, std::max<std::uint64_t>(align, kPage), limit));
    // SAFETY: the model reads and writes this memory only through translate(), within its size, while mapped.
    maps_[iova] = Mapping{size, static_cast<std::byte*>(const_cast<void*>(vaddr))};
    return iova;
}

void SoftwareIommu::unmap(std::uint64_t iova, std::size_t size) noexcept {
    std::lock_guard lock(mu_);
    maps_.erase(iova);
    iova_.free(iova, size);
}

std::uint64_t SoftwareIommu::free_iova_bytes() const {
    std::lock_guard lock(mu_);
    return iova_.free_bytes();
}

Result<std::byte*> SoftwareIommu::translate(std::uint64_t iova, std::size_t len) const {
    std::lock_guard lock(mu_);
    auto it = maps_.upper_bound(iova);
    if (it != maps_.begin()) {
        --it;
        const std::uint64_t off = iova - it->first;
        if (off < it->second.size && len <= it->second.size - off) return it->second.cpu + off;
    }
    return fail(EFAULT, "DMA fault: {} bytes at IOVA {:#x} are not mapped", len, iova);
}

std::size_t SoftwareIommu::mappings() const {
    std::lock_guard lock(mu_);
    return maps_.size();
}

Result<Region> Region::allocate(std::shared_ptr<Space> space, std::size_t size, std::uint64_t limit) {
    if (size == 0) return fail(EINVAL, "DMA allocation of 0 bytes");
    void* p = MAP_FAILED;
    bool huge = false;
    std::size_t len = round_up(size, kPage);
    if (size >= (1u << 20)) {
        std::size_t hlen = round_up(size, kHugePage);
        // SAFETY: fresh anonymous mapping owned by the Region; MAP_POPULATE faults it in before DMA.
        p = mmap(nullptr, hlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
        if (p != MAP_FAILED) {
            huge = true;
            len = hlen;
        } else {
            static std::atomic<bool> warned{false};
            if (!warned.exchange(true))
                pr_warn("dma: no 2 MiB hugepages available (vm.nr_hugepages = {}): using 4 KiB pages; more IOMMU "
                        "mappings and TLB misses (echo N > /proc/sys/vm/nr_hugepages to reserve some)", nr_hugepages());
        }
    }
    if (p == MAP_FAILED) {
        // SAFETY: as above, with 4 KiB pages.
        p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED) return fail_errno("dma: cannot allocate {} bytes of memory", len);
    }
    auto iova = space->map(p, len, huge ? kHugePage : kPage, limit);
    if (!iova) {
        munmap(p, len);  // SAFETY: the mapping made above, not yet shared
        return std::unexpected(std::move(iova).error());
    }
    return Region(std::move(space), p, len, *iova, huge);
}

Region::Region(Region&& o) noexcept : space_(std::move(o.space_)), cpu_(o.cpu_), size_(o.size_), iova_(o.iova_), huge_(o.huge_) {
    o.cpu_ = nullptr;
}

Region& Region::operator=(Region&& o) noexcept {
    if (this != &o) {
        release();
        space_ = std::move(o.space_);
        cpu_ = o.cpu_;
        size_ = o.size_;
        iova_ = o.iova_;
        huge_ = o.huge_;
        o.cpu_ = nullptr;
    }
    return *this;
}

Region::~Region() { release(); }

void Region::release() noexcept {
    if (!cpu_) return;
    space_->unmap(iova_, size_);  // the device loses access first
    munmap(cpu_, size_);          // SAFETY: our mapping, no longer reachable by the device
    cpu_ = nullptr;
}

Pool::Pool(Region r, std::size_t size, std::uint32_t count)
    : region_(std::move(r)), size_(size), count_(count), free_(new std::uint32_t[count]), in_use_(new Use[count]()) {
    for (std::uint32_t i = count; i > 0; --i) free_[free_count_++] = i - 1;  // hand out index 0 first
}

Result<Pool> Pool::create(std::shared_ptr<Space> space, std::size_t buffer_size, std::uint32_t count, std::uint64_t limit) {
    if (buffer_size == 0 || count == 0) return fail(EINVAL, "DMA pool of {} buffers of {} bytes", count, buffer_size);
    std::size_t stride = round_up(buffer_size, 64);  // cache-line aligned buffers
    if (stride > SIZE_MAX / count) return fail(EOVERFLOW, "DMA pool of {} x {} bytes overflows", count, stride);
    Region r = UDRV_TRY(Region::allocate(std::move(space), stride * count, limit));
    return Pool(std::move(r), stride, count);
}

std::unexpected<Error> Pool::exhausted() const {
    return fail(ENOMEM, "DMA pool exhausted: all {} buffers of {} bytes are in use", count_, size_);
}

std::unexpected<Error> Pool::bad_free(std::uint32_t index) const {
    if (index >= count_) return fail(EINVAL, "DMA pool: buffer index {} is out of range ({} buffers)", index, count_);
    return fail(EINVAL, "DMA pool: buffer {} freed twice", index);
}

Result<Streaming> Streaming::map(std::shared_ptr<Space> space, std::span<std::byte> memory, std::uint64_t limit) {
    const std::uintptr_t addr = address_of(memory.data());
    if (addr % kPage != 0 || memory.size() % kPage != 0 || memory.empty())
        return fail(EINVAL, "streaming DMA needs page-aligned memory in whole pages (got {:#x}, {} bytes)", addr, memory.size());
    std::uint64_t iova = UDRV_TRY(space->map(memory.data(), memory.size(), kPage, limit));
    return Streaming(std::move(space), iova, memory.size());
}

Streaming::~Streaming() {
    if (size_) space_->unmap(iova_, size_);
}

}  // namespace udrv::dma
