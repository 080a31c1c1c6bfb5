#include "config.hpp"

#include <cctype>

#include "udrv/fileio.hpp"
#include "udrv/pci.hpp"
#include "udrv/toml.hpp"

namespace udrv::daemon {
namespace {

using toml::Value;

constexpr std::size_t kMaxConfigBytes = 1u << 20;

Result<std::vector<std::string>> module_params(const Value& m, std::string_view source) {
    std::vector<std::string> out;
    const Value* p = m.get("params");
    if (!p) return out;
    if (const toml::Array* a = p->as_array()) {
        for (const Value& e : *a) {
            if (!e.as_string() || e.as_string()->find('=') == std::string::npos)
                return fail(EINVAL, "{}: module params given as an array are \"key=value\" strings", toml::where(source, e));
            out.push_back(*e.as_string());
        }
        return out;
    }
    const toml::Table* t = p->as_table();
    if (!t) return fail(EINVAL, "{}: module params are a table ({{ key = value }}) or an array of \"key=value\"", toml::where(source, *p));
    for (const toml::Entry& e : t->entries) {
        const Value& v = *e.value;
        if (v.as_string()) out.push_back(e.key + "=" + *v.as_string());
        else if (v.as_integer()) out.push_back(fmt::format("{}={}", e.key, *v.as_integer()));
        else if (v.as_bool()) out.push_back(e.key + (*v.as_bool() ? "=y" : "=n"));
        else return fail(EINVAL, "{}: module parameter '{}' must be a string, integer or boolean", toml::where(source, e.key_position), e.key);
    }
    return out;
}

Result<unsigned> bounded(const Value& t, std::string_view key, unsigned fallback, unsigned lo, unsigned hi, std::string_view source) {
    std::uint64_t v = UDRV_TRY(toml::get_u64_or(t, key, fallback, source, "[daemon]"));
    if (v < lo || v > hi) return fail(EINVAL, "{}: {} must be from {} to {} (it is {})", toml::where(source, *t.get(key)), key, lo, hi, v);
    return static_cast<unsigned>(v);
}

Result<DaemonConfig> from_document(const Value& root, std::string_view source) {
    UDRV_TRY(toml::only_keys(*root.as_table(), {"daemon", "module", "device", "platform", "export"}, source, "the top level"));
    DaemonConfig c;
    if (const Value* d = root.get("daemon")) {
        if (!d->as_table()) return fail(EINVAL, "{}: 'daemon' must be a table ([daemon])", toml::where(source, *d));
        UDRV_TRY(toml::only_keys(*d->as_table(), {"group", "watchdog_ms", "restart_limit", "restart_window_s"}, source, "[daemon]"));
        c.group = UDRV_TRY(toml::get_string(*d, "group", source, "[daemon]", false));
        c.watchdog_ms = UDRV_TRY(bounded(*d, "watchdog_ms", c.watchdog_ms, 500, 600000, source));
        c.restart_limit = UDRV_TRY(bounded(*d, "restart_limit", c.restart_limit, 0, 1000, source));
        c.restart_window_s = UDRV_TRY(bounded(*d, "restart_window_s", c.restart_window_s, 1, 86400, source));
    }
    UDRV_TRY(toml::each_table(root, "module", source, [&](const Value& m) -> Result<void> {
        UDRV_TRY(toml::only_keys(*m.as_table(), {"name", "params"}, source, "[[module]]"));
        ModuleConfig mc{UDRV_TRY(toml::get_string(m, "name", source, "[[module]]", true)), UDRV_TRY(module_params(m, source))};
        for (const auto& o : c.modules)
            if (o.name == mc.name) return fail(EEXIST, "{}: module {} is configured twice", toml::where(source, m), mc.name);
        c.modules.push_back(std::move(mc));
        return {};
    }));
    UDRV_TRY(toml::each_table(root, "device", source, [&](const Value& d) -> Result<void> {
        UDRV_TRY(toml::only_keys(*d.as_table(), {"address", "driver", "host", "on_stop"}, source, "[[device]]"));
        DeviceConfig dc;
        const std::string addr = UDRV_TRY(toml::get_string(d, "address", source, "[[device]]", true));
        auto a = pci::Address::parse(addr);
        if (!a) return fail(EINVAL, "{}: {}", toml::where(source, *d.get("address")), a.error().message());
        dc.address = a->to_string();
        dc.driver = UDRV_TRY(toml::get_string(d, "driver", source, "[[device]]", false));
        dc.host = UDRV_TRY(toml::get_string(d, "host", source, "[[device]]", false));
        if (!dc.host.empty() && !valid_host_name(dc.host))
            return fail(EINVAL, "{}: host name '{}' may only hold letters, digits, '-', '_' and '.' (at most 64)",
                        toml::where(source, *d.get("host")), dc.host);
        const std::string on_stop = UDRV_TRY(toml::get_string(d, "on_stop", source, "[[device]]", false));
        if (on_stop == "vfio") dc.return_to_kernel = false;
        else if (!on_stop.empty() && on_stop != "kernel")
            return fail(EINVAL, "{}: on_stop is \"kernel\" (give the device back to its kernel driver) or \"vfio\" (leave it on vfio-pci)",
                        toml::where(source, *d.get("on_stop")));
        for (const auto& o : c.devices)
            if (o.address == dc.address) return fail(EEXIST, "{}: device {} is configured twice", toml::where(source, d), dc.address);
        c.devices.push_back(std::move(dc));
        return {};
    }));
    UDRV_TRY(toml::each_table(root, "platform", source, [&](const Value& p) -> Result<void> {
        UDRV_TRY(toml::only_keys(*p.as_table(), {"description", "host"}, source, "[[platform]]"));
        PlatformConfig pc{UDRV_TRY(toml::get_string(p, "description", source, "[[platform]]", true)),
                          UDRV_TRY(toml::get_string(p, "host", source, "[[platform]]", false))};
        if (!pc.host.empty() && !valid_host_name(pc.host))
            return fail(EINVAL, "{}: host name '{}' may only hold letters, digits, '-', '_' and '.'", toml::where(source, p), pc.host);
        c.platforms.push_back(std::move(pc));
        return {};
    }));
    UDRV_TRY(toml::each_table(root, "export", source, [&](const Value& x) -> Result<void> {
        UDRV_TRY(toml::only_keys(*x.as_table(), {"type", "device", "queues", "depth"}, source, "[[export]]"));
        ExportConfig ec;
        ec.type = UDRV_TRY(toml::get_string(x, "type", source, "[[export]]", true));
        if (ec.type != "ublk") return fail(EINVAL, "{}: export type '{}' (udrvd exports \"ublk\")", toml::where(source, *x.get("type")), ec.type);
        ec.device = UDRV_TRY(toml::get_string(x, "device", source, "[[export]]", true));
        const std::uint64_t q = UDRV_TRY(toml::get_u64_or(x, "queues", 1, source, "[[export]]"));
        const std::uint64_t d = UDRV_TRY(toml::get_u64_or(x, "depth", 64, source, "[[export]]"));
        if (q < 1 || q > 64) return fail(EINVAL, "{}: queues must be from 1 to 64", toml::where(source, *x.get("queues")));
        if (d < 1 || d > 4096) return fail(EINVAL, "{}: depth must be from 1 to 4096", toml::where(source, *x.get("depth")));
        ec.queues = static_cast<unsigned>(q);
        ec.depth = static_cast<unsigned>(d);
        for (const auto& o : c.exports)
            if (o.device == ec.device) return fail(EEXIST, "{}: {} is exported twice", toml::where(source, x), ec.device);
        c.exports.push_back(std::move(ec));
        return {};
    }));
    return c;
}

std::string toml_string(std::string_view s) {
    std::string out = "\"";
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (ch == '"' || ch == '\\') out += {'\\', ch};
        else if (c < 0x20 || c == 0x7f) out += fmt::format("\\u{:04x}", c);
        else out += ch;
    }
    return out + "\"";
}

}  // namespace

bool valid_host_name(std::string_view s) {
    if (s.empty() || s.size() > 64) return false;
    for (char c : s)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
    return true;
}

Result<DaemonConfig> parse_config(std::string_view text, std::string_view source) {
    const auto first = text.find_first_not_of(" \t\r\n");
    const bool json = first != std::string_view::npos && text[first] == '{';
    const Value root = json ? UDRV_TRY(toml::parse_json(text, source)) : UDRV_TRY(toml::parse(text, source));
    return from_document(root, source);
}

Result<DaemonConfig> load_config(const std::filesystem::path& file) {
    const std::string text = UDRV_TRY(read_text_file(file, kMaxConfigBytes, "configuration"));
    return parse_config(text, file.string());
}

std::string config_to_toml(const DaemonConfig& c) {
    std::string out = "# udrvd configuration\n[daemon]\n";
    if (!c.group.empty()) out += fmt::format("group = {}\n", toml_string(c.group));
    out += fmt::format("watchdog_ms = {}\nrestart_limit = {}\nrestart_window_s = {}\n", c.watchdog_ms, c.restart_limit, c.restart_window_s);
    for (const auto& m : c.modules) {
        out += fmt::format("\n[[module]]\nname = {}\n", toml_string(m.name));
        if (!m.params.empty()) {
            out += "params = [";
            for (std::size_t i = 0; i < m.params.size(); ++i) out += (i ? ", " : "") + toml_string(m.params[i]);
            out += "]\n";
        }
    }
    for (const auto& d : c.devices) {
        out += fmt::format("\n[[device]]\naddress = {}\n", toml_string(d.address));
        if (!d.driver.empty()) out += fmt::format("driver = {}\n", toml_string(d.driver));
        if (!d.host.empty()) out += fmt::format("host = {}\n", toml_string(d.host));
        out += fmt::format("on_stop = \"{}\"\n", d.return_to_kernel ? "kernel" : "vfio");
    }
    for (const auto& p : c.platforms) {
        out += fmt::format("\n[[platform]]\ndescription = {}\n", toml_string(p.description));
        if (!p.host.empty()) out += fmt::format("host = {}\n", toml_string(p.host));
    }
    for (const auto& x : c.exports)
        out += fmt::format("\n[[export]]\ntype = {}\ndevice = {}\nqueues = {}\ndepth = {}\n", toml_string(x.type), toml_string(x.device),
                           x.queues, x.depth);
    return out;
}

nlohmann::ordered_json config_to_json(const DaemonConfig& c) {
    nlohmann::ordered_json j;
    j["daemon"] = {{"watchdog_ms", c.watchdog_ms}, {"restart_limit", c.restart_limit}, {"restart_window_s", c.restart_window_s}};
    if (!c.group.empty()) j["daemon"]["group"] = c.group;
    j["module"] = nlohmann::ordered_json::array();
    for (const auto& m : c.modules) j["module"].push_back({{"name", m.name}, {"params", m.params}});
    j["device"] = nlohmann::ordered_json::array();
    for (const auto& d : c.devices) {
        nlohmann::ordered_json e = {{"address", d.address}};
        if (!d.driver.empty()) e["driver"] = d.driver;
        if (!d.host.empty()) e["host"] = d.host;
        e["on_stop"] = d.return_to_kernel ? "kernel" : "vfio";
        j["device"].push_back(e);
    }
    j["platform"] = nlohmann::ordered_json::array();
    for (const auto& p : c.platforms) {
        nlohmann::ordered_json e = {{"description", p.description}};
        if (!p.host.empty()) e["host"] = p.host;
        j["platform"].push_back(e);
    }
    j["export"] = nlohmann::ordered_json::array();
    for (const auto& x : c.exports) j["export"].push_back({{"type", x.type}, {"device", x.device}, {"queues", x.queues}, {"depth", x.depth}});
    return j;
}

Result<void> save_config(const DaemonConfig& c, const std::filesystem::path& file) {
    std::string text = file.extension() == ".json" ? config_to_json(c).dump(2) + "\n" : config_to_toml(c);
    return write_file(file, std::as_bytes(std::span(text)));
}

}  // namespace udrv::daemon
