// Output helpers shared by the udrv subcommands.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "udrv/result.hpp"

namespace udrv::tools {

/// Writes `s` to stdout as is.
inline void print(std::string_view s) { std::fwrite(s.data(), 1, s.size(), stdout); }

/// Reports an error on stderr as "udrv: error: ... (ECODE)" and returns exit status 1.
inline int report(const Error& e) {
    std::fprintf(stderr, "udrv: error: %s\n", e.to_string().c_str());
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
