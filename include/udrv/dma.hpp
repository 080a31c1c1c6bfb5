// DMA memory: allocations the device reaches through the IOMMU, owned by RAII objects that unmap and
// free on destruction (the kernel's dma::Coherent), fixed-size buffer pools, and streaming mappings of
// the caller's own memory for zero-copy I/O.
//
// Bus addresses (IOVAs) come from an allocator over the ranges the IOMMU reports, lowest first, so a
// device with a narrow DMA mask (QEMU's edu: 28 bits) gets addresses it can reach; the first MiB is kept
// for devices that reach less than that. Allocations of 1 MiB
// or more use 2 MiB hugepages when the system has them, and fall back to 4 KiB pages with a warning.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <type_traits>
#include <vector>

#include "udrv/result.hpp"
#include "udrv/vfio.hpp"

namespace udrv::dma {

/// Reads a value the device may change at any time (a completion entry's phase bit, a descriptor's
/// status): one real load, never cached or merged by the compiler.
template <typename T>
T read_once(const T& x) noexcept {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8);
    // SAFETY: x is a live, aligned object in DMA memory; the volatile load only stops the compiler from
    // caching it. Ordering against later reads is the caller's dma_rmb().
    return *static_cast<const volatile T*>(&x);
}

/// The numeric address of CPU memory, for tables keyed by address (registered I/O buffers).
inline std::uintptr_t address_of(const void* p) noexcept {
    // SAFETY: the integer is only compared and subtracted, never turned back into a pointer.
    return reinterpret_cast<std::uintptr_t>(p);
}

/// First-fit allocator of IOVA space (exposed for tests). Not thread-safe; Space locks around it.
/// Addresses below `floor` (1 MiB) are kept for devices whose DMA mask cannot reach above it, as the
/// kernel keeps ZONE_DMA for ISA-era devices: everyone else is served from `floor` up, so a narrow
/// device still finds room however much the others have mapped.
class IovaAllocator {
public:
    /// `ranges`: usable IOVA ranges (inclusive ends). Nothing below `low` is handed out (keeps 0 invalid).
    explicit IovaAllocator(const std::vector<vfio::IovaRange>& ranges, std::uint64_t floor = 1u << 20, std::uint64_t low = 4096);
    /// `size` bytes aligned to `align` (a power of two), ending at or below `limit` (inclusive).
    Result<std::uint64_t> alloc(std::uint64_t size, std::uint64_t align, std::uint64_t limit);
    void free(std::uint64_t iova, std::uint64_t size) noexcept;
    std::uint64_t free_bytes() const noexcept;

private:
    using Ranges = std::map<std::uint64_t, std::uint64_t>;  // start -> end (exclusive)
    std::uint64_t floor_;
    Ranges free_;  // at or above floor_
    Ranges low_;   // below floor_
};

/// An IOMMU address space: IOVA allocation plus map/unmap. One per VFIO container for real devices
/// (Space::of); device models use a SoftwareIommu.
class Space {
public:
    virtual ~Space() = default;
    /// The space of `container` (one per container, shared).
    static std::shared_ptr<Space> of(const std::shared_ptr<vfio::Container>& container);
    /// Makes [vaddr, vaddr + size) reachable by the device at the returned IOVA (aligned, at or below `limit`).
    virtual Result<std::uint64_t> map(const void* vaddr, std::size_t size, std::uint64_t align, std::uint64_t limit) = 0;
    virtual void unmap(std::uint64_t iova, std::size_t size) noexcept = 0;
    virtual std::uint64_t free_iova_bytes() const = 0;
};

/// The space of one VFIO container (VFIO_IOMMU_MAP_DMA / UNMAP_DMA).
class VfioSpace final : public Space {
public:
    explicit VfioSpace(std::shared_ptr<vfio::Container> c);
    Result<std::uint64_t> map(const void* vaddr, std::size_t size, std::uint64_t align, std::uint64_t limit) override;
    void unmap(std::uint64_t iova, std::size_t size) noexcept override;
    std::uint64_t free_iova_bytes() const override;

private:
    std::shared_ptr<vfio::Container> container_;
    mutable std::mutex mu_;
    IovaAllocator iova_;
    std::map<std::uint64_t, std::uint64_t> epochs_;  // iova -> container epoch it was mapped in
};

/// An IOMMU in software, for device models: the same IOVA allocation as a real one, and a table of
/// mappings the model translates its DMA through. An access outside a mapping is the model's DMA fault.
class SoftwareIommu final : public Space {
public:
    /// `width`: address bits the IOMMU translates (39, as QEMU's intel-iommu by default).
    explicit SoftwareIommu(unsigned width = 39);
    Result<std::uint64_t> map(const void* vaddr, std::size_t size, std::uint64_t align, std::uint64_t limit) override;
    void unmap(std::uint64_t iova, std::size_t size) noexcept override;
    std::uint64_t free_iova_bytes() const override;
    /// The memory behind [iova, iova + len), or EFAULT when any of it is not mapped (what a real IOMMU
    /// reports as a DMA fault).
    Result<std::byte*> translate(std::uint64_t iova, std::size_t len) const;
    std::size_t mappings() const;

private:
    struct Mapping {
        std::uint64_t size;
        std::byte* cpu;
    };
    mutable std::mutex mu_;
    IovaAllocator iova_;
    std::map<std::uint64_t, Mapping> maps_;  // iova -> mapping
};

/// A block of DMA memory: CPU mapping + IOVA. Unmapped from the IOMMU and freed on destruction.
class Region {
public:
    /// Allocates `size` bytes (rounded up to pages), zeroed, mapped below `limit`.
    static Result<Region> allocate(std::shared_ptr<Space> space, std::size_t size, std::uint64_t limit);
    Region(Region&& o) noexcept;
    Region& operator=(Region&& o) noexcept;
    ~Region();

    std::span<std::byte> bytes() const noexcept { return {static_cast<std::byte*>(cpu_), size_}; }
    std::uint64_t iova() const noexcept { return iova_; }
    std::size_t size() const noexcept { return size_; }
    bool hugepages() const noexcept { return huge_; }
    /// `count` objects of T at byte `offset`: a typed view of one part of a structure whose parts
    /// differ (a virtqueue ring: a header, then entries). EINVAL unless aligned for T and inside.
    template <typename T>
    Result<std::span<T>> view(std::size_t offset, std::size_t count) const noexcept {
        static_assert(std::is_trivially_copyable_v<T>, "DMA memory holds plain data the device can write");
        if (offset % alignof(T) || offset > size_ || count > (size_ - offset) / sizeof(T))
            return fail(EINVAL, "a view of {} x {} bytes at offset {} does not fit a {}-byte DMA region aligned", count, sizeof(T),
                        offset, size_);
        // SAFETY: the region is page aligned, zeroed and mapped for its lifetime; [offset, offset +
        // count * sizeof(T)) is inside it (checked) and aligned for T, and T is trivially copyable: the
        // bytes are a valid T[count] for as long as the region lives.
        return std::span<T>(reinterpret_cast<T*>(static_cast<std::byte*>(cpu_) + offset), count);
    }
    /// The IOMMU address space the region is mapped in (devices in other spaces cannot reach it).
    const Space* space() const noexcept { return space_.get(); }

private:
    Region(std::shared_ptr<Space> s, void* cpu, std::size_t size, std::uint64_t iova, bool huge)
        : space_(std::move(s)), cpu_(cpu), size_(size), iova_(iova), huge_(huge) {}
    void release() noexcept;
    std::shared_ptr<Space> space_;
    void* cpu_ = nullptr;
    std::size_t size_ = 0;
    std::uint64_t iova_ = 0;
    bool huge_ = false;
};

/// `count` objects of T in coherent DMA memory. T must be trivially copyable (the device writes it).
/// The device must be quiesced (no DMA to it in flight) before this is destroyed.
template <typename T>
class Coherent {
    static_assert(std::is_trivially_copyable_v<T>, "DMA memory holds plain data the device can write");

public:
    explicit Coherent(Region r, std::size_t count) : region_(std::move(r)), count_(count) {}
    std::span<T> span() const noexcept {
        // SAFETY: the region is page aligned, zeroed and at least count * sizeof(T) bytes (the constructor's
        // caller sized it so), and T is trivially copyable: the bytes are a valid T[count].
        return {reinterpret_cast<T*>(region_.bytes().data()), count_};
    }
    T& operator[](std::size_t i) const noexcept { return span()[i]; }
    T* operator->() const noexcept { return span().data(); }
    std::size_t size() const noexcept { return count_; }
    /// Bus address of element `i` (what to program into the device).
    std::uint64_t iova(std::size_t i = 0) const noexcept { return region_.iova() + i * sizeof(T); }
    const Region& region() const noexcept { return region_; }

private:
    Region region_;
    std::size_t count_;
};

/// A buffer taken from a Pool: index, CPU view and bus address.
struct PoolBuffer {
    std::uint32_t index;
    std::span<std::byte> bytes;
    std::uint64_t iova;
};

/// Fixed-size DMA buffers (queues, PRP lists, packet buffers) carved from one region, O(1) alloc/free.
/// Owned by one thread (no locks); free() rejects indices it did not hand out.
class Pool {
    // Per buffer: handed out or not (bytes, not bits: one store). An enum, not a character type: a store
    // to it cannot alias anything else, so the compiler keeps the pool's fields in registers around it.
    enum class Use : std::uint8_t { free, taken };

public:
    static Result<Pool> create(std::shared_ptr<Space> space, std::size_t buffer_size, std::uint32_t count, std::uint64_t limit);
    // Inline: these run once per packet or command, and a call into the shared library costs more
    // than the work (and far more in an emulated guest, where every indirect jump is a lookup).
    /// ENOMEM when every buffer is in use.
    Result<PoolBuffer> alloc() noexcept {
        std::uint32_t i;
        if (!take(i)) [[unlikely]]
            return exhausted();
        return buffer(i);
    }
    /// Bulk fast path: takes a free buffer's index; false when none is free.
    bool take(std::uint32_t& index) noexcept {
        if (free_count_ == 0) [[unlikely]]
            return false;
        index = free_[--free_count_];
        in_use_[index] = Use::taken;
        return true;
    }
    /// Bulk fast path: gives a buffer back; false (and nothing changes) for an index out of range or
    /// already free.
    bool give(std::uint32_t index) noexcept {
        if (index >= count_ || in_use_[index] != Use::taken) [[unlikely]]
            return false;
        in_use_[index] = Use::free;
        free_[free_count_++] = index;  // room for every buffer
        return true;
    }
    /// Bulk: takes up to `out.size()` free buffers' indices into `out`; returns how many.
    std::size_t take_many(std::span<std::uint32_t> out) noexcept {
        // Locals: the stores below could alias the fields as far as the compiler knows.
        std::uint32_t* const stack = free_.get();
        Use* const use = in_use_.get();
        std::size_t left = free_count_;  // size_t: an index register without a zero extension per buffer
        const std::size_t n = std::min(out.size(), left);
        for (std::size_t k = 0; k < n; ++k) {
            const std::uint32_t i = stack[--left];
            use[i] = Use::taken;
            out[k] = i;
        }
        free_count_ = static_cast<std::uint32_t>(left);
        return n;
    }
    /// Takes buffers one at a time inside a caller's loop (a receive ring's refill, a buffer taken only
    /// for a frame kept), with the free stack in locals: the loop's own stores cannot make the compiler
    /// reload it, and nothing is taken ahead to be given back. The count goes back to the pool when the
    /// Taker goes; the pool is not used otherwise while one lives.
    class Taker {
    public:
        explicit Taker(Pool& p) noexcept : pool_(p), use_(p.in_use_.get()), top_(p.free_.get() + p.free_count_) {}
        Taker(const Taker&) = delete;
        Taker& operator=(const Taker&) = delete;
        ~Taker() { pool_.free_count_ = static_cast<std::uint32_t>(top_ - pool_.free_.get()); }
        std::size_t available() const noexcept { return static_cast<std::size_t>(top_ - pool_.free_.get()); }
        /// A free buffer's index. Only while available() > 0: the caller's loop bound says so (a check
        /// here would be one per buffer on the receive path).
        std::uint32_t take() noexcept {
            const std::uint32_t i = *--top_;
            use_[i] = Use::taken;
            return i;
        }

    private:
        Pool& pool_;
        Use* const use_;
        std::uint32_t* top_;  // one past the free stack's top: a loop keeps one register for it, not two
    };
    /// Gives buffers back one at a time inside a caller's loop (a transmit ring's reclaim), with the
    /// free stack in locals as in Taker. The count goes back to the pool when the Giver goes; the pool
    /// is not used otherwise while one lives.
    class Giver {
    public:
        explicit Giver(Pool& p) noexcept : pool_(p), use_(p.in_use_.get()), top_(p.free_.get() + p.free_count_), count_(p.count_) {}
        Giver(const Giver&) = delete;
        Giver& operator=(const Giver&) = delete;
        ~Giver() { pool_.free_count_ = static_cast<std::uint32_t>(top_ - pool_.free_.get()); }
        /// Gives buffer `i` back; false (and nothing changes) for an index out of range or already free.
        bool give(std::uint32_t i) noexcept {
            if (i >= count_ || use_[i] != Use::taken) [[unlikely]]
                return false;
            use_[i] = Use::free;
            *top_++ = i;  // room for every buffer: each index is on the stack at most once
            return true;
        }

    private:
        Pool& pool_;
        Use* const use_;
        std::uint32_t* top_;
        const std::uint32_t count_;
    };
    /// Bulk: gives back every buffer in `indices`; one out of range or already free is skipped (and
    /// counted in the return value, which is 0 when all went back).
    std::size_t give_many(std::span<const std::uint32_t> indices) noexcept {
        Giver back(*this);
        std::size_t bad = 0;
        for (std::uint32_t i : indices)
            if (!back.give(i)) [[unlikely]]
                ++bad;
        return bad;
    }
    /// EINVAL for an index out of range or already free (double free).
    Result<void> free(std::uint32_t index) noexcept {
        if (!give(index)) [[unlikely]]
            return bad_free(index);
        return {};
    }
    PoolBuffer buffer(std::uint32_t index) const noexcept {
        return PoolBuffer{index, region_.bytes().subspan(index * size_, size_), region_.iova() + index * size_};
    }
    std::uint32_t capacity() const noexcept { return count_; }
    std::uint32_t available() const noexcept { return free_count_; }
    std::size_t buffer_size() const noexcept { return size_; }
    const Region& region() const noexcept { return region_; }
    /// Buffer `index` starts at base() + index * buffer_size(), bus address iova() + index * buffer_size().
    std::byte* base() const noexcept { return region_.bytes().data(); }
    std::uint64_t iova() const noexcept { return region_.iova(); }

private:
    Pool(Region r, std::size_t size, std::uint32_t count);
    std::unexpected<Error> exhausted() const;
    std::unexpected<Error> bad_free(std::uint32_t index) const;
    Region region_;
    std::size_t size_;
    std::uint32_t count_;
    std::unique_ptr<std::uint32_t[]> free_;     // stack of free indices, free_count_ of them
    std::uint32_t free_count_ = 0;
    std::unique_ptr<Use[]> in_use_;  // per buffer: handed out or not
};

/// Caller-owned memory mapped for DMA (zero-copy). The memory must stay valid and must not be freed
/// while mapped; unmapped on destruction. Page-aligned start and length are required.
class Streaming {
public:
    static Result<Streaming> map(std::shared_ptr<Space> space, std::span<std::byte> memory, std::uint64_t limit);
    Streaming(Streaming&& o) noexcept : space_(std::move(o.space_)), iova_(o.iova_), size_(o.size_) { o.size_ = 0; }
    Streaming& operator=(Streaming&&) = delete;
    ~Streaming();
    std::uint64_t iova() const noexcept { return iova_; }
    std::size_t size() const noexcept { return size_; }

private:
    Streaming(std::shared_ptr<Space> s, std::uint64_t iova, std::size_t size) : space_(std::move(s)), iova_(iova), size_(size) {}
    std::shared_ptr<Space> space_;
    std::uint64_t iova_;
    std::size_t size_;
};

/// Allocation handle for one device: its DMA space and mask. Drivers obtain it in probe
/// (Bound<pci::Device>::dma()) and keep it to allocate later (new queues at run time).
class Allocator {
public:
    Allocator(std::shared_ptr<Space> space, std::uint64_t limit) : space_(std::move(space)), limit_(limit) {}
    Result<Region> region(std::size_t bytes) const { return Region::allocate(space_, bytes, limit_); }
    template <typename T>
    Result<Coherent<T>> coherent(std::size_t count = 1) const {
        Region r = UDRV_TRY(region(sizeof(T) * count));
        return Coherent<T>(std::move(r), count);
    }
    Result<Pool> pool(std::size_t buffer_size, std::uint32_t count) const { return Pool::create(space_, buffer_size, count, limit_); }
    Result<Streaming> streaming(std::span<std::byte> memory) const { return Streaming::map(space_, memory, limit_); }
    std::uint64_t limit() const noexcept { return limit_; }
    const Space* space() const noexcept { return space_.get(); }

private:
    std::shared_ptr<Space> space_;
    std::uint64_t limit_;
};

}  // namespace udrv::dma
