// rx_wait's shared logic (net::wait_for_rx), the mode names and the per-queue counters, without a device.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "udrv/net.hpp"

namespace {

using udrv::net::WaitMode;
using namespace std::chrono_literals;

TEST(NetWait, PollingReturnsAsSoonAsTheRingHasFrames) {
    int looks = 0;
    auto r = udrv::net::wait_for_rx(WaitMode::poll, 1000ms, nullptr, [&] { return ++looks == 5; }, [] {}, [] {});
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_TRUE(*r);
    EXPECT_EQ(looks, 5);
}

TEST(NetWait, PollingGivesUpAfterTheTimeout) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = udrv::net::wait_for_rx(WaitMode::poll, 20ms, nullptr, [] { return false; }, [] {}, [] {});
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_FALSE(*r);
    // The wait is timed by the TSC, calibrated against steady_clock to well within 1%: it may end a few
    // microseconds before steady_clock says 20 ms have passed (it did: 19.996 ms), never much earlier.
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 19800us);
}

TEST(NetWait, InterruptModesWithoutAnInterruptSayWhatToDo) {
    int armed = 0;
    for (WaitMode m : {WaitMode::interrupt, WaitMode::hybrid}) {
        auto r = udrv::net::wait_for_rx(m, 10ms, nullptr, [] { return false; }, [&] { ++armed; }, [] {});
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code(), ENOTSUP);
        EXPECT_EQ(r.error().message(), "the device has no receive interrupt: use polling");
    }
    EXPECT_EQ(armed, 0) << "nothing is armed on a device without the interrupt";
}

TEST(NetWait, FramesAlreadyThereNeedNoInterrupt) {
    // A ready ring answers at once in every mode, even without an interrupt vector.
    for (WaitMode m : {WaitMode::poll, WaitMode::interrupt, WaitMode::hybrid}) {
        auto r = udrv::net::wait_for_rx(m, 10ms, nullptr, [] { return true; }, [] {}, [] {});
        ASSERT_TRUE(r);
        EXPECT_TRUE(*r);
    }
}

TEST(NetWait, ModeNames) {
    EXPECT_EQ(*udrv::net::parse_wait_mode("poll"), WaitMode::poll);
    EXPECT_EQ(*udrv::net::parse_wait_mode("polled"), WaitMode::poll);
    EXPECT_EQ(*udrv::net::parse_wait_mode("interrupt"), WaitMode::interrupt);
    EXPECT_EQ(*udrv::net::parse_wait_mode("hybrid"), WaitMode::hybrid);
    auto bad = udrv::net::parse_wait_mode("irq");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().message(), "unknown wait mode 'irq' (poll, interrupt, hybrid)");
}

}  // namespace

// Per-queue counters: one owner thread counts, another thread sums them with add_counters.
TEST(NetCounters, AddCountersSumsEveryField) {
    udrv::net::Stats q;
    udrv::net::count(q.rx_packets, 1);
    udrv::net::count(q.rx_bytes, 2);
    udrv::net::count(q.rx_dropped, 3);
    udrv::net::count(q.rx_errors, 4);
    udrv::net::count(q.tx_packets, 5);
    udrv::net::count(q.tx_bytes, 6);
    udrv::net::count(q.tx_errors, 7);
    udrv::net::count(q.rx_interrupts, 8);
    udrv::net::Stats total;
    udrv::net::add_counters(total, q);
    udrv::net::add_counters(total, q);
    EXPECT_EQ(total.rx_packets, 2u);
    EXPECT_EQ(total.rx_bytes, 4u);
    EXPECT_EQ(total.rx_dropped, 6u);
    EXPECT_EQ(total.rx_errors, 8u);
    EXPECT_EQ(total.tx_packets, 10u);
    EXPECT_EQ(total.tx_bytes, 12u);
    EXPECT_EQ(total.tx_errors, 14u);
    EXPECT_EQ(total.rx_interrupts, 16u);
}

TEST(NetCounters, AReaderOnAnotherThreadSeesAMonotonicCount) {
    udrv::net::Stats q;
    std::atomic<bool> done{false};
    std::thread owner([&] {
        for (int i = 0; i < 100000; ++i) udrv::net::count(q.rx_packets);
        done = true;
    });
    std::uint64_t last = 0;
    while (!done) {
        udrv::net::Stats s;
        udrv::net::add_counters(s, q);
        EXPECT_GE(s.rx_packets, last);
        last = s.rx_packets;
    }
    owner.join();
    EXPECT_EQ(udrv::net::read_counter(q.rx_packets), 100000u);
}
