// udrv,ramdisk: a RAM-backed block device on the platform bus.
//
//     [[device]]
//     name = "ramdisk0"
//     compatible = "udrv,ramdisk"
//     memory = [{ name = "storage", start = 0x1000_0000, size = 0x10_0000 }]   # capacity
//     [device.properties]
//     block-size = 512          # 512..65536, power of two; the capacity must be a multiple
//     image = "disk.img"        # optional: initial contents, read at probe
//     persist = true            # optional: write the contents back to `image` at unbind
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "udrv/platform.hpp"

namespace udrv::ramdisk {

class Ramdisk {
public:
    static constexpr std::string_view compatible[] = {"udrv,ramdisk"};
    static Result<std::unique_ptr<Ramdisk>> probe(Bound<platform::Device>& dev, std::string_view matched);
    /// remove(): writes the contents back to the image when `persist` is set.
    ~Ramdisk();

    std::uint32_t block_size() const noexcept { return block_size_; }
    std::uint64_t block_count() const noexcept { return block_count_; }
    /// Reads/writes whole blocks at `lba`; the span's size must be a multiple of the block size.
    /// EINVAL for a misaligned length, ERANGE past the end, ENODEV once the device is unbound.
    Result<void> read(std::uint64_t lba, std::span<std::byte> out) const;
    Result<void> write(std::uint64_t lba, std::span<const std::byte> in);

private:
    Ramdisk(const platform::Device& dev, Devres<std::vector<std::byte>> storage, std::uint32_t bs, std::uint64_t blocks);
    Result<std::size_t> check(std::uint64_t lba, std::size_t len) const;

    const platform::Device& dev_;
    Devres<std::vector<std::byte>> storage_;  // released by the core after remove
    std::uint32_t block_size_;
    std::uint64_t block_count_;
    std::string persist_to_;
};

}  // namespace udrv::ramdisk
