// udrv block: the block devices udrv drivers publish (NVMe namespaces, file-backed and RAM platform
// devices), listed, and benchmarked by name or path.
#include <memory>

#include <nlohmann/json.hpp>

#include "block_perf.hpp"
#include "command.hpp"
#include "output.hpp"
#include "session.hpp"
#include "udrv/block.hpp"

namespace udrv::tools {
namespace {

constexpr std::uint8_t kClassStorage = 0x01;  // PCI base class: mass storage controller

bool storage_on_vfio(const pci::DeviceInfo& d) { return d.base_class() == kClassStorage && d.driver == "vfio-pci"; }

Result<int> run_list(const std::vector<std::string>& descriptions, bool json) {
    auto session = UDRV_TRY(Session::open({.devices = {}, .wanted = storage_on_vfio, .platform_descriptions = descriptions}));
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& l : block::list()) {
        const double bytes = static_cast<double>(l.info.blocks) * l.info.block_size;
        if (json) {
            arr.push_back({{"name", l.id.name}, {"path", l.id.path}, {"driver", l.id.driver}, {"device", l.id.device}, {"bus", l.id.bus},
                           {"blocks", l.info.blocks}, {"block_size", l.info.block_size}, {"bytes", l.info.blocks * l.info.block_size},
                           {"max_transfer", l.info.max_transfer}, {"max_queue_depth", l.info.max_queue_depth},
                           {"max_queues", l.info.max_queues}});
            continue;
        }
        print(fmt::format("{:<10} {:<20} {:<13} {} blocks of {} B ({}), queues of up to {} commands ({})\n", l.id.name, l.id.path,
                          l.id.driver, l.info.blocks, l.info.block_size, human_bytes(bytes), l.info.max_queue_depth,
                          l.info.max_queues ? fmt::format("at most {} open", l.info.max_queues) : "any number"));
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

Result<int> run_perf(const PerfArgs& a) {
    const std::string device = a.positional.back();
    SessionOptions so;
    if (a.positional.size() == 2) so.platform_descriptions = {a.positional.front()};
    // A PCI path ("0000:00:04.0/ns1") binds that controller alone; a name, every NVMe controller on
    // vfio-pci unless a description says the device is a platform one.
    if (auto addr = pci::Address::parse(device.substr(0, device.find('/')))) so.devices = {addr->to_string()};
    else if (so.platform_descriptions.empty()) so.wanted = storage_on_vfio;
    else so.wanted = [](const pci::DeviceInfo&) { return false; };
    auto session = UDRV_TRY(Session::open(std::move(so)));
    block::Handle dev = UDRV_TRY(block::open(device));
    return run_block_perf(dev, a.perf);
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
