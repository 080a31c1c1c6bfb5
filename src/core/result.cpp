#include "udrv/result.hpp"

#include <cstring>

namespace udrv {

std::string_view errno_name(int code) noexcept {
    // strerrorname_np (glibc >= 2.32) gives "ENOENT"; the fallback keeps the number visible.
    if (const char* n = strerrorname_np(code)) return n;
    return "E?";
}

std::string_view Error::code_name() const noexcept { return errno_name(code_); }

Error& Error::context(std::string_view where) & {
    message_ = std::string(where) + ": " + message_;
    return *this;
}

Error&& Error::context(std::string_view where) && {
    message_ = std::string(where) + ": " + message_;
    return std::move(*this);
}

std::string Error::to_string() const { return fmt::format("{} ({})", message_, code_name()); }

}  // namespace udrv
