// The block class: the registry drivers publish into, and handles that forward to a driver's device
// until it is withdrawn.
#include "udrv/block.hpp"

namespace udrv::block {

namespace detail {
udrv::detail::ClassRegistry<Device>& registry() {
    static udrv::detail::ClassRegistry<Device> r("block");
    return r;
}
}  // namespace detail

namespace {
Error gone(const ClassDeviceInfo& id) {
    return Error(ENODEV, fmt::format("{} ({}): the device was unbound from {}", id.name, id.path, id.driver));
}
}  // namespace

Result<Handle> open(std::string_view name_or_path) {
    auto e = UDRV_TRY(detail::registry().find(name_or_path));
    auto a = e.object->access();
    if (!a) return std::unexpected(gone(e.info));
    return Handle(e.info, a->info(), e.object);
}

std::vector<Listing> list() {
    std::vector<Listing> out;
    for (auto& e : detail::registry().list())
        if (auto a = e.object->access()) out.push_back({e.info, a->info()});
    return out;
}

Result<std::unique_ptr<Queue>> Handle::open_queue(unsigned depth, Mode mode) {
    auto a = object_->access();
    if (!a) return std::unexpected(gone(id_));
    return a->open_queue(depth, mode);
}

Result<Buffer> Handle::alloc_buffer(std::size_t bytes) {
    auto a = object_->access();
    if (!a) return std::unexpected(gone(id_));
    return a->alloc_buffer(bytes);
}

Result<void> Handle::register_memory(std::span<std::byte> memory) {
    auto a = object_->access();
    if (!a) return std::unexpected(gone(id_));
    return a->register_memory(memory);
}

void Handle::unregister_memory(std::span<std::byte> memory) {
    if (auto a = object_->access()) a->unregister_memory(memory);
}

}  // namespace udrv::block
