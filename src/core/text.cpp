#include "udrv/text.hpp"

#include <fmt/format.h>

namespace udrv {
namespace {

// Length of the well-formed UTF-8 sequence at s[i] and its code point, or 0 if there is none.
std::size_t utf8_at(std::string_view s, std::size_t i, std::uint32_t& cp) noexcept {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    if (c < 0x80) {
        cp = c;
        return 1;
    }
    if ((c & 0xe0) == 0xc0) n = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0) n = 3, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0) n = 4, cp = c & 0x07;
    else return 0;
    if (i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        if ((b & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (b & 0x3f);
    }
    static constexpr std::uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return n;
}

}  // namespace

std::string printable(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        std::uint32_t cp = 0;
        const std::size_t n = utf8_at(s, i, cp);
        const bool control = n == 0 || (cp < 0x20 && cp != '\n' && cp != '\t') || (cp >= 0x7f && cp <= 0x9f);
        if (!control) {
            out.append(s.substr(i, n));
            i += n;
            continue;
        }
        const std::size_t bad = n ? n : 1;  // a control character's bytes, or one byte of broken UTF-8
        for (std::size_t k = 0; k < bad; ++k) out += fmt::format("\\x{:02x}", static_cast<unsigned char>(s[i + k]));
        i += bad;
    }
    return out;
}

bool valid_utf8(std::string_view s) noexcept {
    for (std::size_t i = 0; i < s.size();) {
        std::uint32_t cp;
        const std::size_t n = utf8_at(s, i, cp);
        if (!n) return false;
        i += n;
    }
    return true;
}

}  // namespace udrv
