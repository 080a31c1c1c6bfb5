#include "ramdisk.hpp"

#include <algorithm>
#include <cstring>

#include "udrv/fileio.hpp"
#include "udrv/log.hpp"

namespace udrv::ramdisk {

Result<std::unique_ptr<Ramdisk>> Ramdisk::probe(Bound<platform::Device>& dev, std::string_view) {
    // Capacity comes from the memory resource: by name if the description names it, else the first.
    const platform::MemResource* mem = nullptr;
    if (auto named = dev->memory("storage")) mem = *named;
    else mem = UDRV_TRY_CTX(dev->memory(0), "udrv,ramdisk needs a memory resource giving its capacity");

    std::int64_t bs = dev->property<std::int64_t>("block-size").value_or(512);
    if (bs < 512 || bs > 65536 || (bs & (bs - 1)) != 0)
        return fail(EINVAL, "{}: block-size {} must be a power of two from 512 to 65536", dev->name(), bs);
    if (mem->size % static_cast<std::uint64_t>(bs) != 0)
        return fail(EINVAL, "{}: capacity {} bytes is not a multiple of block-size {}", dev->name(), mem->size, bs);
    constexpr std::uint64_t kMaxBytes = 1ull << 32;
    if (mem->size > kMaxBytes) return fail(EFBIG, "{}: capacity {} bytes exceeds the ramdisk limit of 4 GiB", dev->name(), mem->size);

    std::vector<std::byte> bytes(mem->size);
    std::string image = dev->property<std::string>("image").value_or("");
    if (!image.empty()) {
        std::size_t n = UDRV_TRY_CTX(read_file(image, bytes), "{}: image", dev->name());
        dev_info(dev.device(), "loaded {} bytes from {}", n, image);
    }
    bool persist = dev->property<bool>("persist").value_or(false);
    if (persist && image.empty()) return fail(EINVAL, "{}: persist = true needs an image = \"path\" to write to", dev->name());

    auto storage = dev.manage("storage", std::move(bytes));
    std::unique_ptr<Ramdisk> rd(new Ramdisk(dev.device(), std::move(storage), static_cast<std::uint32_t>(bs),
                                            mem->size / static_cast<std::uint64_t>(bs)));
    if (persist) rd->persist_to_ = image;
    dev_info(dev.device(), "{} blocks of {} bytes ({} KiB)", rd->block_count_, rd->block_size_, mem->size / 1024);
    return rd;
}

Ramdisk::Ramdisk(const platform::Device& dev, Devres<std::vector<std::byte>> storage, std::uint32_t bs, std::uint64_t blocks)
    : dev_(dev), storage_(std::move(storage)), block_size_(bs), block_count_(blocks) {}

Ramdisk::~Ramdisk() {
    if (persist_to_.empty()) return;
    auto s = storage_.access();
    if (!s) return;
    const std::vector<std::byte>& v = s->get();
    if (auto r = write_file(persist_to_, v); !r) dev_err(dev_, "saving contents failed: {}", r.error().message());
    else dev_info(dev_, "saved {} bytes to {}", v.size(), persist_to_);
}

Result<std::size_t> Ramdisk::check(std::uint64_t lba, std::size_t len) const {
    if (len % block_size_ != 0) return fail(EINVAL, "{}: transfer of {} bytes is not a multiple of the {}-byte block", dev_.name(), len, block_size_);
    std::uint64_t blocks = len / block_size_;
    if (lba > block_count_ || blocks > block_count_ - lba)
        return fail(ERANGE, "{}: blocks {}+{} lie past the end ({} blocks)", dev_.name(), lba, blocks, block_count_);
    return static_cast<std::size_t>(lba * block_size_);
}

Result<void> Ramdisk::read(std::uint64_t lba, std::span<std::byte> out) const {
    std::size_t off = UDRV_TRY(check(lba, out.size()));
    std::vector<std::byte>& v = UDRV_TRY(storage_.access()).get();
    std::copy_n(v.begin() + static_cast<std::ptrdiff_t>(off), out.size(), out.begin());
    return {};
}

Result<void> Ramdisk::write(std::uint64_t lba, std::span<const std::byte> in) {
    std::size_t off = UDRV_TRY(check(lba, in.size()));
    std::vector<std::byte>& v = UDRV_TRY(storage_.access()).get();
    std::copy(in.begin(), in.end(), v.begin() + static_cast<std::ptrdiff_t>(off));
    return {};
}

}  // namespace udrv::ramdisk
