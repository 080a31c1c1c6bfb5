// udrvd's configuration on any bytes, in both languages it reads (TOML, and JSON through the
// position-tracking reader): a configuration or an error naming a line, and what is accepted must
// write out and read back the same.
#include <string_view>

#include "config.hpp"
#include "udrv/toml.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    auto c = udrv::daemon::parse_config(text, "fuzz");
    if (c) {
        auto back = udrv::daemon::parse_config(udrv::daemon::config_to_toml(*c), "saved");
        if (!back || udrv::daemon::config_to_json(*back) != udrv::daemon::config_to_json(*c)) __builtin_trap();
    }
    (void)udrv::toml::parse_json(text, "fuzz.json");
    return 0;
}
