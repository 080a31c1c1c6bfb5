#include "config.hpp"

#include <sched.h>

#include <algorithm>
#include <cctype>

#include "udrv/fileio.hpp"
#include "udrv/nvmf.hpp"
#include "udrv/pci.hpp"
#include "udrv/toml.hpp"

namespace udrv::daemon {
namespace {

using toml::Value;

constexpr std::size_t kMaxConfigBytes = 1u << 20;

// Saved configurations name only what differs from the defaults.
bool nvmf_defaults(const DaemonConfig& c) {
    return c.nvmf_poll_us == nvmf::kDefaultPollUs && c.nvmf_device_interrupts == nvmf::kDefaultDeviceInterrupts;
}

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
    UDRV_TRY(toml::only_keys(*root.as_table(), {"daemon", "module", "device", "platform", "export", "nvmf_subsystem", "nvmf"}, source, "the top level"));
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
        // One UDRV_TRY per statement: a return from inside an initializer list skips the destructors of
        // the elements already built (the fuzzer found the leak).
        std::string name = UDRV_TRY(toml::get_string(m, "name", source, "[[module]]", true));
        std::vector<std::string> params = UDRV_TRY(module_params(m, source));
        ModuleConfig mc{std::move(name), std::move(params)};
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
    auto strings = [&](const Value& t, const char* key, const char* where) -> Result<std::vector<std::string>> {
        std::vector<std::string> out;
        const Value* v = t.get(key);
        if (!v) return out;
        const toml::Array* a = v->as_array();
        if (!a) return fail(EINVAL, "{}: {} in {} is an array of strings", toml::where(source, *v), key, where);
        for (const Value& e : *a) {
            if (!e.as_string()) return fail(EINVAL, "{}: {} in {} is an array of strings", toml::where(source, e), key, where);
            out.push_back(*e.as_string());
        }
        return out;
    };
    if (const Value* n = root.get("nvmf")) {
        if (!n->as_table()) return fail(EINVAL, "{}: 'nvmf' must be a table ([nvmf])", toml::where(source, *n));
        UDRV_TRY(toml::only_keys(*n->as_table(), {"discovery", "cpus", "poll_us", "device_interrupts"}, source, "[nvmf]"));
        c.nvmf_discovery = UDRV_TRY(strings(*n, "discovery", "[nvmf]"));
        for (const auto& a : c.nvmf_discovery) UDRV_TRY_CTX(nvmf::parse_address(a, 8009), "{}: [nvmf] discovery", toml::where(source, *n->get("discovery")));
        if (const Value* v = n->get("cpus")) {
            const toml::Array* a = v->as_array();
            if (!a) return fail(EINVAL, "{}: cpus in [nvmf] is an array of CPU numbers", toml::where(source, *v));
            for (const Value& e : *a) {
                const std::int64_t* cpu = e.as_integer();
                if (!cpu || *cpu < 0 || *cpu >= CPU_SETSIZE) return fail(EINVAL, "{}: cpus in [nvmf]: CPU numbers from 0 to {}", toml::where(source, e), CPU_SETSIZE - 1);
                if (std::find(c.nvmf_cpus.begin(), c.nvmf_cpus.end(), *cpu) != c.nvmf_cpus.end())
                    return fail(EINVAL, "{}: cpus in [nvmf]: CPU {} is listed twice", toml::where(source, e), *cpu);
                c.nvmf_cpus.push_back(static_cast<int>(*cpu));
            }
            if (c.nvmf_cpus.size() > nvmf::kMaxWorkers) return fail(EINVAL, "{}: cpus in [nvmf]: at most {}", toml::where(source, *v), nvmf::kMaxWorkers);
        }
        c.nvmf_poll_us = UDRV_TRY(bounded(*n, "poll_us", c.nvmf_poll_us, 0, nvmf::kMaxPollUs, source));
        c.nvmf_device_interrupts = UDRV_TRY(toml::get_bool_or(*n, "device_interrupts", c.nvmf_device_interrupts, source, "[nvmf]"));
    }
    UDRV_TRY(toml::each_table(root, "nvmf_subsystem", source, [&](const Value& x) -> Result<void> {
        constexpr const char* w = "[[nvmf_subsystem]]";
        UDRV_TRY(toml::only_keys(*x.as_table(), {"nqn", "serial", "model", "hosts", "namespaces", "listen"}, source, w));
        NvmfSubsystemConfig sc;
        sc.nqn = UDRV_TRY(toml::get_string(x, "nqn", source, w, true));
        UDRV_TRY_CTX(nvmf::check_nqn(sc.nqn), "{}", toml::where(source, *x.get("nqn")));
        if (auto v = UDRV_TRY(toml::get_string(x, "serial", source, w, false)); !v.empty()) sc.serial = v;
        if (auto v = UDRV_TRY(toml::get_string(x, "model", source, w, false)); !v.empty()) sc.model = v;
        sc.hosts = UDRV_TRY(strings(x, "hosts", w));
        for (const auto& h : sc.hosts) UDRV_TRY_CTX(nvmf::check_nqn(h), "{}: hosts", toml::where(source, *x.get("hosts")));
        sc.listen = UDRV_TRY(strings(x, "listen", w));
        for (const auto& a : sc.listen) UDRV_TRY_CTX(nvmf::parse_address(a), "{}: listen", toml::where(source, *x.get("listen")));
        if (const Value* ns = x.get("namespaces")) {
            const toml::Array* a = ns->as_array();
            if (!a) return fail(EINVAL, "{}: namespaces is an array of device names or {{ device = ..., nsid = ... }}", toml::where(source, *ns));
            std::uint32_t next = 1;
            for (const Value& e : *a) {
                NvmfNamespaceConfig nc;
                if (e.as_string()) nc = {next, *e.as_string()};
                else if (e.as_table()) {
                    UDRV_TRY(toml::only_keys(*e.as_table(), {"device", "nsid"}, source, "a namespace"));
                    nc.device = UDRV_TRY(toml::get_string(e, "device", source, "a namespace", true));
                    const std::uint64_t id = UDRV_TRY(toml::get_u64_or(e, "nsid", next, source, "a namespace"));
                    if (id == 0 || id > nvmf::kMaxNamespaces) return fail(EINVAL, "{}: nsid {} (1-{})", toml::where(source, e), id, nvmf::kMaxNamespaces);
                    nc.nsid = static_cast<std::uint32_t>(id);
                } else {
                    return fail(EINVAL, "{}: a namespace is a device name or {{ device = ..., nsid = ... }}", toml::where(source, e));
                }
                for (const auto& o : sc.namespaces)
                    if (o.nsid == nc.nsid) return fail(EEXIST, "{}: namespace {} twice in {}", toml::where(source, e), nc.nsid, sc.nqn);
                next = nc.nsid + 1;
                sc.namespaces.push_back(std::move(nc));
            }
        }
        for (const auto& o : c.nvmf_subsystems)
            if (o.nqn == sc.nqn) return fail(EEXIST, "{}: subsystem {} twice", toml::where(source, x), sc.nqn);
        c.nvmf_subsystems.push_back(std::move(sc));
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
    auto list = [](const std::vector<std::string>& v) {
        std::string o = "[";
        for (std::size_t i = 0; i < v.size(); ++i) o += (i ? ", " : "") + toml_string(v[i]);
        return o + "]";
    };
    if (!c.nvmf_discovery.empty() || !c.nvmf_cpus.empty() || !nvmf_defaults(c)) {
        out += "\n[nvmf]\n";
        if (!c.nvmf_discovery.empty()) out += fmt::format("discovery = {}\n", list(c.nvmf_discovery));
        if (!c.nvmf_cpus.empty()) out += fmt::format("cpus = [{}]\n", fmt::join(c.nvmf_cpus, ", "));
        if (c.nvmf_poll_us != nvmf::kDefaultPollUs) out += fmt::format("poll_us = {}\n", c.nvmf_poll_us);
        if (c.nvmf_device_interrupts != nvmf::kDefaultDeviceInterrupts)
            out += fmt::format("device_interrupts = {}\n", c.nvmf_device_interrupts);
    }
    for (const auto& x : c.nvmf_subsystems) {
        out += fmt::format("\n[[nvmf_subsystem]]\nnqn = {}\nserial = {}\nmodel = {}\n", toml_string(x.nqn), toml_string(x.serial), toml_string(x.model));
        if (!x.hosts.empty()) out += fmt::format("hosts = {}\n", list(x.hosts));
        out += "namespaces = [";
        for (std::size_t i = 0; i < x.namespaces.size(); ++i)
            out += fmt::format("{}{{ device = {}, nsid = {} }}", i ? ", " : "", toml_string(x.namespaces[i].device), x.namespaces[i].nsid);
        out += fmt::format("]\nlisten = {}\n", list(x.listen));
    }
    return out;
}

nlohmann::json nvmf_subsystem_json(const NvmfSubsystemConfig& s) {
    nlohmann::json ns = nlohmann::json::array();
    for (const auto& n : s.namespaces) ns.push_back({{"nsid", n.nsid}, {"device", n.device}});
    return {{"nqn", s.nqn}, {"serial", s.serial}, {"model", s.model}, {"hosts", s.hosts}, {"namespaces", ns}, {"listen", s.listen}};
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
    if (!c.nvmf_discovery.empty() || !c.nvmf_cpus.empty() || !nvmf_defaults(c)) {
        j["nvmf"] = nlohmann::ordered_json::object();
        if (!c.nvmf_discovery.empty()) j["nvmf"]["discovery"] = c.nvmf_discovery;
        if (!c.nvmf_cpus.empty()) j["nvmf"]["cpus"] = c.nvmf_cpus;
        if (c.nvmf_poll_us != nvmf::kDefaultPollUs) j["nvmf"]["poll_us"] = c.nvmf_poll_us;
        if (c.nvmf_device_interrupts != nvmf::kDefaultDeviceInterrupts) j["nvmf"]["device_interrupts"] = c.nvmf_device_interrupts;
    }
    j["nvmf_subsystem"] = nlohmann::ordered_json::array();
    for (const auto& x : c.nvmf_subsystems) j["nvmf_subsystem"].push_back(nlohmann::ordered_json::parse(nvmf_subsystem_json(x).dump()));
    return j;
}

Result<void> save_config(const DaemonConfig& c, const std::filesystem::path& file) {
    std::string text = file.extension() == ".json" ? config_to_json(c).dump(2) + "\n" : config_to_toml(c);
    return write_file(file, std::as_bytes(std::span(text)));
}

}  // namespace udrv::daemon
