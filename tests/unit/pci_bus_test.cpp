// PCI drivers on the PCI bus: ID-table matching, probe with a Bound device, module glue.
#include <gtest/gtest.h>

#include "udrv/loader.hpp"
#include "udrv/log.hpp"
#include "udrv/pci.hpp"

namespace {

const std::string kFixture = std::string(UDRV_FIXTURE_DIR) + "/sysfs/virtio-vm/devices";

struct NetDriver {
    static constexpr udrv::pci::DeviceId ids[] = {udrv::pci::DeviceId::vendor_device(0x1af4, 0x1041, 42)};
    static inline int probes = 0, removes = 0;
    static udrv::Result<std::unique_ptr<NetDriver>> probe(udrv::Bound<udrv::pci::Device>& dev, const udrv::pci::DeviceId& id) {
        ++probes;
        EXPECT_EQ(id.driver_data, 42u);
        EXPECT_EQ(dev->info().class_code, 0x020000u);
        dev.add_action("count", [] { ++removes; });
        return std::make_unique<NetDriver>();
    }
};

struct ClassDriver {  // everything "unassigned class ff"
    static constexpr udrv::pci::DeviceId ids[] = {udrv::pci::DeviceId::by_class(0xff0000, 0xff0000)};
    static udrv::Result<std::unique_ptr<ClassDriver>> probe(udrv::Bound<udrv::pci::Device>&, const udrv::pci::DeviceId&) {
        return std::make_unique<ClassDriver>();
    }
};

TEST(PciBus, MatchesByIdAndByClass) {
    udrv::pci::Bus bus;
    bus.set_claim(udrv::pci::Claim::any);  // the fixture's devices belong to virtio-pci
    auto n = bus.scan(kFixture);
    ASSERT_TRUE(n) << n.error().message();
    EXPECT_EQ(*n, 6u);
    EXPECT_EQ(*bus.scan(kFixture), 0u) << "a rescan adds only new devices";
    udrv::pci::DriverFor<NetDriver> net("test-net");
    udrv::pci::DriverFor<ClassDriver> cls("test-class");
    ASSERT_TRUE(bus.register_driver(net));
    ASSERT_TRUE(bus.register_driver(cls));
    EXPECT_EQ(NetDriver::probes, 1);
    auto* d = bus.find(*udrv::pci::Address::parse("0000:00:03.0"));
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(d->driver(), &net);
    int by_class = 0;
    for (auto* dev : bus.devices()) by_class += dev->driver() == &cls;
    EXPECT_EQ(by_class, 3);  // balloon, socket, rng
    bus.unregister_driver(net);
    EXPECT_EQ(NetDriver::removes, 1);
}

TEST(PciBus, ByDefaultDevicesOfKernelDriversAreLeftAlone) {
    udrv::pci::Bus bus;
    ASSERT_TRUE(bus.scan(kFixture));
    udrv::pci::DriverFor<NetDriver> net("test-net");
    int before = NetDriver::probes;
    ASSERT_TRUE(bus.register_driver(net));
    EXPECT_EQ(NetDriver::probes, before) << "0000:00:03.0 belongs to virtio-pci, not vfio-pci";
}

TEST(PciBus, AnAllowListLimitsWhichDevicesAreProbed) {
    udrv::pci::Bus bus;
    bus.set_claim(udrv::pci::Claim::any);
    bus.allow_only({*udrv::pci::Address::parse("0000:00:05.0")});
    ASSERT_TRUE(bus.scan(kFixture));
    udrv::pci::DriverFor<ClassDriver> cls("test-class");
    ASSERT_TRUE(bus.register_driver(cls));
    std::vector<std::string> bound;
    for (auto* dev : bus.devices())
        if (dev->driver()) bound.push_back(dev->name());
    EXPECT_EQ(bound, std::vector<std::string>{"0000:00:05.0"});
    bus.allow(*udrv::pci::Address::parse("0000:00:01.0"));
    auto* d = bus.find(*udrv::pci::Address::parse("0000:00:01.0"));
    ASSERT_NE(d, nullptr);
    EXPECT_FALSE(d->is_bound()) << "allowing changes later matches, it does not probe by itself";
    ASSERT_TRUE(bus.attach(*d));
    EXPECT_TRUE(d->is_bound());
}

struct Probe {
    static constexpr udrv::pci::DeviceId ids[] = {udrv::pci::DeviceId::vendor_device(0x1af4, 0x1041)};
    static inline std::string error;
    static udrv::Result<std::unique_ptr<Probe>> probe(udrv::Bound<udrv::pci::Device>& dev, const udrv::pci::DeviceId&) {
        auto bar = dev.map_bar<4096>(0);
        if (!bar) error = bar.error().message();
        return udrv::fail(ENODEV, "not mine");
    }
};

TEST(PciBus, BoundOperationsWithoutVfioSayWhatToDo) {
    udrv::pci::Bus bus;
    bus.set_claim(udrv::pci::Claim::any);
    ASSERT_TRUE(bus.scan(kFixture));
    udrv::pci::DriverFor<Probe> drv("probe");
    ASSERT_TRUE(bus.register_driver(drv));
    EXPECT_EQ(Probe::error, "0000:00:03.0 is not opened through VFIO (kernel driver: virtio-pci): bind it with `udrv bind 0000:00:03.0`");
}

struct ParamDriver {  // a probe with a third argument sees its module's parameters
    static constexpr udrv::pci::DeviceId ids[] = {udrv::pci::DeviceId::vendor_device(0x1af4, 0x1041)};
    static constexpr udrv::Param<std::uint32_t> depth{"depth", 8, "queue depth"};
    static constexpr udrv::Param<bool> fast{"fast", false, "go fast"};
    static inline std::uint32_t seen_depth = 0;
    static inline bool seen_fast = false;
    static udrv::Result<std::unique_ptr<ParamDriver>> probe(udrv::Bound<udrv::pci::Device>&, const udrv::pci::DeviceId&,
                                                            const udrv::ThisModule& m) {
        seen_depth = m.param(depth);
        seen_fast = m.param(fast);
        return std::make_unique<ParamDriver>();
    }
};

TEST(PciBus, ProbeSeesItsModuleParameters) {
    udrv::pci::Bus bus;
    bus.set_claim(udrv::pci::Claim::any);
    ASSERT_TRUE(bus.scan(kFixture));
    udrv::pci::DriverFor<ParamDriver> drv(udrv::ThisModule("param-drv", {{"fast", udrv::ParamValue(true)}}));
    ASSERT_TRUE(bus.register_driver(drv));
    EXPECT_TRUE(ParamDriver::seen_fast) << "the value given at load time";
    EXPECT_EQ(ParamDriver::seen_depth, 8u) << "the declared default";
}

TEST(PciBus, ModuleRegistersWithTheGlobalBusAndUnregistersOnUnload) {
    udrv::set_log_sink([](udrv::LogLevel, std::string_view) {});
    udrv::pci::bus().set_claim(udrv::pci::Claim::any);
    ASSERT_TRUE(udrv::pci::bus().scan(kFixture));
    {
        udrv::Loader l;
        auto m = l.load(std::string(UDRV_TEST_MODULE_DIR) + "/test_pcidrv.so");
        ASSERT_TRUE(m) << m.error().message();
        auto* d = udrv::pci::bus().find(*udrv::pci::Address::parse("0000:00:03.0"));
        ASSERT_TRUE(d->driver());
        EXPECT_EQ(d->driver()->name(), "test_pcidrv");
        ASSERT_TRUE(l.unload("test_pcidrv"));
        EXPECT_FALSE(d->is_bound());
        EXPECT_EQ(udrv::pci::bus().find_driver("test_pcidrv"), nullptr);
    }
    udrv::pci::bus().remove_all_devices();
    udrv::set_log_sink(nullptr);
}

}  // namespace
