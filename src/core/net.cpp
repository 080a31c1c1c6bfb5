#include "udrv/net.hpp"

#include <fmt/format.h>

#include "udrv/ticks.hpp"

namespace udrv::net {

std::string format_mac(const Mac& m) {
    return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]);
}

std::unexpected<Error> Packet::bad_resize(std::size_t n) const {
    if (!pool_) return fail(EINVAL, "resize of an empty packet handle");
    return fail(EINVAL, "packet of {} bytes exceeds the buffer's {}", n, capacity());
}

Result<std::shared_ptr<PacketPool>> PacketPool::create(const dma::Allocator& dma, std::uint32_t count, std::uint32_t buffer_size,
                                                       std::uint32_t headroom) {
    if (headroom >= buffer_size) return fail(EINVAL, "packet headroom {} leaves no room in {}-byte buffers", headroom, buffer_size);
    if (buffer_size > 65535) return fail(EINVAL, "packet buffers of {} bytes: at most 65535", buffer_size);
    auto pool = UDRV_TRY(dma.pool(buffer_size, count));
    return std::shared_ptr<PacketPool>(new PacketPool(std::move(pool), headroom, dma.space(), dma.limit()));
}

Result<void> PacketPool::accept_foreign(const Packet& p, std::uint32_t min_headroom) {
    PacketPool* other = p.pool_;
    if (!other) return fail(EINVAL, "an empty packet handle cannot be transmitted");
    for (auto& f : foreign_)
        if (f.get() == other) return {};
    const auto& r = other->pool_.region();
    if (other->space_ != space_)
        return fail(EXDEV, "packet from a pool in another IOMMU address space: this device cannot reach it (copy it into tx_pool())");
    if (r.iova() + r.size() > limit_)
        return fail(ERANGE, "packet buffer at bus address {:#x} lies beyond this device's DMA limit {:#x} (copy it into tx_pool())",
                    r.iova() + r.size() - 1, limit_);
    if (other->headroom_ < min_headroom)
        return fail(EINVAL, "packet has {} bytes of headroom; this device needs {} (copy it into tx_pool())", other->headroom_, min_headroom);
    foreign_.push_back(other->shared_from_this());
    return {};
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
