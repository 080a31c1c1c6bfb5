// A driver host: the process udrvd starts to run drivers in (Fuchsia's driver host, MINIX's
// reincarnated driver). It loads the modules its devices need with the ordinary loader, binds its PCI
// devices (only those: the bus's allow list) or registers its platform devices, publishes their class
// devices, and then serves udrvd over its control channel (channel.hpp) until told to stop or until
// udrvd goes away. A host may die at any instruction; udrvd notices and starts a new one, which resets
// the hardware as every probe does.
//
// Work on devices runs here too, on threads of its own: a block benchmark or a frame generator
// started through udrvd ("call" messages), so that a device keeps one owner process.
#pragma once

#include <filesystem>
#include <vector>

#include "channel.hpp"

namespace udrv::daemon {

/// Runs a host on `channel` (its end of the socket pair udrvd made). Returns the process's exit status.
int run_host(Channel channel, std::vector<std::filesystem::path> module_dirs);

}  // namespace udrv::daemon
