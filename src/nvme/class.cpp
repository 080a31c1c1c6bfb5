// The nvme class: the registry NVMe drivers publish controllers into, and handles that forward to them.
#include "udrv/nvme.hpp"

namespace udrv::nvme {

namespace detail {
udrv::detail::ClassRegistry<ControllerDevice>& registry() {
    static udrv::detail::ClassRegistry<ControllerDevice> r("nvme");
    return r;
}
}  // namespace detail

Result<Handle> open(std::string_view name_or_path) {
    auto e = UDRV_TRY(detail::registry().find(name_or_path));
    auto a = e.object->access();
    if (!a) return fail(ENODEV, "{} ({}): the controller was unbound", e.info.name, e.info.path);
    return Handle(e.info, a->info(), e.object);
}

std::vector<Listing> list() {
    std::vector<Listing> out;
    for (auto& e : detail::registry().list())
        if (auto a = e.object->access()) out.push_back({e.info, a->info(), a->namespaces()});
    return out;
}

std::unexpected<Error> Handle::gone() const {
    return fail(ENODEV, "{} ({}): the controller was unbound from {}", id_.name, id_.path, id_.driver);
}

Result<std::vector<std::byte>> Handle::identify(std::uint32_t cns, std::uint32_t nsid) {
    auto a = object_->access();
    if (!a) return gone();
    return a->identify(cns, nsid);
}

Result<void> Handle::reset() {
    auto a = object_->access();
    if (!a) return gone();
    return a->reset();
}

Result<unsigned> Handle::resets() const {
    auto a = object_->access();
    if (!a) return gone();
    return a->resets();
}

Result<std::vector<ControllerDevice::NamespaceEntry>> Handle::namespaces() const {
    auto a = object_->access();
    if (!a) return gone();
    return a->namespaces();
}

}  // namespace udrv::nvme
