// Kernel-style logging: pr_info("...") for the framework and modules, dev_info(dev, "...") with the
// device's prefix ("edu 0000:00:05.0: ..."), printed with a timestamp like dmesg.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace udrv {

class Device;

/// Log levels, most severe first (the kernel's KERN_ERR .. KERN_DEBUG).
enum class LogLevel { err = 3, warn = 4, notice = 5, info = 6, debug = 7 };

/// Messages above this level are dropped. Default: info, or $UDRV_LOG_LEVEL (err|warn|notice|info|debug).
void set_log_level(LogLevel level) noexcept;
LogLevel log_level() noexcept;
/// Parses "err", "warn", "info", "debug" (or 3..7).
std::optional<LogLevel> parse_log_level(std::string_view s) noexcept;

/// Where messages go (default: stderr as "[+    0.001234] message"; under systemd, whose journal
/// stamps lines itself, as "<6>message" with the level as sd-daemon(3) prefixes it). Tests capture
/// them here.
using LogSink = std::function<void(LogLevel, std::string_view)>;
void set_log_sink(LogSink sink);

/// A prefix for every line this process logs ("host 0000:00:04.0"), so that the logs of udrvd's driver
/// hosts, which share its stderr, say whose they are. Empty: none.
void set_log_tag(std::string tag);

/// Emits one message; prefer the pr_* / dev_* helpers.
void log_message(LogLevel level, std::string_view msg);
/// "driver name: " for a bound device, "name: " otherwise (like the kernel's dev_printk).
std::string device_log_prefix(const Device& dev);

#define UDRV_DEFINE_PR(fn, lvl)                                                            \
    template <typename... Args>                                                            \
    void fn(fmt::format_string<Args...> f, Args&&... args) {                               \
        if (log_level() >= (lvl))                                                          \
            log_message((lvl), fmt::format(f, std::forward<Args>(args)...));               \
    }
#define UDRV_DEFINE_DEV(fn, lvl)                                                           \
    template <typename... Args>                                                            \
    void fn(const Device& dev, fmt::format_string<Args...> f, Args&&... args) {            \
        if (log_level() >= (lvl))                                                          \
            log_message((lvl), device_log_prefix(dev) + fmt::format(f, std::forward<Args>(args)...)); \
    }

UDRV_DEFINE_PR(pr_err, LogLevel::err)
UDRV_DEFINE_PR(pr_warn, LogLevel::warn)
UDRV_DEFINE_PR(pr_notice, LogLevel::notice)
UDRV_DEFINE_PR(pr_info, LogLevel::info)
UDRV_DEFINE_PR(pr_debug, LogLevel::debug)
UDRV_DEFINE_DEV(dev_err, LogLevel::err)
UDRV_DEFINE_DEV(dev_warn, LogLevel::warn)
UDRV_DEFINE_DEV(dev_notice, LogLevel::notice)
UDRV_DEFINE_DEV(dev_info, LogLevel::info)
UDRV_DEFINE_DEV(dev_debug, LogLevel::debug)

#undef UDRV_DEFINE_PR
#undef UDRV_DEFINE_DEV

}  // namespace udrv
