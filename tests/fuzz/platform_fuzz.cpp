// Platform device descriptions (`udrv platform FILE.toml`), through the TOML parser to validated
// device descriptions.
#include <string_view>

#include "udrv/platform.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    (void)udrv::platform::parse_description(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.toml");
    return 0;
}
