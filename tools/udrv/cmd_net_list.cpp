// udrv net list: the network devices udrv drivers publish (every NIC on vfio-pci), and the NICs on
// vfio-pci no udrv driver could take, with why.
#include <memory>

#include <nlohmann/json.hpp>

#include "command.hpp"
#include "output.hpp"
#include "session.hpp"
#include "udrv/net.hpp"

namespace udrv::tools {
namespace {

constexpr std::uint32_t kClassNetwork = 0x02;  // PCI base class: network controller

Result<int> run_list(bool json) {
    auto session = UDRV_TRY(Session::open(
        {.devices = {}, .wanted = [](const pci::DeviceInfo& d) { return d.class_code >> 16 == kClassNetwork && d.driver == "vfio-pci"; },
         .platform_descriptions = {}}));
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& l : net::list()) {
        if (json) {
            arr.push_back({{"name", l.id.name}, {"path", l.id.path}, {"driver", l.id.driver}, {"device", l.id.device}, {"bus", l.id.bus},
                           {"mac", net::format_mac(l.mac)}, {"link_up", l.link_up}, {"queues", l.queues}, {"max_queues", l.max_queues}});
            continue;
        }
        print(fmt::format("{:<6} {}  {}  {}  link {}  {} queue pair(s) of at most {}\n", l.id.name, l.id.device, l.id.driver,
                          net::format_mac(l.mac), l.link_up ? "up" : "down", l.queues, l.max_queues));
    }
    for (const auto& s : session->skipped())
        if (!json) print(fmt::format("{:<6} {}  (not taken: {})\n", "-", s.address, s.reason));
    if (json) print_json(arr);
    return 0;
}

}  // namespace

void add_net_list(CLI::App& net, Commands& c) {
    auto json = std::make_shared<bool>(false);
    auto* cmd = net.add_subcommand("list", "Network devices udrv drives (name, device, driver, MAC, link, queues)");
    cmd->add_flag("--json", *json, "Emit JSON");
    c.add(cmd, [json] { return run_list(*json); });
}

}  // namespace udrv::tools
