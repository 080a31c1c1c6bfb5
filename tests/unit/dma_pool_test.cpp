// DMA buffer pools: the raw interface checks every index it is given back; the owned interface
// (net::PacketPool's) keeps no per-buffer marks but never writes past its free stack, and says when a
// drained pool had a buffer come back twice.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <vector>

#include "udrv/dma.hpp"

namespace {

udrv::dma::Pool pool_of(std::uint32_t count) {
    auto iommu = std::make_shared<udrv::dma::SoftwareIommu>();
    auto p = udrv::dma::Pool::create(iommu, 256, count, ~0ull);
    if (!p) throw std::runtime_error(p.error().message());
    return std::move(*p);
}

TEST(DmaPool, RawFreesAreCheckedAndExhaustionIsReported) {
    auto pool = pool_of(2);
    auto a = pool.alloc(), b = pool.alloc();
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->index, 0u);
    EXPECT_EQ(b->iova - a->iova, pool.buffer_size());
    auto c = pool.alloc();
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code(), ENOMEM);
    EXPECT_EQ(c.error().message(), "DMA pool exhausted: all 2 buffers of 256 bytes are in use");
    EXPECT_TRUE(pool.free(a->index));
    auto twice = pool.free(a->index);
    ASSERT_FALSE(twice);
    EXPECT_EQ(twice.error().message(), "DMA pool: buffer 0 freed twice");
    EXPECT_EQ(pool.free(7).error().message(), "DMA pool: buffer index 7 is out of range (2 buffers)");
    EXPECT_EQ(pool.available(), 1u);
}

TEST(DmaPool, OwnedTakesAndGivesKeepTheCount) {
    auto pool = pool_of(8);
    std::vector<std::uint32_t> out(5);
    ASSERT_EQ(pool.take_many_owned(out), 5u);
    std::uint32_t one;
    ASSERT_TRUE(pool.take_owned(one));
    EXPECT_EQ(pool.available(), 2u);
    {
        udrv::dma::Pool::Giver back(pool);
        EXPECT_EQ(back.room(), 6u);
        back.give(one);
        EXPECT_EQ(back.room(), 5u);
    }
    {
        udrv::dma::Pool::Taker fresh(pool);
        EXPECT_EQ(fresh.available(), 3u);
        EXPECT_EQ(fresh.take(), one);  // the free stack gives back what came last
    }
    pool.give_owned(one);
    pool.give_many_owned(out);
    EXPECT_EQ(pool.available(), 8u);
    EXPECT_TRUE(pool.drained_once());
    EXPECT_TRUE(pool.drained_once());  // the check leaves nothing behind
    // Every index handed out is distinct.
    std::vector<std::uint32_t> all(8);
    ASSERT_EQ(pool.take_many_owned(all), 8u);
    std::sort(all.begin(), all.end());
    EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
    EXPECT_FALSE(pool.take_owned(one));
}

TEST(DmaPool, ADrainedPoolWithABufferBackTwiceIsCaught) {
    auto pool = pool_of(4);
    std::uint32_t a, b;
    ASSERT_TRUE(pool.take_owned(a) && pool.take_owned(b));
    pool.give_owned(a);
    pool.give_owned(a);  // an owner's bug: b is still out, yet the count is complete
    EXPECT_EQ(pool.available(), 4u);
    EXPECT_FALSE(pool.drained_once());
    EXPECT_FALSE(pool.drained_once());
}

using DmaPoolDeathTest = ::testing::Test;

TEST_F(DmaPoolDeathTest, AGiveBeyondTheFreeStackAborts) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    auto pool = pool_of(2);
    std::uint32_t a;
    ASSERT_TRUE(pool.take_owned(a));
    pool.give_owned(a);
    EXPECT_DEATH(pool.give_owned(a), "DMA pool of 2 buffers: 1 given back with 0 out: a buffer was given back twice");
    const std::uint32_t three[] = {0, 1, 0};
    EXPECT_DEATH(pool.give_many_owned(three), "3 given back with 0 out");
}

}  // namespace
