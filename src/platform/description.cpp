// Platform device descriptions in TOML:
//
//     [[device]]
//     name = "ramdisk0"
//     compatible = ["udrv,ramdisk"]          # or one string
//     memory = [{ name = "storage", start = 0x1000_0000, size = 0x10_0000 }]
//     irq = [{ name = "done", number = 5 }]
//     [device.properties]
//     block-size = 512
//
// Every error names the file and line it comes from.
#include <cctype>

#include "udrv/fileio.hpp"
#include "udrv/platform.hpp"
#include "udrv/toml.hpp"

namespace udrv::platform {
namespace {

using toml::each_table;
using toml::get_string;
using toml::get_u64;
using toml::only_keys;
using toml::Table;
using toml::Value;
using toml::where;

// Descriptions are small; anything larger is not one (a device file, a log): refused before parsing.
constexpr std::size_t kMaxDescriptionBytes = 1u << 20;

Result<DeviceDesc> parse_device(const Value& t, std::string_view source) {
    UDRV_TRY(only_keys(*t.as_table(), {"name", "compatible", "memory", "irq", "properties"}, source, "[[device]]"));
    DeviceDesc d;
    d.source = where(source, t);
    d.name = UDRV_TRY(get_string(t, "name", source, "[[device]]", true));
    const std::string what = fmt::format("device '{}'", d.name);

    const Value* compat = t.get("compatible");
    if (!compat) return fail(EINVAL, "{}: {} has no 'compatible' (e.g. compatible = \"udrv,ramdisk\")", d.source, what);
    if (compat->as_string()) d.compatible.push_back(*compat->as_string());
    else if (const toml::Array* a = compat->as_array()) {
        for (const Value& e : *a) {
            if (!e.as_string()) return fail(EINVAL, "{}: 'compatible' entries of {} must be strings", where(source, e), what);
            d.compatible.push_back(*e.as_string());
        }
    } else return fail(EINVAL, "{}: 'compatible' of {} must be a string or an array of strings", where(source, *compat), what);

    UDRV_TRY(each_table(t, "memory", source, [&](const Value& m) -> Result<void> {
        UDRV_TRY(only_keys(*m.as_table(), {"name", "start", "size"}, source, "a memory resource"));
        MemResource r;
        r.name = UDRV_TRY(get_string(m, "name", source, "a memory resource", false));
        r.start = UDRV_TRY(get_u64(m, "start", source, "a memory resource"));
        r.size = UDRV_TRY(get_u64(m, "size", source, "a memory resource"));
        d.memory.push_back(std::move(r));
        return {};
    }));
    UDRV_TRY(each_table(t, "irq", source, [&](const Value& m) -> Result<void> {
        UDRV_TRY(only_keys(*m.as_table(), {"name", "number"}, source, "an irq resource"));
        IrqResource r;
        r.name = UDRV_TRY(get_string(m, "name", source, "an irq resource", false));
        std::uint64_t n = UDRV_TRY(get_u64(m, "number", source, "an irq resource"));
        if (n > 0xffffffff) return fail(EINVAL, "{}: irq number {} is out of range", where(source, m), n);
        r.number = static_cast<std::uint32_t>(n);
        d.irqs.push_back(std::move(r));
        return {};
    }));
    if (const Value* p = t.get("properties")) {
        const Table* pt = p->as_table();
        if (!pt) return fail(EINVAL, "{}: 'properties' of {} must be a table", where(source, *p), what);
        for (const toml::Entry& e : pt->entries) {
            const Value& v = *e.value;
            Property prop;
            if (v.as_bool()) prop = *v.as_bool();
            else if (v.as_integer()) prop = *v.as_integer();
            else if (v.as_float()) prop = *v.as_float();
            else if (v.as_string()) prop = *v.as_string();
            else return fail(EINVAL, "{}: property '{}' of {} must be a boolean, integer, float or string", where(source, e.key_position),
                             e.key, what);
            d.properties.emplace(e.key, std::move(prop));
        }
    }
    UDRV_TRY_CTX(validate(d), "{}", d.source);
    return d;
}

}  // namespace

Result<void> validate(const DeviceDesc& d) {
    if (d.name.empty()) return fail(EINVAL, "device has an empty name");
    for (char c : d.name)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
            return fail(EINVAL, "device name '{}' may only contain letters, digits, '_', '-' and '.'", d.name);
    if (d.compatible.empty()) return fail(EINVAL, "device '{}' has no compatible string", d.name);
    for (auto& c : d.compatible)
        if (c.empty()) return fail(EINVAL, "device '{}' has an empty compatible string", d.name);
    for (std::size_t i = 0; i < d.memory.size(); ++i) {
        const MemResource& m = d.memory[i];
        if (m.size == 0) return fail(EINVAL, "device '{}': memory resource {} ('{}') has size 0", d.name, i, m.name);
        if (m.start + m.size < m.start)
            return fail(EINVAL, "device '{}': memory resource {} ('{}') wraps past the end of the address space", d.name, i, m.name);
        for (std::size_t j = 0; j < i; ++j) {
            const MemResource& o = d.memory[j];
            if (!m.name.empty() && m.name == o.name) return fail(EINVAL, "device '{}': two memory resources named '{}'", d.name, m.name);
            if (m.start < o.end() && o.start < m.end())
                return fail(EBUSY, "device '{}': memory resources '{}' [{:#x}-{:#x}] and '{}' [{:#x}-{:#x}] overlap", d.name, o.name,
                            o.start, o.end() - 1, m.name, m.start, m.end() - 1);
        }
    }
    for (std::size_t i = 0; i < d.irqs.size(); ++i)
        for (std::size_t j = 0; j < i; ++j)
            if (!d.irqs[i].name.empty() && d.irqs[i].name == d.irqs[j].name)
                return fail(EINVAL, "device '{}': two irq resources named '{}'", d.name, d.irqs[i].name);
    return {};
}

Result<void> check_conflicts(const DeviceDesc& first, const DeviceDesc& d) {
    auto at = [](const DeviceDesc& x) { return x.source.empty() ? std::string("code") : x.source; };
    if (first.name == d.name) return fail(EEXIST, "{}: duplicate device name '{}' (first at {})", at(d), d.name, at(first));
    for (const MemResource& a : first.memory)
        for (const MemResource& b : d.memory)
            if (a.start < b.end() && b.start < a.end())
                return fail(EBUSY, "{}: memory '{}' [{:#x}-{:#x}] of '{}' overlaps '{}' [{:#x}-{:#x}] of '{}' ({})", at(d), b.name,
                            b.start, b.end() - 1, d.name, a.name, a.start, a.end() - 1, first.name, at(first));
    return {};
}

Result<std::vector<DeviceDesc>> parse_description(std::string_view text, std::string_view source) {
    const Value root = UDRV_TRY(toml::parse(text, source));
    UDRV_TRY(only_keys(*root.as_table(), {"device"}, source, "the top level"));
    std::vector<DeviceDesc> out;
    const Value* devs = root.get("device");
    if (!devs) return fail(EINVAL, "{}: no [[device]] tables: nothing to register", source);
    const toml::Array* arr = devs->as_array();
    if (!arr) return fail(EINVAL, "{}: 'device' must be an array of tables ([[device]])", where(source, *devs));
    for (const Value& n : *arr) {
        if (!n.as_table()) return fail(EINVAL, "{}: each 'device' entry must be a table", where(source, n));
        DeviceDesc d = UDRV_TRY(parse_device(n, source));
        for (const DeviceDesc& o : out) UDRV_TRY(check_conflicts(o, d));
        out.push_back(std::move(d));
    }
    return out;
}

Result<std::vector<DeviceDesc>> load_description(const std::filesystem::path& file) {
    const std::string text = UDRV_TRY(read_text_file(file, kMaxDescriptionBytes, "description"));
    return parse_description(text, file.string());
}

}  // namespace udrv::platform
