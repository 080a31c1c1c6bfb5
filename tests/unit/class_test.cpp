// The device-class layer: drivers publish block, net and nvme devices by name at probe; users open them
// by name or stable path without knowing the driver; unbind withdraws the publication before the
// driver's remove, and everything opened before (handles, queues, packets) fails with ENODEV after it
// instead of reaching freed memory. Under make asan, LSan checks that nothing opened is leaked.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "net_models.hpp"
#include "nvme_model.hpp"
#include "udrv/block.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"
#include "udrv/net.hpp"
#include "udrv/nvme.hpp"
#include "udrv/platform.hpp"

namespace {

struct Done {
    int ok = 0, failed = 0, last_code = 0;
    static void cb(void* c, const udrv::Result<void>& r) {
        auto* d = static_cast<Done*>(c);
        if (r) ++d->ok;
        else ++d->failed, d->last_code = r.error().code();
    }
};

class Classes : public ::testing::Test {
protected:
    void SetUp() override {
        udrv::set_log_sink([this](udrv::LogLevel, std::string_view m) { log.emplace_back(m); });
        for (const char* m : {"udrv_ramdisk", "udrv_nvme", "udrv_virtio_net", "udrv_e1000e"}) ASSERT_TRUE(loader.load(m)) << m;
    }
    void TearDown() override {
        udrv::pci::bus().remove_all_devices();
        udrv::platform::bus().remove_all_devices();
        udrv::set_log_sink(nullptr);
    }
    udrv::platform::Device* ramdisk(std::string name, std::uint64_t start) {
        udrv::platform::DeviceDesc d;
        d.name = std::move(name);
        d.compatible = {"udrv,ramdisk"};
        d.memory = {{"storage", start, 64 * 1024}};
        auto dev = udrv::platform::bus().register_device(d);
        EXPECT_TRUE(dev) << (dev ? "" : dev.error().message());
        return dev ? *dev : nullptr;
    }
    udrv::Loader loader;
    std::vector<std::string> log;
};

std::vector<std::string> block_names() {
    std::vector<std::string> n;
    for (auto& l : udrv::block::list()) n.push_back(l.id.name);
    std::sort(n.begin(), n.end());
    return n;
}

TEST_F(Classes, BlockDevicesAreNamedAndFoundByNameOrPath) {
    ramdisk("rd0", 0x10000000);
    ramdisk("rd1", 0x20000000);
    EXPECT_EQ(block_names(), (std::vector<std::string>{"ram0", "ram1"}));
    auto h = udrv::block::open("ram1");
    ASSERT_TRUE(h) << h.error().message();
    EXPECT_EQ(h->id().path, "rd1");
    EXPECT_EQ(h->id().driver, "udrv_ramdisk");
    EXPECT_EQ(h->id().bus, "platform");
    EXPECT_EQ(h->info().blocks, 128u);
    EXPECT_EQ(udrv::block::open("rd0")->id().name, "ram0");  // by path
    auto missing = udrv::block::open("ram7");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code(), ENODEV);
    EXPECT_EQ(missing.error().message(), "no block device ram7 in this process; there are: ram0 (rd0), ram1 (rd1)");
    // A freed name is given again, lowest first, as the kernel's IDA does.
    ASSERT_TRUE(udrv::platform::bus().remove_device("rd0"));
    EXPECT_EQ(block_names(), (std::vector<std::string>{"ram1"}));
    ramdisk("rd2", 0x30000000);
    EXPECT_EQ(udrv::block::open("rd2")->id().name, "ram0");
}

TEST_F(Classes, AHandleAndAQueueHeldPastUnbindGetEnodev) {
    ramdisk("rd0", 0x10000000);
    auto h = udrv::block::open("ram0");
    ASSERT_TRUE(h);
    auto q = h->open_queue(4, udrv::block::Mode::polled);
    ASSERT_TRUE(q) << q.error().message();
    auto buf = h->alloc_buffer(512);
    ASSERT_TRUE(buf);
    std::memset(buf->bytes().data(), 0x5a, 512);
    Done d;
    ASSERT_TRUE((*q)->write(3, 1, buf->bytes(), &Done::cb, &d));
    ASSERT_TRUE((*q)->poll());
    EXPECT_EQ(d.ok, 1);

    ASSERT_TRUE(udrv::platform::bus().remove_device("rd0"));
    EXPECT_FALSE(h->alive());
    auto q2 = h->open_queue(4, udrv::block::Mode::polled);
    ASSERT_FALSE(q2);
    EXPECT_EQ(q2.error().code(), ENODEV);
    EXPECT_NE(q2.error().message().find("ram0 (rd0): the device was unbound from udrv_ramdisk"), std::string::npos)
        << q2.error().message();
    EXPECT_EQ(h->alloc_buffer(512).error().code(), ENODEV);
    EXPECT_EQ((*q)->read(3, 1, buf->bytes(), &Done::cb, &d).error().code(), ENODEV);
    // The buffer stays the caller's memory until dropped.
    EXPECT_EQ(buf->bytes()[0], std::byte{0x5a});
    EXPECT_EQ(udrv::block::open("ram0").error().code(), ENODEV);
}

// A driver whose remove looks for its own publication: withdrawn already, so nobody can open (and so
// enter) a device whose driver is tearing it down.
struct PublishingDriver final : udrv::block::Device {
    static constexpr std::string_view compatible[] = {"test,publisher"};
    static inline bool visible_in_remove = true;
    static inline std::string published;
    udrv::block::Info info_{.name = "test", .block_size = 512, .blocks = 8};
    static udrv::Result<std::unique_ptr<PublishingDriver>> probe(udrv::Bound<udrv::platform::Device>& dev, std::string_view) {
        auto p = std::make_unique<PublishingDriver>();
        published = UDRV_TRY(udrv::block::publish(dev, *p, udrv::ClassName::exactly("pub0"), "p0"));
        return p;
    }
    ~PublishingDriver() override { visible_in_remove = static_cast<bool>(udrv::block::open("pub0")); }
    const udrv::block::Info& info() const override { return info_; }
    udrv::Result<std::unique_ptr<udrv::block::Queue>> open_queue(unsigned, udrv::block::Mode) override { return udrv::fail(ENOTSUP, "test"); }
    udrv::Result<udrv::block::Buffer> alloc_buffer(std::size_t) override { return udrv::fail(ENOTSUP, "test"); }
};

TEST(ClassLayer, UnbindWithdrawsBeforeTheDriversRemove) {
    udrv::platform::Bus bus;
    udrv::platform::DriverFor<PublishingDriver> drv("test-publisher");
    ASSERT_TRUE(bus.register_driver(drv));
    udrv::platform::DeviceDesc d;
    d.name = "p0";
    d.compatible = {"test,publisher"};
    ASSERT_TRUE(bus.register_device(d));
    EXPECT_EQ(PublishingDriver::published, "pub0");
    auto h = udrv::block::open("pub0");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->id().driver, "test-publisher");
    EXPECT_EQ(h->id().device, "p0");
    bus.remove_all_devices();
    EXPECT_FALSE(PublishingDriver::visible_in_remove);
    EXPECT_FALSE(h->alive());
}

TEST(ClassLayer, ANameTakenTwiceIsRefusedAndTheProbeFails) {
    udrv::platform::Bus bus;
    udrv::platform::DriverFor<PublishingDriver> drv("test-publisher");
    ASSERT_TRUE(bus.register_driver(drv));
    udrv::platform::DeviceDesc d;
    d.name = "p0";
    d.compatible = {"test,publisher"};
    auto first = bus.register_device(d);
    ASSERT_TRUE(first && (*first)->is_bound());
    d.name = "p1";  // publishes the same name, "pub0", again
    auto second = bus.register_device(d);
    ASSERT_TRUE(second);
    EXPECT_FALSE((*second)->is_bound());
    EXPECT_EQ(udrv::block::list().size(), 1u);
    bus.remove_all_devices();
    EXPECT_TRUE(udrv::block::list().empty());
}

TEST_F(Classes, NvmeControllerAndNamespacesThroughTheirClasses) {
    auto model = std::make_shared<udrv::models::NvmeModel>("0000:00:04.0");
    ASSERT_TRUE(udrv::pci::bus().add_model(model->info(), model));
    auto c = udrv::nvme::open("00:04.0");  // as lspci prints the address
    ASSERT_TRUE(c) << c.error().message();
    EXPECT_EQ(c->id().name, "nvme0");
    EXPECT_EQ(c->id().driver, "udrv_nvme");
    auto ns = c->namespaces();
    ASSERT_TRUE(ns);
    ASSERT_EQ(ns->size(), 1u);
    EXPECT_EQ((*ns)[0].block_device, "nvme0n1");
    auto id = c->identify(udrv::nvme::kCnsController, 0);
    ASSERT_TRUE(id) << id.error().message();
    EXPECT_EQ(id->size(), 4096u);

    auto b = udrv::block::open("0000:00:04.0/ns1");
    ASSERT_TRUE(b) << b.error().message();
    EXPECT_EQ(b->id().name, "nvme0n1");
    EXPECT_EQ(b->info().blocks, 8192u);
    EXPECT_GT(b->info().max_queues, 0u);  // the controller's I/O queues, shared by its namespaces
    auto q = b->open_queue(4, udrv::block::Mode::polled);
    ASSERT_TRUE(q) << q.error().message();
    auto buf = b->alloc_buffer(4096);
    ASSERT_TRUE(buf);
    std::memset(buf->bytes().data(), 0xc3, 4096);
    Done d;
    ASSERT_TRUE((*q)->write(16, 8, buf->bytes(), &Done::cb, &d));
    while (d.ok + d.failed < 1) ASSERT_TRUE((*q)->wait(std::chrono::milliseconds(10)));
    EXPECT_EQ(d.ok, 1);

    ASSERT_TRUE(udrv::pci::bus().remove_device("0000:00:04.0"));
    EXPECT_EQ(c->reset().error().code(), ENODEV);
    EXPECT_EQ(c->identify(udrv::nvme::kCnsController, 0).error().code(), ENODEV);
    EXPECT_EQ(b->open_queue(4, udrv::block::Mode::polled).error().code(), ENODEV);
    EXPECT_EQ((*q)->write(16, 8, buf->bytes(), &Done::cb, &d).error().code(), ENODEV);
    EXPECT_TRUE(udrv::nvme::list().empty());
    EXPECT_TRUE(udrv::block::list().empty());
}

TEST_F(Classes, NetDevicesAreNamedAndListed) {
    auto v = std::make_shared<udrv::models::VirtioNetModel>("0000:00:07.0");
    auto e = std::make_shared<udrv::models::E1000eModel>("0000:00:06.0");
    ASSERT_TRUE(udrv::pci::bus().add_model(v->info(), v));
    ASSERT_TRUE(udrv::pci::bus().add_model(e->info(), e));
    auto l = udrv::net::list();
    ASSERT_EQ(l.size(), 2u);
    std::sort(l.begin(), l.end(), [](auto& a, auto& b) { return a.id.name < b.id.name; });
    EXPECT_EQ(l[0].id.name, "net0");
    EXPECT_EQ(l[0].id.driver, "udrv_virtio_net");
    EXPECT_EQ(l[0].id.path, "0000:00:07.0");
    EXPECT_EQ(l[0].mac, (udrv::net::Mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}));
    EXPECT_EQ(l[1].id.name, "net1");
    EXPECT_EQ(l[1].id.driver, "udrv_e1000e");
    auto h = udrv::net::open("00:06.0");
    ASSERT_TRUE(h) << h.error().message();
    EXPECT_EQ(h->id().name, "net1");
    EXPECT_EQ(h->queues(), 1u);
}

// A packet received before unbind stays readable after it (the pool's memory lives until the last
// packet goes), but it cannot be sent anywhere: its buffer is no longer mapped for any device.
TEST_F(Classes, PacketsHeldPastUnbindAreReadableButRefused) {
    auto v = std::make_shared<udrv::models::VirtioNetModel>("0000:00:07.0");
    auto e = std::make_shared<udrv::models::E1000eModel>("0000:00:06.0");
    ASSERT_TRUE(udrv::pci::bus().add_model(v->info(), v));
    ASSERT_TRUE(udrv::pci::bus().add_model(e->info(), e));
    auto a = udrv::net::open("0000:00:07.0");
    auto b = udrv::net::open("0000:00:06.0");
    ASSERT_TRUE(a && b);
    auto pool = a->tx_pool(0);
    ASSERT_TRUE(pool) << pool.error().message();
    auto p = (*pool)->alloc();
    ASSERT_TRUE(p);
    ASSERT_TRUE(p->resize(60));
    std::memset(p->data().data(), 0x77, 60);
    std::vector<udrv::net::Packet> tx;
    tx.push_back(std::move(*p));
    ASSERT_EQ(*a->tx_batch(0, tx), 1u);
    std::vector<udrv::net::Packet> rx(4);
    unsigned got = 0;
    for (int i = 0; i < 1000 && got == 0; ++i) got = *a->rx_batch(0, rx);  // the model loops it back
    ASSERT_EQ(got, 1u);
    auto held = (*pool)->alloc();
    ASSERT_TRUE(held);
    ASSERT_TRUE(held->resize(60));

    ASSERT_TRUE(udrv::pci::bus().remove_device("0000:00:07.0"));
    EXPECT_TRUE(rx[0].orphaned());
    EXPECT_EQ(rx[0].size(), 60u);
    EXPECT_EQ(rx[0].data()[59], std::byte{0x77});
    EXPECT_EQ(a->rx_batch(0, rx).error().code(), ENODEV);
    EXPECT_EQ(a->tx_pool(0).error().code(), ENODEV);
    auto more = (*pool)->alloc();
    ASSERT_FALSE(more);
    EXPECT_EQ(more.error().code(), ENODEV);
    std::vector<udrv::net::Packet> other;
    other.push_back(std::move(*held));
    auto sent = b->tx_batch(0, other);  // a buffer of the unbound device's pool, to the other NIC
    ASSERT_FALSE(sent);
    EXPECT_EQ(sent.error().code(), ENODEV) << sent.error().message();
    // Dropping the packets and the pool last frees the memory (LSan under make asan).
    rx.clear();
    other.clear();
    pool->reset();
}

}  // namespace
