// `udrv net ...`: list, respond (ARP + ICMP echo), pktgen.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace udrv::tools {
std::function<int()> add_net_commands(CLI::App& app);
}  // namespace udrv::tools
