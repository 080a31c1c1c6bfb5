// A PCI device's sysfs directory with attributes of any content (a fixture tree, a hostile mount):
// read_device must answer with a device or an error, whatever the files say.
#include <fuzzer/FuzzedDataProvider.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "lspci_format.hpp"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const fs::path dir = fs::temp_directory_path() / ("udrv-fuzz-sysfs-" + std::to_string(::getpid())) / "0000:00:03.0";
    static bool made = fs::create_directories(dir) || true;
    (void)made;
    FuzzedDataProvider in(data, size);
    for (const char* name : {"vendor", "device", "subsystem_vendor", "subsystem_device", "class", "revision", "resource", "numa_node", "irq"}) {
        if (in.ConsumeBool()) std::ofstream(dir / name, std::ios::trunc) << in.ConsumeRandomLengthString(512);
        else fs::remove(dir / name);
    }
    auto config = in.ConsumeRemainingBytes<char>();
    std::ofstream(dir / "config", std::ios::binary | std::ios::trunc).write(config.data(), static_cast<std::streamsize>(config.size()));
    auto d = udrv::pci::read_device(dir);
    if (!d) return 0;
    static const udrv::pci::IdDatabase ids = udrv::pci::IdDatabase::parse("");
    (void)udrv::tools::format_device(*d, ids, true);
    return 0;
}
