// udrv lspci: PCI devices as `lspci -nn` (and -v, -k) prints them, or JSON; lspci's -s and -d selectors.
#include <memory>

#include "command.hpp"
#include "lspci_format.hpp"
#include "lspci_select.hpp"
#include "output.hpp"
#include "udrv/pci.hpp"

namespace udrv::tools {
namespace {

struct LspciOpts {
    int verbose = 0, numeric = 0;
    bool json = false, kernel = false;
    std::string slot, id, sysfs = std::string(pci::kSysfsDevices), ids;
};

Result<int> run_lspci(const LspciOpts& o) {
    if (o.numeric == 1)
        return fail(ENOTSUP, "-n (numbers without names) is not supported: udrv lspci prints both, as lspci -nn does (-nn is accepted)");
    std::optional<SlotFilter> slot;
    std::optional<IdFilter> id;
    if (!o.slot.empty()) slot = UDRV_TRY(parse_slot_filter(o.slot));
    if (!o.id.empty()) id = UDRV_TRY(parse_id_filter(o.id));
    std::vector<Error> problems;
    auto devs = UDRV_TRY(pci::scan(o.sysfs, &problems));
    pci::IdDatabase ids;
    if (!o.ids.empty()) {
        ids = UDRV_TRY(pci::IdDatabase::load(o.ids));
    } else {
        ids = pci::IdDatabase::load_default();
        if (ids.empty()) std::fprintf(stderr, "udrv: warning: no pci.ids found (install the pci.ids package): names shown as numbers\n");
    }
    nlohmann::json arr = nlohmann::json::array();
    unsigned shown = 0;
    for (const auto& d : devs) {
        if ((slot && !slot->matches(d.address)) || (id && !id->matches(d))) continue;
        ++shown;
        if (o.json) arr.push_back(device_json(d, ids));
        else if (o.verbose > 0 || !o.kernel) print(format_device(d, ids, o.verbose > 0));  // -v shows the driver already
        else print(format_device(d, ids, false) + (d.driver ? fmt::format("\tKernel driver in use: {}\n", *d.driver) : ""));
    }
    if (o.json) print_json(arr);
    for (auto& p : problems) std::fprintf(stderr, "udrv: warning: skipped a device: %s\n", printable(p.message()).c_str());
    // lspci prints nothing and succeeds; udrv says so, because a script that asked for a device wants to know.
    if (!shown && (slot || id))
        return fail(ENODEV, "no PCI device under {} matches{}{}", o.sysfs, slot ? " -s " + o.slot : "", id ? " -d " + o.id : "");
    return 0;
}

}  // namespace

void add_lspci(CLI::App& app, Commands& c) {
    auto o = std::make_shared<LspciOpts>();
    auto* cmd = app.add_subcommand("lspci", "List PCI devices like `lspci -nn`");
    cmd->add_flag("-v,--verbose", o->verbose, "Show BARs, capabilities, IOMMU group, NUMA node and kernel driver");
    cmd->add_flag("--json", o->json, "Emit JSON (all details)");
    cmd->add_option("-s,--slot", o->slot, "Only devices at [[[[<domain>]:]<bus>]:][<device>][.[<func>]] (hex; empty or * for any), as lspci");
    cmd->add_option("-d,--id", o->id, "Only devices with [<vendor>]:[<device>][:<class>[:<prog-if>]] (hex), as lspci");
    cmd->add_flag("-k", o->kernel, "Show the kernel driver in use, as lspci -k");
    cmd->add_flag("-n", o->numeric, "-nn: names and numbers, what udrv prints anyway (-n alone is not supported)");
    cmd->footer("Not supported (lspci's): -n alone, -t, -x/-xxx/-xxxx, -b, -D, -m/-mm, -i, -p, -A, -O, -H. udrv lspci -s/-d with no match "
                "exits 1 and says so (lspci prints nothing and exits 0).");
    cmd->add_option("--sysfs", o->sysfs, "Directory of PCI devices (default /sys/bus/pci/devices)");
    cmd->add_option("--ids", o->ids, "pci.ids file (default: the system's)");
    c.add(cmd, [o] { return run_lspci(*o); });
}

}  // namespace udrv::tools
