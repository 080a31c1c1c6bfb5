// A cheap monotonic tick counter for hot paths (latency stamps, timeout checks). clock_gettime() can be
// a system call plus a slow clock-device read (HPET, ACPI PM timer) when the kernel does not trust the
// TSC, as in emulated machines; the TSC (x86-64) or the virtual counter (arm64) is always one instruction.
#pragma once

#include <chrono>
#include <cstdint>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace udrv {

inline std::uint64_t ticks() noexcept {
#if defined(__x86_64__)
    return __rdtsc();
#elif defined(__aarch64__)
    std::uint64_t v;
    asm volatile("mrs %0, cntvct_el0" : "=r"(v));
    return v;
#else
    return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
}

/// Ticks per second, measured once against steady_clock (about 20 ms on first use).
double ticks_per_second() noexcept;
inline double ticks_to_ns(std::uint64_t t) noexcept { return static_cast<double>(t) * 1e9 / ticks_per_second(); }
inline std::uint64_t ns_to_ticks(double ns) noexcept { return static_cast<std::uint64_t>(ns * ticks_per_second() / 1e9); }
/// A std::chrono duration in ticks.
template <typename Rep, typename Period>
std::uint64_t to_ticks(std::chrono::duration<Rep, Period> d) noexcept {
    return ns_to_ticks(std::chrono::duration<double, std::nano>(d).count());
}

}  // namespace udrv
