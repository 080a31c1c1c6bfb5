#include "channel.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cstring>
#include <memory>

namespace udrv::daemon {

Result<std::pair<Channel, Channel>> Channel::pair() {
    int sv[2];
    // Non-blocking on udrvd's side only: its event loop must never wait on a host.
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return fail_errno("socketpair");
    Channel a{Fd(sv[0])}, b{Fd(sv[1])};
    return std::make_pair(std::move(a), std::move(b));
}

Result<void> Channel::send(const nlohmann::json& msg, int fd) const {
    const std::string text = msg.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (text.size() > kMaxPacket) return fail(EMSGSIZE, "control message of {} bytes (at most {})", text.size(), kMaxPacket);
    for (;;) {
        iovec iov{const_cast<char*>(text.data()), text.size()};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        if (fd >= 0) {
            mh.msg_control = control;
            mh.msg_controllen = sizeof control;
            cmsghdr* c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
        }
        ssize_t n = ::sendmsg(fd_.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
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

Result<std::optional<nlohmann::json>> Channel::receive(Fd* passed) const {
    auto buf = std::make_unique<char[]>(kMaxPacket);
    ssize_t n;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr mh{};
    do {
        iovec iov{buf.get(), kMaxPacket};
        mh = {};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control;
        mh.msg_controllen = sizeof control;
        n = ::recvmsg(fd_.get(), &mh, MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    for (cmsghdr* c = n > 0 ? CMSG_FIRSTHDR(&mh) : nullptr; c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int))) continue;
        int got = -1;
        std::memcpy(&got, CMSG_DATA(c), sizeof got);
        Fd owned(got);
        if (passed) *passed = std::move(owned);
    }
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
