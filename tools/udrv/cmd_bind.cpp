// udrv bind / unbind: give devices to vfio-pci, and back to their kernel driver.
#include <memory>

#include <fmt/ranges.h>

#include "command.hpp"
#include "output.hpp"
#include "udrv/bind.hpp"

namespace udrv::tools {
namespace {

struct BindOpts {
    std::vector<std::string> devices;
    std::string sysfs;
};

// All or nothing: every address is checked before any device is touched.
Result<std::vector<pci::Address>> parse_all(const std::vector<std::string>& args) {
    std::vector<pci::Address> addrs;
    std::vector<std::string> bad;
    for (const auto& a : args) {
        auto addr = pci::Address::parse(a);
        if (addr) addrs.push_back(*addr);
        else bad.push_back(addr.error().message());
    }
    if (!bad.empty()) return fail(EINVAL, "{}{}", fmt::join(bad, "; "), args.size() > 1 ? "; nothing was changed" : "");
    return addrs;
}

pci::BindOptions options(const BindOpts& o) {
    pci::BindOptions opts;
    if (!o.sysfs.empty()) opts.sysfs = o.sysfs;
    return opts;
}

Result<int> run_bind(const BindOpts& o) {
    const auto addrs = UDRV_TRY(parse_all(o.devices));
    for (const auto& b : UDRV_TRY(pci::bind_vfio_all(addrs, options(o))))
        print(b.already ? fmt::format("{}: already bound to vfio-pci (nothing to do)\n", b.address.to_string())
                        : fmt::format("{}: bound to vfio-pci (was {})\n", b.address.to_string(),
                                      b.previous_driver.empty() ? "on no driver" : "on " + b.previous_driver));
    return 0;
}

// Each device on its own: one that cannot go back is reported, the others still do.
Result<int> run_unbind(const BindOpts& o) {
    const auto addrs = UDRV_TRY(parse_all(o.devices));
    int rc = 0;
    for (const auto& addr : addrs) {
        auto r = pci::unbind_vfio(addr, options(o));
        if (!r) rc = report(r.error());
        else print(fmt::format("{}: returned to {}\n", addr.to_string(), r->empty() ? "no driver" : *r));
    }
    return rc;
}

}  // namespace

void add_bind(CLI::App& app, Commands& c) {
    auto o = std::make_shared<BindOpts>();
    auto* bind = app.add_subcommand("bind", "Give devices to vfio-pci (unbinding their kernel driver) so udrv drivers can own them");
    bind->add_option("devices", o->devices, "PCI addresses (DDDD:BB:DD.F)")->required();
    bind->add_option("--sysfs", o->sysfs, "sysfs root (default /sys)");
    c.add(bind, [o] { return run_bind(*o); });
    auto* unbind = app.add_subcommand("unbind", "Give devices back from vfio-pci to their kernel driver");
    unbind->add_option("devices", o->devices, "PCI addresses (DDDD:BB:DD.F)")->required();
    unbind->add_option("--sysfs", o->sysfs, "sysfs root (default /sys)");
    c.add(unbind, [o] { return run_unbind(*o); });
}

}  // namespace udrv::tools
