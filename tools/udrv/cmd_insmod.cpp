// udrv insmod: load modules into this process, list them, unload them (in reverse) on exit.
#include <unistd.h>

#include <memory>

#include "command.hpp"
#include "output.hpp"
#include "session.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"

namespace udrv::tools {
namespace {

// args: MODULE [param=value...] [-- MODULE [param=value...]]...: several modules, in order.
Result<int> run_insmod(const std::vector<std::string>& all) {
    bool hold = false;
    std::vector<std::string> args;
    for (const auto& a : all) {
        if (a == "--hold") hold = true;
        else args.push_back(a);
    }
    if (args.empty()) return fail(EINVAL, "insmod needs a MODULE (path, name or built-in); see udrv insmod --help");
    Loader loader(default_module_dirs());
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
    print(loader.format_lsmod());
    std::fflush(stdout);
    if (hold) {
        install_stop_signals();
        pr_info("udrv: modules loaded; Ctrl-C unloads them");
        while (!stop_requested()) pause();
    }
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
}

}  // namespace udrv::tools
