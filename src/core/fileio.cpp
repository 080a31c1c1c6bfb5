#include "udrv/fileio.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

namespace udrv {

Result<std::size_t> read_file(const std::filesystem::path& file, std::span<std::byte> out) {
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail_errno("{}: cannot open", file.string());
    std::size_t done = 0;
    while (done < out.size()) {
        ssize_t n = ::read(fd, out.data() + done, out.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            auto e = fail_errno("{}: read failed", file.string());
            ::close(fd);
            return e;
        }
        if (n == 0) break;
        done += static_cast<std::size_t>(n);
    }
    ::close(fd);
    return done;
}

Result<void> write_file(const std::filesystem::path& file, std::span<const std::byte> data) {
    std::filesystem::path tmp = file;
    tmp += ".udrv-tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fail_errno("{}: cannot create", tmp.string());
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            auto e = fail_errno("{}: write failed", tmp.string());
            ::close(fd);
            ::unlink(tmp.c_str());
            return e;
        }
        done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        auto e = fail_errno("{}: flushing failed", tmp.string());
        ::unlink(tmp.c_str());
        return e;
    }
    if (std::rename(tmp.c_str(), file.c_str()) != 0) {
        auto e = fail_errno("{}: cannot replace with {}", file.string(), tmp.string());
        ::unlink(tmp.c_str());
        return e;
    }
    return {};
}

}  // namespace udrv
