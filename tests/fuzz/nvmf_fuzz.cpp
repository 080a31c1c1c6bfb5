// NVMe/TCP input as a remote host could send it. The first byte picks what is fed and how: udrvd's
// Handshake (ICReq, then the first capsule, in two pieces), or a whole connection of a running target
// (the bytes after an ICReq, with or without header and data digests agreed) over a socket pair, with a
// RAM namespace behind it. Whatever arrives, the target answers or ends the connection; it never reads
// or writes outside a buffer, and the connection always closes once the input ends.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <span>

#include "../unit/mem_block.hpp"
#include "udrv/log.hpp"
#include "udrv/nvmf.hpp"

using namespace udrv;

namespace {
nvmf::Target& target() {
    static std::unique_ptr<nvmf::Target> t = [] {
        nvmf::TargetOptions o;
        o.threads = 1;
        auto x = *nvmf::Target::create(o);
        nvmf::SubsystemSpec s;
        s.nqn = "nqn.2026-12.io.udrv:fuzz";
        s.namespaces.push_back({1, "mem0", std::make_shared<testing::MemDevice>(512, 256)});
        (void)x->set_subsystem(s);
        return x;
    }();
    return *t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    static const bool quiet = [] {
        set_log_level(LogLevel::err);
        return true;
    }();
    (void)quiet;
    const std::uint8_t how = data[0];
    const auto in = std::as_bytes(std::span(data + 1, size - 1));
    if ((how & 0x80) == 0) {
        nvmf::Handshake hs;
        auto step = hs.feed(in.first(in.size() / 2));
        if (step == nvmf::Handshake::Step::more) step = hs.feed(in.subspan(in.size() / 2));
        (void)hs.take_reply();
        (void)hs.take_pending();
        return 0;
    }
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    target().adopt(Fd(sv[1]), "fuzz", how & 1, how & 2, 131072, std::vector<std::byte>(in.begin(), in.end()));
    ::shutdown(sv[0], SHUT_WR);
    // Drain what the target sends until it closes (it must: the input has ended). libFuzzer's -timeout
    // alarm interrupts poll (never restarted after a signal): EINTR is not a hang, only the deadline is.
    char buf[65536];
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) __builtin_trap();  // a connection that neither answers nor closes
        pollfd p{sv[0], POLLIN, 0};
        const int r = ::poll(&p, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;  // timed out: the deadline check says so
        const ssize_t n = ::read(sv[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
    }
    ::close(sv[0]);
    return 0;
}
