#include "udrv/ticks.hpp"

#include <thread>

namespace udrv {

double ticks_per_second() noexcept {
    static const double rate = [] {
        using clock = std::chrono::steady_clock;
        auto t0 = clock::now();
        std::uint64_t c0 = ticks();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        std::uint64_t c1 = ticks();
        double secs = std::chrono::duration<double>(clock::now() - t0).count();
        double r = static_cast<double>(c1 - c0) / secs;
        return r > 0 ? r : 1e9;
    }();
    return rate;
}

}  // namespace udrv
