// Numbers on the command line, parsed strictly and as people write them: counts in decimal or 0x hex,
// sizes with binary suffixes (4k, 1M, 2G), durations with units (10s, 500ms, 2m). "-1" is an error,
// never 2^64-1; so are junk after the number and values past what the option holds.
#pragma once

#include <cstdint>
#include <string_view>

#include <CLI/CLI.hpp>

#include "udrv/result.hpp"

namespace udrv::tools {

/// A non-negative integer: decimal or 0x hex; with `sizes`, an optional binary suffix k, m, g, t (any
/// case, optionally followed by "B" or "iB": 4k = 4KiB = 4096). EINVAL for anything else, ERANGE above `max`.
Result<std::uint64_t> parse_count(std::string_view s, bool sizes = false, std::uint64_t max = UINT64_MAX);
/// A duration in seconds: "10", "2.5", "10s", "500ms", "1.5m", "1h". Negative or not finite: EINVAL.
Result<double> parse_seconds(std::string_view s);

/// CLI11 transforms that check an option's text with the parsers above and hand CLI11 the plain
/// decimal value: `->transform(count_option())`, `->transform(size_option())`, `->transform(seconds_option())`.
CLI::Validator count_option();
CLI::Validator size_option();
CLI::Validator seconds_option();

}  // namespace udrv::tools
