#include "nvme_common.hpp"

#include <fmt/ranges.h>

namespace udrv::tools {
namespace {

constexpr std::uint32_t kClassNvme = 0x010802;  // mass storage, non-volatile memory, NVM Express

}  // namespace

Result<std::unique_ptr<Session>> open_all_nvme() {
    // Controllers on kernel drivers are considered too, so that lists say how to take them.
    return Session::open({.devices = {}, .wanted = [](const pci::DeviceInfo& d) { return d.class_code == kClassNvme; },
                          .platform_descriptions = {}});
}

Result<NvmeTarget> open_nvme(const std::string& address) {
    if (!address.empty()) {
        auto session = UDRV_TRY(Session::open({.devices = {address}, .wanted = {}, .platform_descriptions = {}}));
        auto c = nvme::open(address);
        if (!c) return fail(ENODEV, "{} is not an NVMe controller udrv drives: {}", address, c.error().message());
        return NvmeTarget{std::move(session), std::move(*c)};
    }
    auto session = UDRV_TRY(open_all_nvme());
    const auto all = nvme::list();
    if (all.empty()) {
        if (!session->skipped().empty())
            return fail(ENODEV, "no NVMe controller is driven by udrv: {} is {}", session->skipped()[0].address, session->skipped()[0].reason);
        return fail(ENODEV, "no NVMe controller found (udrv lspci lists the PCI devices)");
    }
    nvme::Handle c = UDRV_TRY(nvme::open(all.front().id.name));
    return NvmeTarget{std::move(session), std::move(c)};
}

Result<nvme::ControllerDevice::NamespaceEntry> find_namespace(const nvme::Handle& c, std::uint32_t nsid) {
    std::vector<std::uint32_t> active;
    for (auto& ns : UDRV_TRY(c.namespaces())) {
        if (ns.info.nsid == nsid) return ns;
        active.push_back(ns.info.nsid);
    }
    return fail(ENODEV, "{} ({}) has no active namespace {} (active: {})", c.id().name, c.id().path, nsid,
                active.empty() ? "none" : fmt::format("{}", fmt::join(active, ", ")));
}

}  // namespace udrv::tools
