// Platform descriptions (good and bad), the platform bus and the ramdisk driver.
#include <gtest/gtest.h>

#include <fstream>

#include "ramdisk/ramdisk.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"
#include "udrv/platform.hpp"

namespace {

udrv::Error parse_error(std::string_view toml) {
    auto r = udrv::platform::parse_description(toml, "t.toml");
    EXPECT_FALSE(r) << toml;
    return r ? udrv::Error(0, "") : r.error();
}

TEST(PlatformDescription, ParsesEverything) {
    auto r = udrv::platform::parse_description(R"(
[[device]]
name = "rd0"
compatible = ["acme,rd-v2", "udrv,ramdisk"]
memory = [{ name = "storage", start = 0x1000_0000, size = 0x10000 }, { start = 0x2000_0000, size = 4096 }]
irq = { name = "done", number = 5 }
[device.properties]
block-size = 4096
label = "scratch"
ratio = 0.5
fast = true

[[device]]
name = "rd1"
compatible = "udrv,ramdisk"
)", "t.toml");
    ASSERT_TRUE(r) << r.error().message();
    ASSERT_EQ(r->size(), 2u);
    const auto& d = (*r)[0];
    EXPECT_EQ(d.name, "rd0");
    EXPECT_EQ(d.compatible, (std::vector<std::string>{"acme,rd-v2", "udrv,ramdisk"}));
    ASSERT_EQ(d.memory.size(), 2u);
    EXPECT_EQ(d.memory[0].start, 0x10000000u);
    EXPECT_EQ(d.memory[1].name, "");
    ASSERT_EQ(d.irqs.size(), 1u);
    EXPECT_EQ(d.irqs[0].number, 5u);
    EXPECT_EQ(std::get<std::int64_t>(d.properties.at("block-size")), 4096);
    EXPECT_EQ(std::get<std::string>(d.properties.at("label")), "scratch");
    EXPECT_EQ(d.source, "t.toml:2");
    EXPECT_EQ((*r)[1].source, "t.toml:13");
}

TEST(PlatformDescription, ErrorsNameTheLine) {
    EXPECT_EQ(parse_error("[[device]]\nname = \"a\"\ncompatible = \"x\"\ncolour = 1\n").message(),
              "t.toml:4: unknown key 'colour' in [[device]] (allowed: name, compatible, memory, irq, properties)");
    EXPECT_EQ(parse_error("[[device]]\nname = \"a\"\n").message(), "t.toml:1: device 'a' has no 'compatible' (e.g. compatible = \"udrv,ramdisk\")");
    EXPECT_EQ(parse_error("[[device]]\ncompatible = \"x\"\n").message(), "t.toml:1: [[device]] has no 'name'");
    EXPECT_EQ(parse_error("[[device]]\nname = \"a\"\ncompatible = \"x\"\n\n[[device]]\nname = \"a\"\ncompatible = \"y\"\n").message(),
              "t.toml:5: duplicate device name 'a' (first at t.toml:1)");
    EXPECT_EQ(parse_error("[[device]]\nname = \"a\"\ncompatible = \"x\"\nmemory = [{ name = \"m\", start = 0x1000, size = 0x1000 },\n"
                          "  { name = \"n\", start = 0x1800, size = 0x100 }]\n").message(),
              "t.toml:1: device 'a': memory resources 'm' [0x1000-0x1fff] and 'n' [0x1800-0x18ff] overlap");
    EXPECT_EQ(parse_error("[[device]]\nname = \"a\"\ncompatible = \"x\"\nmemory = { start = 0x1000, size = 0x1000 }\n"
                          "[[device]]\nname = \"b\"\ncompatible = \"x\"\nmemory = { name = \"r\", start = 0x1fff, size = 1 }\n").message(),
              "t.toml:5: memory 'r' [0x1fff-0x1fff] of 'b' overlaps '' [0x1000-0x1fff] of 'a' (t.toml:1)");
    EXPECT_EQ(parse_error("[[device]]\nname = \"a\"\ncompatible = \"x\"\nmemory = { start = 1, size = 0, bogus = 2 }\n").message(),
              "t.toml:4: unknown key 'bogus' in a memory resource (allowed: name, start, size)");
    EXPECT_EQ(parse_error("[[device]]\nname = \"a\"\ncompatible = \"x\"\nmemory = { start = 1, size = 0 }\n").message(),
              "t.toml:1: device 'a': memory resource 0 ('') has size 0");
    EXPECT_EQ(parse_error("[[device]]\nname = \"a\"\ncompatible = \"x\"\nmemory = { start = -1, size = 1 }\n").message(),
              "t.toml:4: 'start' in a memory resource must be a non-negative integer");
    EXPECT_EQ(parse_error("[[device]]\nname = \"a b\"\ncompatible = \"x\"\n").message(),
              "t.toml:1: device name 'a b' may only contain letters, digits, '_', '-' and '.'");
    EXPECT_EQ(parse_error("[[device]]\nname = \"a\"\ncompatible = []\n").message(), "t.toml:1: device 'a' has no compatible string");
    EXPECT_EQ(parse_error("[[device]]\nname = \"a\"\ncompatible = \"x\"\nirq = [{ name = \"i\", number = 1 }, { name = \"i\", number = 2 }]\n").message(),
              "t.toml:1: device 'a': two irq resources named 'i'");
    EXPECT_EQ(parse_error("device = 3\n").message(), "t.toml:1: 'device' must be an array of tables ([[device]])");
    EXPECT_EQ(parse_error("").message(), "t.toml: no [[device]] tables: nothing to register");
    EXPECT_EQ(parse_error("[[device]]\nname = \"a\"\ncompatible = \"x\"\n[device.properties]\nlist = [1, 2]\n").message(),
              "t.toml:5: property 'list' of device 'a' must be a boolean, integer, float or string");
    auto syntax = parse_error("[[device]]\nname = \"a\n");
    EXPECT_EQ(syntax.message(), "t.toml:2:8: string is not closed on its line (a '\"' is missing)");
}

TEST(PlatformDescription, DevicesAreNotDescriptions) {
    auto r = udrv::platform::load_description("/dev/zero");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message(), "/dev/zero: not a regular file (a character device): refusing to read it as description");
}

TEST(PlatformDescription, MissingFile) {
    auto r = udrv::platform::load_description("/nonexistent/devices.toml");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message(), "/nonexistent/devices.toml: cannot open description: No such file or directory");
}

class RamdiskTest : public ::testing::Test {
protected:
    void SetUp() override {
        udrv::set_log_sink([this](udrv::LogLevel, std::string_view m) { log.emplace_back(m); });
        ASSERT_TRUE(loader.load("udrv_ramdisk"));  // built in
    }
    void TearDown() override {
        udrv::platform::bus().remove_all_devices();
        udrv::set_log_sink(nullptr);
    }
    udrv::platform::DeviceDesc desc(std::string name, std::uint64_t size) {
        udrv::platform::DeviceDesc d;
        d.name = std::move(name);
        d.compatible = {"udrv,ramdisk"};
        d.memory = {{"storage", 0x10000000, size}};
        return d;
    }
    udrv::Loader loader;
    std::vector<std::string> log;
};

TEST_F(RamdiskTest, BindsReadsWritesAndChecksBounds) {
    auto dev = udrv::platform::bus().register_device(desc("rd0", 64 * 1024));
    ASSERT_TRUE(dev) << dev.error().message();
    ASSERT_NE((*dev)->driver(), nullptr);
    EXPECT_EQ((*dev)->driver()->name(), "udrv_ramdisk");
    auto* rd = (*dev)->driver_data<udrv::ramdisk::Ramdisk>();
    ASSERT_NE(rd, nullptr);
    EXPECT_EQ(rd->block_size(), 512u);
    EXPECT_EQ(rd->block_count(), 128u);
    std::vector<std::byte> out(1024, std::byte{0xab}), in(1024);
    ASSERT_TRUE(rd->write(126, out));
    ASSERT_TRUE(rd->read(126, in));
    EXPECT_EQ(in, out);
    EXPECT_EQ(rd->write(127, out).error().code(), ERANGE);
    EXPECT_EQ(rd->read(0, std::span(in).first(100)).error().message(), "rd0: transfer of 100 bytes is not a multiple of the 512-byte block");
    EXPECT_EQ(rd->read(UINT64_MAX, in).error().code(), ERANGE);
    EXPECT_NE(std::find(log.begin(), log.end(), "udrv_ramdisk rd0: ram0: 128 blocks of 512 bytes (64 KiB)"), log.end());
}

TEST_F(RamdiskTest, BadConfigurationFailsProbeAndLeavesItUnbound) {
    auto d = desc("rd0", 1000);
    auto dev = udrv::platform::bus().register_device(d);
    ASSERT_TRUE(dev);
    EXPECT_FALSE((*dev)->is_bound());
    EXPECT_EQ((*dev)->devres_count(), 0u);
    EXPECT_NE(log.back().find("capacity 1000 bytes is not a multiple of block-size 512"), std::string::npos) << log.back();
    auto d2 = desc("rd1", 4096);
    d2.memory[0].start = 0x20000000;
    d2.properties["block-size"] = std::int64_t{768};
    dev = udrv::platform::bus().register_device(d2);
    ASSERT_TRUE(dev);
    EXPECT_FALSE((*dev)->is_bound());
    EXPECT_NE(log.back().find("block-size 768 must be a power of two"), std::string::npos);
}

TEST_F(RamdiskTest, RegistrationRefusesConflicts) {
    ASSERT_TRUE(udrv::platform::bus().register_device(desc("rd0", 4096)));
    auto dup = udrv::platform::bus().register_device(desc("rd0", 4096));
    EXPECT_EQ(dup.error().code(), EEXIST);
    auto overlap = udrv::platform::bus().register_device(desc("rd1", 4096));
    ASSERT_FALSE(overlap);
    EXPECT_EQ(overlap.error().code(), EBUSY);
    EXPECT_NE(overlap.error().message().find("overlaps 'storage' [0x10000000-0x10000fff] of 'rd0'"), std::string::npos)
        << overlap.error().message();
}

TEST_F(RamdiskTest, ImageIsLoadedAndPersistedAtUnbind) {
    std::string image = ::testing::TempDir() + "udrv-ramdisk-test.img";
    {
        std::ofstream(image, std::ios::binary) << std::string(512, 'A') << std::string(512, 'B');
    }
    auto d = desc("rd0", 4096);
    d.properties["image"] = image;
    d.properties["persist"] = true;
    auto dev = udrv::platform::bus().register_device(d);
    ASSERT_TRUE(dev);
    auto* rd = (*dev)->driver_data<udrv::ramdisk::Ramdisk>();
    ASSERT_NE(rd, nullptr);
    std::vector<std::byte> blk(512);
    ASSERT_TRUE(rd->read(1, blk));
    EXPECT_EQ(blk[0], std::byte{'B'});
    std::vector<std::byte> c(512, std::byte{'C'});
    ASSERT_TRUE(rd->write(7, c));
    ASSERT_TRUE(udrv::platform::bus().unregister_device("rd0"));
    std::ifstream in(image, std::ios::binary);
    std::string contents((std::istreambuf_iterator<char>(in)), {});
    ASSERT_EQ(contents.size(), 4096u);
    EXPECT_EQ(contents.substr(0, 512), std::string(512, 'A'));
    EXPECT_EQ(contents.substr(7 * 512), std::string(512, 'C'));
    std::remove(image.c_str());
}

TEST_F(RamdiskTest, ResourcesByIndexAndName) {
    auto d = desc("rd0", 4096);
    d.irqs = {{"done", 9}};
    auto dev = udrv::platform::bus().register_device(d);
    ASSERT_TRUE(dev);
    EXPECT_EQ((*(*dev)->memory("storage"))->size, 4096u);
    EXPECT_EQ((*(*dev)->irq(0))->number, 9u);
    EXPECT_EQ((*dev)->memory(1).error().message(), "rd0: no memory resource 1 (it has 1)");
    EXPECT_EQ((*dev)->irq("error").error().message(), "rd0: no irq resource named 'error'");
    EXPECT_EQ((*dev)->property<std::string>("image").error().code(), ENOENT);
}

TEST_F(RamdiskTest, UnloadingTheModuleUnbindsItsDevices) {
    auto dev = udrv::platform::bus().register_device(desc("rd0", 4096));
    ASSERT_TRUE(dev);
    ASSERT_TRUE((*dev)->is_bound());
    ASSERT_TRUE(loader.unload("udrv_ramdisk"));
    EXPECT_FALSE((*dev)->is_bound());
    EXPECT_EQ((*dev)->devres_count(), 0u);
}

struct ParamPlatformDriver {  // a probe with a third argument sees its module's parameters
    static constexpr std::string_view compatible[] = {"test,param"};
    static constexpr udrv::Param<std::string_view> mode{"mode", "slow", "how"};
    static inline std::string seen;
    static udrv::Result<std::unique_ptr<ParamPlatformDriver>> probe(udrv::Bound<udrv::platform::Device>&, std::string_view,
                                                                    const udrv::ThisModule& m) {
        seen = std::string(m.param(mode));
        return std::make_unique<ParamPlatformDriver>();
    }
};

TEST(PlatformBus, ProbeSeesItsModuleParameters) {
    udrv::platform::Bus bus;
    udrv::platform::DriverFor<ParamPlatformDriver> drv(udrv::ThisModule("param-drv", {{"mode", udrv::ParamValue(std::string("fast"))}}));
    ASSERT_TRUE(bus.register_driver(drv));
    udrv::platform::DeviceDesc d;
    d.name = "p0";
    d.compatible = {"test,param"};
    auto dev = bus.register_device(d);
    ASSERT_TRUE(dev) << dev.error().message();
    EXPECT_TRUE((*dev)->is_bound());
    EXPECT_EQ(ParamPlatformDriver::seen, "fast");
    bus.remove_all_devices();
}

}  // namespace
