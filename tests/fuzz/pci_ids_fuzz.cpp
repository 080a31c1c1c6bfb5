// pci.ids text (the system's, or --ids FILE) and the names lspci builds from it.
#include <fuzzer/FuzzedDataProvider.h>

#include "udrv/pci.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    const auto v = in.ConsumeIntegral<std::uint16_t>(), d = in.ConsumeIntegral<std::uint16_t>();
    const auto sv = in.ConsumeIntegral<std::uint16_t>(), sd = in.ConsumeIntegral<std::uint16_t>();
    const auto cls = in.ConsumeIntegral<std::uint16_t>();
    const auto db = udrv::pci::IdDatabase::parse(in.ConsumeRemainingBytesAsString());
    (void)db.describe_device(v, d);
    (void)db.describe_subsystem(v, d, sv, sd);
    (void)db.describe_class(cls);
    (void)db.prog_if_name(static_cast<std::uint8_t>(cls >> 8), static_cast<std::uint8_t>(cls), static_cast<std::uint8_t>(v));
    return 0;
}
