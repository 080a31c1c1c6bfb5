// udrv block: the block devices udrv drivers publish (NVMe namespaces, file-backed and RAM platform
// devices), listed, and benchmarked by name or path.
#include <memory>

#include <nlohmann/json.hpp>

#include "block_perf.hpp"
#include "class_json.hpp"
#include "command.hpp"
#include "daemon_client.hpp"
#include "output.hpp"
#include "session.hpp"
#include "udrv/block.hpp"

namespace udrv::tools {
namespace {

constexpr std::uint8_t kClassStorage = 0x01;  // PCI base class: mass storage controller

bool storage_on_vfio(const pci::DeviceInfo& d) { return d.base_class() == kClassStorage && d.driver == "vfio-pci"; }

// What udrvd's devices publish of one class, and its devices that publish nothing now (with why).
Result<int> list_daemon(rpc::Client& c, const char* cls, bool json, std::string (*line)(const nlohmann::json&)) {
    auto devs = UDRV_TRY(c.call(std::string(cls) + "_list"));
    if (json) {
        print_json(devs);
        return 0;
    }
    for (const auto& d : devs) print(line(d));
    for (const auto& d : UDRV_TRY(c.call("device_list")))
        if (d.value("state", "") != "running")
            print(fmt::format("{:<10} {:<20} ({} in udrvd: {})\n", "-", d.value("device", ""), d.value("state", ""), d.value("why", "")));
    return 0;
}

Result<int> run_list(const std::vector<std::string>& descriptions, bool json) {
    if (descriptions.empty())
        if (auto d = daemon()) return list_daemon(*d, "block", json, block_line);
    auto session = UDRV_TRY(Session::open({.devices = {}, .wanted = storage_on_vfio, .platform_descriptions = descriptions}));
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& l : block::list()) {
        if (json) arr.push_back(block_json(l));
        else print(block_line(block_json(l)));
    }
    for (const auto& s : session->skipped())
        if (!json) print(fmt::format("{:<10} {:<20} (not taken: {})\n", "-", s.address, s.reason));
    if (json) print_json(arr);
    return 0;
}

struct PerfArgs {
    std::vector<std::string> positional;  // [DESCRIPTION] DEVICE
    PerfOpts perf;
};

// The benchmark in the driver host that owns the device; the report comes back as it would print here.
Result<int> perf_daemon(rpc::Client& c, const std::string& device, const PerfOpts& o) {
    nlohmann::json p = {{"device", device}, {"pattern", o.pattern}, {"mode", o.mode}, {"depth", o.depth}, {"io_size", o.io_size},
                        {"threads", o.threads}, {"mix", o.mix}, {"seconds", o.seconds}, {"json", o.json_out}, {"histogram", o.histogram},
                        {"percentiles", o.percentiles}};
    auto r = UDRV_TRY(c.call("block_perf", p, std::chrono::milliseconds(static_cast<long long>(o.seconds * 1000) + 60000)));
    print(r.value("output", ""));
    return r.value("status", 1);
}

Result<int> run_perf(const PerfArgs& a) {
    const std::string device = a.positional.back();
    if (a.positional.size() == 1)
        if (auto d = daemon()) {
            // A device of udrvd's runs there; any other device runs here as before.
            for (const auto& b : UDRV_TRY(d->call("block_list")))
                if (b.value("name", "") == device || b.value("path", "") == udrv::detail::normalize_class_path(device))
                    return perf_daemon(*d, device, a.perf);
        }
    SessionOptions so;
    if (a.positional.size() == 2) so.platform_descriptions = {a.positional.front()};
    // A PCI path ("0000:00:04.0/ns1") binds that controller alone; a name, every NVMe controller on
    // vfio-pci unless a description says the device is a platform one.
    if (auto addr = pci::Address::parse(device.substr(0, device.find('/')))) so.devices = {addr->to_string()};
    else if (so.platform_descriptions.empty()) so.wanted = storage_on_vfio;
    else so.wanted = [](const pci::DeviceInfo&) { return false; };
    auto session = UDRV_TRY(Session::open(std::move(so)));
    block::Handle dev = UDRV_TRY(block::open(device));
    PerfOpts o = a.perf;
    install_stop_signals();  // Ctrl-C ends the run early and reports what was measured
    o.cancel = &stop_flag();
    return run_block_perf(dev, o);
}

}  // namespace

void add_block(CLI::App& app, Commands& c) {
    auto* blk = app.add_subcommand("block", "Block devices udrv drivers publish: NVMe namespaces, file-backed and RAM devices");
    blk->require_subcommand(1);

    auto list_desc = std::make_shared<std::vector<std::string>>();
    auto list_json = std::make_shared<bool>(false);
    auto* list = blk->add_subcommand("list", "Block devices (name, path, driver, size, queues); NVMe controllers on vfio-pci are bound");
    list->add_option("-p,--platform", *list_desc, "Also register the platform devices of this description file");
    list->add_flag("--json", *list_json, "Emit JSON");
    c.add(list, [list_desc, list_json] { return run_list(*list_desc, *list_json); });

    auto a = std::make_shared<PerfArgs>();
    auto* perf = blk->add_subcommand("perf", "The NVMe benchmark on any block device, by name (nvme0n1, fileblk0) or path (00:04.0/ns1)");
    perf->add_option("device", a->positional, "[DESCRIPTION.toml] DEVICE: a platform description to register first, and the device")
        ->required()
        ->expected(1, 2);
    add_perf_options(perf, a->perf);
    c.add(perf, [a] { return run_perf(*a); });
}

}  // namespace udrv::tools
