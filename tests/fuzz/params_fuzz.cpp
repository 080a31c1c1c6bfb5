// Module metadata strings and load-time parameters (`udrv insmod m.so key=value ...`): the declared
// types and defaults come from the file, the values from the command line.
#include <fuzzer/FuzzedDataProvider.h>

#include <string>
#include <vector>

#include "udrv/loader.hpp"
#include "udrv/modinfo.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    std::string section = in.ConsumeRandomLengthString(4096);
    std::vector<std::string> params;
    while (in.remaining_bytes() && params.size() < 8) params.push_back(in.ConsumeRandomLengthString(256));
    auto mods = udrv::parse_modinfo_strings(section, "fuzz");
    if (!mods) return 0;
    for (const udrv::Modinfo& m : *mods) (void)udrv::parse_module_params(m, "fuzz", params);
    return 0;
}
