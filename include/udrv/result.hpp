// Error model of the driver API: no exceptions, every fallible call returns Result<T>.
#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <system_error>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace udrv {

/// An errno-style code plus a message that says what was wrong, with context
/// ("0000:00:03.0: BAR0 is 16 KiB, driver needs 32 KiB").
class Error {
public:
    Error(int code, std::string message) : code_(code), message_(std::move(message)) {}

    /// errno value (EINVAL, ENODEV, ...); never 0.
    int code() const noexcept { return code_; }
    /// Symbolic name of code(): "EINVAL".
    std::string_view code_name() const noexcept;
    const std::string& message() const noexcept { return message_; }

    /// Prefixes the message with where it happened: "ctx: message". Returns *this for chaining.
    Error& context(std::string_view where) &;
    Error&& context(std::string_view where) &&;

    /// "message (EINVAL)".
    std::string to_string() const;

private:
    int code_;
    std::string message_;
};

/// The result of a fallible operation: a T or an Error.
template <typename T = void>
using Result = std::expected<T, Error>;

/// Builds an error to return: `return fail(EINVAL, "BAR{} is {} bytes", n, size);`
template <typename... Args>
[[nodiscard]] std::unexpected<Error> fail(int code, fmt::format_string<Args...> f, Args&&... args) {
    return std::unexpected(Error(code, fmt::format(f, std::forward<Args>(args)...)));
}

/// Like fail(), with the code taken from errno and its text appended: "open x: No such file or directory".
template <typename... Args>
[[nodiscard]] std::unexpected<Error> fail_errno(fmt::format_string<Args...> f, Args&&... args) {
    int e = errno != 0 ? errno : EIO;
    std::string msg = fmt::format(f, std::forward<Args>(args)...);
    return std::unexpected(Error(e, msg + ": " + std::string(std::error_code(e, std::generic_category()).message())));
}

/// Name of an errno value ("ENOENT"), or "E<number>" when unknown.
std::string_view errno_name(int code) noexcept;

}  // namespace udrv

/// Unwraps a Result or returns its error from the enclosing function (like Rust's `?`).
/// `auto bar = UDRV_TRY(dev.map_bar(0));`
#define UDRV_TRY(expr)                                                     \
    ({                                                                     \
        auto&& udrv_try_result_ = (expr);                                  \
        if (!udrv_try_result_)                                             \
            return std::unexpected(std::move(udrv_try_result_).error());   \
        std::move(udrv_try_result_).value();                               \
    })

/// Like UDRV_TRY, adding context to the error on the way out.
#define UDRV_TRY_CTX(expr, ...)                                                                    \
    ({                                                                                             \
        auto&& udrv_try_result_ = (expr);                                                          \
        if (!udrv_try_result_)                                                                     \
            return std::unexpected(std::move(udrv_try_result_).error().context(fmt::format(__VA_ARGS__))); \
        std::move(udrv_try_result_).value();                                                       \
    })
