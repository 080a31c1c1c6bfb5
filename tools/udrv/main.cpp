// udrv: the command-line tool. Subcommands: lspci, modinfo, insmod, platform.
#include <CLI/CLI.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <unistd.h>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "lspci_format.hpp"
#include "nvme_cmd.hpp"
#include "net_cmd.hpp"
#include "output.hpp"
#include "block_perf.hpp"
#include "fileblk/fileblk.hpp"
#include "udrv/bind.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"
#include "udrv/modinfo.hpp"
#include "udrv/pci.hpp"
#include "udrv/platform.hpp"

namespace {

using udrv::Result;

using udrv::tools::print;
using udrv::tools::print_json;
using udrv::tools::report;

// Modules are found beside the tool's build tree (bin/../modules) unless UDRV_MODULE_PATH says otherwise.
std::vector<std::filesystem::path> default_module_dirs() {
    std::error_code ec;
    auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (ec) return {};
    return {exe.parent_path().parent_path() / "modules"};
}

// ---- lspci ----
struct LspciOpts {
    int verbose = 0;
    bool json = false;
    std::string slot, sysfs = std::string(udrv::pci::kSysfsDevices), ids;
};

int cmd_lspci(const LspciOpts& o) {
    std::vector<udrv::Error> problems;
    auto devs = udrv::pci::scan(o.sysfs, &problems);
    if (!devs) return report(devs.error());
    udrv::pci::IdDatabase ids;
    if (!o.ids.empty()) {
        auto db = udrv::pci::IdDatabase::load(o.ids);
        if (!db) return report(db.error());
        ids = std::move(*db);
    } else {
        ids = udrv::pci::IdDatabase::load_default();
        if (ids.empty()) std::fprintf(stderr, "udrv: warning: no pci.ids found (install the pci.ids package): names shown as numbers\n");
    }
    std::optional<udrv::pci::Address> only;
    if (!o.slot.empty()) {
        auto a = udrv::pci::Address::parse(o.slot);
        if (!a) return report(a.error());
        only = *a;
    }
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& d : *devs) {
        if (only && d.address != *only) continue;
        if (o.json) arr.push_back(udrv::tools::device_json(d, ids));
        else print(udrv::tools::format_device(d, ids, o.verbose > 0));
    }
    if (o.json) print_json(arr);
    for (auto& p : problems) std::fprintf(stderr, "udrv: warning: skipped a device: %s\n", p.message().c_str());
    if (only && std::none_of(devs->begin(), devs->end(), [&](auto& d) { return d.address == *only; }))
        return report(udrv::Error(ENODEV, fmt::format("no PCI device {} under {}", only->to_string(), o.sysfs)));
    return 0;
}

// ---- modinfo ----
int cmd_modinfo(const std::vector<std::string>& files, bool json, const std::string& field) {
    int rc = 0;
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& f : files) {
        auto infos = udrv::read_modinfo(f);
        if (!infos) {
            rc = report(infos.error());
            continue;
        }
        for (const udrv::Modinfo& m : *infos) {
            if (json) {
                nlohmann::json j = {{"filename", f}};
                for (auto& [k, v] : m.fields) {
                    if (k == "author" || k == "alias" || k == "parm" || k == "parmtype" || k == "parmdefault") j[k].push_back(v);
                    else j[k] = v;
                }
                j["depends"] = m.depends();
                nlohmann::json params = nlohmann::json::array();
                for (auto& p : m.params())
                    params.push_back({{"name", p.name}, {"type", p.type}, {"default", p.default_value}, {"description", p.description}});
                j["params"] = params;
                arr.push_back(j);
            } else if (!field.empty()) {
                for (auto v : m.get_all(field)) print(std::string(v) + "\n");
            } else {
                print(fmt::format("{:<16}{}\n", "filename:", f));
                for (auto& [k, v] : m.fields) {
                    if (k == "parm" || k == "parmtype" || k == "parmdefault") continue;
                    print(fmt::format("{:<16}{}\n", k + ":", v));
                }
                for (auto& p : m.params())
                    print(fmt::format("{:<16}{}:{} ({}, default {})\n", "parm:", p.name, p.description, p.type,
                                      p.default_value.empty() ? "\"\"" : p.default_value));
            }
        }
    }
    if (json) print_json(arr);
    return rc;
}

// ---- insmod ----
std::atomic<int> g_stop{0};  // set by SIGINT/SIGTERM: a lock-free atomic is safe to write from a handler

int cmd_insmod(const std::vector<std::string>& args, bool hold) {
    // args: MODULE [param=value...] [-- MODULE [param=value...]]...: several modules, in order.
    udrv::Loader loader(default_module_dirs());
    std::vector<std::string> cur;
    auto flush = [&]() -> Result<void> {
        if (cur.empty()) return {};
        std::string mod = cur.front();
        std::vector<std::string> params(cur.begin() + 1, cur.end());
        cur.clear();
        auto m = loader.load(mod, params);
        if (!m) return std::unexpected(m.error());
        return {};
    };
    for (const auto& a : args) {
        if (a == "--") {
            if (auto r = flush(); !r) return report(r.error());
        } else {
            cur.push_back(a);
        }
    }
    if (auto r = flush(); !r) return report(r.error());
    print(loader.format_lsmod());
    std::fflush(stdout);
    if (hold) {
        std::signal(SIGINT, [](int) { g_stop = 1; });
        std::signal(SIGTERM, [](int) { g_stop = 1; });
        udrv::pr_info("udrv: modules loaded; Ctrl-C unloads them");
        while (!g_stop) pause();
    }
    return 0;  // ~Loader unloads in reverse order, running each module's exit
}

// ---- platform ----
int cmd_platform(const std::string& file, const std::vector<std::string>& modules, bool json) {
    udrv::Loader loader(default_module_dirs());
    if (auto r = loader.load_builtins(); !r) return report(r.error());  // built-in drivers, as at boot
    for (const auto& mod : modules) {
        auto m = loader.load(mod);
        if (!m) return report(m.error());
    }
    auto descs = udrv::platform::load_description(file);
    if (!descs) return report(descs.error());
    auto devs = udrv::platform::bus().register_devices(std::move(*descs));
    if (!devs) return report(devs.error());
    nlohmann::json arr = nlohmann::json::array();
    for (auto* d : *devs) {
        const auto& desc = d->desc();
        if (json) {
            nlohmann::json j = {{"name", desc.name}, {"compatible", desc.compatible},
                                {"driver", d->driver() ? nlohmann::json(d->driver()->name()) : nlohmann::json(nullptr)},
                                {"source", desc.source}};
            for (auto& m : desc.memory) j["memory"].push_back({{"name", m.name}, {"start", m.start}, {"size", m.size}});
            for (auto& i : desc.irqs) j["irq"].push_back({{"name", i.name}, {"number", i.number}});
            arr.push_back(j);
            continue;
        }
        print(fmt::format("{}  compatible={}  driver={}\n", desc.name, fmt::join(desc.compatible, ","),
                          d->driver() ? d->driver()->name() : "(none)"));
        for (auto& m : desc.memory)
            print(fmt::format("\tmemory {:<10} [{:#x}-{:#x}] size={}\n", m.name, m.start, m.end() - 1, udrv::tools::format_size(m.size)));
        for (auto& i : desc.irqs) print(fmt::format("\tirq    {:<10} {}\n", i.name, i.number));
    }
    if (json) print_json(arr);
    std::fflush(stdout);
    udrv::platform::bus().remove_all_devices();  // unbind (remove + devres) before the modules go
    return 0;
}

// ---- bind / unbind ----
// All or nothing: every address is checked before any device is touched.
int cmd_bind(const std::vector<std::string>& args, bool unbind, const std::string& sysfs) {
    udrv::pci::BindOptions opts;
    if (!sysfs.empty()) opts.sysfs = sysfs;
    std::vector<udrv::pci::Address> addrs;
    std::vector<std::string> bad;
    for (const auto& a : args) {
        auto addr = udrv::pci::Address::parse(a);
        if (addr) addrs.push_back(*addr);
        else bad.push_back(addr.error().message());
    }
    if (!bad.empty())
        return report(udrv::Error(EINVAL, fmt::format("{}{}", fmt::join(bad, "; "), args.size() > 1 ? "; nothing was changed" : "")));
    if (!unbind) {
        auto r = udrv::pci::bind_vfio_all(addrs, opts);
        if (!r) return report(r.error());
        for (const auto& o : *r)
            print(o.already ? fmt::format("{}: already bound to vfio-pci (nothing to do)\n", o.address.to_string())
                            : fmt::format("{}: bound to vfio-pci (was {})\n", o.address.to_string(),
                                          o.previous_driver.empty() ? "on no driver" : "on " + o.previous_driver));
        return 0;
    }
    int rc = 0;
    for (const auto& addr : addrs) {
        auto r = udrv::pci::unbind_vfio(addr, opts);
        if (!r) rc = report(r.error());
        else print(fmt::format("{}: returned to {}\n", addr.to_string(), r->empty() ? "no driver" : *r));
    }
    return rc;
}

// ---- block perf on a platform block device ----
int cmd_block_perf(const std::string& file, const std::string& name, const udrv::tools::PerfOpts& o) {
    udrv::Loader loader(default_module_dirs());
    if (auto r = loader.load_builtins(); !r) return report(r.error());
    auto descs = udrv::platform::load_description(file);
    if (!descs) return report(descs.error());
    auto devs = udrv::platform::bus().register_devices(std::move(*descs));
    if (!devs) return report(devs.error());
    udrv::Device* d = udrv::platform::bus().find_device(name);
    auto* blk = d ? d->driver_data<udrv::fileblk::FileBlock>() : nullptr;
    int rc = blk ? udrv::tools::run_block_perf(*blk, o)
                 : report(udrv::Error(ENODEV, fmt::format("{}: no block device named '{}' bound to udrv_fileblk", file, name)));
    udrv::platform::bus().remove_all_devices();
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"udrv: user-space drivers with the Linux driver-core model"};
    app.require_subcommand(1);
    std::string level;
    app.add_option("--log-level", level, "err, warn, notice, info (default) or debug; also $UDRV_LOG_LEVEL");

    LspciOpts lo;
    auto* lspci = app.add_subcommand("lspci", "List PCI devices like `lspci -nn`");
    lspci->add_flag("-v,--verbose", lo.verbose, "Show BARs, capabilities, IOMMU group, NUMA node and kernel driver");
    lspci->add_flag("--json", lo.json, "Emit JSON (all details)");
    lspci->add_option("-s,--slot", lo.slot, "Only this device (DDDD:BB:DD.F)");
    lspci->add_option("--sysfs", lo.sysfs, "Directory of PCI devices (default /sys/bus/pci/devices)");
    lspci->add_option("--ids", lo.ids, "pci.ids file (default: the system's)");

    std::vector<std::string> mi_files;
    bool mi_json = false;
    std::string mi_field;
    auto* modinfo = app.add_subcommand("modinfo", "Show a module file's metadata without loading it");
    modinfo->add_option("files", mi_files, "Module files (.so)")->required();
    modinfo->add_flag("--json", mi_json, "Emit JSON");
    modinfo->add_option("-F,--field", mi_field, "Print only this field's values");

    bool ins_hold = false;
    auto* insmod = app.add_subcommand("insmod",
                                      "Load modules into this udrv process, list them, unload them (in reverse) on exit.\n"
                                      "MODULE is a path, a name found in UDRV_MODULE_PATH / the modules directory, or a built-in.\n"
                                      "Several modules: separate them with --, e.g. insmod a.so x=1 -- b.so");
    insmod->add_flag("--hold", ins_hold, "Stay loaded until interrupted (Ctrl-C)");
    insmod->prefix_command();  // from the first MODULE on, everything ('--' included) is left to us
    insmod->footer("Arguments: MODULE [param=value...] [-- MODULE [param=value...]]...");

    std::string pf_file;
    std::vector<std::string> pf_modules;
    bool pf_json = false;
    auto* platform = app.add_subcommand("platform",
                                        "Register the platform devices of a description file with the built-in drivers (and any\n"
                                        "--module given), show what bound, then unbind everything");
    platform->add_option("description", pf_file, "TOML description file")->required();
    platform->add_option("-m,--module", pf_modules, "Also load this driver module first (path or name)");
    platform->add_flag("--json", pf_json, "Emit JSON");

    std::vector<std::string> bind_addrs, unbind_addrs;
    std::string bind_sysfs;
    auto* bind = app.add_subcommand("bind", "Give devices to vfio-pci (unbinding their kernel driver) so udrv drivers can own them");
    bind->add_option("devices", bind_addrs, "PCI addresses (DDDD:BB:DD.F)")->required();
    bind->add_option("--sysfs", bind_sysfs, "sysfs root (default /sys)");
    auto* unbind = app.add_subcommand("unbind", "Give devices back from vfio-pci to their kernel driver");
    unbind->add_option("devices", unbind_addrs, "PCI addresses (DDDD:BB:DD.F)")->required();
    unbind->add_option("--sysfs", bind_sysfs, "sysfs root (default /sys)");

    auto run_nvme = udrv::tools::add_nvme_commands(app);
    auto run_net = udrv::tools::add_net_commands(app);
    auto* blockcmd = app.add_subcommand("block", "Platform block devices (udrv,file-block)");
    blockcmd->require_subcommand(1);
    std::string bp_file, bp_name;
    udrv::tools::PerfOpts bp_opts;
    auto* bperf = blockcmd->add_subcommand("perf", "The NVMe benchmark on a file-backed block device (io_uring)");
    bperf->add_option("description", bp_file, "TOML description with the device")->required();
    bperf->add_option("device", bp_name, "Device name in the description")->required();
    udrv::tools::add_perf_options(bperf, bp_opts);

    CLI11_PARSE(app, argc, argv);
    if (!level.empty()) {
        auto l = udrv::parse_log_level(level);
        if (!l) return report(udrv::Error(EINVAL, fmt::format("unknown log level '{}' (err, warn, notice, info, debug)", level)));
        udrv::set_log_level(*l);
    }
    if (*lspci) return cmd_lspci(lo);
    if (*modinfo) return cmd_modinfo(mi_files, mi_json, mi_field);
    if (*insmod) {
        bool hold = ins_hold;
        std::vector<std::string> rest;
        for (auto& a : insmod->remaining()) {
            if (a == "--hold") hold = true;
            else rest.push_back(a);
        }
        if (rest.empty()) return report(udrv::Error(EINVAL, "insmod needs a MODULE (path, name or built-in); see udrv insmod --help"));
        return cmd_insmod(rest, hold);
    }
    if (*platform) return cmd_platform(pf_file, pf_modules, pf_json);
    if (int rc = run_nvme(); rc >= 0) return rc;
    if (int rc = run_net(); rc >= 0) return rc;
    if (*bperf) return cmd_block_perf(bp_file, bp_name, bp_opts);
    if (*bind) return cmd_bind(bind_addrs, false, bind_sysfs);
    if (*unbind) return cmd_bind(unbind_addrs, true, bind_sysfs);
    return 0;
}
