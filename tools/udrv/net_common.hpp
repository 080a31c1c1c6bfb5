// What the `udrv net` commands share: opening a NIC through the net class, a thread per queue pair
// with progress once a second, the counters those threads publish, and a cheap clock.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "session.hpp"
#include "udrv/net.hpp"
#include "udrv/ticks.hpp"

namespace udrv::tools {

/// The NICs a command names (PCI addresses), bound by the session and opened through the net class.
struct Nics {
    std::unique_ptr<Session> session;
    std::vector<net::Handle> ports;
};
/// Binds and opens each address; spreads each port's traffic over `queues` pairs.
Result<Nics> open_nics(const std::vector<std::string>& addresses, unsigned queues);

/// A monotonic clock for loops that check it per batch: the TSC, not clock_gettime (a system call and
/// a slow clock-device read in emulated guests).
struct Stopwatch {
    std::uint64_t t0 = ticks();
    std::uint64_t per_second = static_cast<std::uint64_t>(ticks_per_second());
    double seconds() const { return static_cast<double>(ticks() - t0) / static_cast<double>(per_second); }
    double seconds_between(std::uint64_t a, std::uint64_t b) const { return static_cast<double>(b - a) / static_cast<double>(per_second); }
    /// The tick `seconds` after the start; 0 (no deadline) for seconds <= 0.
    std::uint64_t deadline(double seconds) const {
        return seconds > 0 ? t0 + static_cast<std::uint64_t>(seconds * static_cast<double>(per_second)) : 0;
    }
    /// Has `deadline` (0: none) passed, or a stop been asked for?
    static bool over(std::uint64_t deadline) { return stop_requested() || (deadline && ticks() >= deadline); }
};

/// Runs loop(q) on a thread of its own for each queue pair q < n (a queue pair belongs to one thread).
/// The calling thread calls progress() once a second until every loop has returned. The first error
/// stops the other loops (request_stop) and is returned.
Result<void> run_per_queue(unsigned n, const std::function<Result<void>(unsigned)>& loop, const std::function<void()>& progress);

/// A counter one queue thread writes and the reporting thread reads.
using Counter = std::atomic<std::uint64_t>;
std::uint64_t sum(const std::vector<Counter>& v);
std::vector<std::uint64_t> values(const std::vector<Counter>& v);

}  // namespace udrv::tools
