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

// The test VM's topology: bridges, a PCIe switch, link status, the capabilities lspci names.
TEST(LspciFormat, BridgesLinksAndJsonOnTheQ35Fixture) {
    const std::string dir = std::string(UDRV_FIXTURE_DIR) + "/sysfs/q35-vm";
    auto devs = udrv::pci::scan(dir + "/devices");
    ASSERT_TRUE(devs);
    auto ids = *udrv::pci::IdDatabase::load(dir + "/pci.ids");
    auto find = [&](std::string_view a) -> const udrv::pci::DeviceInfo& {
        for (auto& d : *devs)
            if (d.address.to_string() == a) return d;
        ADD_FAILURE() << a;
        return devs->front();
    };
    std::string pbr = udrv::tools::format_device(find("0000:00:12.0"), ids, true);
    EXPECT_NE(pbr.find("\tBus: primary=00, secondary=05, subordinate=05, sec-latency=0\n"
                       "\tI/O behind bridge: c000-cfff [size=4K] [16-bit]\n"), std::string::npos) << pbr;
    EXPECT_NE(pbr.find("\tCapabilities: [48] Slot ID: 0 slots, First+, chassis 04\n\tCapabilities: [40] Hot-plug capable\n"), std::string::npos);
    EXPECT_NE(pbr.find("\t\tMasking: 00000000  Pending: 00000000\n"), std::string::npos);
    std::string down = udrv::tools::format_device(find("0000:03:00.0"), ids, true);
    EXPECT_NE(down.find("\t\tLnkSta:\tSpeed 2.5GT/s (overdriven), Width x1 (overdriven)\n"), std::string::npos) << down;
    std::string port = udrv::tools::format_device(find("0000:00:10.0"), ids, true);
    EXPECT_NE(port.find("\tSubsystem: Red Hat, Inc. Device [1b36:0000]\n"), std::string::npos) << port;  // a bridge's, from sysfs
    auto j = udrv::tools::device_json(find("0000:00:06.0"), ids);
    EXPECT_EQ(j["class_name"], "Ethernet controller");  // the name; the code is "class"
    EXPECT_EQ(j["class"], "020000");
    bool dsn = false;
    for (auto& e : j["extended_capabilities"])
        if (e["id"] == 3) {
            dsn = true;
            EXPECT_EQ(e["name"], "Device Serial Number");
            EXPECT_EQ(e["serial"], "52-54-00-ff-ff-00-00-06");
        }
    EXPECT_TRUE(dsn);
}

}  // namespace
