// What every network driver shares: MAC formatting, wait modes and the receive wait over a driver's
// ring check and interrupt hooks.
#include "udrv/net.hpp"

#include <array>

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

// Bursts over the handle calls, for drivers without their own burst path: a handle per packet in between.
Result<unsigned> Device::rx_burst(unsigned queue, Burst& out, unsigned max) {
    std::array<Packet, 32> got;
    unsigned total = 0;
    while (total < max && out.room()) {
        const unsigned n = UDRV_TRY(rx_batch(queue, std::span(got).first(std::min<std::size_t>({got.size(), out.room(), max - total}))));
        for (unsigned i = 0; i < n; ++i)
            if (!out.push_back(std::move(got[i])))  // the rest go back to the pool with `got`
                return fail(EINVAL, "rx_burst: the burst holds packets of another pool ({} of {} received frames dropped): pass an empty burst",
                            n - i, n);
        total += n;
        if (n < got.size()) break;
    }
    return total;
}

Result<unsigned> Device::tx_burst(unsigned queue, Burst& b) {
    std::array<Packet, 32> out;
    unsigned total = 0;
    while (!b.empty()) {
        const unsigned k = std::min<unsigned>(b.size(), out.size());
        for (unsigned i = 0; i < k; ++i) out[i] = b.pop_front();
        auto sent = tx_batch(queue, std::span(out).first(k));
        // What was not taken goes back to the front of the burst, in order: pop_front made room there.
        const unsigned taken = sent ? *sent : 0;
        for (unsigned i = k; i > taken; --i) (void)b.push_front(std::move(out[i - 1]));
        if (!sent) {
            if (total) break;  // report what went; the caller meets the error with the next call
            return std::unexpected(std::move(sent.error()));
        }
        total += taken;
        if (taken < k) break;
    }
    return total;
}

Result<unsigned> Device::tx_done_cleanup(unsigned queue) {
    if (queue >= queues()) return fail(EINVAL, "queue {} does not exist ({} in use)", queue, queues());
    return 0u;  // nothing kept: this driver gives transmit buffers back as they are sent
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
