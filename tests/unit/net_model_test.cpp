// The virtio-net and e1000e drivers against their device models: frames go out and come back through
// the real rings, the rings wrap (virtqueue indices past 65535, e1000e's 256 descriptors many times
// over), and what a device gets wrong (ids, lengths, error bits, a missing ACCESS_PLATFORM) is caught.
#include <gtest/gtest.h>

#include <cstring>

#include "e1000e/e1000e.hpp"
#include "net_models.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"
#include "virtio_net/virtio_net.hpp"

namespace {

using udrv::models::E1000eModel;
using udrv::models::VirtioNetModel;

class NetOnModel : public ::testing::Test {
protected:
    void SetUp() override {
        udrv::set_log_sink([this](udrv::LogLevel, std::string_view m) { log.emplace_back(m); });
        ASSERT_TRUE(loader.load_builtin("udrv_virtio_net"));
        ASSERT_TRUE(loader.load_builtin("udrv_e1000e"));
    }
    void TearDown() override {
        udrv::pci::bus().remove_all_devices();
        udrv::set_log_sink(nullptr);
    }
    template <typename Driver>
    Driver* add(const std::shared_ptr<udrv::models::ModelFunction>& m) {
        auto d = udrv::pci::bus().add_model(m->info(), m);
        EXPECT_TRUE(d) << (d ? "" : d.error().message());
        auto* drv = d ? (*d)->template driver_data<Driver>() : nullptr;
        EXPECT_NE(drv, nullptr) << (log.empty() ? "" : log.back());
        return drv;
    }
    // Sends `count` numbered frames on queue `q` and takes whatever comes back; returns the numbers seen.
    std::vector<std::uint32_t> round_trip(udrv::net::Device& dev, unsigned q, std::uint32_t count, unsigned batch = 32) {
        std::vector<std::uint32_t> seen;
        std::vector<udrv::net::Packet> rx(batch);
        for (std::uint32_t sent = 0; sent < count || seen.size() < count;) {
            if (sent < count) {
                std::vector<udrv::net::Packet> tx;
                for (unsigned i = 0; i < batch && sent + i < count; ++i) {
                    auto p = (*dev.tx_pool(q))->alloc();
                    if (!p) break;
                    EXPECT_TRUE(p->resize(64));
                    std::uint32_t n = sent + i;
                    std::memcpy(p->data().data() + 14, &n, 4);
                    tx.push_back(std::move(*p));
                }
                auto n = dev.tx_batch(q, tx);
                EXPECT_TRUE(n) << (n ? "" : n.error().message());
                if (!n) break;
                sent += *n;
            }
            auto got = dev.rx_batch(q, rx);
            EXPECT_TRUE(got) << (got ? "" : got.error().message());
            if (!got) break;
            for (unsigned i = 0; i < *got; ++i) {
                std::uint32_t n;
                std::memcpy(&n, rx[i].data().data() + 14, 4);
                seen.push_back(n);
                rx[i] = udrv::net::Packet();
            }
            if (sent >= count && *got == 0) break;
        }
        return seen;
    }
    udrv::Loader loader;
    std::vector<std::string> log;
};

TEST_F(NetOnModel, VirtioFramesGoOutAndComeBack) {
    auto model = std::make_shared<VirtioNetModel>();
    auto* v = add<udrv::virtio_net::VirtioNet>(model);
    ASSERT_NE(v, nullptr);
    EXPECT_TRUE(v->link_up());
    EXPECT_EQ(v->mac(), (udrv::net::Mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}));
    auto seen = round_trip(*v, 0, 1000);
    ASSERT_EQ(seen.size(), 1000u);
    for (std::uint32_t i = 0; i < 1000; ++i) ASSERT_EQ(seen[i], i);
    auto st = *v->stats();
    EXPECT_EQ(st.tx_packets, 1000u);
    EXPECT_EQ(st.rx_packets, 1000u);
    EXPECT_EQ(st.tx_bytes, 64000u);  // counted once per batch
    EXPECT_EQ(st.rx_bytes, 64000u);
    EXPECT_EQ(model->dma_faults(), 0u);
}

// The drivers' allocation fast paths (try_alloc, alloc_each) give out every buffer once, stop when the
// pool is empty, and give out nothing once the pool is detached (its device unbound).
TEST_F(NetOnModel, PoolFastPathsStopWhenEmptyAndWhenDetached) {
    auto model = std::make_shared<VirtioNetModel>();
    auto* v = add<udrv::virtio_net::VirtioNet>(model);
    ASSERT_NE(v, nullptr);
    auto pool = *v->tx_pool(0);
    std::vector<udrv::net::Packet> held;
    for (udrv::net::Packet p; pool->try_alloc(p); p = udrv::net::Packet()) held.push_back(std::move(p));
    EXPECT_EQ(held.size(), pool->capacity());
    EXPECT_EQ(pool->alloc_each(8, [](udrv::net::Packet&&) { ADD_FAILURE() << "a buffer from an empty pool"; }), 0u);
    held.resize(held.size() - 3);  // three back
    std::vector<udrv::net::Packet> more;
    EXPECT_EQ(pool->alloc_each(8, [&](udrv::net::Packet&& p) { more.push_back(std::move(p)); }), 3u);
    EXPECT_EQ(more.size(), 3u);
    more.clear();
    pool->detach();
    udrv::net::Packet p;
    EXPECT_FALSE(pool->try_alloc(p));
    EXPECT_FALSE(p);
    EXPECT_EQ(pool->alloc_each(8, [](udrv::net::Packet&&) { ADD_FAILURE() << "a buffer from a detached pool"; }), 0u);
}

// A virtqueue's indices are 16 bits: 70000 frames through 256-entry rings wrap them, and the driver
// must keep every frame in order across the wrap.
TEST_F(NetOnModel, VirtqueueIndicesWrapPast65535) {
    auto model = std::make_shared<VirtioNetModel>();
    auto* v = add<udrv::virtio_net::VirtioNet>(model);
    ASSERT_NE(v, nullptr);
    auto seen = round_trip(*v, 0, 70000);
    ASSERT_EQ(seen.size(), 70000u);
    for (std::uint32_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], i);
    EXPECT_EQ(model->frames_dropped(), 0u);
}

TEST_F(NetOnModel, VirtioWithoutAccessPlatformIsRefused) {
    VirtioNetModel::Options o;
    o.access_platform = false;
    auto model = std::make_shared<VirtioNetModel>("0000:00:08.0", o);
    auto d = udrv::pci::bus().add_model(model->info(), model);
    ASSERT_TRUE(d);
    auto r = udrv::pci::bus().attach(**d);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find("does not offer VIRTIO_F_ACCESS_PLATFORM"), std::string::npos) << r.error().message();
}

TEST_F(NetOnModel, VirtioCatchesWhatTheDeviceGetsWrong) {
    auto model = std::make_shared<VirtioNetModel>();
    auto* v = add<udrv::virtio_net::VirtioNet>(model);
    ASSERT_NE(v, nullptr);
    std::vector<std::byte> frame(60, std::byte{0x42});
    std::vector<udrv::net::Packet> rx(8);
    model->corrupt_next_rx_len(4096);  // longer than the buffer
    ASSERT_TRUE(model->inject(frame));
    EXPECT_EQ(*v->rx_batch(0, rx), 0u);
    EXPECT_EQ(v->stats()->rx_errors, 1u);
    model->corrupt_next_rx_id(9999);   // a descriptor that is not in flight
    ASSERT_TRUE(model->inject(frame));
    auto r = v->rx_batch(0, rx);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EPROTO);
    EXPECT_NE(r.error().message().find("returned descriptor 9999 that is not in flight"), std::string::npos) << r.error().message();
}

TEST_F(NetOnModel, VirtioMultiqueue) {
    VirtioNetModel::Options o;
    o.pairs = 2;
    auto model = std::make_shared<VirtioNetModel>("0000:00:0c.0", o);
    auto* v = add<udrv::virtio_net::VirtioNet>(model);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->max_queues(), 2u);
    ASSERT_TRUE(v->set_queues(2));
    EXPECT_EQ(model->active_pairs(), 2u);
    EXPECT_EQ(round_trip(*v, 1, 500).size(), 500u);
    EXPECT_EQ(v->set_queues(3).error().code(), EINVAL);
}

TEST_F(NetOnModel, VirtioReceiveInterrupts) {
    auto model = std::make_shared<VirtioNetModel>();
    auto* v = add<udrv::virtio_net::VirtioNet>(model);
    ASSERT_NE(v, nullptr);
    auto idle = v->rx_wait(0, udrv::net::WaitMode::interrupt, std::chrono::milliseconds(20));
    ASSERT_TRUE(idle);
    EXPECT_FALSE(*idle);  // nothing came
    std::vector<std::byte> frame(60, std::byte{1});
    ASSERT_TRUE(model->inject(frame));  // before the wait: found without sleeping
    auto w = v->rx_wait(0, udrv::net::WaitMode::interrupt, std::chrono::milliseconds(1000));
    ASSERT_TRUE(w);
    EXPECT_TRUE(*w);
}

TEST_F(NetOnModel, E1000eFramesGoOutAndComeBackAroundTheRing) {
    auto model = std::make_shared<E1000eModel>();
    auto* e = add<udrv::e1000e::E1000e>(model);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->mac(), (udrv::net::Mac{0x52, 0x54, 0x00, 0x00, 0x00, 0x06}));
    EXPECT_TRUE(e->link_up());
    auto seen = round_trip(*e, 0, 5000);  // the 256-descriptor rings wrap about 20 times
    ASSERT_EQ(seen.size(), 5000u);
    for (std::uint32_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], i);
    auto st = *e->stats();
    EXPECT_EQ(st.tx_packets, 5000u);  // from the device's counters
    EXPECT_EQ(st.rx_packets, 5000u);
    EXPECT_EQ(model->frames_missed(), 0u);
    EXPECT_EQ(model->dma_faults(), 0u);
}

TEST_F(NetOnModel, E1000eDropsBadDescriptorsAndCountsThem) {
    auto model = std::make_shared<E1000eModel>();
    auto* e = add<udrv::e1000e::E1000e>(model);
    ASSERT_NE(e, nullptr);
    std::vector<std::byte> frame(60, std::byte{7});
    std::vector<udrv::net::Packet> rx(8);
    ASSERT_TRUE(model->inject(frame, 0x01));  // CRC error
    model->corrupt_next_rx_len(3000);          // past the 2 KiB buffer
    ASSERT_TRUE(model->inject(frame));
    ASSERT_TRUE(model->inject(frame));
    EXPECT_EQ(*e->rx_batch(0, rx), 1u);        // only the good one
    EXPECT_EQ(e->stats()->rx_errors, 2u);
}

}  // namespace
