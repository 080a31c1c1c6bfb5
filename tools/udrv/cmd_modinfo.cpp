// udrv modinfo: a module file's metadata, read without loading it.
#include <charconv>
#include <memory>
#include <variant>

#include "command.hpp"
#include "output.hpp"
#include "udrv/modinfo.hpp"
#include "udrv/modsig.hpp"
#include "udrv/module.hpp"

namespace udrv::tools {
namespace {

bool parse_u64(std::string_view s, std::uint64_t& out) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && end == s.data() + s.size();
}

struct ModinfoOpts {
    std::vector<std::string> files;
    bool json = false;
    std::string field;
};

// A parameter's default as the JSON value of its type (8, true, "world"); the text when it does not
// parse (the metadata is the module's, not to be trusted).
nlohmann::json typed_default(const Modinfo::Param& p) {
    auto type = parse_param_type(p.type);
    if (!type) return p.default_value;
    auto v = parse_param_value(*type, p.default_value);
    if (!v) return p.default_value;
    return std::visit([](const auto& x) { return nlohmann::json(x); }, *v);
}

// JSON with data apart from display text: parameters once (in "params", typed), numbers as numbers.
nlohmann::json modinfo_json(const std::string& file, const Modinfo& m) {
    nlohmann::json j = {{"filename", file}};
    for (auto& [k, v] : m.fields) {
        if (k == "parm" || k == "parmtype" || k == "parmdefault") continue;  // in "params"
        if (k == "author" || k == "alias") j[k].push_back(v);
        else if (std::uint64_t n = 0; k == "abi" && parse_u64(v, n)) j[k] = n;
        else j[k] = v;
    }
    j["depends"] = m.depends();
    nlohmann::json params = nlohmann::json::array();
    for (auto& p : m.params())
        params.push_back({{"name", p.name}, {"type", p.type}, {"default", typed_default(p)}, {"description", p.description}});
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
        auto image = read_module_file(f);
        if (!image) {
            rc = report(image.error());
            continue;
        }
        auto infos = parse_modinfo_elf(*image, f);
        if (!infos) {
            rc = report(infos.error());
            continue;
        }
        // An appended signature is described as the kernel's modinfo does (not verified: udrv insmod
        // and udrvd verify under their policy).
        std::vector<std::pair<std::string, std::string>> sig;
        auto parts = modsig::split(std::as_bytes(std::span(*image)), f);
        auto described = parts && *parts ? modsig::describe((*parts)->signature, f) : Result<modsig::Info>(modsig::Info{});
        if (!parts) rc = report(parts.error());
        else if (!described) rc = report(described.error());
        else if (*parts)
            sig = {{"sig_id", described->sig_id}, {"signer", described->signer}, {"sig_key", described->sig_key},
                   {"sig_hashalgo", described->sig_hashalgo}};
        for (Modinfo& m : *infos) {
            m.fields.insert(m.fields.end(), sig.begin(), sig.end());
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
