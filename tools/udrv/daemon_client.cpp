#include "daemon_client.hpp"

#include <cstdio>

#include "udrv/text.hpp"

namespace udrv::tools {
namespace {
bool g_standalone = false;
}

void set_standalone(bool on) noexcept { g_standalone = on; }

std::optional<rpc::Client> daemon() {
    if (g_standalone) return std::nullopt;
    auto c = rpc::Client::connect();
    if (!c) return std::nullopt;
    static bool said = false;
    if (!said) {
        std::fprintf(stderr, "udrv: through udrvd (%s)\n", printable(rpc::socket_path().string()).c_str());
        said = true;
    }
    return std::move(*c);
}

Result<rpc::Client> require_daemon(std::string_view command) {
    if (g_standalone) return fail(EINVAL, "udrv {} talks to udrvd, and --standalone says not to", command);
    auto c = rpc::Client::connect();
    if (!c)
        return fail(ENOTCONN, "udrv {} shows udrvd's devices, and udrvd is not running ({}: {}); start it: udrvd [--config FILE]", command,
                    rpc::socket_path().string(), c.error().message());
    return std::move(*c);
}

}  // namespace udrv::tools
