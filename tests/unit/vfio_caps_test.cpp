// VFIO_IOMMU_GET_INFO's capability chain, as the kernel lays it out: capabilities 4-aligned only (an
// 8-byte range may start at 4 mod 8; UBSan caught the in-place read in the ASan VM run), and a chain
// that must not lead the walk outside the buffer or round in circles.
#include <gtest/gtest.h>

#include <linux/vfio.h>

#include <cstring>
#include <vector>

#include "udrv/vfio.hpp"

namespace {

struct Chain {
    std::vector<std::byte> buf = std::vector<std::byte>(256);
    template <typename T>
    void put(std::size_t at, const T& v) {
        std::memcpy(buf.data() + at, &v, sizeof v);
    }
    // An IOVA-range capability at `at` with `ranges`, next capability at `next`.
    void iova_ranges(std::size_t at, std::vector<vfio_iova_range> ranges, std::uint32_t next = 0) {
        put(at, vfio_info_cap_header{VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, next});
        put(at + offsetof(vfio_iommu_type1_info_cap_iova_range, nr_iovas), static_cast<std::uint32_t>(ranges.size()));
        for (std::size_t i = 0; i < ranges.size(); ++i)
            put(at + offsetof(vfio_iommu_type1_info_cap_iova_range, iova_ranges) + i * sizeof(vfio_iova_range), ranges[i]);
    }
};

TEST(VfioCaps, RangesAtAnOffsetOfFourModEightAndDmaAvail) {
    Chain c;
    c.iova_ranges(28, {{0, 0xfedfffff}, {0xfef00000, 0xffffffffff}}, 100);
    vfio_iommu_type1_info_dma_avail avail{};
    avail.header = {VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1, 0};
    avail.avail = 65535;
    c.put(100, avail);
    const auto caps = udrv::vfio::parse_iommu_caps(c.buf, 28);
    ASSERT_EQ(caps.ranges.size(), 2u);
    EXPECT_EQ(caps.ranges[0].end, 0xfedfffffu);
    EXPECT_EQ(caps.ranges[1].start, 0xfef00000u);
    EXPECT_EQ(caps.ranges[1].end, 0xffffffffffu);
    EXPECT_EQ(caps.dma_avail, 65535u);
}

TEST(VfioCaps, AChainThatLiesIsWalkedSafely) {
    Chain c;
    c.iova_ranges(24, {{0, 0xffff}}, 24);  // points at itself: read once, then the walk stops
    EXPECT_EQ(udrv::vfio::parse_iommu_caps(c.buf, 24).ranges.size(), 1u);
    Chain past;
    past.iova_ranges(200, {{0, 0xffff}});
    past.put(200 + offsetof(vfio_iommu_type1_info_cap_iova_range, nr_iovas), std::uint32_t{1000});  // ranges past the end
    EXPECT_TRUE(udrv::vfio::parse_iommu_caps(past.buf, 200).ranges.empty());
    EXPECT_TRUE(udrv::vfio::parse_iommu_caps(past.buf, 254).ranges.empty());  // a header past the end
    EXPECT_TRUE(udrv::vfio::parse_iommu_caps(past.buf, 201).ranges.empty());  // misaligned
    Chain inverted;
    inverted.iova_ranges(24, {{0x2000, 0x1000}, {0, 0xfff}});
    EXPECT_EQ(udrv::vfio::parse_iommu_caps(inverted.buf, 24).ranges.size(), 1u);
}

}  // namespace
