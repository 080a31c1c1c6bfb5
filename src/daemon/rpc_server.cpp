#include "rpc_server.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "udrv/log.hpp"

namespace udrv::daemon {

using nlohmann::json;

bool is_privileged(pid_t pid, uid_t uid, gid_t gid, std::optional<gid_t> group) {
    if (uid == 0) return true;
    if (!group) return false;
    if (gid == *group) return true;
    // The process's supplementary groups as the kernel holds them.
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);) {
        if (!line.starts_with("Groups:")) continue;
        std::istringstream in(line.substr(7));
        for (unsigned long g; in >> g;)
            if (g == *group) return true;
        return false;
    }
    // No /proc entry (the client has gone, or another PID namespace): the group database.
    if (passwd* pw = ::getpwuid(uid)) {
        int n = 64;
        std::vector<gid_t> groups(static_cast<std::size_t>(n));
        if (::getgrouplist(pw->pw_name, gid, groups.data(), &n) >= 0)
            for (int i = 0; i < n; ++i)
                if (groups[static_cast<std::size_t>(i)] == *group) return true;
    }
    return false;
}

// ---- responders ----

struct Responder::State {
    std::function<void(json)> deliver;  // where the response object goes; empty for notifications
    json id;
    bool done = false;
};

void Responder::result(json r) const {
    if (!state_ || state_->done) return;
    state_->done = true;
    if (state_->deliver) state_->deliver({{"jsonrpc", "2.0"}, {"id", state_->id}, {"result", std::move(r)}});
}

void Responder::error(int code, std::string_view message) const {
    if (!state_ || state_->done) return;
    state_->done = true;
    if (state_->deliver) state_->deliver({{"jsonrpc", "2.0"}, {"id", state_->id}, {"error", rpc::error_object(code, message)}});
}

void Responder::error(const Error& e) const { error(-e.code(), e.to_string()); }

// ---- connections ----

struct RpcServer::Conn {
    Fd fd;
    Peer peer;
    rpc::MessageReader reader;
    std::string out;
    bool writing = false;  // EPOLLOUT armed
    bool closing = false;  // close once out is written
};

RpcServer::~RpcServer() { close(); }

Result<std::unique_ptr<RpcServer>> RpcServer::listen(Poller& poller, const std::filesystem::path& path, std::optional<gid_t> group) {
    std::error_code ec;
    if (path.has_parent_path()) {
        std::filesystem::create_directories(path.parent_path(), ec);
        if (ec) return fail(ec.value(), "cannot create {}: {}", path.parent_path().string(), ec.message());
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string p = path.string();
    if (p.size() >= sizeof(addr.sun_path)) return fail(ENAMETOOLONG, "socket path {} is too long (at most {} bytes)", p, sizeof(addr.sun_path) - 1);
    std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
    const auto* sa = static_cast<const sockaddr*>(static_cast<const void*>(&addr));
    // A socket file left by a udrvd that is gone is replaced; one that answers belongs to a running udrvd.
    if (std::filesystem::exists(path, ec)) {
        Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (probe && ::connect(probe.get(), sa, sizeof addr) == 0)
            return fail(EADDRINUSE, "another udrvd is running (it answers on {}): stop it first", p);
        std::filesystem::remove(path, ec);
    }
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return fail_errno("socket");
    if (::bind(fd.get(), sa, sizeof addr) != 0) return fail_errno("cannot listen on {}", p);
    ::chmod(p.c_str(), 0666);
    if (::listen(fd.get(), 64) != 0) return fail_errno("listen on {}", p);
    std::unique_ptr<RpcServer> s(new RpcServer(poller, std::move(fd), path, group));
    RpcServer* raw = s.get();
    UDRV_TRY(poller.add(raw->listen_fd_.get(), EPOLLIN, [raw](std::uint32_t) { raw->accept_all(); }));
    return s;
}

void RpcServer::add(std::string name, Access access, Method m) { methods_[std::move(name)] = Entry{access, std::move(m)}; }

std::vector<std::string> RpcServer::method_names() const {
    std::vector<std::string> out;
    for (const auto& [n, e] : methods_) out.push_back(n);
    return out;
}

void RpcServer::close() {
    if (!listen_fd_) return;
    poller_.remove(listen_fd_.get());
    listen_fd_.reset();
    std::error_code ec;
    std::filesystem::remove(path_, ec);
}

void RpcServer::accept_all() {
    for (;;) {
        Fd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd) return;  // EAGAIN: all taken
        ucred cred{};
        socklen_t len = sizeof cred;
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) continue;
        auto c = std::make_shared<Conn>();
        c->peer = Peer{cred.pid, cred.uid, cred.gid, is_privileged(cred.pid, cred.uid, cred.gid, group_)};
        c->fd = std::move(fd);
        const int raw = c->fd.get();
        std::weak_ptr<Conn> weak = c;
        if (!poller_.add(raw, EPOLLIN | EPOLLRDHUP, [this, weak](std::uint32_t ev) {
                if (auto conn = weak.lock()) on_conn(conn, ev);
            }))
            continue;
        conns_[raw] = std::move(c);
    }
}

void RpcServer::drop(const std::shared_ptr<Conn>& c) {
    poller_.remove(c->fd.get());
    conns_.erase(c->fd.get());
    c->fd.reset();
}

namespace {
// Writes what can be written now; the rest waits for EPOLLOUT.
bool flush(int fd, std::string& out) {
    while (!out.empty()) {
        ssize_t n = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN;
        out.erase(0, static_cast<std::size_t>(n));
    }
    return true;
}
}  // namespace

void RpcServer::on_conn(const std::shared_ptr<Conn>& c, std::uint32_t events) {
    if (events & EPOLLOUT) {
        if (!flush(c->fd.get(), c->out)) return drop(c);
        if (c->out.empty()) {
            if (c->closing) return drop(c);
            c->writing = false;
            (void)poller_.modify(c->fd.get(), EPOLLIN | EPOLLRDHUP);
        }
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP | EPOLLERR))) return;
    char buf[65536];
    for (;;) {
        ssize_t n = ::recv(c->fd.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n <= 0) return drop(c);  // the client has gone; answers still pending go nowhere
        c->reader.feed({buf, static_cast<std::size_t>(n)});
        for (;;) {
            auto msg = c->reader.next();
            if (!msg) {
                // Framing cannot recover: answer with a parse error and close.
                c->out += json{{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", rpc::error_object(rpc::parse_error, msg.error().message())}}.dump() + "\n";
                c->closing = true;
                if (!flush(c->fd.get(), c->out) || c->out.empty()) return drop(c);
                c->writing = true;
                (void)poller_.modify(c->fd.get(), EPOLLOUT);
                return;
            }
            if (!*msg) break;
            dispatch(c, **msg);
            if (!c->fd) return;
        }
    }
}

json RpcServer::dispatch_one(const std::shared_ptr<Conn>& c, const json& j, Responder& r, bool& deferred) {
    deferred = false;
    auto req = rpc::parse_request(j);
    if (!req) return req.error();
    r.state_->id = req->id;
    if (!req->has_id) r.state_->deliver = nullptr;  // a notification: no answer, even an error
    auto it = methods_.find(req->method);
    if (it == methods_.end()) {
        r.error(rpc::method_not_found, fmt::format("no method '{}' (rpc_get_methods lists them)", req->method));
        return nullptr;
    }
    if (it->second.access == Access::change && !c->peer.privileged) {
        r.error(-EPERM, fmt::format("{} changes the system: it needs root{} (you are uid {}) (EPERM)", req->method,
                                    group_ ? " or membership in udrvd's group" : "", c->peer.uid));
        return nullptr;
    }
    deferred = true;
    it->second.fn(*req, c->peer, r);
    return nullptr;
}

void RpcServer::dispatch(const std::shared_ptr<Conn>& c, const std::string& text) {
    std::weak_ptr<Conn> weak = c;
    auto send = [this, weak](const json& response) {
        auto conn = weak.lock();
        if (!conn || !conn->fd) return;
        conn->out += response.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
        if (conn->out.size() > 64 * rpc::kMaxMessage) return drop(conn);  // a client that does not read
        if (!flush(conn->fd.get(), conn->out)) return drop(conn);
        if (!conn->out.empty() && !conn->writing) {
            conn->writing = true;
            (void)poller_.modify(conn->fd.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP);
        }
    };
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) {
        send({{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", rpc::error_object(rpc::parse_error, "the message is not valid JSON")}});
        return;
    }
    if (!j.is_array()) {
        Responder r;
        r.state_ = std::make_shared<Responder::State>();
        r.state_->deliver = send;
        bool deferred = false;
        json invalid = dispatch_one(c, j, r, deferred);
        if (!invalid.is_null()) send({{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", invalid}});
        return;
    }
    if (j.empty()) {
        send({{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", rpc::error_object(rpc::invalid_request, "an empty batch")}});
        return;
    }
    // A batch: the answers go out together once every call has answered (notifications have none).
    struct Batch {
        std::vector<json> answers;
        std::size_t pending = 0;
    };
    auto batch = std::make_shared<Batch>();
    batch->pending = j.size();
    auto settle = [batch, send] {
        if (--batch->pending) return;
        json arr = json::array();
        for (auto& a : batch->answers)
            if (!a.is_null()) arr.push_back(std::move(a));
        if (!arr.empty()) send(arr);
    };
    batch->answers.resize(j.size());
    for (std::size_t i = 0; i < j.size(); ++i) {
        Responder r;
        r.state_ = std::make_shared<Responder::State>();
        r.state_->deliver = [batch, i, settle](json a) {
            batch->answers[i] = std::move(a);
            settle();
        };
        bool deferred = false;
        json invalid = dispatch_one(c, j[i], r, deferred);
        if (!invalid.is_null()) {
            batch->answers[i] = {{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", invalid}};
            settle();
        } else if (!r.state_->deliver) {
            settle();  // a notification: counted, nothing to send
        }
    }
}

}  // namespace udrv::daemon
