// `udrv lspci` text and JSON on the captured virtio machine, with the fixture pci.ids.
#include <gtest/gtest.h>

#include "lspci_format.hpp"

namespace {

TEST(LspciFormat, MatchesLspciNnOnTheFixture) {
    auto devs = udrv::pci::scan(std::string(UDRV_FIXTURE_DIR) + "/sysfs/virtio-vm/devices");
    ASSERT_TRUE(devs);
    auto ids = *udrv::pci::IdDatabase::load(std::string(UDRV_FIXTURE_DIR) + "/pci.ids");
    const auto& net = (*devs)[3];
    EXPECT_EQ(udrv::tools::lspci_header(net, ids, false),
              "0000:00:03.0 Ethernet controller [0200]: Red Hat, Inc. Virtio 1.0 network device [1af4:1041] (rev 01)");
    std::string v = udrv::tools::format_device(net, ids, true);
    EXPECT_NE(v.find("\tSubsystem: Red Hat, Inc. Virtio 1.0 network device [1af4:1041]\n"), std::string::npos) << v;
    EXPECT_NE(v.find("\tRegion 0: Memory at 4000100000 (64-bit, non-prefetchable) [size=512K]\n"), std::string::npos) << v;
    EXPECT_NE(v.find("\tCapabilities: [70] Vendor Specific Information: VirtIO: Notify\n"
                     "\t\tBAR=0 offset=00006000 size=00001000 multiplier=00000004\n"), std::string::npos) << v;
    EXPECT_NE(v.find("\tCapabilities: [98] MSI-X: Enable+ Count=3 Masked-\n"
                     "\t\tVector table: BAR=0 offset=00008000\n\t\tPBA: BAR=0 offset=00048000\n"), std::string::npos) << v;
    EXPECT_NE(v.find("\tKernel driver in use: virtio-pci\n"), std::string::npos);
}

TEST(LspciFormat, Json) {
    auto devs = udrv::pci::scan(std::string(UDRV_FIXTURE_DIR) + "/sysfs/virtio-vm/devices");
    auto ids = *udrv::pci::IdDatabase::load(std::string(UDRV_FIXTURE_DIR) + "/pci.ids");
    auto j = udrv::tools::device_json((*devs)[3], ids);
    EXPECT_EQ(j["address"], "0000:00:03.0");
    EXPECT_EQ(j["vendor_id"], "1af4");
    EXPECT_EQ(j["class"], "020000");
    EXPECT_EQ(j["driver"], "virtio-pci");
    EXPECT_TRUE(j["iommu_group"].is_null());
    EXPECT_EQ(j["bars"][0]["size"], 524288);
    EXPECT_EQ(j["capabilities"].size(), 6u);
    EXPECT_EQ(j["capabilities"][5]["msix"]["table_size"], 3);
    EXPECT_EQ(j["capabilities"][3]["virtio"]["notify_multiplier"], 4);
}

TEST(LspciFormat, Sizes) {
    EXPECT_EQ(udrv::tools::format_size(512 * 1024), "512K");
    EXPECT_EQ(udrv::tools::format_size(16ull << 30), "16G");
    EXPECT_EQ(udrv::tools::format_size(1000), "1000");
    EXPECT_EQ(udrv::tools::format_size(32), "32");
}

}  // namespace
