// Files: an owned file descriptor, bounded reads of files a user or a device controls, and whole-file
// byte I/O for drivers that load or save contents (images, firmware blobs).
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "udrv/result.hpp"

namespace udrv {

/// An owned file descriptor, closed on destruction (or by reset()).
class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { reset(); }

    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    /// Gives up ownership without closing.
    int release() noexcept { return std::exchange(fd_, -1); }
    /// Closes the current descriptor (if any) and takes `fd`.
    void reset(int fd = -1) noexcept;

private:
    int fd_ = -1;
};

/// Reads a whole text or binary file of at most `max_bytes`: EFBIG if it holds more, EINVAL if it is
/// not a regular file (a FIFO, a device such as /dev/zero, a directory), so that no input can make a
/// reader wait forever or fill memory. sysfs and procfs attributes are regular files and qualify.
/// `what` names the file in errors ("disk.toml: cannot open description: ...").
Result<std::string> read_text_file(const std::filesystem::path& file, std::size_t max_bytes, std::string_view what = {});

/// Reads up to out.size() bytes from the start of `file`; returns how many were read.
Result<std::size_t> read_file(const std::filesystem::path& file, std::span<std::byte> out);
/// Replaces `file` with `data`: written to a temporary beside it, then renamed, so a crash never
/// leaves a half-written file.
Result<void> write_file(const std::filesystem::path& file, std::span<const std::byte> data);

}  // namespace udrv
