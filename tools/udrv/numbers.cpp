#include "numbers.hpp"

#include <charconv>
#include <cmath>

#include <fmt/format.h>

namespace udrv::tools {

Result<std::uint64_t> parse_count(std::string_view s, bool sizes, std::uint64_t max) {
    const std::string_view text = s;
    auto bad = [&] {
        return fail(EINVAL, "'{}' is not a {}", text,
                    sizes ? "size (a whole number of bytes, e.g. 4096, 0x1000, 4k, 1M)" : "whole number (e.g. 42 or 0x2a)");
    };
    if (s.empty() || s[0] == '-' || s[0] == '+') return bad();
    int base = 10;
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s.remove_prefix(2);
    }
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
    if (ec == std::errc::result_out_of_range) return fail(ERANGE, "'{}' is too large (at most {})", text, max);
    if (ec != std::errc() || p == s.data()) return bad();
    std::string_view suffix(p, static_cast<std::size_t>(s.data() + s.size() - p));
    unsigned shift = 0;
    if (!suffix.empty()) {
        if (!sizes || base == 16) return bad();
        static constexpr std::string_view kUnits = "kmgt";
        const auto u = kUnits.find(static_cast<char>(suffix[0] | 0x20));
        if (u == std::string_view::npos) return bad();
        shift = 10 * static_cast<unsigned>(u + 1);
        suffix.remove_prefix(1);
        if (!(suffix.empty() || suffix == "B" || suffix == "iB" || suffix == "b" || suffix == "ib")) return bad();
        if (v > (UINT64_MAX >> shift)) return fail(ERANGE, "'{}' is too large (at most {})", text, max);
        v <<= shift;
    }
    if (v > max) return fail(ERANGE, "'{}' is too large (at most {})", text, max);
    return v;
}

Result<double> parse_seconds(std::string_view s) {
    const std::string_view text = s;
    auto bad = [&] { return fail(EINVAL, "'{}' is not a duration (e.g. 10, 10s, 500ms, 2m)", text); };
    double scale = 1;
    if (s.ends_with("ms")) scale = 1e-3, s.remove_suffix(2);
    else if (s.ends_with("us")) scale = 1e-6, s.remove_suffix(2);
    else if (s.ends_with("s")) s.remove_suffix(1);
    else if (s.ends_with("m")) scale = 60, s.remove_suffix(1);
    else if (s.ends_with("h")) scale = 3600, s.remove_suffix(1);
    if (s.empty() || s[0] == '-' || s[0] == '+') return bad();
    double v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v)) return bad();
    return v * scale;
}

namespace {

CLI::Validator count_like(bool sizes, std::string desc) {
    return CLI::Validator(
        [sizes](std::string& in) -> std::string {
            auto v = parse_count(in, sizes);
            if (!v) return v.error().message();
            in = std::to_string(*v);
            return {};
        },
        std::move(desc));
}

}  // namespace

CLI::Validator count_option() { return count_like(false, "NUMBER"); }
CLI::Validator size_option() { return count_like(true, "SIZE"); }

CLI::Validator seconds_option() {
    return CLI::Validator(
        [](std::string& in) -> std::string {
            auto v = parse_seconds(in);
            if (!v) return v.error().message();
            in = fmt::format("{}", *v);
            return {};
        },
        "DURATION");
}

}  // namespace udrv::tools
