#include "uevent.hpp"

#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string_view>

namespace udrv::daemon {

std::optional<Uevent> parse_uevent(std::span<const char> msg) {
    if (msg.empty() || msg.size() > 8192) return std::nullopt;
    std::string_view all(msg.data(), msg.size());
    // The header "ACTION@DEVPATH" ends at the first NUL; udev's "libudev" messages have no '@' there.
    const std::size_t first = all.find('\0');
    const std::string_view header = all.substr(0, first);
    const std::size_t at = header.find('@');
    if (at == std::string_view::npos || at == 0) return std::nullopt;
    Uevent e;
    if (first == std::string_view::npos) return std::nullopt;
    for (std::size_t pos = first + 1; pos < all.size();) {
        const std::size_t end = std::min(all.find('\0', pos), all.size());
        const std::string_view kv = all.substr(pos, end - pos);
        pos = end + 1;
        const std::size_t eq = kv.find('=');
        if (eq == std::string_view::npos) continue;
        const std::string_view k = kv.substr(0, eq), v = kv.substr(eq + 1);
        if (v.size() > 1024) return std::nullopt;
        if (k == "ACTION") e.action = v;
        else if (k == "SUBSYSTEM") e.subsystem = v;
        else if (k == "DEVPATH") e.devpath = v;
        else if (k == "PCI_SLOT_NAME") e.pci_slot = v;
        else if (k == "DRIVER") e.driver = v;
    }
    if (e.action.empty() || e.action != header.substr(0, at)) return std::nullopt;
    return e;
}

Result<Fd> open_uevent_socket() {
    Fd fd(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT));
    if (!fd) return fail_errno("netlink uevent socket");
    sockaddr_nl addr{};
    addr.nl_family = AF_NETLINK;
    addr.nl_groups = 1;  // the kernel's own events
    if (::bind(fd.get(), static_cast<const sockaddr*>(static_cast<const void*>(&addr)), sizeof addr) != 0)
        return fail_errno("binding the uevent socket");
    return fd;
}

std::optional<Uevent> read_uevent(int fd) {
    char buf[8192];
    for (;;) {
        sockaddr_nl from{};
        socklen_t len = sizeof from;
        ssize_t n = ::recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, static_cast<sockaddr*>(static_cast<void*>(&from)), &len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return std::nullopt;
        if (from.nl_pid != 0) continue;  // only the kernel's own messages, not another process's
        if (auto e = parse_uevent({buf, static_cast<std::size_t>(n)})) return e;
    }
}

}  // namespace udrv::daemon
