// A PCI driver module: matches virtio devices by vendor and counts its bound devices.
#include <udrv/log.hpp>
#include <udrv/pci.hpp>

struct TestPciDriver {
    static constexpr udrv::pci::DeviceId ids[] = {
        udrv::pci::DeviceId::vendor_device(0x1af4, 0x1041, 1),
        udrv::pci::DeviceId::by_class(0x020000, 0xffff00, 2),
    };
    static udrv::Result<std::unique_ptr<TestPciDriver>> probe(udrv::Bound<udrv::pci::Device>& dev, const udrv::pci::DeviceId& id) {
        udrv::dev_info(dev.device(), "probed (id data {})", id.driver_data);
        return std::make_unique<TestPciDriver>();
    }
};
UDRV_PCI_DRIVER(TestPciDriver, .name = "test_pcidrv", .description = "binds virtio-net", .license = "GPL")
