// Reads top to bottom like the device's description: identify, check it is alive, set up DMA and
// interrupts, then the operations.
#include "edu.hpp"

#include <algorithm>
#include <array>
#include <thread>

#include "udrv/log.hpp"

namespace udrv::edu {
namespace {

// Registers (hw/misc/edu.c). Offsets below 0x80 take 32-bit accesses; the DMA block takes 64-bit ones.
constexpr std::size_t kIdent = 0x00, kLiveness = 0x04, kFactorial = 0x08, kStatus = 0x20, kIrqStatus = 0x24,
                      kIrqRaise = 0x60, kIrqAck = 0x64, kDmaSrc = 0x80, kDmaDst = 0x88, kDmaCount = 0x90, kDmaCmd = 0x98;
constexpr std::uint32_t kIdentLow = 0xed;                     // low byte of the identification register
constexpr std::uint32_t kStatusComputing = 0x01, kStatusIrqOnFactorial = 0x80;
constexpr std::uint32_t kIrqFactorial = 0x001, kIrqDma = 0x100;
constexpr std::uint64_t kDmaRun = 0x1, kDmaToRam = 0x2, kDmaIrq = 0x4;
constexpr std::uint64_t kDeviceBuffer = 0x40000;              // the device's 4 KiB DMA window
constexpr std::size_t kReachCheckBytes = 64;
constexpr auto kTimeout = std::chrono::seconds(10);           // TCG is slow; the DMA timer alone is 100 ms

}  // namespace

Result<std::unique_ptr<Edu>> Edu::probe(Bound<pci::Device>& dev, const pci::DeviceId&, const ThisModule& module) {
    Mmio<0x100> regs = UDRV_TRY(dev.map_bar<0x100>(0));

    // Identify: 0xRRrr00ed (major, minor).
    std::uint32_t ident = regs.read32<kIdent>();
    if ((ident & 0xff) != kIdentLow)
        return fail(ENODEV, "{}: identification register reads {:#010x}, not an edu device (low byte {:#04x})", dev->name(), ident, kIdentLow);
    std::uint32_t version = ident >> 16;

    // Liveness: the device stores the bitwise inverse of what was written.
    regs.write32<kLiveness>(0x12345678);
    if (std::uint32_t back = regs.read32<kLiveness>(); back != ~0x12345678u)
        return fail(EIO, "{}: liveness check failed: wrote 0x12345678, read back {:#010x}", dev->name(), back);

    // DMA: the engine drives dma_bits address bits (28 on QEMU's device as it comes), and it needs bus
    // mastering (VFIO leaves it off).
    const std::uint32_t dma_bits = module.param(kDmaBits);
    if (dma_bits < 12 || dma_bits > 64)
        return fail(EINVAL, "{}: dma_bits={} makes no sense: give the device's DMA address width, 12 to 64", dev->name(), dma_bits);
    UDRV_TRY(dev.set_dma_mask(dma_bits));
    UDRV_TRY(dev.enable_bus_master());
    auto buffer = UDRV_TRY(dev.alloc_coherent<std::byte>(kBufferSize));

    // Interrupts: one vector, MSI when offered, INTx otherwise (or when the intx parameter asks for it).
    auto irqs = UDRV_TRY(module.param(kIntx) ? dev.alloc_irq_vectors(irq::IrqKind::intx, 1) : dev.alloc_irq_vectors_any(1));
    regs.write32<kIrqAck>(0xffffffff);  // start from a clean interrupt status

    std::unique_ptr<Edu> e(new Edu(dev.device(), regs, std::move(irqs), std::move(buffer), version, dma_bits));
    UDRV_TRY(e->check_dma_reach());
    dev_info(dev.device(), "edu v{}.{}, {} interrupt, DMA buffer at IOVA {:#x} ({}-bit DMA)", version >> 8, version & 0xff,
             vfio::irq_kind_name(e->irqs_.kind()), e->buffer_.iova(), dma_bits);
    return e;
}

// The device does not say how many address bits its engine drives, and one that drives fewer than the
// mask we set truncates the buffer's bus address: it would move data to and from some other address of
// this process's IOMMU space. So a pattern goes to the device and back before anyone relies on it.
Result<void> Edu::check_dma_reach() {
    std::array<std::byte, kReachCheckBytes> pattern;
    for (std::size_t i = 0; i < pattern.size(); ++i) pattern[i] = std::byte(0xa5 ^ (i * 29));
    std::array<std::byte, kReachCheckBytes> back{};
    UDRV_TRY(dma_to_device(pattern, 0));
    UDRV_TRY(dma_from_device(back, 0));
    if (back != pattern)
        return fail(EIO, "{}: a DMA round trip through bus address {:#x} came back wrong: the device reaches fewer than the {} address "
                    "bits the driver assumed (QEMU: its dma_mask property); load udrv_edu with dma_bits=N for a device that reaches N bits",
                    dev_.name(), buffer_.iova(), dma_bits_);
    return {};
}

Edu::~Edu() {
    // Quiesce before the DMA buffer and vectors go: no interrupt on factorial, interrupts acknowledged.
    regs_.write32<kStatus>(0);
    regs_.write32<kIrqAck>(0xffffffff);
    dev_info(dev_, "removed after {} interrupts", irqs_[0].total());
}

Result<void> Edu::check_liveness(std::uint32_t v) {
    regs_.write32<kLiveness>(v);
    std::uint32_t back = regs_.read32<kLiveness>();
    if (back != ~v) return fail(EIO, "{}: liveness: wrote {:#010x}, read {:#010x} (expected {:#010x})", dev_.name(), v, back, ~v);
    return {};
}

Result<std::uint32_t> Edu::factorial_polled(std::uint32_t n) {
    regs_.write32<kStatus>(0);
    regs_.write32<kFactorial>(n);
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (regs_.read32<kStatus>() & kStatusComputing) {
        if (std::chrono::steady_clock::now() > deadline) return fail(ETIMEDOUT, "{}: factorial({}) did not finish", dev_.name(), n);
        std::this_thread::yield();
    }
    return regs_.read32<kFactorial>();
}

Result<std::uint32_t> Edu::factorial_irq(std::uint32_t n) {
    regs_.write32<kStatus>(kStatusIrqOnFactorial);
    regs_.write32<kFactorial>(n);
    UDRV_TRY(wait_irq(kIrqFactorial));
    regs_.write32<kStatus>(0);
    if (regs_.read32<kStatus>() & kStatusComputing)
        return fail(EIO, "{}: completion interrupt arrived while the device still computes", dev_.name());
    return regs_.read32<kFactorial>();
}

Result<void> Edu::raise_and_catch(std::uint32_t bits) {
    regs_.write32<kIrqRaise>(bits);
    return wait_irq(bits);
}

Result<void> Edu::wait_irq(std::uint32_t expect_bits) {
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        auto fired = irqs_[0].wait(std::max(left, std::chrono::milliseconds(1)));
        if (!fired) return std::unexpected(std::move(fired).error().context(fmt::format("{}: waiting for status {:#x}", dev_.name(), expect_bits)));
        // The status register is the device's word; accept the interrupt only if it says what we expect.
        std::uint32_t status = regs_.read32<kIrqStatus>();
        regs_.write32<kIrqAck>(status);
        if ((status & expect_bits) == expect_bits) return {};
        ++spurious_;
        dev_warn(dev_, "interrupt with status {:#x} while waiting for {:#x}", status, expect_bits);
    }
}

Result<void> Edu::run_dma(std::uint64_t src, std::uint64_t dst, std::uint32_t len, bool to_ram) {
    regs_.write64<kDmaSrc>(src);
    regs_.write64<kDmaDst>(dst);
    regs_.write64<kDmaCount>(len);
    regs_.write64<kDmaCmd>(kDmaRun | kDmaIrq | (to_ram ? kDmaToRam : 0));
    UDRV_TRY(wait_irq(kIrqDma));
    if (regs_.read64<kDmaCmd>() & kDmaRun) return fail(EIO, "{}: DMA interrupt arrived but the engine still runs", dev_.name());
    return {};
}

Result<void> Edu::dma_to_device(std::span<const std::byte> data, std::uint32_t offset) {
    if (data.size() > kBufferLimit || offset > kBufferLimit - data.size())
        return fail(ERANGE, "{}: {} bytes at {} exceed the device's buffer (transfers must end by byte {})", dev_.name(), data.size(),
                    offset, kBufferLimit);
    std::copy(data.begin(), data.end(), buffer_.span().begin());
    return run_dma(buffer_.iova(), kDeviceBuffer + offset, static_cast<std::uint32_t>(data.size()), false);
}

Result<void> Edu::dma_from_device(std::span<std::byte> out, std::uint32_t offset) {
    if (out.size() > kBufferLimit || offset > kBufferLimit - out.size())
        return fail(ERANGE, "{}: {} bytes at {} exceed the device's buffer (transfers must end by byte {})", dev_.name(), out.size(),
                    offset, kBufferLimit);
    std::fill(buffer_.span().begin(), buffer_.span().end(), std::byte{0});
    UDRV_TRY(run_dma(kDeviceBuffer + offset, buffer_.iova(), static_cast<std::uint32_t>(out.size()), true));
    std::copy_n(buffer_.span().begin(), out.size(), out.begin());
    return {};
}

}  // namespace udrv::edu
