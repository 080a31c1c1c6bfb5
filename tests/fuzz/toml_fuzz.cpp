// udrv's TOML parser on any bytes: a value or an error with a line and column, never undefined
// behaviour (the reason it replaced toml++; see include/udrv/toml.hpp). The tree is walked to the end.
#include <string_view>

#include "udrv/toml.hpp"

namespace {
std::size_t walk(const udrv::toml::Value& v, unsigned depth) {
    std::size_t n = 1;
    if (const auto* a = v.as_array())
        for (const auto& e : *a) n += walk(e, depth + 1);
    if (const auto* t = v.as_table())
        for (const auto& e : t->entries) n += e.key.size() + walk(*e.value, depth + 1);
    if (const auto* s = v.as_string()) n += s->size();
    (void)v.kind_name();
    return n;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto r = udrv::toml::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.toml");
    if (r) (void)walk(*r, 0);
    return 0;
}
