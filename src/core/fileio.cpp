#include "udrv/fileio.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

namespace udrv {

void Fd::reset(int fd) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

Result<std::string> read_text_file(const std::filesystem::path& file, std::size_t max_bytes, std::string_view what) {
    const std::string as = what.empty() ? std::string() : " " + std::string(what);
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below anyway.
    Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!fd) return fail_errno("{}: cannot open{}", file.string(), as);
    struct stat st {};
    if (fstat(fd.get(), &st) != 0) return fail_errno("{}: cannot stat{}", file.string(), as);
    if (!S_ISREG(st.st_mode))
        return fail(EINVAL, "{}: not a regular file ({}): refusing to read it{}", file.string(),
                    S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISCHR(st.st_mode) ? "a character device"
                    : S_ISBLK(st.st_mode) ? "a block device" : S_ISSOCK(st.st_mode) ? "a socket" : "not a file",
                    what.empty() ? std::string() : " as" + as);
    std::string out;
    // sysfs reports 4096 bytes for every attribute and procfs 0: the size is a hint, the reads decide.
    out.resize(std::min<std::size_t>(st.st_size > 0 ? static_cast<std::size_t>(st.st_size) + 1 : 4096, max_bytes + 1));
    std::size_t done = 0;
    for (;;) {
        if (done == out.size()) {
            if (out.size() > max_bytes) return fail(EFBIG, "{}: larger than {} bytes: too large for{}", file.string(), max_bytes, what.empty() ? " what udrv expects there" : as);
            out.resize(std::min(out.size() * 2, max_bytes + 1));
        }
        ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("{}: reading{} failed", file.string(), as);
        if (n == 0) break;
        done += static_cast<std::size_t>(n);
    }
    if (done > max_bytes) return fail(EFBIG, "{}: larger than {} bytes: too large for{}", file.string(), max_bytes, what.empty() ? " what udrv expects there" : as);
    out.resize(done);
    return out;
}

Result<std::size_t> read_file(const std::filesystem::path& file, std::span<std::byte> out) {
    Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail_errno("{}: cannot open", file.string());
    std::size_t done = 0;
    while (done < out.size()) {
        ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("{}: read failed", file.string());
        if (n == 0) break;
        done += static_cast<std::size_t>(n);
    }
    return done;
}

Result<void> write_file(const std::filesystem::path& file, std::span<const std::byte> data) {
    std::filesystem::path tmp = file;
    tmp += ".udrv-tmp";
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) return fail_errno("{}: cannot create", tmp.string());
    auto give_up = [&](std::unexpected<Error> e) {
        fd.reset();
        ::unlink(tmp.c_str());
        return e;
    };
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return give_up(fail_errno("{}: write failed", tmp.string()));
        done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd.get()) != 0 || ::close(fd.release()) != 0) return give_up(fail_errno("{}: flushing failed", tmp.string()));
    if (std::rename(tmp.c_str(), file.c_str()) != 0) return give_up(fail_errno("{}: cannot replace with {}", file.string(), tmp.string()));
    return {};
}

}  // namespace udrv
