// lspci's -s and -d selectors, with lspci's meaning: parts may be left out or be *, all hexadecimal.
#include <gtest/gtest.h>

#include "lspci_select.hpp"

namespace {

using udrv::pci::Address;
using udrv::tools::parse_id_filter;
using udrv::tools::parse_slot_filter;

Address at(std::uint32_t dom, std::uint8_t bus, std::uint8_t dev, std::uint8_t fn) { return Address{dom, bus, dev, fn}; }

TEST(LspciSelect, SlotsAsLspciReadsThem) {
    auto bus_dev = *parse_slot_filter("00:03");  // bus 0, device 3, any function
    EXPECT_TRUE(bus_dev.matches(at(0, 0, 3, 0)));
    EXPECT_TRUE(bus_dev.matches(at(0, 0, 3, 1)));
    EXPECT_FALSE(bus_dev.matches(at(0, 1, 3, 0)));
    EXPECT_FALSE(bus_dev.matches(at(0, 0, 4, 0)));
    auto dev_only = *parse_slot_filter("1f");  // device 0x1f on any bus
    EXPECT_TRUE(dev_only.matches(at(0, 7, 0x1f, 2)));
    auto fn_only = *parse_slot_filter(".1");
    EXPECT_TRUE(fn_only.matches(at(1, 2, 3, 1)));
    EXPECT_FALSE(fn_only.matches(at(1, 2, 3, 0)));
    auto full = *parse_slot_filter("0000:00:04.0");
    EXPECT_TRUE(full.matches(at(0, 0, 4, 0)));
    EXPECT_FALSE(full.matches(at(1, 0, 4, 0)));
    auto wild = *parse_slot_filter("*:*.3");
    EXPECT_TRUE(wild.matches(at(0, 9, 17, 3)));
    EXPECT_TRUE(parse_slot_filter("")->matches(at(5, 6, 7, 1)));
}

TEST(LspciSelect, BadSlotsSayWhatIsWrong) {
    EXPECT_EQ(parse_slot_filter("00:20").error().message(), "'00:20': device 20 is too large (at most 1f)");
    EXPECT_EQ(parse_slot_filter("00:03.8").error().message(), "'00:03.8': function 8 is too large (at most 7)");
    EXPECT_EQ(parse_slot_filter("100:00").error().message(), "'100:00': bus 100 is too large (at most ff)");
    EXPECT_NE(parse_slot_filter("xy:00").error().message().find("bus 'xy' is not hexadecimal"), std::string::npos);
    EXPECT_NE(parse_slot_filter("0:0:0:0").error().message().find("too many ':'"), std::string::npos);
}

TEST(LspciSelect, IdsAndClasses) {
    udrv::pci::DeviceInfo virtio;
    virtio.vendor_id = 0x1af4, virtio.device_id = 0x1041, virtio.class_code = 0x020000;
    udrv::pci::DeviceInfo nvme;
    nvme.vendor_id = 0x1b36, nvme.device_id = 0x0010, nvme.class_code = 0x010802;
    EXPECT_TRUE(parse_id_filter("1af4:")->matches(virtio));
    EXPECT_FALSE(parse_id_filter("1af4:")->matches(nvme));
    EXPECT_TRUE(parse_id_filter(":0010")->matches(nvme));
    EXPECT_TRUE(parse_id_filter("::0200")->matches(virtio));
    EXPECT_FALSE(parse_id_filter("::0200")->matches(nvme));
    EXPECT_TRUE(parse_id_filter("::0108:02")->matches(nvme));
    EXPECT_FALSE(parse_id_filter("::0108:01")->matches(nvme));
    EXPECT_TRUE(parse_id_filter("*:*")->matches(nvme));
    EXPECT_NE(parse_id_filter("1af4").error().message().find("not a device ID selector"), std::string::npos);
    EXPECT_EQ(parse_id_filter("10000:").error().message(), "'10000:': vendor 10000 is too large (at most ffff)");
}

}  // namespace
