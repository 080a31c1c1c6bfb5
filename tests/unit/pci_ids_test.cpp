// pci.ids parsing and lspci -nn naming rules, on a small fixture database.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "udrv/pci.hpp"

namespace {

udrv::pci::IdDatabase db() {
    auto r = udrv::pci::IdDatabase::load(std::string(UDRV_FIXTURE_DIR) + "/pci.ids");
    EXPECT_TRUE(r) << (r ? "" : r.error().message());
    return *r;
}

TEST(PciIds, Lookups) {
    auto ids = db();
    EXPECT_EQ(*ids.vendor(0x1af4), "Red Hat, Inc.");
    EXPECT_EQ(*ids.device(0x1af4, 0x1041), "Virtio 1.0 network device");
    EXPECT_EQ(*ids.subsystem(0x8086, 0x10d3, 0x8086, 0xa01f), "Gigabit CT Desktop Adapter");
    EXPECT_EQ(*ids.class_name(0x02), "Network controller");
    EXPECT_EQ(*ids.subclass_name(0x01, 0x08), "Non-Volatile memory controller");
    EXPECT_EQ(*ids.prog_if_name(0x01, 0x08, 0x02), "NVM Express");
    EXPECT_EQ(ids.vendor(0xabcd), nullptr);
}

TEST(PciIds, LspciStyleNames) {
    auto ids = db();
    EXPECT_EQ(ids.describe_class(0x0200), "Ethernet controller [0200]");
    EXPECT_EQ(ids.describe_class(0x0280), "Network controller [0280]");  // unknown subclass: class name
    EXPECT_EQ(ids.describe_class(0x4201), "Class [4201]");
    EXPECT_EQ(ids.describe_device(0x1af4, 0x1041), "Red Hat, Inc. Virtio 1.0 network device [1af4:1041]");
    EXPECT_EQ(ids.describe_device(0x8086, 0x0d57), "Intel Corporation Device [8086:0d57]");
    EXPECT_EQ(ids.describe_device(0xabcd, 0x0001), "Device [abcd:0001]");
    EXPECT_EQ(ids.describe_subsystem(0x8086, 0x10d3, 0x8086, 0xa01f), "Intel Corporation Gigabit CT Desktop Adapter [8086:a01f]");
    EXPECT_EQ(ids.describe_subsystem(0x1af4, 0x1041, 0x1af4, 0x1041), "Red Hat, Inc. Virtio 1.0 network device [1af4:1041]");
    EXPECT_EQ(ids.describe_subsystem(0x1b36, 0x0010, 0x1af4, 0x1100), "Red Hat, Inc. Device [1af4:1100]");
}

TEST(PciIds, MissingDatabase) {
    auto r = udrv::pci::IdDatabase::load("/nonexistent/pci.ids");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find("cannot open pci.ids"), std::string::npos);
}

TEST(PciIds, DevicesAndFifosAreRefusedNotReadForever) {
    auto zero = udrv::pci::IdDatabase::load("/dev/zero");
    ASSERT_FALSE(zero);
    EXPECT_EQ(zero.error().message(), "/dev/zero: not a regular file (a character device): refusing to read it as pci.ids");
    const std::string fifo = "/tmp/udrv-ids-fifo-" + std::to_string(::getpid());
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    auto f = udrv::pci::IdDatabase::load(fifo);  // no writer: this would block forever
    ::unlink(fifo.c_str());
    ASSERT_FALSE(f);
    EXPECT_NE(f.error().message().find("not a regular file (a FIFO)"), std::string::npos);
}

}  // namespace
