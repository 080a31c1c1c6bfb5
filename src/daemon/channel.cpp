#include "channel.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <memory>

namespace udrv::daemon {

Result<std::pair<Channel, Channel>> Channel::pair() {
    int sv[2];
    // Non-blocking on udrvd's side only: its event loop must never wait on a host.
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return fail_errno("socketpair");
    Channel a{Fd(sv[0])}, b{Fd(sv[1])};
    return std::make_pair(std::move(a), std::move(b));
}

Result<void> Channel::send(const nlohmann::json& msg) const {
    const std::string text = msg.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (text.size() > kMaxPacket) return fail(EMSGSIZE, "control message of {} bytes (at most {})", text.size(), kMaxPacket);
    for (;;) {
        ssize_t n = ::send(fd_.get(), text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) return {};
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {  // the peer is slow to read: wait a little rather than drop a message
            pollfd p{fd_.get(), POLLOUT, 0};
            if (::poll(&p, 1, 1000) > 0) continue;
            return fail(ETIMEDOUT, "the control channel has been full for a second");
        }
        return fail_errno("sending a control message");
    }
}

Result<std::optional<nlohmann::json>> Channel::receive() const {
    auto buf = std::make_unique<char[]>(kMaxPacket);
    ssize_t n;
    do n = ::recv(fd_.get(), buf.get(), kMaxPacket, MSG_DONTWAIT | MSG_TRUNC);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) return std::optional<nlohmann::json>{};
    if (n < 0) return fail_errno("receiving a control message");
    if (n == 0) return fail(ECONNRESET, "the other side closed the control channel");
    if (static_cast<std::size_t>(n) > kMaxPacket) return fail(EPROTO, "control message of {} bytes (at most {})", n, kMaxPacket);
    auto j = nlohmann::json::parse(buf.get(), buf.get() + n, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("type") || !j["type"].is_string())
        return fail(EPROTO, "a control message that is not a JSON object with a \"type\"");
    return std::optional<nlohmann::json>{std::move(j)};
}

Result<nlohmann::json> Channel::receive_wait(int timeout_ms) const {
    for (;;) {
        if (auto m = UDRV_TRY(receive())) return std::move(*m);
        pollfd p{fd_.get(), POLLIN, 0};
        int r = ::poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return fail_errno("waiting for a control message");
        if (r == 0) return fail(ETIMEDOUT, "no control message within {} ms", timeout_ms);
    }
}

}  // namespace udrv::daemon
