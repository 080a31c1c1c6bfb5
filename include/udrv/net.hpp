// Network devices: the interface drivers implement (virtio-net, e1000e: batched rx/tx per queue pair,
// statistics, interrupts), and the net class through which everyone else finds and opens them by name
// ("net0") or PCI address. Packets and their pools are in udrv/packet.hpp.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "udrv/classdev.hpp"
#include "udrv/dma.hpp"
#include "udrv/irq.hpp"
#include "udrv/packet.hpp"
#include "udrv/result.hpp"

namespace udrv::net {

using Mac = std::array<std::uint8_t, 6>;
std::string format_mac(const Mac& m);

/// Counters; from the device's own registers where it has them, else counted by the driver.
struct Stats {
    std::uint64_t rx_packets = 0, rx_bytes = 0, rx_dropped = 0, rx_errors = 0;
    std::uint64_t tx_packets = 0, tx_bytes = 0, tx_errors = 0;
    std::uint64_t rx_interrupts = 0;  ///< receive interrupts taken by rx_wait
};

/// Counters a queue's owner thread keeps while stats() may read them from another thread: count() is a
/// relaxed atomic load and store (one writer, so no locked read-modify-write on the packet path) and
/// read_counter() a relaxed load, so a reader never sees a torn or half-updated value.
inline void count(std::uint64_t& counter, std::uint64_t n = 1) noexcept {
    std::atomic_ref<std::uint64_t> c(counter);
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline std::uint64_t read_counter(const std::uint64_t& counter) noexcept {
    // atomic_ref<const T> is C++26; the load does not write.
    return std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(counter)).load(std::memory_order_relaxed);
}
/// Adds the counters of `from` (kept with count()) to `to`.
inline void add_counters(Stats& to, const Stats& from) noexcept {
    to.rx_packets += read_counter(from.rx_packets);
    to.rx_bytes += read_counter(from.rx_bytes);
    to.rx_dropped += read_counter(from.rx_dropped);
    to.rx_errors += read_counter(from.rx_errors);
    to.tx_packets += read_counter(from.tx_packets);
    to.tx_bytes += read_counter(from.tx_bytes);
    to.tx_errors += read_counter(from.tx_errors);
    to.rx_interrupts += read_counter(from.rx_interrupts);
}

/// How rx_wait waits for frames (DPDK's polling or rx interrupt mode).
enum class WaitMode {
    poll,       ///< spin on the ring: lowest latency, one busy CPU
    interrupt,  ///< arm the queue's interrupt (MSI-X -> eventfd) and sleep
    hybrid,     ///< spin for kHybridSpin, then sleep as in interrupt mode
};
inline constexpr std::chrono::microseconds kHybridSpin{200};
Result<WaitMode> parse_wait_mode(std::string_view s);

/// A network device as drivers expose it. Queue n belongs to one thread.
class Device {
public:
    virtual ~Device() = default;
    virtual Mac mac() const = 0;
    virtual bool link_up() const = 0;
    virtual Result<Stats> stats() = 0;
    virtual Result<void> set_promiscuous(bool on) = 0;
    /// Queue pairs in use (rx and tx queue n belong together); traffic may arrive on any of them.
    virtual unsigned queues() const = 0;
    /// Queue pairs the device and driver can use at most.
    virtual unsigned max_queues() const { return queues(); }
    /// Spreads traffic over n queue pairs (1 <= n <= max_queues()). Call it before handing queues to
    /// their threads: it touches every queue.
    virtual Result<void> set_queues(unsigned n) {
        if (n == queues()) return {};
        return std::unexpected(Error(ENOTSUP, "the device has " + std::to_string(queues()) + " queue pair(s) and no way to change that"));
    }
    /// Receives up to out.size() packets into out[0..n); returns n.
    virtual Result<unsigned> rx_batch(unsigned queue, std::span<Packet> out) = 0;
    /// Queues the first n packets for transmission and returns n; those handles are left empty. n may
    /// be less than asked, or 0, while the ring is (nearly) full: call again with the rest.
    virtual Result<unsigned> tx_batch(unsigned queue, std::span<Packet> packets) = 0;
    /// rx_batch into a burst: appends up to min(max, out.room()) received packets to `out`, which must be
    /// empty or hold packets received on this queue (EINVAL otherwise); returns how many. No handle per
    /// packet: the cheaper path. Drivers without their own get one over rx_batch.
    virtual Result<unsigned> rx_burst(unsigned queue, Burst& out, unsigned max = Burst::kMax);
    /// tx_batch from a burst: queues packets from the front of `b` for transmission and returns how
    /// many; the rest stay in `b`. The burst's pool is checked once (tx_batch's rules), not per packet.
    virtual Result<unsigned> tx_burst(unsigned queue, Burst& b);
    /// Gives back now what transmit queue `queue` has sent (DPDK's rte_eth_tx_done_cleanup); returns
    /// how many buffers went back to their pools. A transmit ring keeps sent buffers until it runs short
    /// of room, so a receive pool whose frames were forwarded into several ports can run dry while
    /// they sit in those rings: a forwarding loop whose receive comes back short calls this on the
    /// queues it sends into. A driver that gives buffers back as soon as they are sent returns 0.
    virtual Result<unsigned> tx_done_cleanup(unsigned queue);
    /// The pool that transmit buffers for `queue` come from (fetch it once per thread: the pointer is
    /// shared). After unbind the pool gives out nothing (ENODEV).
    virtual Result<std::shared_ptr<PacketPool>> tx_pool(unsigned queue) = 0;
    /// Waits until receive queue `queue` has frames (true) or `timeout` passes (false); take them
    /// with rx_batch. interrupt and hybrid need the device's interrupts: ENOTSUP without them.
    virtual Result<bool> rx_wait(unsigned queue, WaitMode mode, std::chrono::milliseconds timeout) = 0;
};

/// For drivers: rx_wait over three hooks. ready(): frames in the ring; arm()/disarm(): enable and
/// disable the queue's interrupt; `irq`: its vector (nullptr when the device has none). After arm()
/// the ring is checked again, so frames that arrived before the interrupt was armed are not missed.
Result<bool> wait_for_rx(WaitMode mode, std::chrono::milliseconds timeout, irq::Vector* irq, const std::function<bool()>& ready,
                         const std::function<void()>& arm, const std::function<void()>& disarm);

// ---- the net class ----

/// A network device opened through the class. Implements Device by forwarding to the driver's until
/// the device is unbound; from then on every call fails with ENODEV (link_up() is false, queues() 0).
/// The data path (rx_batch, tx_batch, rx_burst, tx_burst, tx_done_cleanup, rx_wait) costs an RCU read section per call, no lock; the rest
/// holds off the unbind for the call. Movable; any thread (queue n still belongs to one).
class Handle final : public Device {
public:
    const ClassDeviceInfo& id() const noexcept { return id_; }
    bool alive() const noexcept { return !object_->revoked(); }
    Mac mac() const override { return mac_; }
    bool link_up() const override;
    Result<Stats> stats() override;
    Result<void> set_promiscuous(bool on) override;
    unsigned queues() const override;
    unsigned max_queues() const override;
    Result<void> set_queues(unsigned n) override;
    Result<unsigned> rx_batch(unsigned queue, std::span<Packet> out) override;
    Result<unsigned> tx_batch(unsigned queue, std::span<Packet> packets) override;
    Result<unsigned> rx_burst(unsigned queue, Burst& out, unsigned max = Burst::kMax) override;
    Result<unsigned> tx_burst(unsigned queue, Burst& b) override;
    Result<unsigned> tx_done_cleanup(unsigned queue) override;
    Result<std::shared_ptr<PacketPool>> tx_pool(unsigned queue) override;
    Result<bool> rx_wait(unsigned queue, WaitMode mode, std::chrono::milliseconds timeout) override;

private:
    friend Result<Handle> open(std::string_view);
    Handle(ClassDeviceInfo id, Mac mac, std::shared_ptr<Revocable<Device>> o) : id_(std::move(id)), mac_(mac), object_(std::move(o)) {}
    std::unexpected<Error> gone() const;
    /// The data path's forwarding: `call(device)` in an RCU read section, gone() once unbound.
    template <typename Call>
    auto in_read_section(Call&& call) -> std::invoke_result_t<Call&, Device&>;
    ClassDeviceInfo id_;
    Mac mac_;
    std::shared_ptr<Revocable<Device>> object_;
};

/// Opens a published network device by name ("net0") or path (its PCI address, "0000:00:03.0" or
/// "00:03.0").
Result<Handle> open(std::string_view name_or_path);

/// What `udrv net list` shows.
struct Listing {
    ClassDeviceInfo id;
    Mac mac{};
    bool link_up = false;
    unsigned queues = 0, max_queues = 0;
};
std::vector<Listing> list();

namespace detail {
udrv::detail::ClassRegistry<Device>& registry();
}
/// For drivers: publishes `dev` as a network device ("net0", "net1", ...) at `path` while `bound`
/// stays bound (withdrawn at unbind before the driver's remove). Returns the name given.
template <typename D>
Result<std::string> publish(const BoundBase<D>& bound, Device& dev, std::string path) {
    return udrv::detail::publish(detail::registry(), bound, dev, ClassName::next("net"), std::move(path), "net");
}

}  // namespace udrv::net
