#include "udrv/irq.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <fstream>
#include <iterator>

#include "udrv/log.hpp"

namespace udrv::irq {

// INTx is a level: VFIO masks the line when it fires, and unmasking it while the device still asserts
// it fires again at once. So a consumed INTx stays masked until the owner comes back for the next one
// (rearm(), or poll()/wait(), which call it), by which time its driver has quieted the cause.
Result<std::uint64_t> Vector::consume(std::uint64_t n) noexcept {
    total_ += n;
    if (kind_ == IrqKind::intx && n) masked_ = true;
    return n;
}

Result<void> Vector::rearm() noexcept {
    if (!masked_) return {};
    if (!dev_) return fail(ENODEV, "interrupt vector {}: the device was released", index_);
    UDRV_TRY(dev_->unmask_intx());
    masked_ = false;
    return {};
}

Result<std::uint64_t> Vector::poll() noexcept {
    UDRV_TRY(rearm());
    std::uint64_t n = 0;
    ssize_t r = ::read(fd_.get(), &n, sizeof(n));
    if (r == sizeof(n)) return consume(n);
    if (r < 0 && errno == EAGAIN) return 0;
    return fail_errno("reading interrupt eventfd of vector {}", index_);
}

Result<std::uint64_t> Vector::wait(std::chrono::milliseconds timeout) noexcept {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        std::uint64_t n = UDRV_TRY(poll());
        if (n) return n;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return fail(ETIMEDOUT, "no interrupt on vector {} within {} ms", index_, timeout.count());
        pollfd p{fd_.get(), POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(left.count()));
        if (r < 0 && errno != EINTR) return fail_errno("poll on interrupt eventfd");
    }
}

std::optional<unsigned> find_vfio_irq(std::string_view text, IrqKind kind, unsigned index, std::string_view address) {
    const std::string name = kind == IrqKind::intx ? fmt::format("vfio-intx({})", address)
                                                   : fmt::format("vfio-{}[{}]({})", kind == IrqKind::msix ? "msix" : "msi", index, address);
    while (!text.empty()) {
        const std::size_t eol = text.find('\n');
        const std::string_view line = text.substr(0, eol);
        text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
        // "  42:  0  12  IR-PCI-MSIX-0000:00:04.0  1-edge  vfio-msix[1](0000:00:04.0)": the name is one
        // of the comma-separated actions at the end of the line.
        const std::size_t at = line.find(name);
        if (at == std::string_view::npos || at == 0 || (line[at - 1] != ' ' && line[at - 1] != ',')) continue;
        const std::size_t end = at + name.size();
        if (end != line.size() && line[end] != ',' && line[end] != ' ') continue;
        const std::size_t colon = line.find(':');
        unsigned irq = 0;
        std::string_view num = line.substr(0, colon);
        while (!num.empty() && num.front() == ' ') num.remove_prefix(1);
        if (colon == std::string_view::npos || num.empty() || std::from_chars(num.data(), num.data() + num.size(), irq).ptr != num.data() + num.size())
            continue;  // not a numbered IRQ
        return irq;
    }
    return std::nullopt;
}

Result<void> Vector::set_affinity(int cpu) const {
    if (!dev_) return fail(ENODEV, "interrupt vector {}: the device was released", index_);
    if (cpu < 0) return fail(EINVAL, "interrupt vector {}: CPU {} does not exist", index_, cpu);
    std::ifstream in("/proc/interrupts");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto irq = find_vfio_irq(text, kind_, index_, dev_->address());
    if (!irq)
        return fail(ENOENT, "{}: {} vector {} is not in /proc/interrupts (not requested through vfio-pci?)", dev_->address(), hw::irq_kind_name(kind_), index_);
    const std::string path = fmt::format("/proc/irq/{}/smp_affinity_list", *irq);
    std::ofstream out(path);
    out << cpu << '\n';
    out.flush();
    if (!out) {
        const int e = errno ? errno : EIO;
        return fail(e, "{}: directing {} vector {} (IRQ {}) to CPU {}: writing {} failed: {} (needs root, and an online CPU)",
                    dev_->address(), hw::irq_kind_name(kind_), index_, *irq, cpu, path, std::strerror(e));
    }
    return {};
}

Result<Vectors> Vectors::enable(std::shared_ptr<hw::PciFunction> dev, IrqKind kind, unsigned count) {
    std::uint32_t have = UDRV_TRY(dev->irq_count(kind));
    if (count == 0 || count > have)
        return fail(EINVAL, "{}: asked for {} {} vector(s), the device has {}", dev->address(), count, hw::irq_kind_name(kind), have);
    Vectors v(nullptr, kind);  // the device is set once it signals these eventfds
    std::vector<std::int32_t> fds;
    for (unsigned i = 0; i < count; ++i) {
        Fd fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!fd) return fail_errno("eventfd for {} vector {}", hw::irq_kind_name(kind), i);
        fds.push_back(fd.get());
        v.vectors_.push_back(std::unique_ptr<Vector>(new Vector(std::move(fd), i, dev.get(), kind)));
    }
    UDRV_TRY(dev->set_irq_eventfds(kind, 0, fds));
    v.dev_ = std::move(dev);
    return v;
}

void Vectors::release_device() noexcept {
    if (!dev_) return;
    (void)dev_->disable_irqs(kind_);  // the device stops signalling before anything else goes
    for (auto& v : vectors_) v->dev_ = nullptr;
    dev_.reset();
}

Vectors::~Vectors() { release_device(); }  // the device stops signalling before the eventfds close

Result<EventLoop> EventLoop::create() {
    Fd fd(epoll_create1(EPOLL_CLOEXEC));
    if (!fd) return fail_errno("epoll_create1");
    return EventLoop(std::move(fd));
}

Result<void> EventLoop::add(int fd, std::function<void()> on_ready) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return fail_errno("epoll_ctl add fd {}", fd);
    handlers_[fd] = std::move(on_ready);
    return {};
}

Result<void> EventLoop::remove(int fd) {
    if (epoll_ctl(fd_.get(), EPOLL_CTL_DEL, fd, nullptr) != 0) return fail_errno("epoll_ctl del fd {}", fd);
    handlers_.erase(fd);
    return {};
}

Result<int> EventLoop::run_once(std::chrono::milliseconds timeout) {
    epoll_event evs[32];
    int n = epoll_wait(fd_.get(), evs, 32, static_cast<int>(timeout.count()));
    if (n < 0) {
        if (errno == EINTR) return 0;
        return fail_errno("epoll_wait");
    }
    for (int i = 0; i < n; ++i)
        if (auto it = handlers_.find(evs[i].data.fd); it != handlers_.end()) it->second();
    return n;
}

Result<void> HybridWaiter::wait(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    using clock = std::chrono::steady_clock;
    auto deadline = clock::now() + timeout;
    for (;;) {
        if (done()) {
            // Exponential moving average of the completion rate decides the next mode.
            auto now = clock::now();
            double dt = std::chrono::duration<double>(now - last_).count();
            last_ = now;
            double inst = dt > 0 ? 1.0 / dt : threshold_ * 2;
            rate_ = 0.8 * rate_ + 0.2 * inst;
            polling_ = rate_ > threshold_;
            (void)v_.poll();  // drop interrupts that fired while we were not sleeping on them
            return {};
        }
        auto now = clock::now();
        if (now >= deadline) return fail(ETIMEDOUT, "no completion within {} ms", timeout.count());
        // A quiet spell ten times the switch period ends polling: idle queues should not burn a core.
        if (polling_ && std::chrono::duration<double>(now - last_).count() > 10.0 / threshold_) polling_ = false;
        if (polling_) continue;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
        auto r = v_.wait(std::max(left, std::chrono::milliseconds(1)));
        if (!r && r.error().code() != ETIMEDOUT) return std::unexpected(r.error());
    }
}

}  // namespace udrv::irq
