// udrv modinfo: a module file's metadata, read without loading it.
#include <memory>

#include "command.hpp"
#include "output.hpp"
#include "udrv/modinfo.hpp"

namespace udrv::tools {
namespace {

struct ModinfoOpts {
    std::vector<std::string> files;
    bool json = false;
    std::string field;
};

nlohmann::json modinfo_json(const std::string& file, const Modinfo& m) {
    nlohmann::json j = {{"filename", file}};
    for (auto& [k, v] : m.fields) {
        if (k == "author" || k == "alias" || k == "parm" || k == "parmtype" || k == "parmdefault") j[k].push_back(v);
        else j[k] = v;
    }
    j["depends"] = m.depends();
    nlohmann::json params = nlohmann::json::array();
    for (auto& p : m.params())
        params.push_back({{"name", p.name}, {"type", p.type}, {"default", p.default_value}, {"description", p.description}});
    j["params"] = params;
    return j;
}

void print_modinfo(const std::string& file, const Modinfo& m, const std::string& field) {
    if (!field.empty()) {
        for (auto v : m.get_all(field)) print(std::string(v) + "\n");
        return;
    }
    print(fmt::format("{:<16}{}\n", "filename:", file));
    for (auto& [k, v] : m.fields)
        if (k != "parm" && k != "parmtype" && k != "parmdefault") print(fmt::format("{:<16}{}\n", k + ":", v));
    for (auto& p : m.params())
        print(fmt::format("{:<16}{}:{} ({}, default {})\n", "parm:", p.name, p.description, p.type,
                          p.default_value.empty() ? "\"\"" : p.default_value));
}

// Every file is shown that can be; a file that cannot is reported and makes the exit status 1.
Result<int> run_modinfo(const ModinfoOpts& o) {
    int rc = 0;
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& f : o.files) {
        auto infos = read_modinfo(f);
        if (!infos) {
            rc = report(infos.error());
            continue;
        }
        for (const Modinfo& m : *infos) {
            if (o.json) arr.push_back(modinfo_json(f, m));
            else print_modinfo(f, m, o.field);
        }
    }
    if (o.json) print_json(arr);
    return rc;
}

}  // namespace

void add_modinfo(CLI::App& app, Commands& c) {
    auto o = std::make_shared<ModinfoOpts>();
    auto* cmd = app.add_subcommand("modinfo", "Show a module file's metadata without loading it");
    cmd->add_option("files", o->files, "Module files (.so)")->required();
    cmd->add_flag("--json", o->json, "Emit JSON");
    cmd->add_option("-F,--field", o->field, "Print only this field's values");
    c.add(cmd, [o] { return run_modinfo(*o); });
}

}  // namespace udrv::tools
