// The event loop of udrvd and of its driver hosts: file descriptors (sockets, signalfd, eventfds) with
// the events they wait for, and timers. One thread; handlers may add and remove fds and timers,
// including their own.
#pragma once

#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "udrv/fileio.hpp"
#include "udrv/result.hpp"

namespace udrv::daemon {

class Poller {
public:
    using clock = std::chrono::steady_clock;
    using Handler = std::function<void(std::uint32_t events)>;
    using TimerId = std::uint64_t;

    static Result<Poller> create();
    Poller(Poller&&) noexcept = default;

    /// Calls `h` with the ready events (EPOLLIN, EPOLLOUT, EPOLLHUP, ...) of `fd`.
    Result<void> add(int fd, std::uint32_t events, Handler h);
    Result<void> modify(int fd, std::uint32_t events);
    /// Stops watching `fd` (before it is closed). Unknown fds are ignored.
    void remove(int fd) noexcept;

    /// Runs `fn` once, `delay` from now. Returns an id for cancel().
    TimerId after(std::chrono::milliseconds delay, std::function<void()> fn);
    void cancel(TimerId id) noexcept;

    /// Waits for events or the next timer, at most `limit`, and runs what is due.
    Result<void> run_once(std::chrono::milliseconds limit = std::chrono::milliseconds(1000));

private:
    explicit Poller(Fd fd) : fd_(std::move(fd)) {}
    Fd fd_;
    std::map<int, std::shared_ptr<Handler>> handlers_;
    std::multimap<clock::time_point, std::pair<TimerId, std::function<void()>>> timers_;
    TimerId next_timer_ = 1;
};

}  // namespace udrv::daemon
