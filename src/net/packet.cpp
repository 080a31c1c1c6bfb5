// Packet pools: creation, zero-copy acceptance of another port's packets, and what happens at unbind
// (detach, packets returned afterwards, the pool freed with its last packet).
#include "udrv/packet.hpp"

#include <mutex>
#include <stdexcept>
#include <thread>

#include "udrv/rcu.hpp"

namespace udrv::net {
namespace {

// Serialises everything that happens to detached pools: returns of their packets (from any thread), and
// freeing them. Recursive: freeing a pool drops the foreign pools it kept, which may free them too.
std::recursive_mutex& detached_mu() {
    static std::recursive_mutex mu;
    return mu;
}

}  // namespace

std::unexpected<Error> Packet::bad_resize(std::size_t n) const {
    if (!pool_) return fail(EINVAL, "resize of an empty packet handle");
    return fail(EINVAL, "packet of {} bytes exceeds the buffer's {}", n, capacity());
}

Slots::Slots(std::size_t n) : entries_(std::make_unique<Entry[]>(n)), mask_(n - 1) {
    if (n == 0 || (n & (n - 1))) throw std::invalid_argument(fmt::format("net::Slots of {} slots: a power of two is needed", n));
}

Result<std::shared_ptr<PacketPool>> PacketPool::create(const dma::Allocator& dma, std::uint32_t count, std::uint32_t buffer_size,
                                                       std::uint32_t headroom) {
    if (headroom >= buffer_size) return fail(EINVAL, "packet headroom {} leaves no room in {}-byte buffers", headroom, buffer_size);
    if (buffer_size > 65535) return fail(EINVAL, "packet buffers of {} bytes: at most 65535", buffer_size);
    auto pool = UDRV_TRY(dma.pool(buffer_size, count));
    return std::shared_ptr<PacketPool>(new PacketPool(std::move(pool), headroom, dma.space(), dma.limit()), &PacketPool::last_reference_dropped);
}

std::unexpected<Error> PacketPool::detached_error() const {
    return fail(ENODEV, "the packet pool's device was unbound: it gives out no more buffers");
}

std::unexpected<Error> Burst::bad_resize(unsigned i, std::size_t n) const {
    if (i >= size()) return fail(EINVAL, "resize of packet {} in a burst of {}", i, size());
    return fail(EINVAL, "packet of {} bytes exceeds the buffer's {}", n, pool_->capacity_per_buffer());
}

std::unexpected<Error> PacketPool::bad_burst(const Burst& b, std::size_t len) const {
    if (len > capacity_per_buffer()) return fail(EINVAL, "frames of {} bytes exceed the buffers' {}", len, capacity_per_buffer());
    return fail(EINVAL, "the burst holds {} packets of another pool: transmit or clear them first", b.size());
}

Result<void> PacketPool::accept_foreign(PacketPool* other, std::uint32_t min_headroom) {
    if (!other) return fail(EINVAL, "an empty packet handle cannot be transmitted");
    if (other->detached()) return fail(ENODEV, "the packet came from a device that was unbound: copy it into tx_pool()");
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

// The asymmetric handshake with the owner's fast path (enter/leave, two plain stores): after setting
// detached_, a process-wide barrier (membarrier) makes sure that either the owner's next operation sees
// detached_, or its busy flag is visible to us; waiting for the flag to drop then leaves no operation
// of the owner's in progress on the free list.
void PacketPool::detach() noexcept {
    {
        std::lock_guard lock(detached_mu());
        if (detached_.load(std::memory_order_relaxed)) return;
        detached_.store(true, std::memory_order_relaxed);
    }
    rcu::fence_all_threads();
    while (owner_busy_.load(std::memory_order_acquire)) std::this_thread::yield();
}

void PacketPool::give_back_detached(PacketPool* p, std::uint32_t index) noexcept {
    std::lock_guard lock(detached_mu());
    (void)p->pool_.free(index);
    if (p->unreferenced_ && p->pool_.available() == p->pool_.capacity()) delete p;
}

// The last shared_ptr went (the driver's and every transmitting queue's). A pool whose packets are all
// back goes now; otherwise its last packet frees it. A pool never detached was only ever used by the
// thread dropping it (a probe that failed, a test): it is detached here without waiting.
void PacketPool::last_reference_dropped(PacketPool* p) noexcept {
    std::lock_guard lock(detached_mu());
    p->detached_.store(true, std::memory_order_relaxed);
    if (p->pool_.available() == p->pool_.capacity()) delete p;
    else p->unreferenced_ = true;
}

}  // namespace udrv::net
