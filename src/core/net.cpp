#include "udrv/net.hpp"

#include <fmt/format.h>

namespace udrv::net {

std::string format_mac(const Mac& m) {
    return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]);
}

Packet& Packet::operator=(Packet&& o) noexcept {
    if (this != &o) {
        release();
        pool_ = o.pool_;
        index_ = o.index_;
        len_ = o.len_;
        o.pool_ = nullptr;
    }
    return *this;
}

std::span<std::byte> Packet::data() const noexcept {
    if (!pool_) return {};
    return pool_->buffer(*this).subspan(pool_->headroom_, len_);
}

std::size_t Packet::capacity() const noexcept { return pool_ ? pool_->pool_.buffer_size() - pool_->headroom_ : 0; }

Result<void> Packet::resize(std::size_t n) noexcept {
    if (!pool_) return fail(EINVAL, "resize of an empty packet handle");
    if (n > capacity()) return fail(EINVAL, "packet of {} bytes exceeds the buffer's {}", n, capacity());
    len_ = static_cast<std::uint16_t>(n);
    return {};
}

void Packet::release() noexcept {
    if (!pool_) return;
    (void)pool_->pool_.free(index_);
    pool_ = nullptr;
}

Result<std::unique_ptr<PacketPool>> PacketPool::create(const dma::Allocator& dma, std::uint32_t count, std::uint32_t buffer_size,
                                                       std::uint32_t headroom) {
    if (headroom >= buffer_size) return fail(EINVAL, "packet headroom {} leaves no room in {}-byte buffers", headroom, buffer_size);
    if (buffer_size > 65535) return fail(EINVAL, "packet buffers of {} bytes: at most 65535", buffer_size);
    auto pool = UDRV_TRY(dma.pool(buffer_size, count));
    return std::unique_ptr<PacketPool>(new PacketPool(std::move(pool), headroom));
}

Result<Packet> PacketPool::alloc() noexcept {
    auto b = UDRV_TRY(pool_.alloc());
    return Packet(this, b.index);
}

}  // namespace udrv::net
