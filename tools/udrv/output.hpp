// Output helpers shared by the udrv subcommands. Text passes through udrv::printable on its way out:
// names and strings come from modules, pci.ids, sysfs and devices, and their control bytes must not
// reach the terminal. Binary data (a disk's blocks on stdout) goes through write_raw.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "udrv/result.hpp"
#include "udrv/text.hpp"

namespace udrv::tools {

/// Writes text to stdout, control bytes escaped.
inline void print(std::string_view s) {
    const std::string t = printable(s);
    std::fwrite(t.data(), 1, t.size(), stdout);
}

/// Writes bytes to stdout as they are.
inline void write_raw(std::string_view s) { std::fwrite(s.data(), 1, s.size(), stdout); }

/// JSON on stdout. Strings that are not valid UTF-8 (a module's or pci.ids' bytes) are written with
/// U+FFFD in place of the bad bytes instead of aborting the tool.
template <typename Json = nlohmann::json>  // nlohmann::ordered_json keeps the order keys were added in
void print_json(const Json& j) {
    write_raw(j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n");
}

/// Reports an error on stderr as "udrv: error: ... (ECODE)" and returns exit status 1.
inline int report(const Error& e) {
    std::fprintf(stderr, "udrv: error: %s\n", printable(e.to_string()).c_str());
    return 1;
}

/// "1.5 MiB".
inline std::string human_bytes(double bytes) {
    static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
    return fmt::format("{:.1f} {}", bytes, units[u]);
}

}  // namespace udrv::tools
