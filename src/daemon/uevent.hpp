// The kernel's device events (NETLINK_KOBJECT_UEVENT), for hot-plug: a PCI device removed or added
// (`echo 1 > /sys/bus/pci/devices/BDF/remove`, `echo 1 > /sys/bus/pci/rescan`). The messages are
// parsed as untrusted bytes (fuzzed: tests/fuzz/uevent_fuzz.cpp).
#pragma once

#include <optional>
#include <span>
#include <string>

#include "udrv/fileio.hpp"
#include "udrv/result.hpp"

namespace udrv::daemon {

struct Uevent {
    std::string action;     ///< "add", "remove", "bind", "unbind", "change", ...
    std::string subsystem;  ///< "pci", ...
    std::string devpath;
    std::string pci_slot;   ///< PCI_SLOT_NAME for PCI devices ("0000:00:04.0"), else empty
    std::string driver;     ///< DRIVER, when the event has one
};

/// Parses one kernel uevent datagram ("ACTION@DEVPATH\0KEY=VALUE\0..."). nullopt for anything else
/// (udev's re-broadcasts, truncated or malformed messages).
std::optional<Uevent> parse_uevent(std::span<const char> msg);

/// A socket receiving the kernel's uevents; needs root (CAP_NET_ADMIN is not needed to listen to
/// group 1, but the socket lives in the initial network namespace).
Result<Fd> open_uevent_socket();
/// The next event on the socket, if one is waiting (non-blocking).
std::optional<Uevent> read_uevent(int fd);

}  // namespace udrv::daemon
