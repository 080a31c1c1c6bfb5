// The driver core with a test bus: matching, probe order, devres ordering, failed probes, unbind.
#include <gtest/gtest.h>

#include "udrv/device.hpp"
#include "udrv/log.hpp"

namespace {

std::vector<std::string> g_events;

class TestBus;
class TestDevice : public udrv::Device {
public:
    TestDevice(TestBus& bus, std::string name, std::string kind);
    std::string kind;
};

class TestDriver : public udrv::Driver {
public:
    TestDriver(std::string name, std::string kind, bool fail_probe = false, int fail_code = EIO)
        : udrv::Driver(std::move(name)), kind(std::move(kind)), fail_probe(fail_probe), fail_code(fail_code) {}
    std::string kind;
    bool fail_probe;
    int fail_code;
};

struct PerDevice {
    std::string name;
    ~PerDevice() { g_events.push_back("remove " + name); }
};

class TestBus : public udrv::Bus {
public:
    TestBus() : udrv::Bus("test") {}
    ~TestBus() override { remove_all_devices(); }

protected:
    const void* match(const udrv::Device& dev, const udrv::Driver& drv) const override {
        auto& d = static_cast<const TestDevice&>(dev);
        auto& r = static_cast<const TestDriver&>(drv);
        return d.kind == r.kind ? &r.kind : nullptr;
    }
    udrv::Result<udrv::detail::DriverData> probe(udrv::Device& dev, udrv::Driver& drv, const void*) override {
        udrv::Bound<TestDevice> b(static_cast<TestDevice&>(dev), bound_key());
        auto& r = static_cast<TestDriver&>(drv);
        g_events.push_back("probe " + dev.name() + " by " + drv.name());
        b.add_action("first", [n = dev.name()] { g_events.push_back("release first " + n); });
        b.add_action("second", [n = dev.name()] { g_events.push_back("release second " + n); });
        if (r.fail_probe) return udrv::fail(r.fail_code, "simulated probe failure");
        return udrv::detail::make_driver_data(std::unique_ptr<PerDevice>(new PerDevice{dev.name()}));
    }
};

TestDevice::TestDevice(TestBus& bus, std::string name, std::string k) : udrv::Device(bus, std::move(name)), kind(std::move(k)) {}

class DeviceCore : public ::testing::Test {
protected:
    void SetUp() override {
        g_events.clear();
        udrv::set_log_sink([this](udrv::LogLevel, std::string_view m) { log.emplace_back(m); });
    }
    void TearDown() override { udrv::set_log_sink(nullptr); }
    std::vector<std::string> log;
};

TEST_F(DeviceCore, RegisteringADriverProbesMatchingDevicesInOrder) {
    TestBus bus;
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "a0", "a")));
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "b0", "b")));
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "a1", "a")));
    TestDriver drv("adrv", "a");
    ASSERT_TRUE(bus.register_driver(drv));
    EXPECT_EQ(g_events, (std::vector<std::string>{"probe a0 by adrv", "probe a1 by adrv"}));
    EXPECT_EQ(bus.find_device("a0")->driver(), &drv);
    EXPECT_FALSE(bus.find_device("b0")->is_bound());
    ASSERT_NE(bus.find_device("a1")->driver_data<PerDevice>(), nullptr);
    EXPECT_EQ(bus.find_device("a1")->driver_data<PerDevice>()->name, "a1");
    EXPECT_EQ(bus.find_device("a1")->driver_data<int>(), nullptr);  // wrong type: no access
}

TEST_F(DeviceCore, UnbindRunsRemoveThenReleasesResourcesInReverseOrder) {
    TestBus bus;
    TestDriver drv("adrv", "a");
    ASSERT_TRUE(bus.register_driver(drv));
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "a0", "a")));
    EXPECT_EQ(bus.find_device("a0")->devres_count(), 2u);
    g_events.clear();
    bus.unbind(*bus.find_device("a0"));
    EXPECT_EQ(g_events, (std::vector<std::string>{"remove a0", "release second a0", "release first a0"}));
    EXPECT_FALSE(bus.find_device("a0")->is_bound());
    EXPECT_EQ(bus.find_device("a0")->devres_count(), 0u);
}

TEST_F(DeviceCore, FailedProbeLeavesNothingBehind) {
    TestBus bus;
    TestDriver drv("broken", "a", true);
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "a0", "a")));
    ASSERT_TRUE(bus.register_driver(drv));  // as in the kernel: a probe failure does not fail registration
    EXPECT_EQ(g_events, (std::vector<std::string>{"probe a0 by broken", "release second a0", "release first a0"}));
    auto* dev = bus.find_device("a0");
    EXPECT_FALSE(dev->is_bound());
    EXPECT_EQ(dev->devres_count(), 0u);
    ASSERT_FALSE(log.empty());
    EXPECT_NE(log.back().find("broken a0: probe failed: simulated probe failure (EIO)"), std::string::npos) << log.back();
}

TEST_F(DeviceCore, AttachReturnsWhyTheProbeFailed) {
    TestBus bus;
    TestDriver declines("declines", "a", true, ENODEV), busy("busy", "a", true, EBUSY);
    ASSERT_TRUE(bus.register_driver(declines));
    ASSERT_TRUE(bus.register_driver(busy));
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "a0", "a")));
    auto r = bus.attach(*bus.find_device("a0"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EBUSY);
    EXPECT_EQ(r.error().message(), "a0: simulated probe failure");
    TestDriver only_declines("only", "b", true, ENODEV);
    ASSERT_TRUE(bus.register_driver(only_declines));
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "b0", "b")));
    r = bus.attach(*bus.find_device("b0"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ENODEV);
    EXPECT_EQ(r.error().message(), "b0: every matching driver declined it");
}

// What a tool shows for a device left unbound: the reason, kept on the device from the bus's last try.
TEST_F(DeviceCore, AnUnboundDeviceKeepsWhy) {
    TestBus bus;
    TestDriver busy("busy", "a", true, EBUSY);
    ASSERT_TRUE(bus.register_driver(busy));
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "a0", "a")));
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "z0", "z")));
    ASSERT_TRUE(bus.find_device("a0")->unbound_reason());
    EXPECT_EQ(bus.find_device("a0")->unbound_reason()->message(), "a0: simulated probe failure");
    ASSERT_TRUE(bus.find_device("z0")->unbound_reason());
    EXPECT_EQ(bus.find_device("z0")->unbound_reason()->message(), "z0: no driver matches it");
    TestDriver takes("takes", "z");
    ASSERT_TRUE(bus.register_driver(takes));  // binds z0
    EXPECT_EQ(bus.find_device("z0")->driver(), &takes);
    EXPECT_FALSE(bus.find_device("z0")->unbound_reason());
}

TEST_F(DeviceCore, NextDriverIsTriedWhenTheFirstDeclines) {
    TestBus bus;
    TestDriver first("first", "a", true, ENODEV), second("second", "a");
    ASSERT_TRUE(bus.register_driver(first));
    ASSERT_TRUE(bus.register_driver(second));
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "a0", "a")));
    EXPECT_EQ(bus.find_device("a0")->driver(), &second);
    EXPECT_TRUE(log.empty()) << "ENODEV from probe means 'not mine' and is not an error";
}

TEST_F(DeviceCore, ExplicitBindChecksStateAndMatch) {
    TestBus bus;
    TestDriver adrv("adrv", "a"), bdrv("bdrv", "b");
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "a0", "a")));
    ASSERT_TRUE(bus.register_driver(bdrv));
    auto* dev = bus.find_device("a0");
    auto r = bus.bind(*dev, bdrv);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ENODEV);
    EXPECT_EQ(r.error().message(), "driver bdrv does not support device a0");
    ASSERT_TRUE(bus.register_driver(adrv));
    EXPECT_EQ(bus.bind(*dev, adrv).error().code(), EBUSY);  // registration already bound it
}

TEST_F(DeviceCore, DuplicatesAreRefused) {
    TestBus bus;
    TestDriver d1("same", "a"), d2("same", "b");
    ASSERT_TRUE(bus.register_driver(d1));
    EXPECT_EQ(bus.register_driver(d2).error().code(), EEXIST);
    EXPECT_EQ(bus.register_driver(d1).error().code(), EBUSY);
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "x", "z")));
    EXPECT_EQ(bus.add_device(std::make_unique<TestDevice>(bus, "x", "z")).error().code(), EEXIST);
    EXPECT_EQ(bus.remove_device("nope").error().code(), ENOENT);
}

TEST_F(DeviceCore, UnregisteringADriverUnbindsItsDevicesLastFirst) {
    TestBus bus;
    TestDriver drv("adrv", "a");
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "a0", "a")));
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "a1", "a")));
    ASSERT_TRUE(bus.register_driver(drv));
    g_events.clear();
    bus.unregister_driver(drv);
    EXPECT_EQ(g_events, (std::vector<std::string>{"remove a1", "release second a1", "release first a1", "remove a0",
                                                  "release second a0", "release first a0"}));
    EXPECT_EQ(drv.bus(), nullptr);
}

TEST_F(DeviceCore, DriverDestructorUnregisters) {
    TestBus bus;
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "a0", "a")));
    {
        TestDriver drv("scoped", "a");
        ASSERT_TRUE(bus.register_driver(drv));
        EXPECT_TRUE(bus.find_device("a0")->is_bound());
    }
    EXPECT_FALSE(bus.find_device("a0")->is_bound());
    EXPECT_EQ(bus.find_driver("scoped"), nullptr);
}

TEST_F(DeviceCore, DevresHandleIsRevokedAtUnbind) {
    struct ManagingBus : TestBus {
        udrv::Devres<std::string> handle;
        udrv::Result<udrv::detail::DriverData> probe(udrv::Device& dev, udrv::Driver&, const void*) override {
            udrv::Bound<TestDevice> b(static_cast<TestDevice&>(dev), bound_key());
            handle = b.manage("name", std::string("resource of ") + dev.name());
            return udrv::detail::make_driver_data(std::make_unique<int>(1));
        }
    } bus;
    TestDriver drv("m", "a");
    ASSERT_TRUE(bus.register_driver(drv));
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "a0", "a")));
    ASSERT_TRUE(bus.handle.access());
    EXPECT_EQ(bus.handle.access()->get(), "resource of a0");
    bus.unbind(*bus.find_device("a0"));
    EXPECT_TRUE(bus.handle.revoked());
    EXPECT_EQ(bus.handle.access().error().code(), ENODEV);
}

TEST_F(DeviceCore, DevLogPrefixNamesDriverAndDevice) {
    TestBus bus;
    TestDriver drv("adrv", "a");
    ASSERT_TRUE(bus.register_driver(drv));
    ASSERT_TRUE(bus.add_device(std::make_unique<TestDevice>(bus, "a0", "a")));
    udrv::dev_info(*bus.find_device("a0"), "link up at {} Mb/s", 1000);
    ASSERT_FALSE(log.empty());
    EXPECT_EQ(log.back(), "adrv a0: link up at 1000 Mb/s");
    udrv::set_log_level(udrv::LogLevel::warn);
    udrv::dev_info(*bus.find_device("a0"), "dropped");
    udrv::set_log_level(udrv::LogLevel::info);
    EXPECT_EQ(log.back(), "adrv a0: link up at 1000 Mb/s");
}

}  // namespace
