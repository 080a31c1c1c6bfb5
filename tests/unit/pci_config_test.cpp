// Config-space parsing on synthetic, deliberately broken capability lists.
#include <gtest/gtest.h>

#include "udrv/pci.hpp"

namespace {

// A 256-byte type-0 config space with the capability list bit set and `first` as the pointer.
struct Cfg {
    std::vector<std::uint8_t> b = std::vector<std::uint8_t>(256, 0);
    explicit Cfg(std::uint16_t vendor = 0x1b36, std::uint16_t device = 0x0010, std::size_t size = 256) {
        b.resize(size);
        w16(0x00, vendor);
        w16(0x02, device);
        w16(0x06, 0x0010);
        b[0x08] = 0x02;                     // revision
        b[0x09] = 0x02; b[0x0a] = 0x08; b[0x0b] = 0x01;  // NVMe class 01:08:02
        w16(0x2c, 0x1af4);
        w16(0x2e, 0x1100);
    }
    void w16(std::size_t o, std::uint16_t v) { b[o] = v & 0xff; b[o + 1] = v >> 8; }
    void w32(std::size_t o, std::uint32_t v) { w16(o, v & 0xffff); w16(o + 2, v >> 16); }
    void cap(std::size_t at, std::uint8_t id, std::uint8_t next) { b[at] = id; b[at + 1] = next; }
    udrv::pci::ConfigSpace parse() {
        auto r = udrv::pci::ConfigSpace::parse(b);
        EXPECT_TRUE(r) << (r ? "" : r.error().message());
        return r ? *r : udrv::pci::ConfigSpace{};
    }
};

TEST(PciConfig, HeaderFields) {
    Cfg c;
    auto cs = c.parse();
    EXPECT_EQ(cs.vendor_id, 0x1b36);
    EXPECT_EQ(cs.device_id, 0x0010);
    EXPECT_EQ(cs.class_code, 0x010802u);
    EXPECT_EQ(cs.revision, 2);
    EXPECT_EQ(cs.subsystem_vendor, 0x1af4);
    EXPECT_EQ(cs.subsystem_device, 0x1100);
    EXPECT_TRUE(cs.caps.empty());
    EXPECT_TRUE(cs.problems.empty());
}

TEST(PciConfig, DecodesPmMsiMsixAndExpress) {
    Cfg c;
    c.b[0x34] = 0x40;
    c.cap(0x40, 0x11, 0x50);           // MSI-X: 65 vectors, enabled, table in BAR0 @ 0x2000, PBA BAR0 @ 0x3000
    c.w16(0x42, 0x8040);
    c.w32(0x44, 0x2000);
    c.w32(0x48, 0x3000);
    c.cap(0x50, 0x01, 0x60);           // PM version 3
    c.w16(0x52, 0x0003);
    c.cap(0x60, 0x05, 0x80);           // MSI: 64-bit, 4 vectors capable, per-vector mask
    c.w16(0x62, 0x0184);
    c.cap(0x80, 0x10, 0x00);           // PCIe v2 endpoint
    c.w16(0x82, 0x0002);
    auto cs = c.parse();
    ASSERT_EQ(cs.caps.size(), 4u);
    EXPECT_TRUE(cs.problems.empty());
    const auto* msix = cs.find_cap(udrv::pci::kCapMsix);
    ASSERT_TRUE(msix && msix->msix);
    EXPECT_EQ(msix->msix->table_size, 65);
    EXPECT_TRUE(msix->msix->enabled);
    EXPECT_EQ(msix->msix->table_bir, 0);
    EXPECT_EQ(msix->msix->table_offset, 0x2000u);
    EXPECT_EQ(msix->msix->pba_offset, 0x3000u);
    EXPECT_EQ(cs.find_cap(udrv::pci::kCapPm)->pm_version, 3);
    const auto* msi = cs.find_cap(udrv::pci::kCapMsi);
    EXPECT_EQ(msi->msi->vectors_capable, 4);
    EXPECT_TRUE(msi->msi->is_64bit);
    EXPECT_TRUE(msi->msi->per_vector_mask);
    EXPECT_EQ(cs.find_cap(udrv::pci::kCapExpress)->express->version, 2);
    EXPECT_EQ(cs.find_cap(udrv::pci::kCapExpress)->express->port_type, 0);
}

TEST(PciConfig, VirtioVendorCapabilities) {
    Cfg c(0x1af4, 0x1041);
    c.b[0x34] = 0x40;
    c.cap(0x40, 0x09, 0x54);
    c.b[0x42] = 20; c.b[0x43] = 2; c.b[0x44] = 4;   // notify cfg in BAR4
    c.w32(0x48, 0x3000); c.w32(0x4c, 0x1000); c.w32(0x50, 4);
    c.cap(0x54, 0x09, 0);
    c.b[0x56] = 16; c.b[0x57] = 1; c.b[0x58] = 4;   // common cfg
    auto cs = c.parse();
    auto v = cs.find_caps(udrv::pci::kCapVendor);
    ASSERT_EQ(v.size(), 2u);
    ASSERT_TRUE(v[0]->virtio);
    EXPECT_EQ(v[0]->virtio->cfg_type, 2);
    EXPECT_EQ(v[0]->virtio->bar, 4);
    EXPECT_EQ(v[0]->virtio->offset, 0x3000u);
    EXPECT_EQ(v[0]->virtio->notify_multiplier, 4u);
    EXPECT_EQ(v[1]->virtio->cfg_type, 1);
    EXPECT_FALSE(v[1]->virtio->notify_multiplier);
}

TEST(PciConfig, LoopIsDetected) {
    Cfg c;
    c.b[0x34] = 0x40;
    c.cap(0x40, 0x01, 0x50);
    c.cap(0x50, 0x05, 0x40);
    auto cs = c.parse();
    EXPECT_EQ(cs.caps.size(), 2u);
    ASSERT_EQ(cs.problems.size(), 1u);
    EXPECT_EQ(cs.problems[0], "capability list loops back to 0x40");
}

TEST(PciConfig, SelfLoopAndPointerIntoHeader) {
    Cfg c;
    c.b[0x34] = 0x40;
    c.cap(0x40, 0x01, 0x40);
    EXPECT_EQ(c.parse().problems.at(0), "capability list loops back to 0x40");
    c.cap(0x40, 0x01, 0x10);
    EXPECT_EQ(c.parse().problems.at(0), "capability pointer 0x10 is out of range (must be 0x40-0xfc)");
}

TEST(PciConfig, CapabilityBeyondWhatIsReadable) {
    Cfg c(0x1b36, 0x10, 64);            // only the header is readable (not root)
    c.b[0x34] = 0x40;
    auto cs = c.parse();
    EXPECT_TRUE(cs.caps.empty());
    ASSERT_EQ(cs.problems.size(), 1u);
    EXPECT_NE(cs.problems[0].find("beyond the 64 readable bytes"), std::string::npos);
}

TEST(PciConfig, TruncatedCapabilityBody) {
    Cfg c(0x1b36, 0x10, 0x48);          // MSI-X header fits, its table/PBA words do not
    c.b[0x34] = 0x40;
    c.cap(0x40, 0x11, 0);
    auto cs = c.parse();
    ASSERT_EQ(cs.problems.size(), 1u);
    EXPECT_EQ(cs.problems[0], "capability 0x11 at 0x40 is truncated");
    ASSERT_EQ(cs.caps.size(), 1u);
    EXPECT_FALSE(cs.caps[0].msix);
}

TEST(PciConfig, MsixNamingAnInvalidBar) {
    Cfg c;
    c.b[0x34] = 0x40;
    c.cap(0x40, 0x11, 0);
    c.w32(0x44, 0x2007);
    EXPECT_EQ(c.parse().problems.at(0), "MSI-X capability at 0x40 names BAR 7 (valid: 0-5)");
}

TEST(PciConfig, ExtendedCapabilities) {
    Cfg c(0x8086, 0x10d3, 4096);
    c.w32(0x100, 0x14010001);           // AER v1, next 0x140
    c.w32(0x140, 0x00010003);           // DSN v1, end
    auto cs = c.parse();
    ASSERT_EQ(cs.ext_caps.size(), 2u);
    EXPECT_EQ(cs.ext_caps[0].id, 1);
    EXPECT_EQ(cs.ext_caps[1].offset, 0x140);
    EXPECT_EQ(cs.ext_caps[1].id, 3);
    EXPECT_TRUE(cs.problems.empty());
    c.w32(0x140, 0x10010003);           // points back to 0x100
    EXPECT_EQ(c.parse().problems.at(0), "extended capability list loops back to 0x100");
    c.w32(0x140, 0x08010003);           // next into the legacy area
    EXPECT_EQ(c.parse().problems.at(0), "extended capability pointer 0x80 is out of range");
}

TEST(PciConfig, BridgeHeader) {
    Cfg c(0x8086, 0x29c0);
    c.b[0x0e] = 0x81;                   // type 1, multi-function
    c.b[0x18] = 0; c.b[0x19] = 1; c.b[0x1a] = 4;
    c.b[0x34] = 0x40;
    c.cap(0x40, 0x0d, 0);               // subsystem ID capability
    c.w16(0x44, 0x1af4);
    c.w16(0x46, 0x1100);
    auto cs = c.parse();
    EXPECT_TRUE(cs.multifunction);
    EXPECT_EQ(cs.secondary_bus, 1);
    EXPECT_EQ(cs.subordinate_bus, 4);
    EXPECT_EQ(cs.subsystem_vendor, 0x1af4);
}

TEST(PciConfig, HardErrors) {
    EXPECT_EQ(udrv::pci::ConfigSpace::parse(std::vector<std::uint8_t>(10)).error().message(),
              "config space is 10 bytes, shorter than the 64-byte header");
    auto gone = udrv::pci::ConfigSpace::parse(std::vector<std::uint8_t>(256, 0xff));
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code(), ENODEV);
}

TEST(PciConfig, UnknownHeaderType) {
    Cfg c;
    c.b[0x0e] = 0x05;
    EXPECT_EQ(c.parse().problems.at(0), "unknown header type 0x5");
}

}  // namespace
