// Packet captures in the classic pcap format, written by libpcap (Debian's libpcap0.8): the files
// tcpdump, tshark and Wireshark read, with libpcap's own header and record layout.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "udrv/result.hpp"

namespace udrv::pcap {

/// An Ethernet (DLT_EN10MB) capture file, microsecond timestamps. Closed (and flushed) on destruction.
class Writer {
public:
    /// Creates (or truncates) `path`. Frames longer than `snaplen` are stored cut to it, with their
    /// real length recorded.
    static Result<Writer> create(const std::string& path, std::uint32_t snaplen = 65535);
    Writer(Writer&&) noexcept;
    Writer& operator=(Writer&&) noexcept;
    ~Writer();

    /// Appends one frame captured at `when`.
    Result<void> write(std::span<const std::byte> frame, std::chrono::system_clock::time_point when = std::chrono::system_clock::now());
    /// Writes what is buffered to the file; EIO with the reason if that fails.
    Result<void> flush();
    const std::string& path() const noexcept { return path_; }

private:
    struct Handles;
    Writer(std::unique_ptr<Handles> h, std::string path, std::uint32_t snaplen);
    std::unique_ptr<Handles> h_;
    std::string path_;
    std::uint32_t snaplen_ = 0;
};

}  // namespace udrv::pcap
