// MMIO: typed access to a mapped device register window (the kernel's Io<SIZE>).
//
// Offsets known at compile time are checked at compile time: `bar.read32<0x08>()` fails the build if
// 0x08 + 4 > SIZE or 0x08 is not 4-byte aligned. Offsets computed at run time go through `try_read32(off)`,
// which returns ERANGE/EINVAL instead of touching memory outside the window, or, for a register used
// on a hot path (a queue's doorbell), through `Mmio<SIZE>::reg<T>(off)`, checked once: `write(reg, v)`.
//
// Memory ordering (what a driver can rely on):
// - write*(): every store the CPU made to normal (DMA) memory before the call is visible to the device
//   before the register write reaches it (a doorbell never overtakes the descriptor it announces).
// - read*(): loads from normal memory after the call are not satisfied before the register read (a
//   status read orders later reads of the DMA buffer it describes).
// - *_relaxed(): no ordering against normal memory, only program order among MMIO accesses.
// x86-64: MMIO is mapped uncached; UC accesses are not reordered with other loads and stores, so a
// compiler barrier suffices. arm64: Device-nGnRE mappings keep MMIO ordered among themselves, but
// normal memory needs `dmb oshst` before a write and `dmb oshld` after a read (as the kernel's
// writel/readl). dma_wmb()/dma_rmb() order DMA-memory accesses among themselves (descriptor rings).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "udrv/hw.hpp"
#include "udrv/result.hpp"

namespace udrv {

/// Orders the CPU's prior stores to DMA memory before its later ones, as seen by a device.
inline void dma_wmb() noexcept {
#if defined(__aarch64__)
    asm volatile("dmb oshst" ::: "memory");
#else
    asm volatile("" ::: "memory");  // x86-64 (TSO): stores are not reordered with stores
#endif
}
/// Orders the CPU's prior loads from DMA memory before its later ones.
inline void dma_rmb() noexcept {
#if defined(__aarch64__)
    asm volatile("dmb oshld" ::: "memory");
#else
    asm volatile("" ::: "memory");  // x86-64: loads are not reordered with loads
#endif
}

/// Full barrier for DMA memory: prior loads and stores complete before later ones (shadow doorbells
/// must be written before the event index is read).
inline void dma_mb() noexcept {
#if defined(__aarch64__)
    asm volatile("dmb osh" ::: "memory");
#else
    asm volatile("mfence" ::: "memory");
#endif
}

namespace detail {
class MmioKey {
    friend class MmioFactory;
    MmioKey() = default;
};
}  // namespace detail

/// A window of SIZE bytes of device registers. A view: the mapping is owned by the bound device and
/// stays valid until the device is unbound (after the driver's remove has run). On a device model the
/// window is memory, and the model hears of every access through its listener (see udrv/hw.hpp); a real
/// device has none, and pays one predicted branch per access.
template <std::size_t SIZE>
class Mmio {
public:
    static constexpr std::size_t kSize = SIZE;

    Mmio(detail::MmioKey, volatile std::byte* base, hw::MmioListener* listener = nullptr, unsigned bar = 0) noexcept
        : base_(base), listener_(listener), bar_(bar) {}

    template <std::size_t OFF> std::uint8_t read8() const noexcept { check<OFF, 1>(); return read<std::uint8_t>(OFF); }
    template <std::size_t OFF> std::uint16_t read16() const noexcept { check<OFF, 2>(); return read<std::uint16_t>(OFF); }
    template <std::size_t OFF> std::uint32_t read32() const noexcept { check<OFF, 4>(); return read<std::uint32_t>(OFF); }
    template <std::size_t OFF> std::uint64_t read64() const noexcept { check<OFF, 8>(); return read<std::uint64_t>(OFF); }
    template <std::size_t OFF> void write8(std::uint8_t v) const noexcept { check<OFF, 1>(); write(OFF, v); }
    template <std::size_t OFF> void write16(std::uint16_t v) const noexcept { check<OFF, 2>(); write(OFF, v); }
    template <std::size_t OFF> void write32(std::uint32_t v) const noexcept { check<OFF, 4>(); write(OFF, v); }
    template <std::size_t OFF> void write64(std::uint64_t v) const noexcept { check<OFF, 8>(); write(OFF, v); }
    template <std::size_t OFF> std::uint32_t read32_relaxed() const noexcept { check<OFF, 4>(); return load<std::uint32_t>(OFF); }
    template <std::size_t OFF> void write32_relaxed(std::uint32_t v) const noexcept { check<OFF, 4>(); store(OFF, v); }

    Result<std::uint8_t> try_read8(std::size_t off) const noexcept { return try_read<std::uint8_t>(off); }
    Result<std::uint16_t> try_read16(std::size_t off) const noexcept { return try_read<std::uint16_t>(off); }
    Result<std::uint32_t> try_read32(std::size_t off) const noexcept { return try_read<std::uint32_t>(off); }
    Result<std::uint64_t> try_read64(std::size_t off) const noexcept { return try_read<std::uint64_t>(off); }
    Result<void> try_write8(std::size_t off, std::uint8_t v) const noexcept { return try_write(off, v); }
    Result<void> try_write16(std::size_t off, std::uint16_t v) const noexcept { return try_write(off, v); }
    Result<void> try_write32(std::size_t off, std::uint32_t v) const noexcept { return try_write(off, v); }
    Result<void> try_write64(std::size_t off, std::uint64_t v) const noexcept { return try_write(off, v); }

    /// A register at an offset computed at run time, checked once against the window's size (aligned,
    /// within SIZE) and then used without a check per access: a doorbell computed from a queue id at
    /// queue creation. It fits every window of this SIZE; only reg() makes one.
    template <typename T>
    class Reg {
    public:
        std::size_t offset() const noexcept { return off_; }

    private:
        friend class Mmio;
        explicit Reg(std::size_t off) noexcept : off_(off) {}
        std::size_t off_;
    };
    template <typename T>
    static Result<Reg<T>> reg(std::size_t off) noexcept {
        UDRV_TRY(check_runtime<T>(off));
        return Reg<T>(off);
    }
    template <typename T> T read(Reg<T> r) const noexcept { return read<T>(r.off_); }
    template <typename T> void write(Reg<T> r, T v) const noexcept { write(r.off_, v); }

private:
    template <std::size_t OFF, std::size_t W>
    static constexpr void check() noexcept {
        static_assert(OFF % W == 0, "MMIO offset is not aligned to the access width");
        static_assert(OFF + W <= SIZE, "MMIO offset lies beyond the register window the driver declared");
    }
    template <typename T>
    static Result<void> check_runtime(std::size_t off) noexcept {
        if (off % sizeof(T) != 0) return fail(EINVAL, "MMIO offset {:#x} is not {}-byte aligned", off, sizeof(T));
        if (off > SIZE || sizeof(T) > SIZE - off)
            return fail(ERANGE, "MMIO offset {:#x} (+{}) lies beyond the {}-byte window", off, sizeof(T), SIZE);
        return {};
    }
    template <typename T>
    T load(std::size_t off) const noexcept {
        // SAFETY: off + sizeof(T) <= SIZE (checked by the caller) and the window maps at least SIZE bytes;
        // aligned volatile access of the register's natural width, as devices require.
        return *reinterpret_cast<const volatile T*>(base_ + off);
    }
    template <typename T>
    void store(std::size_t off, T v) const noexcept {
        // SAFETY: as load().
        *reinterpret_cast<volatile T*>(base_ + off) = v;
    }
    template <typename T>
    T read(std::size_t off) const noexcept {
        T v = load<T>(off);
        if (listener_) [[unlikely]]
            if (auto m = listener_->mmio_read(bar_, off, sizeof(T))) v = static_cast<T>(*m);
#if defined(__aarch64__)
        asm volatile("dmb oshld" ::: "memory");
#else
        asm volatile("" ::: "memory");
#endif
        return v;
    }
    template <typename T>
    void write(std::size_t off, T v) const noexcept {
#if defined(__aarch64__)
        asm volatile("dmb oshst" ::: "memory");
#else
        asm volatile("" ::: "memory");
#endif
        store(off, v);
        if (listener_) [[unlikely]]
            listener_->mmio_written(bar_, off, sizeof(T), v);
    }
    template <typename T>
    Result<T> try_read(std::size_t off) const noexcept {
        UDRV_TRY(check_runtime<T>(off));
        return read<T>(off);
    }
    template <typename T>
    Result<void> try_write(std::size_t off, T v) const noexcept {
        UDRV_TRY(check_runtime<T>(off));
        write(off, v);
        return {};
    }

    volatile std::byte* base_;
    hw::MmioListener* listener_;
    unsigned bar_;
};

namespace detail {
/// The only maker of Mmio views: the VFIO layer, which knows the real size of the mapping.
class MmioFactory {
public:
    template <std::size_t SIZE>
    static Mmio<SIZE> make(const hw::BarMapping& bar) noexcept { return Mmio<SIZE>(MmioKey{}, bar.base(), bar.listener(), bar.bar()); }
};
}  // namespace detail

}  // namespace udrv
