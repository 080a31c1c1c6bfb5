// How `udrv` commands reach udrvd when it runs: insmod/rmmod/lsmod, bind/unbind, block and net list,
// block perf, stats and top act on the running system through it (and say so on stderr); with no
// udrvd, or with --standalone, they work in their own process as before.
#pragma once

#include <optional>
#include <string_view>

#include "udrv/rpc.hpp"

namespace udrv::tools {

/// --standalone: never talk to udrvd.
void set_standalone(bool on) noexcept;

/// A connection to udrvd if one answers on its socket (udrv/rpc.hpp: $UDRV_SOCKET or the default), else
/// nullopt. The first time it connects it says so on stderr, naming the socket.
std::optional<rpc::Client> daemon();

/// For commands that only make sense with udrvd: its connection, or an error saying it is not running.
Result<rpc::Client> require_daemon(std::string_view command);

}  // namespace udrv::tools
