// udrv: the command-line tool. Each subcommand is a file of its own (cmd_*.cpp); this puts them
// together, applies the options common to all, and reports a command's error once, the same way.
#include <CLI/CLI.hpp>

#include "cli_usage.hpp"
#include "command.hpp"
#include "daemon_client.hpp"
#include "output.hpp"
#include "udrv/log.hpp"
#include "udrv/module.hpp"

int main(int argc, char** argv) {
    using namespace udrv::tools;
    CLI::App app{"udrv: user-space drivers with the Linux driver-core model", "udrv"};  // named: not argv[0]'s path
    app.require_subcommand(1);
    std::string level;
    bool standalone = false;
    app.add_option("--log-level", level, "err, warn, notice, info (default) or debug; also $UDRV_LOG_LEVEL");
    app.add_flag("--standalone", standalone, "Do not talk to udrvd even when it runs (its socket: $UDRV_SOCKET or /run/udrv/udrvd.sock)");

    Commands commands;
    add_lspci(app, commands);
    add_modinfo(app, commands);
    add_sign(app, commands);
    add_modprobe(app, commands);
    add_insmod(app, commands);
    add_platform(app, commands);
    add_bind(app, commands);
    add_block(app, commands);
    auto* nvme = app.add_subcommand("nvme", "NVMe controllers bound to vfio-pci, driven by udrv_nvme");
    nvme->require_subcommand(1);
    add_nvme_info(*nvme, commands);
    add_nvme_io(*nvme, commands);
    auto* net = app.add_subcommand("net", "Network devices bound to vfio-pci, driven by udrv network drivers");
    net->require_subcommand(1);
    add_net_list(*net, commands);
    add_net_respond(*net, commands);
    add_net_pktgen(*net, commands);
    add_net_fwd(*net, commands);
    add_net_dump(*net, commands);
    add_stats(app, commands);
    add_export(app, commands);
    add_rpc(app, commands);

    app.set_version_flag("--version", fmt::format("udrv {} (module ABI {})", UDRV_VERSION, udrv::kModuleAbi));
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {  // --help, --version
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        const std::vector<std::string> args(argv + 1, argv + argc);
        std::fprintf(stderr, "udrv: usage: %s\n", usage_message(app, e, args).c_str());
        return kExitUsage;
    }
    if (!level.empty()) {
        auto l = udrv::parse_log_level(level);
        if (!l) return report(udrv::Error(EINVAL, fmt::format("unknown log level '{}' (err, warn, notice, info, debug)", level)));
        udrv::set_log_level(*l);
    }
    set_standalone(standalone);
    const auto rc = commands.run();
    return rc ? *rc : report(rc.error());
}
