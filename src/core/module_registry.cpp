// Modules announce themselves from a static constructor (UDRV_MODULE's ModuleRegistration). Entries that
// appear while the loader is inside dlopen() belong to that file; the rest are linked into the program.
#include <algorithm>
#include <charconv>
#include <vector>

#include "module_registry.hpp"

namespace udrv {
namespace detail {
namespace {
struct Registry {
    std::vector<RegisteredModule> entries;
    int loading_depth = 0;
};
Registry& registry() {
    static Registry r;
    return r;
}
}  // namespace

void register_module(const ModuleEntry* e) { registry().entries.push_back({e, registry().loading_depth == 0}); }

void unregister_module(const ModuleEntry* e) noexcept {
    std::erase_if(registry().entries, [e](const RegisteredModule& r) { return r.entry == e; });
}

std::vector<RegisteredModule> registered_modules() { return registry().entries; }

DlopenScope::DlopenScope() { ++registry().loading_depth; }
DlopenScope::~DlopenScope() { --registry().loading_depth; }

}  // namespace detail

Result<ParamType> parse_param_type(std::string_view name) {
    for (ParamType t : {ParamType::boolean, ParamType::i32, ParamType::u32, ParamType::i64, ParamType::u64, ParamType::string})
        if (param_type_name(t) == name) return t;
    return fail(EINVAL, "unknown parameter type '{}'", name);
}

Result<ParamValue> parse_param_value(ParamType type, std::string_view text) {
    auto bad = [&](std::string_view why) {
        return fail(EINVAL, "expects {}, got '{}'{}", param_type_name(type), text, why);
    };
    switch (type) {
        case ParamType::boolean:
            for (auto t : {"1", "y", "Y", "yes", "true", "on"})
                if (text == t) return ParamValue(true);
            for (auto f : {"0", "n", "N", "no", "false", "off"})
                if (text == f) return ParamValue(false);
            return bad(" (use y/n, 1/0, true/false)");
        case ParamType::string:
            if (text.size() > 4096) return bad(" (longer than 4096 bytes)");
            return ParamValue(std::string(text));
        default: break;
    }
    // Integers: decimal, or hex with 0x; the whole text must be consumed.
    bool neg = !text.empty() && text.front() == '-';
    std::string_view digits = neg ? text.substr(1) : text;
    int base = 10;
    if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
        base = 16;
        digits.remove_prefix(2);
    }
    std::uint64_t mag = 0;
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), mag, base);
    if (digits.empty() || ec == std::errc::invalid_argument || p != digits.data() + digits.size()) return bad("");
    if (ec == std::errc::result_out_of_range) return bad(" (out of range)");
    const bool is_signed = type == ParamType::i32 || type == ParamType::i64;
    if (neg && !is_signed) return bad(" (must not be negative)");
    if (is_signed) {
        const std::uint64_t limit = type == ParamType::i32 ? (1ull << 31) : (1ull << 63);
        if (mag > (neg ? limit : limit - 1)) return bad(" (out of range)");
        return ParamValue(neg ? static_cast<std::int64_t>(0 - mag) : static_cast<std::int64_t>(mag));
    }
    if (type == ParamType::u32 && mag > 0xffffffffull) return bad(" (out of range)");
    return ParamValue(mag);
}

}  // namespace udrv
