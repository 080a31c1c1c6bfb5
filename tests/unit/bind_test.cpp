// `udrv bind` refusals on fake sysfs trees: each one says what is wrong and what to do.
#include <gtest/gtest.h>

#include <fstream>

#include <fmt/format.h>

#include "udrv/bind.hpp"

namespace fs = std::filesystem;

namespace {

class FakeSysfs : public ::testing::Test {
protected:
    void SetUp() override {
        root = fs::temp_directory_path() / ("udrv-bind-" + std::to_string(::getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(root);
        opts.sysfs = root;
        opts.mounts = root / "mounts";
        opts.euid = 0;
        fs::create_directories(root / "bus/pci/drivers/vfio-pci");
        fs::create_directories(root / "bus/pci/drivers/nvme");
        fs::create_directories(root / "bus/pci/drivers/ahci");
        std::ofstream(root / "mounts") << "proc /proc proc rw 0 0\n";
        add_device("0000:00:04.0", "nvme", 4);
    }
    void TearDown() override { fs::remove_all(root); }
    void add_device(const std::string& addr, const std::string& driver, int group) {
        fs::path d = root / "bus/pci/devices" / addr;
        fs::create_directories(d);
        if (!driver.empty()) fs::create_directory_symlink("../../drivers/" + driver, d / "driver");
        if (group >= 0) {
            fs::create_directories(root / "kernel/iommu_groups" / std::to_string(group) / "devices");
            fs::create_directory_symlink("../../../kernel/iommu_groups/" + std::to_string(group), d / "iommu_group");
            fs::create_directory_symlink("../../../../bus/pci/devices/" + addr,
                                         root / "kernel/iommu_groups" / std::to_string(group) / "devices" / addr);
        }
    }
    // A device's class code and a config space of `header` type (with a PCIe capability of `port_type`
    // when given), as the bridge checks read them.
    void set_class(const std::string& addr, std::uint32_t cls, std::uint8_t header = 0, int port_type = -1) {
        fs::path d = root / "bus/pci/devices" / addr;
        std::ofstream(d / "class") << fmt::format("{:#08x}\n", cls);
        std::vector<char> cfg(256, 0);
        cfg[0x0e] = static_cast<char>(header);
        if (port_type >= 0) {
            cfg[0x06] = 0x10;  // capability list
            cfg[0x34] = 0x40;
            cfg[0x40] = 0x10;  // PCIe
            cfg[0x42] = static_cast<char>(2 | port_type << 4);
        }
        std::ofstream(d / "config", std::ios::binary).write(cfg.data(), static_cast<std::streamsize>(cfg.size()));
    }
    std::string slurp(const fs::path& p) {
        std::ifstream in(p);
        return std::string((std::istreambuf_iterator<char>(in)), {});
    }
    std::string bind_error(const std::string& addr) {
        const auto a = *udrv::pci::Address::parse(addr);
        auto r = udrv::pci::bind_vfio_all(std::span(&a, 1), opts);
        EXPECT_FALSE(r);
        return r ? "bound" : r.error().message();
    }
    fs::path root;
    udrv::pci::BindOptions opts;
};

TEST_F(FakeSysfs, BindWritesTheSysfsSequence) {
    auto r = udrv::pci::bind_vfio(*udrv::pci::Address::parse("0000:00:04.0"), opts);
    ASSERT_TRUE(r) << r.error().message();
    auto slurp_ = [](const fs::path& p) { std::ifstream in(p); return std::string((std::istreambuf_iterator<char>(in)), {}); };
    EXPECT_EQ(slurp_(root / "bus/pci/devices/0000:00:04.0/driver/unbind"), "0000:00:04.0");
    EXPECT_EQ(slurp_(root / "bus/pci/devices/0000:00:04.0/driver_override"), "vfio-pci");
    EXPECT_EQ(slurp_(root / "bus/pci/drivers/vfio-pci/bind"), "0000:00:04.0");
}

TEST_F(FakeSysfs, RefusesWithoutRoot) {
    opts.euid = 1000;
    EXPECT_EQ(bind_error("0000:00:04.0"), "binding and unbinding devices needs root: run as root (sudo udrv ...)");
}

TEST_F(FakeSysfs, RefusesWithoutIommu) {
    add_device("0000:00:05.0", "nvme", -1);
    EXPECT_EQ(bind_error("0000:00:05.0"), "0000:00:05.0 has no IOMMU group: the IOMMU is off. Enable it in the firmware and boot with "
                                          "intel_iommu=on (or amd_iommu=on) iommu=pt");
}

TEST_F(FakeSysfs, RefusesWithoutVfioPci) {
    fs::remove_all(root / "bus/pci/drivers/vfio-pci");
    EXPECT_EQ(bind_error("0000:00:04.0"), "vfio-pci is not loaded: modprobe vfio-pci");
}

TEST_F(FakeSysfs, RefusesANonViableGroup) {
    add_device("0000:00:1f.2", "ahci", 4);  // same group as the NVMe, on a kernel driver
    EXPECT_EQ(bind_error("0000:00:04.0"), "IOMMU group 4 is not viable: 0000:00:1f.2 shares it and is bound to ahci; bind it to "
                                          "vfio-pci too (udrv bind 0000:00:1f.2) or unbind it");
}

TEST_F(FakeSysfs, AcceptsGroupsWithBridgesAndVfioDevices) {
    add_device("0000:00:1c.0", "pcieport", 4);
    add_device("0000:00:1c.1", "", 4);
    EXPECT_TRUE(udrv::pci::bind_vfio(*udrv::pci::Address::parse("0000:00:04.0"), opts));
}

TEST_F(FakeSysfs, RefusesAMountedDisk) {
    fs::create_directories(root / "bus/pci/devices/0000:00:04.0/nvme/nvme0/nvme0n1/holders");
    fs::create_directories(root / "bus/pci/devices/0000:00:04.0/nvme/nvme0/nvme0n1/nvme0n1p2/holders");
    std::ofstream(root / "mounts") << "/dev/nvme0n1p2 /data ext4 rw 0 0\n";
    EXPECT_EQ(bind_error("0000:00:04.0"), "0000:00:04.0 is in use: /dev/nvme0n1p2 is mounted on /data; unmount it first (umount /data)");
}

TEST_F(FakeSysfs, RefusesADiskHeldByDeviceMapper) {
    fs::create_directories(root / "bus/pci/devices/0000:00:04.0/nvme/nvme0/nvme0n1/holders/dm-0");
    EXPECT_EQ(bind_error("0000:00:04.0"),
              "0000:00:04.0 is in use: /dev/nvme0n1 is held by dm-0 (device-mapper, RAID or LVM); release it first");
}

TEST_F(FakeSysfs, RefusesAnUpInterface) {
    add_device("0000:00:08.0", "nvme", 8);  // the driver's name does not matter here
    fs::create_directories(root / "bus/pci/devices/0000:00:08.0/virtio2/net/eth1");
    std::ofstream(root / "bus/pci/devices/0000:00:08.0/virtio2/net/eth1/flags") << "0x1003\n";
    EXPECT_EQ(bind_error("0000:00:08.0"), "0000:00:08.0 is in use: network interface eth1 is up; take it down first (ip link set eth1 down)");
    std::ofstream(root / "bus/pci/devices/0000:00:08.0/virtio2/net/eth1/flags") << "0x1002\n";
    EXPECT_TRUE(udrv::pci::bind_vfio(*udrv::pci::Address::parse("0000:00:08.0"), opts));
}

TEST_F(FakeSysfs, UnknownDeviceAndWrongDriverOnUnbind) {
    EXPECT_EQ(bind_error("0000:00:09.0"), "no PCI device 0000:00:09.0 (see udrv lspci)");
    auto r = udrv::pci::unbind_vfio(*udrv::pci::Address::parse("0000:00:04.0"), opts);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message(), "0000:00:04.0 is bound to nvme, not vfio-pci: nothing to give back");
}

TEST_F(FakeSysfs, RefusesTheHostBridgeAndTheIsaBridge) {
    add_device("0000:00:00.0", "", 0);
    set_class("0000:00:00.0", 0x060000);
    EXPECT_EQ(bind_error("0000:00:00.0"), "0000:00:00.0 cannot be given to vfio-pci: it is the host bridge: the processors reach memory "
                                          "and every other device through it");
    add_device("0000:00:1f.0", "", 17);
    set_class("0000:00:1f.0", 0x060100);
    EXPECT_EQ(bind_error("0000:00:1f.0"), "0000:00:1f.0 cannot be given to vfio-pci: it is the ISA/LPC bridge: the machine's timers, "
                                          "interrupt controllers, real-time clock and firmware interfaces sit behind it");
    EXPECT_FALSE(fs::exists(root / "bus/pci/drivers/vfio-pci/bind"));  // nothing was written
}

TEST_F(FakeSysfs, RefusesARootPortNamingWhatIsBehindIt) {
    add_device("0000:00:10.0", "pcieport", 13);
    set_class("0000:00:10.0", 0x060400, 1, 4);
    fs::create_directories(root / "bus/pci/devices/0000:00:10.0/0000:01:00.0");
    EXPECT_EQ(bind_error("0000:00:10.0"), "0000:00:10.0 cannot be given to vfio-pci: it is a PCIe root port: 0000:01:00.0 depends on "
                                          "it, and vfio-pci takes only endpoints (header type 0); bind the devices behind it instead");
}

TEST_F(FakeSysfs, RefusesSystemPeripheralsAndTheBootDisplay) {
    add_device("0000:00:05.0", "", 5);
    set_class("0000:00:05.0", 0x080000);
    EXPECT_EQ(bind_error("0000:00:05.0"),
              "0000:00:05.0 cannot be given to vfio-pci: it is an interrupt controller: a system peripheral the kernel runs the machine with");
    add_device("0000:00:02.0", "bochs-drm", 2);
    set_class("0000:00:02.0", 0x030000);
    std::ofstream(root / "bus/pci/devices/0000:00:02.0/boot_vga") << "1\n";
    EXPECT_EQ(bind_error("0000:00:02.0"), "0000:00:02.0 cannot be given to vfio-pci: it is the boot display (boot_vga): the console is on it");
}

TEST_F(FakeSysfs, AlreadyBoundIsSaidAndChangesNothing) {
    add_device("0000:00:03.0", "vfio-pci", 3);
    const auto a = *udrv::pci::Address::parse("0000:00:03.0");
    auto r = udrv::pci::bind_vfio_all(std::span(&a, 1), opts);
    ASSERT_TRUE(r) << r.error().message();
    ASSERT_EQ(r->size(), 1u);
    EXPECT_TRUE((*r)[0].already);
    EXPECT_FALSE(fs::exists(root / "bus/pci/drivers/vfio-pci/bind"));
}

TEST_F(FakeSysfs, BindOfSeveralIsAllOrNothing) {
    add_device("0000:00:00.0", "", 0);
    set_class("0000:00:00.0", 0x060000);
    const udrv::pci::Address good = *udrv::pci::Address::parse("0000:00:04.0"), bad = *udrv::pci::Address::parse("0000:00:00.0");
    const udrv::pci::Address both[] = {good, bad};
    auto r = udrv::pci::bind_vfio_all(both, opts);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message(), "0000:00:00.0 cannot be given to vfio-pci: it is the host bridge: the processors reach memory and "
                                   "every other device through it; nothing was changed");
    EXPECT_FALSE(fs::exists(root / "bus/pci/drivers/vfio-pci/bind"));  // the good one was not bound either
    EXPECT_FALSE(fs::exists(root / "bus/pci/devices/0000:00:04.0/driver_override"));
}

TEST_F(FakeSysfs, AFailedBindGivesBackWhatTheCommandHadBound) {
    add_device("0000:00:06.0", "e1000e", 6);
    fs::create_directories(root / "bus/pci/drivers/e1000e");
    fs::create_directories(root / "bus/pci/devices/0000:00:06.0/driver_override");  // the kernel refuses the write
    const udrv::pci::Address both[] = {*udrv::pci::Address::parse("0000:00:04.0"), *udrv::pci::Address::parse("0000:00:06.0")};
    auto r = udrv::pci::bind_vfio_all(both, opts);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find("binding 0000:00:06.0 to vfio-pci"), std::string::npos) << r.error().message();
    EXPECT_NE(r.error().message().find("; gave back what this command had bound: 0000:00:04.0 (back on nvme)"), std::string::npos)
        << r.error().message();
    EXPECT_EQ(slurp(root / "bus/pci/devices/0000:00:04.0/driver_override"), "\n");  // its override is gone again
    EXPECT_EQ(slurp(root / "bus/pci/drivers_probe"), "0000:00:04.0");                // and the kernel was asked to take it back
}

}  // namespace
