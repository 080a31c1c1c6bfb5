#include "cli_usage.hpp"

#include <fmt/format.h>

namespace udrv::tools {
namespace {

std::string command_path(const CLI::App* app) {
    std::string path;
    for (const CLI::App* a = app; a; a = a->get_parent()) path = a->get_name() + (path.empty() ? "" : " " + path);
    return path;
}

std::string subcommand_names(const CLI::App* app) {
    std::string names;
    for (const CLI::App* s : app->get_subcommands([](const CLI::App*) { return true; }))
        names += (names.empty() ? "" : ", ") + s->get_name();
    return names;
}

const CLI::App* find_subcommand(const CLI::App* app, const std::string& word) {
    for (const CLI::App* s : app->get_subcommands([](const CLI::App*) { return true; }))
        if (s->check_name(word)) return s;
    return nullptr;
}

}  // namespace

std::string usage_message(const CLI::App& root, const CLI::ParseError& e, std::span<const std::string> args) {
    // Walk the words as CLI11 would: into subcommands by name, over options and their values, to the
    // first word that is neither while the command needs a subcommand.
    const CLI::App* app = &root;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--") break;
        if (a.size() > 1 && a[0] == '-') {
            if (a.find('=') != std::string::npos) continue;
            const CLI::Option* o = app->get_option_no_throw(a.rfind("--", 0) == 0 ? a : a.substr(0, 2));
            if (o && o->get_type_size() > 0 && a.size() == (a.rfind("--", 0) == 0 ? a.size() : 2)) ++i;  // its value
            continue;
        }
        if (const CLI::App* sub = find_subcommand(app, a)) {
            app = sub;
            continue;
        }
        if (app->get_require_subcommand_min() > 0)
            return fmt::format("'{}' is not a command of '{}' (commands: {}); see '{} --help'", a, command_path(app), subcommand_names(app),
                               command_path(app));
        break;
    }
    if (dynamic_cast<const CLI::RequiredError*>(&e) && app->get_require_subcommand_min() > 0 &&
        std::string_view(e.what()).find("subcommand") != std::string_view::npos)
        return fmt::format("'{}' needs a command (commands: {}); see '{} --help'", command_path(app), subcommand_names(app), command_path(app));
    return fmt::format("{}; see '{} --help'", e.what(), command_path(app));
}

}  // namespace udrv::tools
