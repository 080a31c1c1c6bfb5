// `udrv nvme ...`: list, identify, read, write, perf.
#pragma once

#include <CLI/CLI.hpp>

namespace udrv::tools {
/// Adds the `nvme` subcommand tree to `app`; returns a function that runs whichever was chosen (or -1).
std::function<int()> add_nvme_commands(CLI::App& app);
}  // namespace udrv::tools
