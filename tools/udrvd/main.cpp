// udrvd: the driver manager (src/daemon/daemon.hpp; docs/udrvd.md). Runs in the foreground, logs to
// stderr (the journal under systemd), serves JSON-RPC on a Unix socket.
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "daemon.hpp"
#include "udrv/log.hpp"
#include "udrv/modprobe.hpp"
#include "udrv/modsig.hpp"
#include "udrv/rpc.hpp"

int main(int argc, char** argv) {
    CLI::App app{"udrvd: keeps udrv drivers loaded and devices bound, each driver in a restartable host process", "udrvd"};
    std::string config, socket = std::string(udrv::rpc::kDefaultSocket), host, level, sysfs = "/sys";
    std::vector<std::string> module_dirs;
    std::string module_sig, keyring;
    bool no_uevents = false;
    app.add_option("-c,--config", config, "Configuration file (TOML or JSON; docs/udrvd.md); save_config writes it back");
    app.add_option("-s,--socket", socket, "Where to listen (default /run/udrv/udrvd.sock)");
    app.add_option("--host-binary", host, "The driver host program (default: udrv-host beside udrvd)");
    app.add_option("--module-dir", module_dirs, "Where module files are (default: ../modules beside udrvd, then $UDRV_MODULE_PATH)");
    app.add_option("--module-sig", module_sig, "Module signatures: off, permissive or enforce (default: $UDRV_MODULE_SIG, else "
                   "permissive when the keyring exists; docs/modules.md)");
    app.add_option("--keyring", keyring, "Certificates trusted to sign modules (default: $UDRV_KEYRING or /etc/udrv/keys)");
    app.add_option("--log-level", level, "err, warn, notice, info (default) or debug");
    app.add_option("--sysfs", sysfs, "sysfs root (tests)");
    app.add_flag("--no-uevents", no_uevents, "Do not listen for hot-plug events");
    app.set_version_flag("--version", UDRV_VERSION);
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "udrvd: usage: %s; see 'udrvd --help'\n", e.what());
        return 2;
    }
    if (!level.empty()) {
        auto l = udrv::parse_log_level(level);
        if (!l) {
            std::fprintf(stderr, "udrvd: usage: unknown log level '%s' (err, warn, notice, info, debug)\n", level.c_str());
            return 2;
        }
        udrv::set_log_level(*l);
    }
    // The signature policy reaches the driver hosts, whose loaders apply it, through the environment.
    if (!keyring.empty()) ::setenv("UDRV_KEYRING", keyring.c_str(), 1);
    if (!module_sig.empty()) ::setenv("UDRV_MODULE_SIG", module_sig.c_str(), 1);
    auto sig = udrv::modsig::settings_from_environment();
    if (!sig) {
        std::fprintf(stderr, "udrvd: usage: %s\n", sig.error().message().c_str());
        return 2;
    }
    std::error_code ec;
    const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    udrv::daemon::Options o;
    o.config_file = config;
    o.socket = socket;
    o.host_binary = host.empty() ? exe.parent_path() / "udrv-host" : std::filesystem::path(host);
    for (const auto& d : module_dirs) o.module_dirs.emplace_back(d);
    if (module_dirs.empty())  // a build tree's bin/../modules, an installed tree's bin/../lib/udrv/modules/VERSION
        o.module_dirs = udrv::modprobe::default_module_dirs();
    if (const char* env = std::getenv("UDRV_MODULE_PATH"))
        for (std::string_view rest = env; !rest.empty();) {
            const auto colon = rest.find(':');
            if (colon) o.module_dirs.emplace_back(std::string(rest.substr(0, colon)));
            rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
        }
    o.sysfs = sysfs;
    o.watch_uevents = !no_uevents;
    if (::geteuid() != 0) udrv::pr_warn("udrvd: not running as root: binding devices to vfio-pci will be refused");
    auto d = udrv::daemon::Daemon::create(std::move(o));
    if (!d) {
        std::fprintf(stderr, "udrvd: error: %s\n", d.error().to_string().c_str());
        return 1;
    }
    return (*d)->run();
}
