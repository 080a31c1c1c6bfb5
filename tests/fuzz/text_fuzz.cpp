// Text on its way to a terminal, and numbers from the command line.
#include <string_view>

#include "numbers.hpp"
#include "udrv/text.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view s(reinterpret_cast<const char*>(data), size);
    const std::string p = udrv::printable(s);
    // What printable() lets through is valid UTF-8 without control characters other than \n and \t.
    if (!udrv::valid_utf8(p)) __builtin_trap();
    for (unsigned char c : p)
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) __builtin_trap();
    (void)udrv::tools::parse_count(s, false);
    (void)udrv::tools::parse_count(s, true, 1u << 30);
    (void)udrv::tools::parse_seconds(s);
    return 0;
}
