// The ELF modinfo reader on arbitrary files: `udrv modinfo` and the loader read module files before
// running any of their code, so every offset and size in them is hostile.
#include <cstddef>
#include <cstdint>
#include <span>

#include "udrv/loader.hpp"
#include "udrv/modinfo.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const char> img(reinterpret_cast<const char*>(data), size);
    auto mods = udrv::parse_modinfo_elf(img, "fuzz.so");
    if (!mods) return 0;
    for (const udrv::Modinfo& m : *mods) {
        (void)m.name();
        (void)m.depends();
        (void)m.params();
        (void)udrv::parse_module_params(m, "fuzz.so", {});
    }
    return 0;
}
