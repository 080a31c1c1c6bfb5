// rcu: what the driver core relies on when it revokes a device under running queues. synchronize()
// returns only after every read section that began before it has ended, so that what readers could
// still see may be freed; sections nest; threads come and go; misuse fails loudly.
#include "udrv/rcu.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

TEST(Rcu, SynchronizeWaitsForASectionThatBeganBefore) {
    std::atomic<bool> inside{false}, finished{false};
    std::thread reader([&] {
        udrv::rcu::ReadLock lock;
        {
            udrv::rcu::ReadLock nested;  // ending the inner section does not end the outer one
        }
        inside = true;
        std::this_thread::sleep_for(100ms);
        finished = true;
    });
    while (!inside) std::this_thread::yield();
    udrv::rcu::synchronize();
    EXPECT_TRUE(finished) << "synchronize() returned while a read section that began before it was still running";
    reader.join();
}

TEST(Rcu, SectionsThatBeginLaterAreNotWaitedFor) {
    std::atomic<bool> stop{false};
    std::atomic<unsigned> sections{0};
    std::thread reader([&] {
        while (!stop) {  // back to back, each short: a grace period must find a gap
            udrv::rcu::ReadLock lock;
            sections.fetch_add(1, std::memory_order_relaxed);
        }
    });
    while (sections.load() == 0) std::this_thread::yield();
    for (int i = 0; i < 50; ++i) udrv::rcu::synchronize();
    stop = true;
    reader.join();
}

// Readers follow a pointer that a writer replaces and frees after synchronize(): a reader that sees
// freed memory reads the poison (and ASan reports the use after free).
TEST(Rcu, NoReaderSeesWhatWasFreedAfterAGracePeriod) {
    constexpr std::uint64_t kLive = 0x600dc0de;
    struct Object {
        std::atomic<std::uint64_t> value;  // atomic: read by readers while the writer poisons a stale one
    };
    std::atomic<Object*> current{new Object{kLive}};
    std::atomic<bool> stop{false};
    std::atomic<unsigned long> bad{0}, reads{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 3; ++t)
        readers.emplace_back([&] {
            while (!stop.load(std::memory_order_relaxed)) {
                udrv::rcu::ReadLock lock;
                const Object* o = current.load(std::memory_order_acquire);
                for (int i = 0; i < 1000; ++i)  // long enough that a premature free lands inside
                    if (o->value.load(std::memory_order_relaxed) != kLive) bad.fetch_add(1);
                reads.fetch_add(1, std::memory_order_relaxed);
            }
        });
    // The readers under way first: on a loaded machine (ctest -j, sanitizers) the 300 grace periods
    // once ended before any reader had been scheduled, and the test tested nothing.
    while (reads.load() == 0) std::this_thread::yield();
    for (int i = 0; i < 300; ++i) {
        Object* old = current.exchange(new Object{kLive}, std::memory_order_acq_rel);
        udrv::rcu::synchronize();
        old->value.store(0, std::memory_order_relaxed);  // the poison
        delete old;
    }
    stop = true;
    for (auto& t : readers) t.join();
    delete current.load();
    EXPECT_EQ(bad.load(), 0u) << "a reader saw an object freed after a grace period";
    EXPECT_GT(reads.load(), 0u);
}

// Threads that read and exit give their records back: many short-lived readers, then a grace period,
// which must not wait on a thread that is gone.
TEST(Rcu, ThreadsThatExitAreNotWaitedFor) {
    for (int i = 0; i < 200; ++i) std::thread([] { udrv::rcu::ReadLock lock; }).join();
    const auto t0 = std::chrono::steady_clock::now();
    udrv::rcu::synchronize();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST(RcuDeathTest, SynchronizeInsideAReadSectionIsABug) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            udrv::rcu::ReadLock lock;
            udrv::rcu::synchronize();
        },
        "synchronize\\(\\) called inside a read section");
}

}  // namespace
