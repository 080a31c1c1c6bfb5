// udrv bind / unbind: give devices to vfio-pci, and back to their kernel driver.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <memory>

#include <fmt/ranges.h>

#include "command.hpp"
#include "daemon_client.hpp"
#include "lspci_format.hpp"
#include "output.hpp"
#include "session.hpp"
#include "udrv/bind.hpp"
#include "udrv/fileio.hpp"
#include "udrv/loader.hpp"
#include "udrv/modinfo.hpp"
#include "udrv/modprobe.hpp"

namespace udrv::tools {
namespace {

struct BindOpts {
    std::vector<std::string> devices;
    std::string sysfs, driver, host, on_stop;
    bool status = false;
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

// The module metadata udrv can drive devices with: the drivers built into the tool and the module
// files beside it (read, never loaded).
std::vector<Modinfo> known_modules() {
    std::vector<Modinfo> mods = Loader::builtin_modinfo();
    std::error_code ec;
    for (const auto& dir : modprobe::default_module_dirs())
        for (const auto& e : std::filesystem::directory_iterator(dir, ec))
            if (e.path().extension() == ".so")
                if (auto infos = read_modinfo(e.path()))
                    for (auto& m : *infos) mods.push_back(std::move(m));
    return mods;
}

std::string trimmed(std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    return s;
}

std::string system_facts(const std::filesystem::path& sysfs) {
    std::error_code ec;
    std::size_t groups = 0;
    for ([[maybe_unused]] const auto& g : std::filesystem::directory_iterator(sysfs / "kernel/iommu_groups", ec)) ++groups;
    const bool vfio = std::filesystem::exists(sysfs / "bus/pci/drivers/vfio-pci", ec);
    const std::string huge = trimmed(read_text_file("/proc/sys/vm/nr_hugepages", 64).value_or("?"));
    rlimit lim{};
    getrlimit(RLIMIT_MEMLOCK, &lim);
    const std::string memlock = lim.rlim_cur == RLIM_INFINITY ? "unlimited" : human_bytes(static_cast<double>(lim.rlim_cur));
    std::string out = fmt::format("IOMMU:          {}\n", groups ? fmt::format("on ({} groups)", groups)
                                                                 : "off: no IOMMU groups (enable it: intel_iommu=on or amd_iommu=on; docs/hardware.md)");
    out += fmt::format("vfio-pci:       {}\n", vfio ? "loaded" : "not loaded (modprobe vfio-pci)");
    out += fmt::format("hugepages:      {} of 2 MiB reserved{}\n", huge, huge == "0" ? " (echo 512 > /proc/sys/vm/nr_hugepages)" : "");
    out += fmt::format("RLIMIT_MEMLOCK: {}{}\n", memlock, geteuid() == 0 ? " (root: not a limit)" : " (DMA memory is locked: ulimit -l)");
    return out;
}

// Like `dpdk-devbind.py --status`: the devices a udrv driver supports, by who has them now.
Result<int> run_status(const BindOpts& o) {
    const std::filesystem::path sysfs = o.sysfs.empty() ? std::filesystem::path("/sys") : std::filesystem::path(o.sysfs);
    std::vector<Error> problems;
    const auto devs = UDRV_TRY(pci::scan(sysfs / "bus/pci/devices", &problems));
    const auto mods = known_modules();
    const pci::IdDatabase ids = pci::IdDatabase::load_default();
    std::string on_vfio, on_kernel, on_none;
    for (const auto& d : devs) {
        std::vector<std::string> drivers;
        const std::string alias = pci::modalias(d);
        for (const auto& m : mods)
            if (m.matches(alias)) drivers.emplace_back(m.name());
        if (drivers.empty()) continue;
        std::sort(drivers.begin(), drivers.end());
        drivers.erase(std::unique(drivers.begin(), drivers.end()), drivers.end());  // built in and a file beside the tool
        std::string line = lspci_header(d, ids, false);
        line += fmt::format("\n        udrv driver: {}", fmt::join(drivers, ", "));
        if (d.driver == "vfio-pci") {
            on_vfio += line + "\n";
        } else {
            auto ok = pci::check_bind(d.address, options(o));
            std::string verdict = ok ? "`udrv bind` can take it" : "not now: " + ok.error().message();
            (d.driver ? on_kernel : on_none) += line + fmt::format("{}; {}\n", d.driver ? "; kernel driver: " + *d.driver : "", verdict);
        }
    }
    print(system_facts(sysfs));
    auto section = [](std::string_view title, const std::string& body) {
        print(fmt::format("\n{}\n{}\n{}", title, std::string(title.size(), '='), body.empty() ? "<none>\n" : body));
    };
    section("Devices on vfio-pci: udrv drivers can use them", on_vfio);
    section("Devices on a kernel driver that udrv supports (udrv bind ADDRESS gives one to udrv)", on_kernel);
    section("Devices on no driver that udrv supports", on_none);
    for (auto& p : problems) std::fprintf(stderr, "udrv: warning: skipped a device: %s\n", printable(p.message()).c_str());
    return 0;
}

// With udrvd: it binds each device to vfio-pci and keeps it driven in a driver host.
Result<int> bind_daemon(rpc::Client& c, const BindOpts& o, const std::vector<pci::Address>& addrs) {
    for (const auto& a : addrs) {
        nlohmann::json p = {{"address", a.to_string()}};
        if (!o.driver.empty()) p["driver"] = o.driver;
        if (!o.host.empty()) p["host"] = o.host;
        if (!o.on_stop.empty()) p["on_stop"] = o.on_stop;
        auto r = UDRV_TRY(c.call("bind", p));
        if (r.contains("pid"))
            print(fmt::format("{}: bound to vfio-pci, driven in udrvd's host {} (pid {}): {}\n", a.to_string(), r.value("host", 0),
                              r.value("pid", 0), fmt::join(r.value("classdevs", std::vector<std::string>{}), ", ")));
        else
            print(fmt::format("{}: bound to vfio-pci and kept by udrvd, {}: {}\n", a.to_string(), r.value("state", ""), r.value("why", "")));
    }
    return 0;
}

Result<int> run_bind(const BindOpts& o) {
    if (o.status) return run_status(o);
    if (o.devices.empty()) return fail(EINVAL, "bind needs PCI addresses (DDDD:BB:DD.F), or --status to see what udrv can take");
    const auto addrs = UDRV_TRY(parse_all(o.devices));
    if (o.sysfs.empty())
        if (auto d = daemon()) return bind_daemon(*d, o, addrs);
    if (!o.driver.empty() || !o.host.empty() || !o.on_stop.empty())
        return fail(EINVAL, "--driver, --host and --on-stop are udrvd's (it is not running): plain udrv bind only gives devices to vfio-pci");
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
    auto d = o.sysfs.empty() ? daemon() : std::nullopt;
    for (const auto& addr : addrs) {
        if (d) {  // a device udrvd drives: its host stops (the driver's remove), then udrvd gives it back
            auto r = d->call("unbind", {{"address", addr.to_string()}});
            if (r) {
                print(fmt::format("{}: unbound by udrvd (its driver removed, the device given back)\n", addr.to_string()));
                continue;
            }
            if (r.error().code() != ENOENT) {
                rc = report(r.error());
                continue;
            }
        }
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
    auto* devices = bind->add_option("devices", o->devices, "PCI addresses (DDDD:BB:DD.F)");
    bind->add_flag("--status", o->status, "Show the devices udrv drivers support and who has them, like dpdk-devbind --status")
        ->excludes(devices);
    bind->add_option("--driver", o->driver, "With udrvd: the driver module to use (default: the one whose alias matches)");
    bind->add_option("--host", o->host, "With udrvd: the driver host to share with devices of the same host name");
    bind->add_option("--on-stop", o->on_stop, "With udrvd: at its shutdown give the device back to the kernel (default) or keep it on vfio")
        ->check(CLI::IsMember({"kernel", "vfio"}));
    bind->add_option("--sysfs", o->sysfs, "sysfs root (default /sys)");
    c.add(bind, [o] { return run_bind(*o); });
    auto* unbind = app.add_subcommand("unbind", "Give devices back from vfio-pci to their kernel driver");
    unbind->add_option("devices", o->devices, "PCI addresses (DDDD:BB:DD.F)")->required();
    unbind->add_option("--sysfs", o->sysfs, "sysfs root (default /sys)");
    c.add(unbind, [o] { return run_unbind(*o); });
}

}  // namespace udrv::tools
