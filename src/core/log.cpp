#include "udrv/log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "udrv/text.hpp"

namespace udrv {
namespace {

LogLevel initial_level() {
    if (const char* env = std::getenv("UDRV_LOG_LEVEL"))
        if (auto l = parse_log_level(env)) return *l;
    return LogLevel::info;
}

// stderr is the journal when $JOURNAL_STREAM names its device and inode (systemd.exec(5)).
bool stderr_is_journal() {
    const char* env = std::getenv("JOURNAL_STREAM");
    struct stat st {};
    if (!env || fstat(STDERR_FILENO, &st) != 0) return false;
    unsigned long long dev = 0, ino = 0;
    return std::sscanf(env, "%llu:%llu", &dev, &ino) == 2 && dev == st.st_dev && ino == st.st_ino;
}

struct LogState {
    LogLevel level = initial_level();
    bool journal = stderr_is_journal();
    std::string tag;
    LogSink sink;
    std::mutex mu;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
};

LogState& state() {
    static LogState s;
    return s;
}

}  // namespace

void set_log_level(LogLevel level) noexcept { state().level = level; }
LogLevel log_level() noexcept { return state().level; }

std::optional<LogLevel> parse_log_level(std::string_view s) noexcept {
    if (s == "err" || s == "error" || s == "3") return LogLevel::err;
    if (s == "warn" || s == "warning" || s == "4") return LogLevel::warn;
    if (s == "notice" || s == "5") return LogLevel::notice;
    if (s == "info" || s == "6") return LogLevel::info;
    if (s == "debug" || s == "7") return LogLevel::debug;
    return std::nullopt;
}

void set_log_sink(LogSink sink) {
    std::lock_guard lock(state().mu);
    state().sink = std::move(sink);
}

void set_log_tag(std::string tag) {
    std::lock_guard lock(state().mu);
    state().tag = tag.empty() ? std::string() : std::move(tag) + ": ";
}

void log_message(LogLevel level, std::string_view msg) {
    auto& s = state();
    std::lock_guard lock(s.mu);
    if (s.sink) {
        s.sink(level, msg);
        return;
    }
    std::string line;
    if (s.journal) {
        line = fmt::format("<{}>{}{}\n", static_cast<int>(level), s.tag, printable(msg));
    } else {
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - s.start).count();
        // Seconds since the process started, marked "+" so that nobody reads them as dmesg's since-boot times.
        line = fmt::format("[+{:5}.{:06}] {}{}\n", us / 1000000, us % 1000000, s.tag, printable(msg));
    }
    std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace udrv
