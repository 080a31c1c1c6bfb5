// udrv,file-block: a block device backed by a file or a host block device, through io_uring. The
// platform counterpart of the NVMe driver: same block::Device interface, so tools and tests run on both.
//
//     [[device]]
//     name = "disk0"
//     compatible = "udrv,file-block"
//     [device.properties]
//     path = "disk.img"        # required; created if missing when `size` is given
//     size = 67108864          # optional: create/extend to this many bytes
//     block-size = 512         # 512..65536, power of two
//     direct = true            # O_DIRECT (default true; buffers from alloc_buffer are aligned for it)
#pragma once

#include <memory>
#include <string>

#include "udrv/block.hpp"
#include "udrv/platform.hpp"

namespace udrv::fileblk {

struct Backing;

class FileBlock final : public block::Device {
public:
    static constexpr std::string_view compatible[] = {"udrv,file-block"};
    static Result<std::unique_ptr<FileBlock>> probe(Bound<platform::Device>& dev, std::string_view matched);
    ~FileBlock() override;

    const block::Info& info() const override;
    Result<std::unique_ptr<block::Queue>> open_queue(unsigned depth, block::Mode mode) override;
    Result<block::Buffer> alloc_buffer(std::size_t bytes) override;

private:
    explicit FileBlock(std::shared_ptr<Backing> b) : backing_(std::move(b)) {}
    std::shared_ptr<Backing> backing_;  // shared with the queues (see fileblk.cpp)
};

}  // namespace udrv::fileblk
