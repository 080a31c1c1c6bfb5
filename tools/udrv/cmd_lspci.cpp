// udrv lspci: PCI devices as `lspci -nn` (and -v) prints them, or JSON.
#include <memory>

#include "command.hpp"
#include "lspci_format.hpp"
#include "output.hpp"
#include "udrv/pci.hpp"

namespace udrv::tools {
namespace {

struct LspciOpts {
    int verbose = 0;
    bool json = false;
    std::string slot, sysfs = std::string(pci::kSysfsDevices), ids;
};

Result<int> run_lspci(const LspciOpts& o) {
    std::vector<Error> problems;
    auto devs = UDRV_TRY(pci::scan(o.sysfs, &problems));
    pci::IdDatabase ids;
    if (!o.ids.empty()) {
        ids = UDRV_TRY(pci::IdDatabase::load(o.ids));
    } else {
        ids = pci::IdDatabase::load_default();
        if (ids.empty()) std::fprintf(stderr, "udrv: warning: no pci.ids found (install the pci.ids package): names shown as numbers\n");
    }
    std::optional<pci::Address> only;
    if (!o.slot.empty()) only = UDRV_TRY(pci::Address::parse(o.slot));
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& d : devs) {
        if (only && d.address != *only) continue;
        if (o.json) arr.push_back(device_json(d, ids));
        else print(format_device(d, ids, o.verbose > 0));
    }
    if (o.json) print_json(arr);
    for (auto& p : problems) std::fprintf(stderr, "udrv: warning: skipped a device: %s\n", printable(p.message()).c_str());
    if (only && std::none_of(devs.begin(), devs.end(), [&](auto& d) { return d.address == *only; }))
        return fail(ENODEV, "no PCI device {} under {}", only->to_string(), o.sysfs);
    return 0;
}

}  // namespace

void add_lspci(CLI::App& app, Commands& c) {
    auto o = std::make_shared<LspciOpts>();
    auto* cmd = app.add_subcommand("lspci", "List PCI devices like `lspci -nn`");
    cmd->add_flag("-v,--verbose", o->verbose, "Show BARs, capabilities, IOMMU group, NUMA node and kernel driver");
    cmd->add_flag("--json", o->json, "Emit JSON (all details)");
    cmd->add_option("-s,--slot", o->slot, "Only this device (DDDD:BB:DD.F)");
    cmd->add_option("--sysfs", o->sysfs, "Directory of PCI devices (default /sys/bus/pci/devices)");
    cmd->add_option("--ids", o->ids, "pci.ids file (default: the system's)");
    c.add(cmd, [o] { return run_lspci(*o); });
}

}  // namespace udrv::tools
