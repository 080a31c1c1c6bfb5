// Enumeration from a captured sysfs tree (a virtio VM) and from hand-broken copies of it.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>

#include "udrv/pci.hpp"

namespace fs = std::filesystem;

namespace {

const fs::path kVirtioVm = fs::path(UDRV_FIXTURE_DIR) / "sysfs/virtio-vm/devices";

class BrokenTree : public ::testing::Test {
protected:
    void SetUp() override {
        root = fs::temp_directory_path() / ("udrv-sysfs-" + std::to_string(::getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(root);
        fs::copy(kVirtioVm, root, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
    }
    void TearDown() override { fs::remove_all(root); }
    void write(const fs::path& rel, const std::string& text) {
        std::ofstream(root / rel, std::ios::binary | std::ios::trunc) << text;
    }
    fs::path root;
};

TEST(PciSysfs, ReadsTheCapturedVirtioMachine) {
    auto devs = udrv::pci::scan(kVirtioVm);
    ASSERT_TRUE(devs) << devs.error().message();
    ASSERT_EQ(devs->size(), 6u);
    const auto& net = (*devs)[3];
    EXPECT_EQ(net.address.to_string(), "0000:00:03.0");
    EXPECT_EQ(net.vendor_id, 0x1af4);
    EXPECT_EQ(net.device_id, 0x1041);
    EXPECT_EQ(net.subsystem_vendor, 0x1af4);
    EXPECT_EQ(net.class_code, 0x020000u);
    EXPECT_EQ(net.revision, 1);
    EXPECT_EQ(net.driver, "virtio-pci");
    EXPECT_FALSE(net.iommu_group);
    EXPECT_EQ(net.numa_node, -1);
    ASSERT_EQ(net.bars.size(), 1u);
    EXPECT_EQ(net.bars[0].index, 0u);
    EXPECT_EQ(net.bars[0].start, 0x4000100000u);
    EXPECT_EQ(net.bars[0].size, 512u * 1024);
    EXPECT_TRUE(net.bars[0].is_64bit);
    EXPECT_FALSE(net.bars[0].prefetchable);
    ASSERT_EQ(net.config.caps.size(), 6u);
    const auto* msix = net.config.find_cap(udrv::pci::kCapMsix);
    ASSERT_TRUE(msix && msix->msix);
    EXPECT_EQ(msix->offset, 0x98);
    EXPECT_EQ(msix->msix->table_size, 3);
    EXPECT_EQ(msix->msix->pba_offset, 0x48000u);
    EXPECT_EQ(net.config.find_caps(udrv::pci::kCapVendor).size(), 5u);
    // The host bridge exposes 4096 bytes and no capabilities.
    EXPECT_EQ((*devs)[0].config.bytes.size(), 4096u);
    EXPECT_FALSE((*devs)[0].driver);
}

TEST(PciSysfs, MissingRootIsAnError) {
    auto r = udrv::pci::scan("/nonexistent/pci");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ENOENT);
    EXPECT_NE(r.error().message().find("/nonexistent/pci: cannot list PCI devices"), std::string::npos);
}

TEST_F(BrokenTree, MalformedResourceFileSkipsOnlyThatDevice) {
    write("0000:00:03.0/resource", "0x0000004000100000 garbage 0x0\n");
    std::vector<udrv::Error> problems;
    auto devs = udrv::pci::scan(root, &problems);
    ASSERT_TRUE(devs);
    EXPECT_EQ(devs->size(), 5u);
    ASSERT_EQ(problems.size(), 1u);
    EXPECT_NE(problems[0].message().find("0000:00:03.0/resource: line 1 is not 'start end flags' in hex"), std::string::npos)
        << problems[0].message();
}

TEST_F(BrokenTree, ResourceEndBelowStart) {
    write("0000:00:03.0/resource", "0x2000 0x1000 0x200\n");
    auto d = udrv::pci::read_device(root / "0000:00:03.0");
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message().find("end 0x1000 is below start 0x2000"), std::string::npos);
}

TEST_F(BrokenTree, TruncatedConfig) {
    write("0000:00:03.0/config", std::string(20, '\0'));
    auto d = udrv::pci::read_device(root / "0000:00:03.0");
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error().message(), (root / "0000:00:03.0").string() + "/config: config space is 20 bytes, shorter than the 64-byte header");
}

TEST_F(BrokenTree, VanishedDevice) {
    fs::remove_all(root / "0000:00:05.0");
    fs::create_directory_symlink("../gone/0000:00:05.0", root / "0000:00:05.0");  // a dangling sysfs link
    std::vector<udrv::Error> problems;
    auto devs = udrv::pci::scan(root, &problems);
    ASSERT_TRUE(devs);
    EXPECT_EQ(devs->size(), 5u);
    ASSERT_EQ(problems.size(), 1u);
    EXPECT_EQ(problems[0].code(), ENODEV);
    EXPECT_NE(problems[0].message().find("no such device (removed?)"), std::string::npos);
}

TEST_F(BrokenTree, BadAttributeValues) {
    write("0000:00:03.0/vendor", "0xzz\n");
    auto d = udrv::pci::read_device(root / "0000:00:03.0");
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message().find("vendor: expected a hex number up to 0xffff, got '0xzz'"), std::string::npos);
    write("0000:00:03.0/vendor", "0x1af4\n");
    write("0000:00:03.0/numa_node", "zero\n");
    d = udrv::pci::read_device(root / "0000:00:03.0");
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message().find("numa_node: expected an integer, got 'zero'"), std::string::npos);
}

TEST_F(BrokenTree, NotAnAddress) {
    fs::create_directory(root / "not-a-device");
    std::vector<udrv::Error> problems;
    ASSERT_TRUE(udrv::pci::scan(root, &problems));
    ASSERT_EQ(problems.size(), 1u);
    EXPECT_NE(problems[0].message().find("'not-a-device' is not a PCI address"), std::string::npos);
}

TEST_F(BrokenTree, IommuGroupAndLoopingCapabilities) {
    fs::create_directory_symlink("../../kernel/iommu_groups/7", root / "0000:00:03.0/iommu_group");
    // Make the last capability (MSI-X at 0x98) point back to the first (0x40).
    std::fstream f(root / "0000:00:03.0/config", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0x99);
    f.put(0x40);
    f.close();
    auto d = udrv::pci::read_device(root / "0000:00:03.0");
    ASSERT_TRUE(d) << d.error().message();
    EXPECT_EQ(d->iommu_group, 7u);
    EXPECT_EQ(d->config.caps.size(), 6u);
    ASSERT_EQ(d->config.problems.size(), 1u);
    EXPECT_EQ(d->config.problems[0], "capability list loops back to 0x40");
}

TEST_F(BrokenTree, ResourceSpanningTheWholeAddressSpace) {
    write("0000:00:03.0/resource", "0x0000000000000000 0xffffffffffffffff 0x0000000000040200\n");
    auto d = udrv::pci::read_device(root / "0000:00:03.0");
    ASSERT_FALSE(d);  // it used to become a BAR of size 0
    EXPECT_NE(d.error().message().find("spans the whole 64-bit address space"), std::string::npos) << d.error().message();
}

TEST_F(BrokenTree, FilesThatNeverEndAreRefused) {
    // A fixture (or a hostile tree) whose attributes are /dev/zero or a FIFO: refused, not read forever.
    fs::remove(root / "0000:00:03.0/resource");
    fs::create_symlink("/dev/zero", root / "0000:00:03.0/resource");
    auto d = udrv::pci::read_device(root / "0000:00:03.0");
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message().find("not a regular file (a character device)"), std::string::npos) << d.error().message();
    fs::remove(root / "0000:00:03.0/config");
    ASSERT_EQ(::mkfifo((root / "0000:00:03.0/config").c_str(), 0600), 0);
    d = udrv::pci::read_device(root / "0000:00:03.0");
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message().find("not a regular file (a FIFO)"), std::string::npos) << d.error().message();
    // An attribute far larger than any sysfs attribute.
    fs::remove(root / "0000:00:03.0/config");
    write("0000:00:03.0/config", std::string(8192, '\0'));
    d = udrv::pci::read_device(root / "0000:00:03.0");
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error().code(), EFBIG) << d.error().message();
}

TEST(PciAddress, ParseAndFormat) {
    EXPECT_EQ(udrv::pci::Address::parse("0000:00:03.0")->to_string(), "0000:00:03.0");
    EXPECT_EQ(udrv::pci::Address::parse("00:1f.7")->to_string(), "0000:00:1f.7");
    EXPECT_EQ(udrv::pci::Address::parse("10000:e1:00.1")->to_string(), "10000:e1:00.1");  // VMD domains
    for (auto bad : {"", "0000:00:20.0", "0000:00:03.8", "00:3.0", "0000:00:03", "zz:00.0", "0000:00:03.0x", ":00:03.0"})
        EXPECT_FALSE(udrv::pci::Address::parse(bad)) << bad;
    EXPECT_LT(*udrv::pci::Address::parse("0000:00:03.0"), *udrv::pci::Address::parse("0000:01:00.0"));
}

}  // namespace
