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
//
// A block device (udrv/block.hpp) published as ram0, ram1, ...: its queues complete each request at
// once and run the callback on the owner's next poll()/wait(), as an asynchronous device would.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "udrv/block.hpp"
#include "udrv/platform.hpp"

namespace udrv::ramdisk {

/// The medium, shared by the device and its queues: a queue held past unbind finds `removed` set and is
/// refused (its memory is released by the core only after no queue can be inside a request).
struct Medium {
    Devres<std::vector<std::byte>> storage;
    block::Info info;
    std::atomic<bool> removed{false};
};

class Ramdisk final : public block::Device {
public:
    static constexpr std::string_view compatible[] = {"udrv,ramdisk"};
    static Result<std::unique_ptr<Ramdisk>> probe(Bound<platform::Device>& dev, std::string_view matched);
    /// remove(): writes the contents back to the image when `persist` is set.
    ~Ramdisk() override;

    // block::Device
    const block::Info& info() const override { return medium_->info; }
    Result<std::unique_ptr<block::Queue>> open_queue(unsigned depth, block::Mode mode) override;
    Result<block::Buffer> alloc_buffer(std::size_t bytes) override;

    std::uint32_t block_size() const noexcept { return medium_->info.block_size; }
    std::uint64_t block_count() const noexcept { return medium_->info.blocks; }
    /// Synchronous access: reads/writes whole blocks at `lba`; the span's size must be a multiple of
    /// the block size. EINVAL for a misaligned length, ERANGE past the end, ENODEV once unbound.
    Result<void> read(std::uint64_t lba, std::span<std::byte> out) const;
    Result<void> write(std::uint64_t lba, std::span<const std::byte> in);

private:
    Ramdisk(const platform::Device& dev, std::shared_ptr<Medium> m) : dev_(dev), medium_(std::move(m)) {}

    const platform::Device& dev_;
    std::shared_ptr<Medium> medium_;
    std::string persist_to_;
};

}  // namespace udrv::ramdisk
