// udrv platform: register a description's platform devices with the built-in drivers, show what bound.
#include <memory>

#include <fmt/ranges.h>

#include "command.hpp"
#include "lspci_format.hpp"
#include "output.hpp"
#include "session.hpp"
#include "udrv/loader.hpp"
#include "udrv/modprobe.hpp"
#include "udrv/platform.hpp"

namespace udrv::tools {
namespace {

struct PlatformOpts {
    std::string file;
    std::vector<std::string> modules;
    bool json = false;
};

nlohmann::json device_json(const platform::Device& d) {
    const auto& desc = d.desc();
    nlohmann::json j = {{"name", desc.name}, {"compatible", desc.compatible},
                        {"driver", d.driver() ? nlohmann::json(d.driver()->name()) : nlohmann::json(nullptr)}, {"source", desc.source}};
    for (auto& m : desc.memory) j["memory"].push_back({{"name", m.name}, {"start", m.start}, {"size", m.size}});
    for (auto& i : desc.irqs) j["irq"].push_back({{"name", i.name}, {"number", i.number}});
    return j;
}

void print_device(const platform::Device& d) {
    const auto& desc = d.desc();
    print(fmt::format("{}  compatible={}  driver={}\n", desc.name, fmt::join(desc.compatible, ","), d.driver() ? d.driver()->name() : "(none)"));
    for (auto& m : desc.memory) print(fmt::format("\tmemory {:<10} [{:#x}-{:#x}] size={}\n", m.name, m.start, m.end() - 1, format_size(m.size)));
    for (auto& i : desc.irqs) print(fmt::format("\tirq    {:<10} {}\n", i.name, i.number));
}

Result<int> run_platform(const PlatformOpts& o) {
    Loader loader(modprobe::default_module_dirs());
    UDRV_TRY(loader.load_builtins());  // built-in drivers, as at boot
    for (const auto& mod : o.modules) UDRV_TRY(loader.load(mod));
    auto descs = UDRV_TRY(platform::load_description(o.file));
    auto devs = UDRV_TRY(platform::bus().register_devices(std::move(descs)));
    nlohmann::json arr = nlohmann::json::array();
    for (auto* d : devs) {
        if (o.json) arr.push_back(device_json(*d));
        else print_device(*d);
    }
    if (o.json) print_json(arr);
    std::fflush(stdout);
    // A device no driver took is a failure of the command, with each driver's own reason.
    std::vector<std::string> untaken;
    for (auto* d : devs)
        if (!d->driver()) untaken.push_back(d->unbound_reason() ? d->unbound_reason()->message() : d->name() + ": not bound");
    platform::bus().remove_all_devices();  // unbind (remove + devres) before the modules go
    if (!untaken.empty())
        return fail(ENODEV, "{} of {} device(s) not taken by a driver: {}", untaken.size(), devs.size(), fmt::join(untaken, "; "));
    return 0;
}

}  // namespace

void add_platform(CLI::App& app, Commands& c) {
    auto o = std::make_shared<PlatformOpts>();
    auto* cmd = app.add_subcommand("platform",
                                   "Register the platform devices of a description file with the built-in drivers (and any\n"
                                   "--module given), show what bound, then unbind everything");
    cmd->add_option("description", o->file, "TOML description file")->required();
    cmd->add_option("-m,--module", o->modules, "Also load this driver module first (path or name)");
    cmd->add_flag("--json", o->json, "Emit JSON");
    c.add(cmd, [o] { return run_platform(*o); });
}

}  // namespace udrv::tools
