// MMIO run-time checks (on ordinary memory standing in for a BAR) and the eventfd-based waits.
#include <gtest/gtest.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <tuple>
#include <vector>
#include <thread>

#include "udrv/irq.hpp"
#include "udrv/mmio.hpp"

namespace {

TEST(Mmio, ConstantAndCheckedOffsets) {
    alignas(8) std::array<std::byte, 64> regs{};
    udrv::hw::BarMapping bar(regs.data(), regs.size(), 0, nullptr);
    auto m = udrv::detail::MmioFactory::make<64>(bar);
    m.write32<0x10>(0xdeadbeef);
    EXPECT_EQ(m.read32<0x10>(), 0xdeadbeefu);
    m.write64<0x38>(0x0123456789abcdefull);
    EXPECT_EQ(*m.try_read64(0x38), 0x0123456789abcdefull);
    EXPECT_EQ(m.try_read32(0x3e).error().code(), EINVAL);   // misaligned
    EXPECT_EQ(m.try_read32(0x40).error().code(), ERANGE);   // past the window
    EXPECT_EQ(m.try_write64(0x40, 1).error().message(), "MMIO offset 0x40 (+8) lies beyond the 64-byte window");
    EXPECT_EQ(m.try_read8(SIZE_MAX).error().code(), ERANGE);  // no overflow into a small offset
    // m.read32<0x40>() or m.read32<0x11>() do not compile: see the static_asserts in mmio.hpp.
}

// A device model hears every register write, and may answer reads, through its listener.
TEST(Mmio, ModelsHearWritesAndMayAnswerReads) {
    struct Model : udrv::hw::MmioListener {
        std::vector<std::tuple<unsigned, std::size_t, unsigned, std::uint64_t>> writes;
        void mmio_written(unsigned bar, std::size_t off, unsigned width, std::uint64_t v) override { writes.emplace_back(bar, off, width, v); }
        std::optional<std::uint64_t> mmio_read(unsigned, std::size_t off, unsigned) override {
            if (off == 0x20) return 0x1234;  // a clear-on-read counter, say
            return std::nullopt;
        }
    } model;
    alignas(8) std::array<std::byte, 64> regs{};
    udrv::hw::BarMapping bar(regs.data(), regs.size(), 2, &model);
    auto m = udrv::detail::MmioFactory::make<64>(bar);
    m.write32<0x10>(7);
    ASSERT_TRUE(m.try_write16(0x14, 9));
    EXPECT_EQ(m.read32<0x10>(), 7u);      // memory as written
    EXPECT_EQ(m.read32<0x20>(), 0x1234u);  // the model's answer
    ASSERT_EQ(model.writes.size(), 2u);
    EXPECT_EQ(model.writes[0], std::make_tuple(2u, std::size_t{0x10}, 4u, std::uint64_t{7}));
    EXPECT_EQ(model.writes[1], std::make_tuple(2u, std::size_t{0x14}, 2u, std::uint64_t{9}));
}

TEST(Irq, EventLoopRunsHandlersOfReadyFds) {
    auto loop = udrv::irq::EventLoop::create();
    ASSERT_TRUE(loop);
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int fired = 0;
    ASSERT_TRUE(loop->add(fd, [&] {
        std::uint64_t n;
        ASSERT_EQ(read(fd, &n, sizeof n), 8);
        fired += static_cast<int>(n);
    }));
    EXPECT_EQ(*loop->run_once(std::chrono::milliseconds(0)), 0);
    std::uint64_t one = 1;
    ASSERT_EQ(write(fd, &one, sizeof one), 8);
    ASSERT_EQ(write(fd, &one, sizeof one), 8);
    EXPECT_EQ(*loop->run_once(std::chrono::milliseconds(1000)), 1);
    EXPECT_EQ(fired, 2);
    ASSERT_TRUE(loop->remove(fd));
    EXPECT_EQ(loop->remove(fd).error().code(), ENOENT);
    close(fd);
}

}  // namespace

// set_affinity finds the IRQ behind a vector by the name vfio-pci gives it in /proc/interrupts.
TEST(Irq, FindsVfioIrqsByTheirNamesInProcInterrupts) {
    using udrv::irq::find_vfio_irq;
    using udrv::hw::IrqKind;
    const std::string text =
        "           CPU0       CPU1       \n"
        "  0:         44          0   IO-APIC   2-edge      timer\n"
        " 25:          0         12  IR-PCI-MSIX-0000:00:05.0   0-edge      nvme1q0\n"
        " 41:          3          0  IR-PCI-MSIX-0000:00:04.0   0-edge      vfio-msix[0](0000:00:04.0)\n"
        " 42:        913          7  IR-PCI-MSIX-0000:00:04.0   1-edge      vfio-msix[1](0000:00:04.0)\n"
        " 43:          0          0  IR-PCI-MSIX-0000:00:04.0  11-edge      vfio-msix[11](0000:00:04.0)\n"
        " 50:          0          0  IR-PCI-MSI-0000:00:06.0   0-edge      vfio-msi[0](0000:00:06.0)\n"
        " 16:          1          0  IR-IO-APIC  16-fasteoi   ehci_hcd:usb1, vfio-intx(0000:00:07.0)\n"
        "NMI:          0          0   Non-maskable interrupts\n";
    EXPECT_EQ(find_vfio_irq(text, IrqKind::msix, 1, "0000:00:04.0"), 42u);
    EXPECT_EQ(find_vfio_irq(text, IrqKind::msix, 11, "0000:00:04.0"), 43u);  // not vector 1's line
    EXPECT_EQ(find_vfio_irq(text, IrqKind::msi, 0, "0000:00:06.0"), 50u);
    EXPECT_EQ(find_vfio_irq(text, IrqKind::intx, 0, "0000:00:07.0"), 16u);   // a shared line, second action
    EXPECT_EQ(find_vfio_irq(text, IrqKind::msix, 2, "0000:00:04.0"), std::nullopt);
    EXPECT_EQ(find_vfio_irq(text, IrqKind::msi, 1, "0000:00:04.0"), std::nullopt);  // msix[1] is not msi[1]
    EXPECT_EQ(find_vfio_irq(text, IrqKind::msix, 0, "0000:00:05.0"), std::nullopt);  // the kernel driver's own
    EXPECT_EQ(find_vfio_irq("", IrqKind::msix, 0, "0000:00:04.0"), std::nullopt);
}
