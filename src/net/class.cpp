// The net class: the registry drivers publish into, and handles that forward to a driver's device until
// it is withdrawn. The data path reads the device pointer inside an RCU read section; control calls
// hold the revocation off for their duration.
#include "udrv/net.hpp"

namespace udrv::net {

namespace detail {
udrv::detail::ClassRegistry<Device>& registry() {
    static udrv::detail::ClassRegistry<Device> r("net");
    return r;
}
}  // namespace detail

Result<Handle> open(std::string_view name_or_path) {
    auto e = UDRV_TRY(detail::registry().find(name_or_path));
    auto a = e.object->access();
    if (!a) return fail(ENODEV, "{} ({}): the device was unbound", e.info.name, e.info.path);
    return Handle(e.info, a->mac(), e.object);
}

std::vector<Listing> list() {
    std::vector<Listing> out;
    for (auto& e : detail::registry().list())
        if (auto a = e.object->access()) out.push_back({e.info, a->mac(), a->link_up(), a->queues(), a->max_queues()});
    return out;
}

std::unexpected<Error> Handle::gone() const {
    return fail(ENODEV, "{} ({}): the device was unbound from {}", id_.name, id_.path, id_.driver);
}

bool Handle::link_up() const {
    auto a = object_->access();
    return a && a->link_up();
}

Result<Stats> Handle::stats() {
    auto a = object_->access();
    if (!a) return gone();
    return a->stats();
}

Result<void> Handle::set_promiscuous(bool on) {
    auto a = object_->access();
    if (!a) return gone();
    return a->set_promiscuous(on);
}

unsigned Handle::queues() const {
    auto a = object_->access();
    return a ? a->queues() : 0;
}

unsigned Handle::max_queues() const {
    auto a = object_->access();
    return a ? a->max_queues() : 0;
}

Result<void> Handle::set_queues(unsigned n) {
    auto a = object_->access();
    if (!a) return gone();
    return a->set_queues(n);
}

Result<std::shared_ptr<PacketPool>> Handle::tx_pool(unsigned queue) {
    auto a = object_->access();
    if (!a) return gone();
    return a->tx_pool(queue);
}

// Forced inline: left to GCC 12, the handle path (rx_batch/tx_batch) cost 56 more instructions per
// call at batch 1 (bench/micro.sh, *-rxtx-b1).
template <typename Call>
[[gnu::always_inline]] inline auto Handle::in_read_section(Call&& call) -> std::invoke_result_t<Call&, Device&> {
    rcu::ReadLock lock;
    Device* d = object_->get_in_read_section();
    if (!d) [[unlikely]]
        return gone();
    return call(*d);
}

Result<unsigned> Handle::rx_batch(unsigned queue, std::span<Packet> out) {
    return in_read_section([&](Device& d) { return d.rx_batch(queue, out); });
}

Result<unsigned> Handle::tx_batch(unsigned queue, std::span<Packet> packets) {
    return in_read_section([&](Device& d) { return d.tx_batch(queue, packets); });
}

Result<unsigned> Handle::rx_burst(unsigned queue, Burst& out, unsigned max) {
    return in_read_section([&](Device& d) { return d.rx_burst(queue, out, max); });
}

Result<unsigned> Handle::tx_burst(unsigned queue, Burst& b) {
    return in_read_section([&](Device& d) { return d.tx_burst(queue, b); });
}

Result<unsigned> Handle::tx_done_cleanup(unsigned queue) {
    return in_read_section([&](Device& d) { return d.tx_done_cleanup(queue); });
}

// The wait sleeps inside the read section: an unbind waits for it (at most `timeout`), which is what
// keeps the interrupt vector it sleeps on alive.
Result<bool> Handle::rx_wait(unsigned queue, WaitMode mode, std::chrono::milliseconds timeout) {
    return in_read_section([&](Device& d) { return d.rx_wait(queue, mode, timeout); });
}

}  // namespace udrv::net
