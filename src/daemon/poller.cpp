#include "poller.hpp"

#include <algorithm>
#include <vector>

namespace udrv::daemon {

Result<Poller> Poller::create() {
    Fd fd(epoll_create1(EPOLL_CLOEXEC));
    if (!fd) return fail_errno("epoll_create1");
    return Poller(std::move(fd));
}

Result<void> Poller::add(int fd, std::uint32_t events, Handler h) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (epoll_ctl(fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return fail_errno("epoll_ctl add fd {}", fd);
    handlers_[fd] = std::make_shared<Handler>(std::move(h));
    return {};
}

Result<void> Poller::modify(int fd, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (epoll_ctl(fd_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) return fail_errno("epoll_ctl mod fd {}", fd);
    return {};
}

void Poller::remove(int fd) noexcept {
    if (handlers_.erase(fd)) epoll_ctl(fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

Poller::TimerId Poller::after(std::chrono::milliseconds delay, std::function<void()> fn) {
    const TimerId id = next_timer_++;
    timers_.emplace(clock::now() + delay, std::make_pair(id, std::move(fn)));
    return id;
}

void Poller::cancel(TimerId id) noexcept {
    for (auto it = timers_.begin(); it != timers_.end(); ++it)
        if (it->second.first == id) {
            timers_.erase(it);
            return;
        }
}

Result<void> Poller::run_once(std::chrono::milliseconds limit) {
    auto wait = limit;
    if (!timers_.empty()) {
        auto until = std::chrono::duration_cast<std::chrono::milliseconds>(timers_.begin()->first - clock::now());
        wait = std::clamp(until + std::chrono::milliseconds(1), std::chrono::milliseconds(0), limit);
    }
    epoll_event evs[64];
    int n = epoll_wait(fd_.get(), evs, 64, static_cast<int>(wait.count()));
    if (n < 0 && errno != EINTR) return fail_errno("epoll_wait");
    for (int i = 0; i < n; ++i) {
        // A handler run earlier in this round may have removed this fd (and another may reuse its number):
        // look it up now, and keep it alive while it runs, since it may remove itself.
        auto it = handlers_.find(evs[i].data.fd);
        if (it == handlers_.end()) continue;
        std::shared_ptr<Handler> h = it->second;
        (*h)(evs[i].events);
    }
    const auto now = clock::now();
    std::vector<std::function<void()>> due;
    while (!timers_.empty() && timers_.begin()->first <= now) {
        due.push_back(std::move(timers_.begin()->second.second));
        timers_.erase(timers_.begin());
    }
    for (auto& fn : due) fn();
    return {};
}

}  // namespace udrv::daemon
