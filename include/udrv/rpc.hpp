// JSON-RPC 2.0 over a Unix stream socket, as SPDK's rpc.py speaks it: a request is one JSON value
// written to the socket with nothing around it (no length prefix, no newline needed), a response is
// one JSON object followed by a newline. udrvd serves it; `udrv` and scripts are clients.
//
// The framing is hand-written because the input is untrusted (any local user may connect): it only
// finds where the first complete JSON value in a buffer ends (strings, escapes and nesting tracked,
// bounded depth and size); nlohmann-json then parses that value. Fuzzed (tests/fuzz/rpc_fuzz.cpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "udrv/fileio.hpp"
#include "udrv/result.hpp"

namespace udrv::rpc {

/// Where udrvd listens unless told otherwise ($UDRV_SOCKET overrides it for clients).
inline constexpr std::string_view kDefaultSocket = "/run/udrv/udrvd.sock";
/// The socket path clients use: $UDRV_SOCKET, else kDefaultSocket.
std::filesystem::path socket_path();

/// Largest request or response accepted (a bigger one is a protocol error).
inline constexpr std::size_t kMaxMessage = 1 << 20;
/// Deepest nesting of arrays and objects accepted.
inline constexpr unsigned kMaxDepth = 64;

/// JSON-RPC 2.0's error codes; application errors are -errno, as SPDK's (-19 for ENODEV).
enum Code : int {
    parse_error = -32700,
    invalid_request = -32600,
    method_not_found = -32601,
    invalid_params = -32602,
    internal_error = -32603,
};

/// Where the first complete JSON value in `buf` ends (leading whitespace skipped): its length in bytes
/// from the start of `buf`, or nullopt when more bytes are needed. EPROTO when `buf` cannot start a
/// JSON-RPC message (the first non-blank byte is not '{' or '['), nests deeper than kMaxDepth, or a
/// complete value is not found within kMaxMessage bytes.
Result<std::optional<std::size_t>> find_message_end(std::string_view buf);

/// Collects bytes from a stream and hands out whole messages.
class MessageReader {
public:
    void feed(std::string_view bytes) { buf_.append(bytes); }
    /// The next complete message's text, nullopt if none is complete yet, or the framing error (after
    /// which the stream cannot be resynchronised: close it).
    Result<std::optional<std::string>> next();
    bool empty() const noexcept;

private:
    std::string buf_;
};

/// An error reply's object: {"code": code, "message": message}.
nlohmann::json error_object(int code, std::string_view message);
/// The error object for a Result's error: code -errno, the message with its errno name ("... (ENODEV)").
nlohmann::json error_object(const Error& e);

/// A checked request: what the server's methods are given.
struct Request {
    std::string method;
    nlohmann::json params;  ///< object, array, or null when absent
    nlohmann::json id;      ///< number, string or null; absent (notification) when !has_id
    bool has_id = false;
};
/// Checks one request object against JSON-RPC 2.0 ("jsonrpc": "2.0", a string method, params an object
/// or array if present, id a number, string or null if present). The error is the invalid-request
/// error object to send back.
std::expected<Request, nlohmann::json> parse_request(const nlohmann::json& j);

/// A connection to udrvd (or any JSON-RPC server on a Unix socket), one call at a time.
class Client {
public:
    /// Connects to `path`. ENOENT/ECONNREFUSED when nothing listens there (the daemon is not running).
    static Result<Client> connect(const std::filesystem::path& path = socket_path());
    /// Sends a request and waits up to `timeout` for its response. The result member on success; the
    /// server's error as an Error (code: -code if the server sent -errno, else EPROTO; its message).
    Result<nlohmann::json> call(std::string_view method, const nlohmann::json& params = nullptr,
                                std::chrono::milliseconds timeout = std::chrono::seconds(60));
    /// The whole response object of a call (for `udrv rpc`, which prints it as the server sent it).
    Result<nlohmann::json> call_raw(std::string_view method, const nlohmann::json& params, std::chrono::milliseconds timeout);

private:
    explicit Client(Fd fd) : fd_(std::move(fd)) {}
    Fd fd_;
    MessageReader reader_;
    std::uint64_t next_id_ = 1;
};

}  // namespace udrv::rpc
