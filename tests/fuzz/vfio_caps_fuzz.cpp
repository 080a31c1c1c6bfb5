// VFIO_IOMMU_GET_INFO's capability chain (udrv::vfio::parse_iommu_caps): the first 4 bytes are the
// chain's start offset, the rest the info buffer. The walk must stay inside the buffer and end.
#include <cstring>
#include <span>

#include "udrv/vfio.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return 0;
    std::uint32_t offset;
    std::memcpy(&offset, data, 4);
    const auto caps = udrv::vfio::parse_iommu_caps(std::as_bytes(std::span(data + 4, size - 4)), offset);
    for (const auto& r : caps.ranges)
        if (r.start > r.end) __builtin_trap();  // inverted ranges are skipped
    return 0;
}
