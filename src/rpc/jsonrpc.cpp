#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "udrv/rpc.hpp"

namespace udrv::rpc {

std::filesystem::path socket_path() {
    if (const char* env = std::getenv("UDRV_SOCKET"); env && *env) return env;
    return std::string(kDefaultSocket);
}

Result<std::optional<std::size_t>> find_message_end(std::string_view buf) {
    std::size_t i = 0;
    while (i < buf.size() && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r')) ++i;
    if (i == buf.size()) return std::optional<std::size_t>{};
    if (buf[i] != '{' && buf[i] != '[')
        return fail(EPROTO, "a JSON-RPC message is an object or an array; this one starts with byte {:#04x}",
                    static_cast<unsigned char>(buf[i]));
    unsigned depth = 0;
    bool in_string = false, escaped = false;
    for (; i < buf.size(); ++i) {
        if (i >= kMaxMessage) return fail(EPROTO, "message longer than {} bytes", kMaxMessage);
        const char c = buf[i];
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > kMaxDepth) return fail(EPROTO, "message nests deeper than {} levels", kMaxDepth);
        } else if (c == '}' || c == ']') {
            // Mismatched brackets are nlohmann's to report; the count only finds where the value ends.
            if (--depth == 0) return std::optional<std::size_t>{i + 1};
        }
    }
    if (buf.size() >= kMaxMessage) return fail(EPROTO, "message longer than {} bytes", kMaxMessage);
    return std::optional<std::size_t>{};
}

Result<std::optional<std::string>> MessageReader::next() {
    auto end = UDRV_TRY(find_message_end(buf_));
    if (!end) return std::optional<std::string>{};
    std::string msg = buf_.substr(0, *end);
    buf_.erase(0, *end);
    return std::optional<std::string>{std::move(msg)};
}

bool MessageReader::empty() const noexcept { return buf_.find_first_not_of(" \t\r\n") == std::string::npos; }

nlohmann::json error_object(int code, std::string_view message) { return {{"code", code}, {"message", std::string(message)}}; }

nlohmann::json error_object(const Error& e) { return error_object(-e.code(), e.to_string()); }

std::expected<Request, nlohmann::json> parse_request(const nlohmann::json& j) {
    auto invalid = [](std::string_view why) { return std::unexpected(error_object(invalid_request, why)); };
    if (!j.is_object()) return invalid("a request is a JSON object");
    auto v = j.find("jsonrpc");
    if (v == j.end() || *v != "2.0") return invalid("\"jsonrpc\": \"2.0\" is missing");
    auto m = j.find("method");
    if (m == j.end() || !m->is_string()) return invalid("\"method\" must be a string");
    Request r;
    r.method = m->get<std::string>();
    if (auto p = j.find("params"); p != j.end()) {
        if (!p->is_object() && !p->is_array()) return invalid("\"params\" must be an object or an array");
        r.params = *p;
    }
    if (auto id = j.find("id"); id != j.end()) {
        if (!id->is_number() && !id->is_string() && !id->is_null()) return invalid("\"id\" must be a number, a string or null");
        r.id = *id;
        r.has_id = true;
    }
    return r;
}

Result<Client> Client::connect(const std::filesystem::path& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string p = path.string();
    if (p.size() >= sizeof(addr.sun_path)) return fail(ENAMETOOLONG, "socket path {} is too long", p);
    std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno("socket");
    if (::connect(fd.get(), static_cast<const sockaddr*>(static_cast<const void*>(&addr)), sizeof addr) != 0)
        return fail_errno("cannot connect to udrvd at {}", p);
    return Client(std::move(fd));
}

Result<nlohmann::json> Client::call_raw(std::string_view method, const nlohmann::json& params, std::chrono::milliseconds timeout) {
    nlohmann::json req = {{"jsonrpc", "2.0"}, {"method", std::string(method)}, {"id", next_id_++}};
    if (!params.is_null()) req["params"] = params;
    const std::string text = req.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    for (std::size_t off = 0; off < text.size();) {
        ssize_t n = ::send(fd_.get(), text.data() + off, text.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("sending to udrvd");
        off += static_cast<std::size_t>(n);
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto msg = UDRV_TRY_CTX(reader_.next(), "udrvd's reply");
        if (msg) {
            auto j = nlohmann::json::parse(*msg, nullptr, false);
            if (j.is_discarded() || !j.is_object()) return fail(EPROTO, "udrvd's reply is not a JSON object");
            if (j.value("id", nlohmann::json()) != req["id"]) continue;  // not ours (a notification)
            return j;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return fail(ETIMEDOUT, "udrvd did not answer {} within {} ms", method, timeout.count());
        pollfd p{fd_.get(), POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return fail_errno("waiting for udrvd");
        if (r == 0) continue;
        char buf[65536];
        ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("reading from udrvd");
        if (n == 0) return fail(ECONNRESET, "udrvd closed the connection before answering {}", method);
        reader_.feed({buf, static_cast<std::size_t>(n)});
    }
}

Result<nlohmann::json> Client::call(std::string_view method, const nlohmann::json& params, std::chrono::milliseconds timeout) {
    nlohmann::json j = UDRV_TRY(call_raw(method, params, timeout));
    if (auto e = j.find("error"); e != j.end()) {
        const int code = e->value("code", 0);
        std::string msg = e->value("message", std::string("udrvd sent an error without a message"));
        // Application errors carry -errno (and their text already names it: "... (ENODEV)").
        if (code < 0 && code > -4096) {
            const std::string suffix = fmt::format(" ({})", errno_name(-code));
            if (msg.ends_with(suffix)) msg.resize(msg.size() - suffix.size());
            return std::unexpected(Error(-code, std::move(msg)));
        }
        return std::unexpected(Error(EPROTO, fmt::format("{} (JSON-RPC error {})", msg, code)));
    }
    if (!j.contains("result")) return fail(EPROTO, "udrvd's reply to {} has neither result nor error", method);
    return j["result"];
}

}  // namespace udrv::rpc
