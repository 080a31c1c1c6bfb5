// rx_wait's shared logic (net::wait_for_rx) and the mode names, without a device.
#include <gtest/gtest.h>

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
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 20ms);
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
