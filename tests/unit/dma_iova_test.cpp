// IOVA allocation: respects the IOMMU's ranges, alignment and a device's DMA mask; frees coalesce.
#include <gtest/gtest.h>

#include "udrv/dma.hpp"

namespace {

// QEMU intel-iommu, 39-bit: everything but the MSI window at 0xfee00000.
const std::vector<udrv::vfio::IovaRange> kQ35 = {{0, 0xfedfffff}, {0xfef00000, (1ull << 39) - 1}};

TEST(IovaAllocator, LowestFirstAboveTheFloor) {
    udrv::dma::IovaAllocator a(kQ35);
    EXPECT_EQ(*a.alloc(4096, 4096, UINT64_MAX), 0x100000u);
    EXPECT_EQ(*a.alloc(4096, 4096, UINT64_MAX), 0x101000u);
    EXPECT_EQ(*a.alloc(2 << 20, 2 << 20, UINT64_MAX), 0x200000u);  // aligned up past the used pages
}

TEST(IovaAllocator, HonoursTheDmaMask) {
    udrv::dma::IovaAllocator a(kQ35);
    const std::uint64_t mask28 = (1u << 28) - 1;
    auto big = a.alloc((1u << 28) - (1u << 20), 4096, mask28);  // everything below 2^28
    ASSERT_TRUE(big);
    auto none = a.alloc(4096, 4096, mask28);
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().code(), ENOSPC);
    EXPECT_NE(none.error().message().find("no free IOVA range of 4096 bytes at or below 0xfffffff"), std::string::npos)
        << none.error().message();
    EXPECT_TRUE(a.alloc(4096, 4096, UINT64_MAX));  // a 64-bit device still gets memory
}

TEST(IovaAllocator, SkipsTheHoleAndCoalescesOnFree) {
    udrv::dma::IovaAllocator a(kQ35);
    std::uint64_t total = a.free_bytes();
    auto x = *a.alloc(0xfed00000, 4096, UINT64_MAX);  // fills [1 MiB, 0xfee00000)
    auto y = *a.alloc(0x200000, 4096, UINT64_MAX);    // cannot straddle the MSI hole
    EXPECT_GE(y, 0xfef00000u);
    auto z = *a.alloc(4096, 4096, UINT64_MAX);
    a.free(x, 0xfed00000);
    a.free(z, 4096);
    a.free(y, 0x200000);
    EXPECT_EQ(a.free_bytes(), total);
    EXPECT_EQ(*a.alloc(0xfed00000, 4096, UINT64_MAX), x) << "freed neighbours merge back into one range";
}

TEST(IovaAllocator, TheFirstMegabyteIsKeptForNarrowDevices) {
    udrv::dma::IovaAllocator a(kQ35);
    const std::uint64_t mask20 = (1u << 20) - 1;
    EXPECT_EQ(*a.alloc(4096, 4096, mask20), 0x1000u);         // a 20-bit device gets the low zone (never IOVA 0)
    EXPECT_EQ(*a.alloc(4096, 4096, UINT64_MAX), 0x100000u);   // everyone else starts at 1 MiB
    auto most = a.alloc(mask20 + 1 - 0x2000, 4096, mask20);   // the rest of the low zone
    ASSERT_TRUE(most);
    EXPECT_FALSE(a.alloc(4096, 4096, mask20));                 // now full
    EXPECT_TRUE(a.alloc(4096, 4096, UINT64_MAX));              // which costs wide devices nothing
    a.free(*most, mask20 + 1 - 0x2000);
    EXPECT_EQ(*a.alloc(4096, 4096, mask20), 0x2000u);
}

TEST(IovaAllocator, BadRequests) {
    udrv::dma::IovaAllocator a(kQ35);
    EXPECT_EQ(a.alloc(0, 4096, UINT64_MAX).error().code(), EINVAL);
    EXPECT_EQ(a.alloc(4096, 3000, UINT64_MAX).error().code(), EINVAL);
    EXPECT_EQ(a.alloc(1ull << 40, 4096, UINT64_MAX).error().code(), ENOSPC);
}

}  // namespace
