// The control channel between udrvd and a driver host: a SOCK_SEQPACKET socket pair, one JSON object
// per packet (the kernel keeps packet boundaries, so no framing), each with a "type". Versioned: the
// host's first message is {"type": "hello", "version": kHostProtocol, "pid": N}, and udrvd refuses a
// host of another version. What udrvd knows of a host it learns here, so a host that dies at any
// instruction leaves udrvd consistent (its end of the socket reads end-of-file).
//
//   udrvd -> host: start {modules, pci, platform}, ping {seq}, call {seq, method, params},
//                  load {name, params}, unload {name}, stop,
//                  nvmf_connection {peer, hdgst, ddgst, max_h2c_data, pending} with the socket attached
//   host -> udrvd: hello, ready {devices, classdevs, modules}, failed {error}, pong {seq},
//                  reply {seq, result | error}, removed {address}, modules {loaded}
#pragma once

#include <optional>

#include <nlohmann/json.hpp>

#include "udrv/fileio.hpp"
#include "udrv/result.hpp"

namespace udrv::daemon {

inline constexpr int kHostProtocol = 1;
/// Largest message either side sends or accepts.
inline constexpr std::size_t kMaxPacket = 1 << 20;

class Channel {
public:
    Channel() = default;
    explicit Channel(Fd fd) : fd_(std::move(fd)) {}
    /// A connected pair: [0] for udrvd, [1] for the host (inherited across exec).
    static Result<std::pair<Channel, Channel>> pair();

    int fd() const noexcept { return fd_.get(); }
    explicit operator bool() const noexcept { return static_cast<bool>(fd_); }
    void close() noexcept { fd_.reset(); }
    Fd release() noexcept { return Fd(fd_.release()); }

    /// Sends one message; safe from several threads (each packet goes out whole). With `fd` >= 0 the
    /// descriptor travels with it (SCM_RIGHTS): the receiver gets its own copy.
    Result<void> send(const nlohmann::json& msg, int fd = -1) const;
    /// Receives one message without waiting: nullopt if none is there (EAGAIN); ECONNRESET at end of
    /// file (the other side is gone); EPROTO for a packet that is not a JSON object with a string type.
    /// A descriptor sent with the message lands in `*passed` (closed when `passed` is null).
    Result<std::optional<nlohmann::json>> receive(Fd* passed = nullptr) const;
    /// Waits up to `timeout_ms` for a message (-1: forever).
    Result<nlohmann::json> receive_wait(int timeout_ms) const;

private:
    Fd fd_;
};

}  // namespace udrv::daemon
