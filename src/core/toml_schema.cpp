// Checking a parsed document (TOML or JSON) against what a file must hold, every error with its line.
#include "udrv/toml.hpp"

namespace udrv::toml {

std::string where(std::string_view source, Position p) { return fmt::format("{}:{}", source, p.line); }
std::string where(std::string_view source, const Value& v) { return where(source, v.position()); }

Result<void> only_keys(const Table& t, std::initializer_list<std::string_view> allowed, std::string_view source, std::string_view what) {
    for (const Entry& e : t.entries) {
        bool ok = false;
        for (auto a : allowed) ok = ok || e.key == a;
        if (!ok) {
            std::string list;
            for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
            return fail(EINVAL, "{}: unknown key '{}' in {} (allowed: {})", where(source, e.key_position), e.key, what, list);
        }
    }
    return {};
}

Result<std::string> get_string(const Value& t, std::string_view key, std::string_view source, std::string_view what, bool required) {
    const Value* n = t.get(key);
    if (!n) {
        if (required) return fail(EINVAL, "{}: {} has no '{}'", where(source, t), what, key);
        return std::string();
    }
    if (!n->as_string()) return fail(EINVAL, "{}: '{}' in {} must be a string", where(source, *n), key, what);
    return *n->as_string();
}

Result<std::uint64_t> get_u64(const Value& t, std::string_view key, std::string_view source, std::string_view what) {
    const Value* n = t.get(key);
    if (!n) return fail(EINVAL, "{}: {} has no '{}'", where(source, t), what, key);
    if (!n->as_integer() || *n->as_integer() < 0)
        return fail(EINVAL, "{}: '{}' in {} must be a non-negative integer", where(source, *n), key, what);
    return static_cast<std::uint64_t>(*n->as_integer());
}

Result<std::uint64_t> get_u64_or(const Value& t, std::string_view key, std::uint64_t fallback, std::string_view source,
                                 std::string_view what) {
    if (!t.get(key)) return fallback;
    return get_u64(t, key, source, what);
}

Result<bool> get_bool_or(const Value& t, std::string_view key, bool fallback, std::string_view source, std::string_view what) {
    const Value* n = t.get(key);
    if (!n) return fallback;
    if (!n->as_bool()) return fail(EINVAL, "{}: '{}' in {} must be true or false", where(source, *n), key, what);
    return *n->as_bool();
}

}  // namespace udrv::toml
