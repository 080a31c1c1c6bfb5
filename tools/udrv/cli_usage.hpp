// The tool's command-line errors, the same way for every subcommand: what was wrong (the word that
// names no command, the option not known), which command it was given to, and where its help is.
// Exit status: 0 success, 1 the operation failed, 2 the command line was wrong (as grep and most
// tools do; CLI11's own codes, 104-109, are not used).
#pragma once

#include <CLI/CLI.hpp>

#include <span>
#include <string>

namespace udrv::tools {

inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

/// The message for a parse error of `args` (argv without the program name) against `root`: names a
/// word that is no command of the (sub)command it was given to, with that command's list, else
/// CLI11's message; either way with the help to read.
std::string usage_message(const CLI::App& root, const CLI::ParseError& e, std::span<const std::string> args);

}  // namespace udrv::tools
