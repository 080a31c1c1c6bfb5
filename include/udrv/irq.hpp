// Interrupts: device vectors (MSI-X, MSI or INTx) delivered to eventfds through VFIO, owned by a
// Vectors object that disables them when dropped. Three ways to wait:
//   - polling: Vector::poll() (non-blocking, one read of the eventfd);
//   - blocking: Vector::wait(timeout), or many vectors and other fds at once from an EventLoop (epoll);
//   - hybrid: HybridWaiter, which polls while interrupts come fast and sleeps on the eventfd when they
//     slow down (ixy's approach), so a busy queue costs no syscalls and an idle one no CPU.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "udrv/fileio.hpp"
#include "udrv/result.hpp"
#include "udrv/hw.hpp"

namespace udrv::irq {

using hw::IrqKind;

/// One interrupt vector routed to an eventfd.
class Vector {
public:
    int fd() const noexcept { return fd_.get(); }
    unsigned index() const noexcept { return index_; }
    /// Consumes pending interrupts without blocking; returns how many fired since the last call (0: none).
    /// Rearms first (see rearm()).
    Result<std::uint64_t> poll() noexcept;
    /// Blocks until an interrupt fires or `timeout` passes (ETIMEDOUT). Returns the number consumed.
    /// Rearms first (see rearm()).
    Result<std::uint64_t> wait(std::chrono::milliseconds timeout) noexcept;
    /// INTx only (a no-op for MSI and MSI-X): lets a line that fired and was consumed interrupt again.
    /// Call it once the device no longer asserts the line (its interrupt status acknowledged); poll()
    /// and wait() do it on entry, so only an owner that sleeps on fd() itself (an EventLoop) needs it.
    Result<void> rearm() noexcept;
    /// Interrupts consumed so far.
    std::uint64_t total() const noexcept { return total_; }
    /// Directs this vector's interrupt to `cpu` (its IRQ's smp_affinity_list), so that a thread waiting
    /// for it there is woken without a hop between CPUs: what the kernel's managed affinity does for its
    /// own drivers' queues. Needs root; the IRQ is found by the name vfio-pci gives it in /proc/interrupts.
    Result<void> set_affinity(int cpu) const;

private:
    friend class Vectors;
    Vector(Fd fd, unsigned index, const hw::PciFunction* dev, IrqKind kind)
        : fd_(std::move(fd)), index_(index), dev_(dev), kind_(kind) {}
    Result<std::uint64_t> consume(std::uint64_t n) noexcept;
    Fd fd_;
    unsigned index_;
    const hw::PciFunction* dev_;  // null once the device is released (Vectors::release_device)
    IrqKind kind_;
    bool masked_ = false;  // INTx consumed, the line still masked (see rearm())
    std::uint64_t total_ = 0;
};

/// The Linux IRQ number of vector `index` of `kind` that vfio-pci requested for the PCI function at
/// `address`, from the text of /proc/interrupts, where vfio-pci names it vfio-msix[N](BDF),
/// vfio-msi[N](BDF) or vfio-intx(BDF); nullopt when no line has that name.
std::optional<unsigned> find_vfio_irq(std::string_view proc_interrupts, IrqKind kind, unsigned index, std::string_view address);

/// The vectors of one kind allocated on a device (pci_alloc_irq_vectors + request_irq). Dropping it
/// disables them in the device and closes the eventfds. Owned by the driver; one thread per vector.
class Vectors {
public:
    /// Routes `count` vectors of `kind` to new eventfds. EINVAL if the device has fewer.
    static Result<Vectors> enable(std::shared_ptr<hw::PciFunction> dev, IrqKind kind, unsigned count);
    Vectors(Vectors&&) noexcept = default;
    Vectors& operator=(Vectors&&) noexcept = default;
    ~Vectors();

    IrqKind kind() const noexcept { return kind_; }
    std::size_t size() const noexcept { return vectors_.size(); }
    Vector& operator[](std::size_t i) noexcept { return *vectors_[i]; }
    /// Disables the vectors in the device and lets go of it (at unbind), keeping the eventfds: a
    /// queue that outlives its device may still wait on one (it never fires again). Idempotent.
    void release_device() noexcept;

private:
    Vectors(std::shared_ptr<hw::PciFunction> d, IrqKind k) : dev_(std::move(d)), kind_(k) {}
    std::shared_ptr<hw::PciFunction> dev_;
    IrqKind kind_;
    std::vector<std::unique_ptr<Vector>> vectors_;
};

/// An epoll-based loop over file descriptors (interrupt eventfds among them).
class EventLoop {
public:
    static Result<EventLoop> create();
    EventLoop(EventLoop&& o) noexcept = default;
    EventLoop& operator=(EventLoop&&) = delete;
    /// Calls `on_ready` whenever `fd` is readable. The handler must consume the event (Vector::poll)
    /// and, for INTx, call Vector::rearm() once it has acknowledged the device.
    Result<void> add(int fd, std::function<void()> on_ready);
    Result<void> remove(int fd);
    /// Waits up to `timeout` (negative: forever) and runs the handlers of ready fds; returns how many ran.
    Result<int> run_once(std::chrono::milliseconds timeout);

private:
    explicit EventLoop(Fd fd) : fd_(std::move(fd)) {}
    Fd fd_;
    std::map<int, std::function<void()>> handlers_;
};

/// Hybrid interrupt/polling wait for one vector (ixy style). `done()` is the driver's completion check
/// (e.g. "a new entry in the completion queue"); the waiter spins on it while completions arrive faster
/// than `switch_rate` per second, and otherwise sleeps on the interrupt.
class HybridWaiter {
public:
    explicit HybridWaiter(Vector& v, double switch_rate_per_s = 10000.0) : v_(v), threshold_(switch_rate_per_s) {}
    /// Returns when done() is true; ETIMEDOUT after `timeout` without it.
    Result<void> wait(const std::function<bool()>& done, std::chrono::milliseconds timeout);
    bool polling() const noexcept { return polling_; }
    double rate() const noexcept { return rate_; }

private:
    Vector& v_;
    double threshold_;
    double rate_ = 0;
    bool polling_ = false;
    std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

}  // namespace udrv::irq
