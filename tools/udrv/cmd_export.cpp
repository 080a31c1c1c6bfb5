// udrv export / unexport: udrv block devices for the kernel and every program on the machine, served
// by udrvd's driver hosts (docs/ublk.md). ublk: /dev/ublkbN, which mounts like any disk and survives
// its driver host crashing.
#include <memory>

#include "command.hpp"
#include "daemon_client.hpp"
#include "numbers.hpp"
#include "output.hpp"

namespace udrv::tools {
namespace {

struct ExportOpts {
    std::string device;
    unsigned queues = 1, depth = 64;
    bool json = false;
};

Result<int> run_export(const ExportOpts& o) {
    rpc::Client c = UDRV_TRY(require_daemon("export"));
    auto r = UDRV_TRY(c.call("ublk_export", {{"device", o.device}, {"queues", o.queues}, {"depth", o.depth}}));
    if (o.json) print_json(r);
    else print(fmt::format("{}: exported as {} ({} queue(s) of {} requests)\n", r.value("device", ""), r.value("path", ""), o.queues, o.depth));
    return 0;
}

Result<int> run_unexport(const ExportOpts& o) {
    rpc::Client c = UDRV_TRY(require_daemon("unexport"));
    auto r = UDRV_TRY(c.call("ublk_unexport", {{"device", o.device}}));
    print(fmt::format("{}: {} removed\n", r.value("device", ""), r.value("path", "")));
    return 0;
}

Result<int> run_list(bool json) {
    rpc::Client c = UDRV_TRY(require_daemon("export list"));
    auto list = UDRV_TRY(c.call("export_list"));
    if (json) {
        print_json(list);
        return 0;
    }
    if (list.empty()) print("nothing is exported (udrv export ublk DEVICE)\n");
    for (const auto& x : list)
        print(fmt::format("{:<14} {:<10} {:<20} {} queue(s) x {}  {}\n", x.value("path", ""), x.value("device", ""), x.value("device_path", ""),
                          x.value("queues", 0u), x.value("depth", 0u), x.value("state", "")));
    return 0;
}

}  // namespace

void add_export(CLI::App& app, Commands& c) {
    auto o = std::make_shared<ExportOpts>();
    auto* exp = app.add_subcommand("export", "Export udrvd's block devices to the kernel (ublk: /dev/ublkbN)");
    exp->require_subcommand(1);
    auto* ub = exp->add_subcommand("ublk", "Serve a block device (nvme0n1, ram0, 00:04.0/ns1) as /dev/ublkbN from its driver host");
    ub->add_option("device", o->device, "Block device name or path")->required();
    ub->add_option("-q,--queues", o->queues, "ublk queues, one udrv queue and thread each (default 1)")->transform(count_option());
    ub->add_option("-d,--depth", o->depth, "Requests per queue (default 64)")->transform(count_option());
    ub->add_flag("--json", o->json, "Emit JSON");
    c.add(ub, [o] { return run_export(*o); });
    auto json = std::make_shared<bool>(false);
    auto* ls = exp->add_subcommand("list", "What udrvd exports, and in what state (running, recovering)");
    ls->add_flag("--json", *json, "Emit JSON");
    c.add(ls, [json] { return run_list(*json); });

    auto u = std::make_shared<ExportOpts>();
    auto* unexp = app.add_subcommand("unexport", "End an export: the kernel completes or fails its requests, the device is deleted");
    unexp->require_subcommand(1);
    auto* uu = unexp->add_subcommand("ublk", "Remove /dev/ublkbN (named by its block device, its path, or /dev/ublkbN)");
    uu->add_option("device", u->device, "nvme0n1, 00:04.0/ns1 or /dev/ublkb0")->required();
    c.add(uu, [u] { return run_unexport(*u); });
}

}  // namespace udrv::tools
