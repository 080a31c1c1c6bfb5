// udrv insmod / rmmod / lsmod. With udrvd running they act on it, as the kernel's act on the running
// kernel: modules stay loaded (driver modules drive devices in their hosts, others run in udrvd's
// modules host) until rmmod, which refuses a module in use and says who uses it. Without udrvd, insmod
// loads modules into this process, lists them, and unloads them (in reverse) on exit.
#include <unistd.h>

#include <memory>

#include <fmt/ranges.h>

#include "command.hpp"
#include "daemon_client.hpp"
#include "output.hpp"
#include "session.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"
#include "udrv/modprobe.hpp"

namespace udrv::tools {
namespace {

// Each MODULE [param=value...] group in turn; the first refusal stops the rest (those before stay).
Result<int> insmod_daemon(rpc::Client& c, const std::vector<std::string>& args) {
    std::vector<std::vector<std::string>> groups(1);
    for (const auto& a : args) {
        if (a == "--") groups.emplace_back();
        else groups.back().push_back(a);
    }
    for (const auto& g : groups) {
        if (g.empty()) continue;
        std::string name = g.front();
        if (name.find('/') != std::string::npos || name.ends_with(".so"))
            return fail(EINVAL, "udrvd loads modules by name from its module directories, not {} (copy it there, or udrv --standalone insmod)", name);
        auto r = UDRV_TRY_CTX(c.call("insmod", {{"name", name}, {"params", std::vector<std::string>(g.begin() + 1, g.end())}}), "{}", name);
        print(fmt::format("{}: loaded into udrvd{}\n", name, r.value("driver", false) ? " (a driver: it binds matching devices udrvd manages)" : ""));
    }
    return 0;
}

Result<int> run_lsmod(bool json) {
    auto d = daemon();
    if (!d) {
        if (json) return fail(ENOTCONN, "udrvd is not running: no modules stay loaded (udrv insmod --hold keeps them in its own process)");
        print("udrvd is not running: no modules stay loaded (udrv insmod MODULE --hold keeps them in its own process).\n");
        print(fmt::format("Built into the tool: {}\n", fmt::join(Loader::builtin_modules(), " ")));
        return 0;
    }
    auto mods = UDRV_TRY(d->call("lsmod"));
    if (json) {
        print_json(mods);
        return 0;
    }
    print(fmt::format("{:<28} {:<10} {}\n", "Module", "Origin", "Used by"));
    for (const auto& m : mods) {
        std::vector<std::string> users;
        for (const auto& u : m.value("used_by", nlohmann::json::array())) users.push_back(u.get<std::string>());
        std::vector<std::string> params = m.value("params", std::vector<std::string>{});
        print(fmt::format("{:<28} {:<10} {} {}{}\n", m.value("name", ""), m.value("origin", ""), users.size(), fmt::join(users, ","),
                          params.empty() ? "" : fmt::format("  [{}]", fmt::join(params, " "))));
    }
    return 0;
}

Result<int> run_rmmod(const std::vector<std::string>& names) {
    auto d = daemon();
    if (!d)
        return fail(ENOTCONN, "udrvd is not running: nothing stays loaded to remove (modules loaded by udrv insmod go when it exits)");
    for (const auto& n : names) {
        UDRV_TRY_CTX(d->call("rmmod", {{"name", n}}), "rmmod {}", n);
        print(fmt::format("{}: removed from udrvd\n", n));
    }
    return 0;
}

// args: MODULE [param=value...] [-- MODULE [param=value...]]...: several modules, in order.
Result<int> run_insmod(const std::vector<std::string>& all) {
    bool hold = false;
    std::vector<std::string> args;
    for (const auto& a : all) {
        if (a == "--hold") hold = true;
        else args.push_back(a);
    }
    if (args.empty()) return fail(EINVAL, "insmod needs a MODULE (path, name or built-in); see udrv insmod --help");
    if (!hold)
        if (auto d = daemon()) return insmod_daemon(*d, args);
    Loader loader(modprobe::default_module_dirs());
    std::vector<std::string> cur;
    auto flush = [&]() -> Result<void> {
        if (cur.empty()) return {};
        std::vector<std::string> params(cur.begin() + 1, cur.end());
        UDRV_TRY(loader.load(cur.front(), params));
        cur.clear();
        return {};
    };
    for (const auto& a : args) {
        if (a == "--") UDRV_TRY(flush());
        else cur.push_back(a);
    }
    UDRV_TRY(flush());
    show_and_hold(loader, hold);
    return 0;  // ~Loader unloads in reverse order, running each module's exit
}

}  // namespace

void add_insmod(CLI::App& app, Commands& c) {
    auto* cmd = app.add_subcommand("insmod",
                                   "Load modules into this udrv process, list them, unload them (in reverse) on exit.\n"
                                   "MODULE is a path, a name found in UDRV_MODULE_PATH / the modules directory, or a built-in.\n"
                                   "Several modules: separate them with --, e.g. insmod a.so x=1 -- b.so");
    auto hold = std::make_shared<bool>(false);
    cmd->add_flag("--hold", *hold, "Stay loaded until interrupted (Ctrl-C)");
    cmd->prefix_command();  // from the first MODULE on, everything ('--' included) is left to us
    cmd->footer("Arguments: MODULE [param=value...] [-- MODULE [param=value...]]...");
    c.add(cmd, [cmd, hold] {
        std::vector<std::string> args = cmd->remaining();
        if (*hold) args.insert(args.begin(), "--hold");
        return run_insmod(args);
    });

    auto json = std::make_shared<bool>(false);
    auto* ls = app.add_subcommand("lsmod", "The modules udrvd keeps loaded, with what uses them (udrvd must run)");
    ls->add_flag("--json", *json, "Emit JSON");
    c.add(ls, [json] { return run_lsmod(*json); });

    auto names = std::make_shared<std::vector<std::string>>();
    auto* rm = app.add_subcommand("rmmod", "Remove modules from udrvd; one in use is refused, naming its users");
    rm->add_option("modules", *names, "Module names")->required();
    c.add(rm, [names] { return run_rmmod(*names); });
}

}  // namespace udrv::tools
