// The kernel's hot-plug messages as udrvd parses them, on any bytes.
#include <span>

#include "uevent.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto e = udrv::daemon::parse_uevent(std::span(reinterpret_cast<const char*>(data), size));
    if (e) (void)(e->action.size() + e->subsystem.size() + e->pci_slot.size() + e->devpath.size() + e->driver.size());
    return 0;
}
