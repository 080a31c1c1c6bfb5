// A driver written outside udrv's tree: it binds QEMU's edu device (1234:11e8), checks it is one,
// and has the device compute n! (parameter n) at probe, logging the answer. Everything it uses is the
// installed SDK's public API: the ID table, the bound device, a typed register block.
#include <chrono>
#include <cstdint>
#include <memory>

#include "udrv/log.hpp"
#include "udrv/pci.hpp"

namespace {

// Registers of hw/misc/edu.c: identification, factorial (write n, read n!), status (bit 0: computing).
constexpr std::size_t kIdent = 0x00, kFactorial = 0x08, kStatus = 0x20;
constexpr std::uint32_t kStatusComputing = 0x01;

class EduFactorial {
public:
    static constexpr udrv::pci::DeviceId ids[] = {udrv::pci::DeviceId::vendor_device(0x1234, 0x11e8)};
    static constexpr udrv::Param<std::uint32_t> kN{"n", 10, "The factorial the device computes at probe (0-12 fit in 32 bits)"};

    static udrv::Result<std::unique_ptr<EduFactorial>> probe(udrv::Bound<udrv::pci::Device>& dev, const udrv::pci::DeviceId&,
                                                            const udrv::ThisModule& module) {
        udrv::Mmio<0x100> regs = UDRV_TRY(dev.map_bar<0x100>(0));
        const std::uint32_t ident = regs.read32<kIdent>();
        if ((ident & 0xff) != 0xed) return udrv::fail(ENODEV, "{}: identification register reads {:#010x}: not an edu device", dev->name(), ident);

        const std::uint32_t n = module.param(kN);
        if (n > 12) return udrv::fail(EINVAL, "{}: n={} does not fit: 12! is the largest factorial in 32 bits", dev->name(), n);
        regs.write32<kFactorial>(n);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (regs.read32<kStatus>() & kStatusComputing)
            if (std::chrono::steady_clock::now() > deadline) return udrv::fail(ETIMEDOUT, "{}: the factorial unit stayed busy for 10 s", dev->name());
        const std::uint32_t result = regs.read32<kFactorial>();
        udrv::dev_info(dev.device(), "edu v{}.{} computed {}! = {}", ident >> 24, (ident >> 16) & 0xff, n, result);
        return std::make_unique<EduFactorial>();
    }
};

}  // namespace

UDRV_PCI_DRIVER(EduFactorial,
                .name = "edu_factorial",
                .authors = {"An out-of-tree author"},
                .description = "Out-of-tree sample: QEMU's edu device computes a factorial at probe",
                .license = "MIT",
                .version = "1.0",
                .params = {EduFactorial::kN})
