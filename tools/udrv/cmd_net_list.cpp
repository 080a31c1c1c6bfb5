// udrv net list: the network devices udrv drivers publish (every NIC on vfio-pci), and the NICs on
// vfio-pci no udrv driver could take, with why.
#include <memory>

#include <nlohmann/json.hpp>

#include "class_json.hpp"
#include "command.hpp"
#include "daemon_client.hpp"
#include "output.hpp"
#include "session.hpp"
#include "udrv/net.hpp"

namespace udrv::tools {
namespace {

constexpr std::uint32_t kClassNetwork = 0x02;  // PCI base class: network controller

Result<int> run_list(bool json) {
    if (auto d = daemon()) {
        auto devs = UDRV_TRY(d->call("net_list"));
        if (json) {
            print_json(devs);
            return 0;
        }
        for (const auto& n : devs) print(net_line(n));
        return 0;
    }
    auto session = UDRV_TRY(Session::open(
        {.devices = {}, .wanted = [](const pci::DeviceInfo& d) { return d.class_code >> 16 == kClassNetwork && d.driver == "vfio-pci"; },
         .platform_descriptions = {}}));
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& l : net::list()) {
        if (json) arr.push_back(net_json(l));
        else print(net_line(net_json(l)));
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
