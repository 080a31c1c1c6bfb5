// udrv depmod / udrv modprobe (include/udrv/modprobe.hpp): the index of a module directory, and loading
// a module by name or by a device's modalias with its dependencies and modprobe.d's options. modprobe
// acts on udrvd when it runs (modules stay loaded) and on this process otherwise, as insmod does.
#include <algorithm>
#include <memory>
#include <ranges>

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

struct DepmodOpts {
    std::vector<std::string> dirs;
    bool dry_run = false;
};

Result<int> run_depmod(const DepmodOpts& o) {
    std::vector<std::filesystem::path> dirs(o.dirs.begin(), o.dirs.end());
    if (dirs.empty()) dirs = modprobe::default_module_dirs();
    if (dirs.empty()) return fail(ENOENT, "no module directory beside this udrv: name one (udrv depmod DIR)");
    for (const auto& dir : dirs) {
        auto index = UDRV_TRY(modprobe::scan(dir));
        for (const auto& w : index.warnings) pr_warn("depmod: {}: skipped", w);
        std::size_t aliases = 0;
        for (const auto& e : index.modules) aliases += e.aliases.size();
        if (o.dry_run) {
            for (const auto& e : index.modules)
                for (const auto& a : e.aliases) print(fmt::format("alias {} {}\n", a, e.name));
            continue;
        }
        UDRV_TRY(modprobe::write(index));
        print(fmt::format("{}: {} modules, {} aliases: modules.dep, modules.alias written\n", dir.string(), index.modules.size(), aliases));
    }
    return 0;
}

struct ModprobeOpts {
    std::vector<std::string> args;  // NAME|MODALIAS [param=value...]
    std::vector<std::string> dirs;
    std::string config_dir;
    bool dry_run = false, hold = false;
};

// What modprobe will load: (module, parameters), dependencies first.
struct Step {
    const modprobe::Entry* entry;
    std::vector<std::string> params;
};

Result<std::vector<Step>> plan(const ModprobeOpts& o, const std::vector<modprobe::Index>& indexes, const modprobe::Config& config) {
    const std::string& what = o.args.front();
    const std::vector<std::string> extra(o.args.begin() + 1, o.args.end());
    std::vector<std::string> names;
    if (modprobe::is_modalias(what)) {
        std::vector<std::pair<std::string, std::string>> blacklisted;
        for (const auto& idx : indexes)
            for (auto& n : modprobe::match(idx, config, what, &blacklisted))
                if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
        if (names.empty() && !blacklisted.empty())
            return fail(ENOENT, "{} matches {}, blacklisted by {}: nothing loaded (udrv modprobe {} loads it by name)", what,
                        blacklisted.front().first, blacklisted.front().second, blacklisted.front().first);
        if (names.empty()) return fail(ENOENT, "no module's alias matches {} (udrv depmod indexes new modules)", what);
    } else {
        names.push_back(what);  // by name the blacklist does not apply, as with the kernel's modprobe
    }
    std::vector<Step> steps;
    for (const auto& name : names) {
        const modprobe::Index* idx = nullptr;
        for (const auto& i : indexes)
            if (i.find(name)) {
                idx = &i;
                break;
            }
        if (!idx) return fail(ENOENT, "module {} is not in the index of {} (udrv depmod indexes it)", name,
                              fmt::join(indexes | std::views::transform([](const auto& i) { return i.dir.string(); }), ", "));
        const std::string top = idx->find(name)->name;  // the name as indexed ('-' as '_')
        for (const modprobe::Entry* e : UDRV_TRY(idx->load_order(name))) {
            if (std::any_of(steps.begin(), steps.end(), [&](const Step& s) { return s.entry->name == e->name; })) continue;
            Step s{e, {}};
            if (auto opt = config.options.find(e->name); opt != config.options.end()) s.params = opt->second;
            if (e->name == top) s.params.insert(s.params.end(), extra.begin(), extra.end());  // the command line's last: they win
            steps.push_back(std::move(s));
        }
    }
    return steps;
}

Result<int> run_modprobe(const ModprobeOpts& o) {
    if (o.args.empty()) return fail(EINVAL, "modprobe needs a module name or a modalias; see udrv modprobe --help");
    std::vector<std::filesystem::path> dirs(o.dirs.begin(), o.dirs.end());
    if (dirs.empty()) dirs = modprobe::default_module_dirs();
    std::vector<modprobe::Index> indexes;
    for (const auto& d : dirs) indexes.push_back(UDRV_TRY(modprobe::read(d)));
    if (indexes.empty()) return fail(ENOENT, "no module directory beside this udrv: name one (--dir)");
    auto config = UDRV_TRY(modprobe::read_config(o.config_dir.empty() ? std::nullopt : std::optional<std::filesystem::path>(o.config_dir)));
    for (const auto& w : config.warnings) pr_warn("modprobe: {}", w);
    const auto steps = UDRV_TRY(plan(o, indexes, config));

    if (o.dry_run) {  // modprobe -n -v
        for (const auto& s : steps) print(fmt::format("insmod {}{}{}\n", s.entry->file.string(), s.params.empty() ? "" : " ", fmt::join(s.params, " ")));
        return 0;
    }
    if (!o.hold)
        if (auto d = daemon()) {
            // udrvd finds modules by name in its own directories; those already loaded are left as they are.
            for (const auto& s : steps) {
                auto r = d->call("insmod", {{"name", s.entry->name}, {"params", s.params}});
                if (!r && r.error().code() == EEXIST) continue;
                if (!r) return std::unexpected(std::move(r).error().context(s.entry->name));
                print(fmt::format("{}: loaded into udrvd{}{}\n", s.entry->name, s.params.empty() ? "" : " with ", fmt::join(s.params, " ")));
            }
            return 0;
        }
    Loader loader(modprobe::default_module_dirs());
    for (const auto& s : steps) UDRV_TRY(loader.load(s.entry->file.string(), s.params));
    show_and_hold(loader, o.hold);
    return 0;
}

}  // namespace

void add_modprobe(CLI::App& app, Commands& c) {
    auto d = std::make_shared<DepmodOpts>();
    auto* depmod = app.add_subcommand("depmod", "Index module directories (modules.alias, modules.dep) from their modinfo, loading nothing");
    depmod->add_option("dirs", d->dirs, "Module directories (default: the one this udrv installation uses)");
    depmod->add_flag("-n,--dry-run", d->dry_run, "Print the aliases instead of writing the index");
    c.add(depmod, [d] { return run_depmod(*d); });

    auto o = std::make_shared<ModprobeOpts>();
    auto* mp = app.add_subcommand("modprobe",
                                  "Load a module by name or by a device's modalias, with its dependencies and the options of "
                                  "modprobe.d (/etc/udrv/modprobe.d or $UDRV_MODPROBE_D); into udrvd when it runs");
    mp->add_option("-d,--dir", o->dirs, "Module directory with an index (default: this installation's)");
    mp->add_option("-C,--config", o->config_dir, "modprobe.d directory (default: $UDRV_MODPROBE_D or /etc/udrv/modprobe.d)");
    mp->add_flag("-n,--dry-run", o->dry_run, "Print what would be loaded, with which parameters, and load nothing");
    mp->add_flag("--hold", o->hold, "Load into this process and stay until interrupted (without: into udrvd when it runs)");
    mp->add_option("module", o->args, "NAME or MODALIAS, then param=value...")->required();
    c.add(mp, [o] { return run_modprobe(*o); });
}

}  // namespace udrv::tools
