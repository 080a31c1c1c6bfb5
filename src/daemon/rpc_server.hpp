// udrvd's JSON-RPC 2.0 server on a Unix socket (udrv/rpc.hpp has the framing). Several clients at
// once; a method may answer later (a benchmark running in a driver host) without holding up the
// others. Every connection's peer is known by SO_PEERCRED: only root and members of the configured
// group may call methods that change state, others may read (or get a clear refusal).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "poller.hpp"
#include "udrv/rpc.hpp"

namespace udrv::daemon {

/// Who is on the other end of a connection.
struct Peer {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    bool privileged = false;  ///< root, or a member of the configured group
};

/// Is `uid` (process `pid`) root or a member of `group`? Membership from the process's own groups
/// (/proc/PID/status), else the group database.
bool is_privileged(pid_t pid, uid_t uid, gid_t gid, std::optional<gid_t> group);

/// Methods that change state need a privileged peer; reading is open to every local user.
enum class Access { read, change };

/// Completes one request, now or later (it may be copied into a callback). Answering twice, or for a
/// client that has gone, does nothing. A notification's responder sends nothing.
class Responder {
public:
    void result(nlohmann::json r) const;
    void error(const Error& e) const;
    void error(int code, std::string_view message) const;
    /// Result or error from a Result<json>.
    void send(const Result<nlohmann::json>& r) const { r ? result(*r) : error(r.error()); }

private:
    friend class RpcServer;
    struct State;
    std::shared_ptr<State> state_;
};

class RpcServer {
public:
    using Method = std::function<void(const rpc::Request&, const Peer&, Responder)>;

    /// Listens on `path` (its directory created 0755; the socket 0666: access is decided per method by
    /// the peer's credentials). A stale socket of a udrvd that is gone is replaced; a live one is EADDRINUSE.
    static Result<std::unique_ptr<RpcServer>> listen(Poller& poller, const std::filesystem::path& path, std::optional<gid_t> group);
    ~RpcServer();

    void add(std::string name, Access access, Method m);
    std::vector<std::string> method_names() const;
    /// Stops listening and removes the socket file (connections stay until they close).
    void close();

private:
    struct Conn;
    RpcServer(Poller& p, Fd fd, std::filesystem::path path, std::optional<gid_t> group)
        : poller_(p), listen_fd_(std::move(fd)), path_(std::move(path)), group_(group) {}
    void accept_all();
    void on_conn(const std::shared_ptr<Conn>& c, std::uint32_t events);
    void dispatch(const std::shared_ptr<Conn>& c, const std::string& text);
    nlohmann::json dispatch_one(const std::shared_ptr<Conn>& c, const nlohmann::json& req, Responder& r, bool& deferred);
    void drop(const std::shared_ptr<Conn>& c);

    struct Entry {
        Access access;
        Method fn;
    };
    Poller& poller_;
    Fd listen_fd_;
    std::filesystem::path path_;
    std::optional<gid_t> group_;
    std::map<std::string, Entry> methods_;
    std::map<int, std::shared_ptr<Conn>> conns_;
};

}  // namespace udrv::daemon
