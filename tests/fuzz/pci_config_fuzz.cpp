// PCI configuration space from a device (or a sysfs file), parsed and printed by the lspci formatter:
// every capability pointer, length and field is the device's word.
#include <fuzzer/FuzzedDataProvider.h>

#include "lspci_format.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    const unsigned irq = in.ConsumeIntegral<std::uint8_t>();
    const std::uint64_t bar_start = in.ConsumeIntegral<std::uint64_t>(), bar_size = in.ConsumeIntegral<std::uint32_t>();
    auto bytes = in.ConsumeRemainingBytes<std::uint8_t>();
    if (bytes.size() > 4096) bytes.resize(4096);
    auto cs = udrv::pci::ConfigSpace::parse(std::move(bytes));
    if (!cs) return 0;
    udrv::pci::DeviceInfo d;
    d.vendor_id = cs->vendor_id;
    d.device_id = cs->device_id;
    d.subsystem_vendor = cs->subsystem_vendor;
    d.subsystem_device = cs->subsystem_device;
    d.class_code = cs->class_code;
    d.revision = cs->revision;
    d.irq = irq;
    d.iommu_group = 3;
    d.bars.push_back({0, bar_start, bar_size, (bar_start & 1) != 0, (bar_start & 2) != 0, (bar_start & 4) != 0});
    d.bars.push_back({6, bar_start, bar_size, false, false, false});
    d.config = std::move(*cs);
    static const udrv::pci::IdDatabase ids = udrv::pci::IdDatabase::parse("1af4  Red Hat, Inc.\n\t1041  Virtio\nC 02  Network\n\t00  Ethernet\n");
    (void)udrv::tools::format_device(d, ids, true);
    (void)udrv::tools::device_json(d, ids).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return 0;
}
