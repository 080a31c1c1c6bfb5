// udrv-edu-selftest [PARAM=VALUE...]: binds nothing itself (use `udrv bind` first); loads the built-in
// edu driver with these module parameters (intx=1: use INTx even though the device offers MSI), lets the
// PCI bus probe every edu device on vfio-pci, and runs every operation of the device against it:
// identification, liveness, factorial (polled and by interrupt), software interrupts and DMA both ways
// through the IOMMU. Prints one line per check; exits 1 if any failed, 2 if no device was found.
#include <cstdio>
#include <numeric>
#include <vector>

#include "edu/edu.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"

namespace {

int failures = 0;

void check(const std::string& dev, const std::string& what, const udrv::Result<void>& r) {
    std::printf("%s %s: %s%s\n", r ? "PASS" : "FAIL", dev.c_str(), what.c_str(), r ? "" : (" -- " + r.error().to_string()).c_str());
    failures += !r;
}

udrv::Result<void> expect_eq(std::uint64_t got, std::uint64_t want, const char* what) {
    if (got != want) return udrv::fail(EIO, "{}: got {}, expected {}", what, got, want);
    return {};
}

std::uint32_t factorial32(std::uint32_t n) {
    std::uint32_t r = 1;
    while (n > 0) r *= n--;
    return r;
}

void selftest(const std::string& name, udrv::edu::Edu& edu) {
    check(name, fmt::format("identification register (version {}.{})", edu.version() >> 8, edu.version() & 0xff),
          expect_eq(edu.version() >> 8, 1, "major version"));
    check(name, "liveness register inverts 0xdeadbeef", edu.check_liveness(0xdeadbeef));
    check(name, "liveness register inverts 0", edu.check_liveness(0));
    for (std::uint32_t n : {0u, 1u, 5u, 10u, 12u, 13u}) {
        auto f = edu.factorial_polled(n);
        check(name, fmt::format("factorial({}) polled = {}", n, factorial32(n)),
              f ? expect_eq(*f, factorial32(n), "factorial") : udrv::Result<void>(std::unexpected(f.error())));
    }
    auto fi = edu.factorial_irq(10);
    check(name, fmt::format("factorial(10) by {} interrupt", udrv::vfio::irq_kind_name(edu.irq_kind())),
          fi ? expect_eq(*fi, 3628800, "factorial") : udrv::Result<void>(std::unexpected(fi.error())));
    check(name, "software interrupt 0x00010000 arrives", edu.raise_and_catch(0x00010000));

    // DMA both ways through the IOMMU: a pattern goes to the device buffer and comes back intact.
    const unsigned bits = edu.dma_bits();
    check(name, fmt::format("DMA buffer IOVA {:#x} is below 2^{} (device DMA mask)", edu.dma_buffer_iova(), bits),
          bits >= 64 || edu.dma_buffer_iova() + udrv::edu::Edu::kBufferSize - 1 < (std::uint64_t{1} << bits)
              ? udrv::Result<void>{} : udrv::fail(ERANGE, "IOVA beyond the mask"));
    std::vector<std::byte> out(udrv::edu::Edu::kBufferLimit), back(udrv::edu::Edu::kBufferLimit);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = std::byte(static_cast<unsigned char>(i * 7 + 3));
    check(name, "DMA 4095 bytes host -> device", edu.dma_to_device(out, 0));
    auto r = edu.dma_from_device(back, 0);
    check(name, "DMA 4095 bytes device -> host", r);
    check(name, "DMA round trip preserves every byte", out == back ? udrv::Result<void>{} : udrv::fail(EIO, "data differs"));
    std::vector<std::byte> part(100, std::byte{0x5a}), part_back(100);
    check(name, "DMA 100 bytes to offset 1000 and back",
          [&]() -> udrv::Result<void> {
              UDRV_TRY(edu.dma_to_device(part, 1000));
              UDRV_TRY(edu.dma_from_device(part_back, 1000));
              return part == part_back ? udrv::Result<void>{} : udrv::fail(EIO, "data differs");
          }());
    check(name, "DMA past the device buffer is refused", edu.dma_to_device(part, 4090) ? udrv::fail(EIO, "accepted") : udrv::Result<void>{});
    check(name, "every interrupt had a cause in the interrupt status register",
          edu.spurious_interrupts() == 0 ? udrv::Result<void>{}
                                         : udrv::fail(EIO, "{} of {} interrupts showed no expected status", edu.spurious_interrupts(),
                                                      edu.interrupts()));
    std::printf("INFO %s: %llu interrupts taken\n", name.c_str(), static_cast<unsigned long long>(edu.interrupts()));
}

}  // namespace

int main(int argc, char** argv) {
    udrv::Loader loader;
    const std::vector<std::string> params(argv + 1, argv + argc);  // udrv_edu's parameters, e.g. intx=1
    if (auto r = loader.load_builtin("udrv_edu", params); !r) {
        std::fprintf(stderr, "udrv-edu-selftest: %s\n", r.error().to_string().c_str());
        return 1;
    }
    if (auto r = loader.load_builtins(); !r) {
        std::fprintf(stderr, "udrv-edu-selftest: %s\n", r.error().to_string().c_str());
        return 1;
    }
    if (auto r = udrv::pci::bus().scan(); !r) {
        std::fprintf(stderr, "udrv-edu-selftest: %s\n", r.error().to_string().c_str());
        return 1;
    }
    int devices = 0;
    for (udrv::Device* d : udrv::pci::bus().devices()) {
        if (auto* edu = d->driver_data<udrv::edu::Edu>()) {
            ++devices;
            selftest(d->name(), *edu);
            continue;
        }
        // An edu on vfio-pci that the driver refused: probing again returns why.
        const auto& info = static_cast<udrv::pci::Device*>(d)->info();
        if (info.vendor_id == 0x1234 && info.device_id == 0x11e8 && info.driver == "vfio-pci") {
            ++devices;
            auto r = udrv::pci::bus().attach(*d);
            if (r) selftest(d->name(), *d->driver_data<udrv::edu::Edu>());
            else check(d->name(), "the driver takes the device", r);
        }
    }
    if (devices == 0) {
        std::fprintf(stderr, "udrv-edu-selftest: no edu device bound to vfio-pci (udrv bind <address> first)\n");
        return 2;
    }
    std::printf("%d edu device(s), %d check(s) failed\n", devices, failures);
    udrv::pci::bus().remove_all_devices();  // unbind (remove, then devres) before the driver module goes
    return failures ? 1 : 0;
}
