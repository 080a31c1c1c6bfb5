// udrv nvme list / identify / id-ctrl / id-ns / reset: what is about the controller, through the nvme
// class (a namespace's data is block I/O: cmd_nvme_io.cpp).
#include <memory>

#include <nlohmann/json.hpp>

#include "command.hpp"
#include "numbers.hpp"
#include "nvme_common.hpp"
#include "nvme_json.hpp"
#include "output.hpp"

namespace udrv::tools {
namespace {

using nlohmann::json;

struct InfoOpts {
    std::string addr, output = "normal";
    std::uint32_t nsid = 1;
    bool json = false;
};

json controller_json(const nvme::Listing& l) {
    const auto& i = l.info;
    json j = {{"name", l.id.name}, {"address", l.id.path}, {"driver", l.id.driver}, {"vid", fmt::format("{:#06x}", i.vid)},
              {"ssvid", fmt::format("{:#06x}", i.ssvid)}, {"serial", i.serial}, {"model", i.model}, {"firmware", i.firmware},
              {"mdts", i.mdts}, {"cntlid", i.cntlid},
              {"version", fmt::format("{}.{}.{}", i.version >> 16, (i.version >> 8) & 0xff, i.version & 0xff)},
              {"nn", i.namespaces}, {"oncs", fmt::format("{:#06x}", i.oncs)}, {"vwc", i.vwc}, {"subnqn", i.subnqn},
              {"max_queue_entries", i.max_queue_entries}, {"io_queues", i.io_queues}, {"max_transfer", i.max_transfer}};
    j["namespaces"] = json::array();
    for (auto& ns : l.namespaces) {
        const auto& n = ns.info;
        json formats = json::array();
        for (std::size_t f = 0; f < n.lba_formats.size(); ++f)
            formats.push_back({{"index", f}, {"data_size", 1u << n.lba_formats[f].lba_shift}, {"metadata_size", n.lba_formats[f].metadata_size},
                               {"relative_performance", n.lba_formats[f].relative_performance}, {"in_use", f == n.current_format}});
        j["namespaces"].push_back({{"nsid", n.nsid}, {"block_device", ns.block_device}, {"nsze", n.size}, {"ncap", n.capacity},
                                   {"nuse", n.utilization}, {"block_size", n.block_size()}, {"flbas", n.current_format},
                                   {"lba_formats", formats}});
    }
    return j;
}

Result<int> run_list(const InfoOpts& o) {
    auto session = UDRV_TRY(open_all_nvme());
    json arr = json::array();
    for (const auto& l : nvme::list()) {
        if (o.json) {
            arr.push_back(controller_json(l));
            continue;
        }
        print(fmt::format("{}  {}  {}  serial {}  firmware {}  {}\n", l.id.name, l.id.path, l.info.model, l.info.serial, l.info.firmware,
                          l.id.driver));
        for (auto& ns : l.namespaces)
            print(fmt::format("    ns{}: {} blocks of {} B ({}), block device {}\n", ns.info.nsid, ns.info.size, ns.info.block_size(),
                              human_bytes(double(ns.info.size) * ns.info.block_size()), ns.block_device));
    }
    for (const auto& s : session->skipped())
        if (!o.json) print(fmt::format("-      {}  (not taken: {})\n", s.address, s.reason));
    if (!o.json && nvme::list().empty() && session->skipped().empty())
        print("no NVMe controllers on this machine (udrv lspci -d ::0108 lists PCI NVMe devices)\n");
    if (o.json) print_json(arr);
    return 0;
}

// Identify data of the controller (nsid 0) or of namespace `nsid`, field by field.
Result<nvme::IdentifyDump> identify_dump(nvme::Handle& c, std::uint32_t nsid) {
    auto raw = UDRV_TRY(c.identify(nsid ? nvme::kCnsNamespace : nvme::kCnsController, nsid));
    return nsid ? nvme::dump_identify_namespace(raw) : nvme::dump_identify_controller(raw);
}

// As nvme-cli's normal output: "key       : value"; LBA formats as "lbaf  0 : ms:0   lbads:9  rp:0 (in use)"
// (LBADS is the exponent: 9 means 512-byte blocks).
void print_identify(const nvme::IdentifyDump& d, int in_use = -1) {
    auto text = [](const nvme::IdentifyValue& v) {
        if (auto* n = std::get_if<std::uint64_t>(&v)) return fmt::format("{:#x}", *n);
        std::string t = std::get<std::string>(v);
        while (!t.empty() && t.back() == ' ') t.pop_back();
        return t;
    };
    for (const auto& [k, v] : d.fields.fields) print(fmt::format("{:<10}: {}\n", k, text(v)));
    for (std::size_t i = 0; i < d.list.size(); ++i) {
        const auto& f = d.list[i].fields;
        if (d.list_key == "lbafs") {
            const auto ds = std::get<std::uint64_t>(f[1].second);
            print(fmt::format("lbaf {:>2} : ms:{:<3} lbads:{:<2} rp:{:#x}{} ({} B blocks)\n", i, std::get<std::uint64_t>(f[0].second), ds,
                              std::get<std::uint64_t>(f[2].second), static_cast<int>(i) == in_use ? " (in use)" : "",
                              ds < 64 ? std::uint64_t{1} << ds : 0));
        } else {
            std::string line = fmt::format("ps {:>4} :", i);
            for (const auto& [k, v] : f) line += fmt::format(" {}:{}", k, text(v));
            print(line + "\n");
        }
    }
}

Result<int> run_reset(const InfoOpts& o) {
    auto t = UDRV_TRY(open_nvme(o.addr));
    UDRV_TRY(t.controller.reset());
    print(fmt::format("{} ({}): controller reset ({} so far); ready\n", t.controller.id().name, t.address(),
                      UDRV_TRY(t.controller.resets())));
    return 0;
}

Result<int> run_id_ctrl(const InfoOpts& o) {
    auto t = UDRV_TRY(open_nvme(o.addr));
    const auto d = UDRV_TRY(identify_dump(t.controller, 0));
    if (o.output == "json") print_json(identify_json(d));
    else print_identify(d);
    return 0;
}

Result<int> run_id_ns(const InfoOpts& o) {
    auto t = UDRV_TRY(open_nvme(o.addr));
    const auto ns = UDRV_TRY(find_namespace(t.controller, o.nsid));
    const auto d = UDRV_TRY(identify_dump(t.controller, o.nsid));
    if (o.output == "json") print_json(identify_json(d));
    else print_identify(d, static_cast<int>(ns.info.current_format));
    return 0;
}

// The controller, then each active namespace.
Result<int> run_identify(const InfoOpts& o) {
    auto t = UDRV_TRY(open_nvme(o.addr));
    const auto id_ctrl = UDRV_TRY(identify_dump(t.controller, 0));
    nlohmann::ordered_json j = identify_json(id_ctrl);
    j["namespaces"] = nlohmann::ordered_json::array();
    if (!o.json) {
        print(fmt::format("{} ({}): Identify Controller\n", t.controller.id().name, t.address()));
        print_identify(id_ctrl);
    }
    for (const auto& ns : UDRV_TRY(t.controller.namespaces())) {
        const std::uint32_t nsid = ns.info.nsid;
        const auto d = UDRV_TRY(identify_dump(t.controller, nsid));
        if (o.json) {
            nlohmann::ordered_json n = {{"nsid", nsid}};
            n.update(identify_json(d));
            j["namespaces"].push_back(std::move(n));
        } else {
            print(fmt::format("\nNamespace {} ({}): Identify Namespace ({} blocks of {} bytes)\n", nsid, ns.block_device, ns.info.size,
                              ns.info.block_size()));
            print_identify(d, static_cast<int>(ns.info.current_format));
        }
    }
    if (o.json) print_json(j);
    return 0;
}

}  // namespace

void add_nvme_info(CLI::App& nvme, Commands& c) {
    auto o = std::make_shared<InfoOpts>();
    auto* list = nvme.add_subcommand("list", "Controllers and namespaces (NVMe controllers on vfio-pci are bound)");
    list->add_flag("--json", o->json, "Emit JSON");
    c.add(list, [o] { return run_list(*o); });

    auto* ident = nvme.add_subcommand("identify", "Identify Controller and Namespace data, every field (nvme-cli's names)");
    ident->add_option("device,-s,--slot", o->addr, "Controller address, lspci style (00:04.0); default: the first");
    ident->add_flag("--json", o->json, "Emit JSON: nvme-cli's id-ctrl object, with \"namespaces\": id-ns objects (and \"nsid\")");
    c.add(ident, [o] { return run_identify(*o); });

    auto* idctrl = nvme.add_subcommand("id-ctrl", "Identify Controller, as `nvme id-ctrl` prints it");
    idctrl->add_option("device,-s,--slot", o->addr, "Controller address, lspci style (00:04.0); default: the first");
    idctrl->add_option("-o,--output-format", o->output, "normal or json (nvme-cli's JSON, key for key)")
        ->check(CLI::IsMember({"normal", "json"}));
    c.add(idctrl, [o] { return run_id_ctrl(*o); });

    auto* idns = nvme.add_subcommand("id-ns", "Identify Namespace, as `nvme id-ns` prints it");
    idns->add_option("device,-s,--slot", o->addr, "Controller address, lspci style (00:04.0); default: the first");
    idns->add_option("-n,--namespace-id", o->nsid, "Namespace id (default 1)")->transform(count_option());
    idns->add_option("-o,--output-format", o->output, "normal or json (nvme-cli's JSON, key for key)")
        ->check(CLI::IsMember({"normal", "json"}));
    c.add(idns, [o] { return run_id_ns(*o); });

    auto* rst = nvme.add_subcommand("reset", "Reset a controller (disable, re-enable, restore its features), as after a fault");
    rst->add_option("device,-s,--slot", o->addr, "Controller address, lspci style (00:04.0); default: the first");
    c.add(rst, [o] { return run_reset(*o); });
}

}  // namespace udrv::tools
