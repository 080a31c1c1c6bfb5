// What every network driver shares: MAC formatting, wait modes and the receive wait over a driver's
// ring check and interrupt hooks.
#include "udrv/net.hpp"

#include <fmt/format.h>

#include "udrv/ticks.hpp"

namespace udrv::net {

std::string format_mac(const Mac& m) {
    return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]);
}

Result<WaitMode> parse_wait_mode(std::string_view s) {
    if (s == "poll" || s == "polled") return WaitMode::poll;
    if (s == "interrupt") return WaitMode::interrupt;
    if (s == "hybrid") return WaitMode::hybrid;
    return fail(EINVAL, "unknown wait mode '{}' (poll, interrupt, hybrid)", s);
}

Result<bool> wait_for_rx(WaitMode mode, std::chrono::milliseconds timeout, irq::Vector* irq, const std::function<bool()>& ready,
                         const std::function<void()>& arm, const std::function<void()>& disarm) {
    if (ready()) return true;
    if (mode != WaitMode::poll && !irq) return fail(ENOTSUP, "the device has no receive interrupt: use polling");
    const std::uint64_t span = to_ticks(timeout);  // first, so that calibrating the clock is not part of the wait
    const std::uint64_t start = ticks(), end = start + span;
    if (mode != WaitMode::interrupt) {  // spin; the clock is read every 64 rounds (a call into the emulator under TCG)
        const std::uint64_t spin_end =
            mode == WaitMode::poll ? end : std::min(end, start + to_ticks(kHybridSpin));
        for (unsigned i = 1;; ++i) {
            if (ready()) return true;
            if (i % 64 == 0 && ticks() >= spin_end) break;
        }
        if (mode == WaitMode::poll) return false;
    }
    for (;;) {
        arm();
        if (ready()) {  // arrived before the interrupt was armed
            disarm();
            return true;
        }
        const std::uint64_t now = ticks();
        if (now >= end) {
            disarm();
            return false;
        }
        auto left = std::chrono::milliseconds(static_cast<long>(ticks_to_ns(end - now) / 1e6) + 1);
        auto r = irq->wait(left);
        disarm();
        if (!r && r.error().code() != ETIMEDOUT) return std::unexpected(r.error());
        if (ready()) return true;
        if (!r && ticks() >= end) return false;
    }
}

}  // namespace udrv::net
