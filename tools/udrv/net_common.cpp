#include "net_common.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

namespace udrv::tools {

Result<Nics> open_nics(const std::vector<std::string>& addresses, unsigned queues) {
    Nics n;
    n.session = UDRV_TRY(Session::open({.devices = addresses, .wanted = {}, .platform_descriptions = {}}));
    for (const auto& a : addresses) {
        net::Handle h = UDRV_TRY(net::open(a));
        if (auto r = h.set_queues(queues); !r) return std::unexpected(std::move(r.error()).context(a));
        n.ports.push_back(std::move(h));
    }
    install_stop_signals();
    return n;
}

Result<void> run_per_queue(unsigned n, const std::function<Result<void>(unsigned)>& loop, const std::function<void()>& progress) {
    std::mutex mu;
    std::condition_variable all_done;
    unsigned running = n;
    std::optional<Error> first;
    std::vector<std::thread> threads;
    for (unsigned q = 0; q < n; ++q)
        threads.emplace_back([&, q] {
            auto r = loop(q);
            std::lock_guard lock(mu);
            if (!r && !first) {
                first = std::move(r.error());
                request_stop();
            }
            if (--running == 0) all_done.notify_all();
        });
    {
        std::unique_lock lock(mu);
        for (auto next = std::chrono::steady_clock::now() + std::chrono::seconds(1); running; next += std::chrono::seconds(1)) {
            if (all_done.wait_until(lock, next, [&] { return running == 0; })) break;
            lock.unlock();
            progress();
            lock.lock();
        }
    }
    for (auto& t : threads) t.join();
    if (first) return std::unexpected(std::move(*first));
    return {};
}

std::uint64_t sum(const std::vector<Counter>& v) {
    std::uint64_t n = 0;
    for (auto& c : v) n += c.load(std::memory_order_relaxed);
    return n;
}

std::vector<std::uint64_t> values(const std::vector<Counter>& v) {
    std::vector<std::uint64_t> out;
    for (auto& c : v) out.push_back(c.load(std::memory_order_relaxed));
    return out;
}

}  // namespace udrv::tools
