// The virtio-net and e1000e drivers against their device models: frames go out and come back through
// the real rings, the rings wrap (virtqueue indices past 65535, e1000e's 256 descriptors many times
// over), and what a device gets wrong (ids, lengths, error bits, a missing ACCESS_PLATFORM) is caught.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <stdexcept>
#include <tuple>

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
    // round_trip through bursts: alloc_burst, tx_burst, rx_burst, clear.
    std::vector<std::uint32_t> round_trip_bursts(udrv::net::Device& dev, unsigned q, std::uint32_t count, unsigned batch = 32) {
        std::vector<std::uint32_t> seen;
        auto pool = *dev.tx_pool(q);
        udrv::net::Burst tx, rx;
        for (std::uint32_t sent = 0; sent < count || seen.size() < count;) {
            if (sent < count) {
                const unsigned before = tx.size();  // frames a full ring left in the burst last time
                auto made = pool->alloc_burst(tx, std::min<std::uint32_t>(batch, count - sent) - std::min(before, batch), 64);
                EXPECT_TRUE(made) << (made ? "" : made.error().message());
                for (unsigned i = before; i < tx.size(); ++i) {
                    std::uint32_t n = sent + i;
                    std::memcpy(tx.data(i).data() + 14, &n, 4);
                }
                auto n = dev.tx_burst(q, tx);
                EXPECT_TRUE(n) << (n ? "" : n.error().message());
                if (!n) break;
                sent += *n;
            }
            auto got = dev.rx_burst(q, rx);
            EXPECT_TRUE(got) << (got ? "" : got.error().message());
            if (!got) break;
            EXPECT_EQ(rx.size(), *got);
            for (unsigned i = 0; i < rx.size(); ++i) {
                EXPECT_EQ(rx.length(i), 64u);
                std::uint32_t n;
                std::memcpy(&n, rx.data(i).data() + 14, 4);
                seen.push_back(n);
            }
            rx.clear();
            if (sent >= count && *got == 0) break;
        }
        return seen;
    }
    udrv::Loader loader;
    std::vector<std::string> log;
};

// A device that has only the per-packet calls: bursts go through net::Device's defaults over them.
class BatchOnly final : public udrv::net::Device {
public:
    explicit BatchOnly(udrv::net::Device& d) : d_(d) {}
    udrv::net::Mac mac() const override { return d_.mac(); }
    bool link_up() const override { return d_.link_up(); }
    udrv::Result<udrv::net::Stats> stats() override { return d_.stats(); }
    udrv::Result<void> set_promiscuous(bool on) override { return d_.set_promiscuous(on); }
    unsigned queues() const override { return d_.queues(); }
    udrv::Result<unsigned> rx_batch(unsigned q, std::span<udrv::net::Packet> out) override { return d_.rx_batch(q, out); }
    udrv::Result<unsigned> tx_batch(unsigned q, std::span<udrv::net::Packet> p) override { return d_.tx_batch(q, p); }
    udrv::Result<std::shared_ptr<udrv::net::PacketPool>> tx_pool(unsigned q) override { return d_.tx_pool(q); }
    udrv::Result<bool> rx_wait(unsigned q, udrv::net::WaitMode m, std::chrono::milliseconds t) override { return d_.rx_wait(q, m, t); }

private:
    udrv::net::Device& d_;
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

// The burst path: the same frames, in order, through both drivers' own burst code and through the
// defaults over rx_batch/tx_batch; the rings wrap many times and the counters agree.
TEST_F(NetOnModel, BurstsGoOutAndComeBackInOrder) {
    auto vm = std::make_shared<VirtioNetModel>();
    auto* v = add<udrv::virtio_net::VirtioNet>(vm);
    auto em = std::make_shared<E1000eModel>();
    auto* e = add<udrv::e1000e::E1000e>(em);
    ASSERT_NE(v, nullptr);
    ASSERT_NE(e, nullptr);
    BatchOnly plain(*v);
    for (auto [dev, count, batch] : {std::tuple<udrv::net::Device*, std::uint32_t, unsigned>{v, 70000, 32}, {v, 3000, 1}, {e, 5000, 32},
                                     {e, 700, 1}, {&plain, 3000, 32}, {v, 3000, 200}}) {
        auto seen = round_trip_bursts(*dev, 0, count, batch);
        ASSERT_EQ(seen.size(), count) << "batch " << batch;
        for (std::uint32_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], i) << "batch " << batch;
    }
    auto st = *v->stats();
    EXPECT_EQ(st.tx_packets, 79000u);
    EXPECT_EQ(st.rx_packets, 79000u);
    EXPECT_EQ(st.rx_bytes, 79000u * 64);
    EXPECT_EQ(e->stats()->rx_packets, 5700u);
    EXPECT_EQ(vm->dma_faults() + em->dma_faults(), 0u);
    EXPECT_EQ(vm->frames_dropped(), 0u);
    EXPECT_EQ(em->frames_missed(), 0u);
}

// A busy device: a full transmit ring takes no frames until 32 descriptors are free again, however
// few the caller brings (the frames stay in the caller's burst), and a device that returns buffers in
// order gets its descriptors back in order, the table walked front to back as the rings are.
TEST_F(NetOnModel, VirtioFullTransmitRingWaitsForARun) {
    auto model = std::make_shared<VirtioNetModel>(std::string("0000:00:07.0"), VirtioNetModel::Options{.loopback = false});
    auto* v = add<udrv::virtio_net::VirtioNet>(model);
    ASSERT_NE(v, nullptr);
    auto pool = *v->tx_pool(0);
    model->hold_tx(true);
    udrv::net::Burst b;
    unsigned queued = 0;
    for (int round = 0; round < 16; ++round) {  // 16 x 32 frames offered to a 256-entry ring
        ASSERT_TRUE(pool->alloc_burst(b, 32 - b.size(), 64));
        queued += *v->tx_burst(0, b);
    }
    EXPECT_EQ(queued, 256u);
    ASSERT_EQ(b.size(), 32u);
    b.clear();
    ASSERT_TRUE(pool->alloc_burst(b, 1, 64));
    model->release_tx(31);  // 31 free: not yet
    EXPECT_EQ(*v->tx_burst(0, b), 0u);
    EXPECT_EQ(b.size(), 1u);
    model->release_tx(1);  // 32 free
    EXPECT_EQ(*v->tx_burst(0, b), 1u);
    EXPECT_TRUE(b.empty());
    model->hold_tx(false);
    model->release_tx(UINT_MAX);
    // The first 256 took descriptors 0-255 in order; the ones after them reuse 0, 1, ... in the order
    // the device gave them back.
    const auto& ids = model->tx_descriptor_ids();
    ASSERT_EQ(ids.size(), 257u);
    for (std::size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], i % 256) << i;
    EXPECT_EQ(model->frames_sent(), 257u);
    EXPECT_EQ(model->dma_faults(), 0u);
}

// A device that gives transmit descriptors back wrongly: one it never returns (the used element names
// another id), one beyond the ring, one it already returned. Each is counted in tx_errors and frees
// nothing twice; the ring keeps going around the descriptor the device still holds, and that buffer
// goes back at unbind.
TEST_F(NetOnModel, VirtioTransmitSurvivesWhatTheDeviceGivesBackWrongly) {
    auto model = std::make_shared<VirtioNetModel>(std::string("0000:00:07.0"), VirtioNetModel::Options{.loopback = false});
    auto* v = add<udrv::virtio_net::VirtioNet>(model);
    ASSERT_NE(v, nullptr);
    auto pool = *v->tx_pool(0);
    const auto full = pool->available();
    model->hold_tx(true);
    udrv::net::Burst b;
    unsigned queued = 0;
    for (int round = 0; round < 8; ++round) {  // the 256-entry ring filled
        ASSERT_TRUE(pool->alloc_burst(b, 32 - b.size(), 64));
        queued += *v->tx_burst(0, b);
    }
    ASSERT_EQ(queued, 256u);
    b.clear();
    model->corrupt_next_tx_id(9999);  // descriptor 0 comes back as 9999: beyond the ring, and 0 is lost
    model->release_tx(16);            // 9999, 1, ..., 15
    model->corrupt_next_tx_id(3);     // descriptor 16 comes back as 3, which is back already: 16 is lost too
    model->release_tx(16);            // 3, 17, ..., 31
    // 30 descriptors are free; 32 frames are offered and the ring takes them into the 30 free slots.
    ASSERT_TRUE(pool->alloc_burst(b, 32, 64));
    EXPECT_EQ(*v->tx_burst(0, b), 30u);
    EXPECT_EQ(b.size(), 2u);
    EXPECT_EQ(v->stats()->tx_errors, 2u);
    b.clear();
    // Held by the device: 256 - 32 + 30 frames, plus the two lost descriptors' buffers.
    EXPECT_EQ(pool->available(), full - 256);
    model->hold_tx(false);
    model->release_tx(UINT_MAX);
    // The slots taken out of order (1-15, 17-31) went to the device; every frame it sent came from a
    // descriptor it held.
    EXPECT_EQ(model->frames_sent(), 32u + 254u);
    EXPECT_EQ(model->dma_faults(), 0u);
    ASSERT_TRUE(pool->alloc_burst(b, 1, 64));  // reclaims what came back
    EXPECT_EQ(*v->tx_burst(0, b), 1u);
    b.clear();
    model->release_tx(UINT_MAX);
    ASSERT_TRUE(udrv::pci::bus().remove_device(model->address()));  // unbind: what the slots held (the lost two among it) goes back
    EXPECT_EQ(pool->available(), full);
}

// A device that gives a transmit descriptor back after later ones (allowed without VIRTIO_F_IN_ORDER):
// while it holds it, frames go around its slot, each available-ring entry written with the descriptor
// it offers; once it is back, the ring returns to descriptor i in entry i, entries left as they are
// (OwnAdder::add_own). Across both, and several times around the ring, the device sends exactly the
// frames it was given, in order.
TEST_F(NetOnModel, VirtioTransmitOutOfOrderSendsEachFrameOnceInOrder) {
    auto model = std::make_shared<VirtioNetModel>(std::string("0000:00:07.0"), VirtioNetModel::Options{.loopback = false});
    auto* v = add<udrv::virtio_net::VirtioNet>(model);
    ASSERT_NE(v, nullptr);
    auto pool = *v->tx_pool(0);
    udrv::net::Burst b;
    std::uint32_t next = 0;
    auto send = [&](int rounds) {
        for (int r = 0; r < rounds; ++r) {
            ASSERT_TRUE(pool->alloc_burst(b, 32 - b.size(), 64));
            for (unsigned i = 0; i < b.size(); ++i) {
                const std::uint32_t number = next + i;
                std::memcpy(b.data(i).data(), &number, sizeof number);
            }
            const unsigned sent = *v->tx_burst(0, b);
            next += sent;
            b.clear();  // what did not go is numbered again next round
        }
    };
    model->hold_back_next_tx();  // descriptor 0
    send(20);                    // 640 frames: 2.5 times around the ring, around slot 0
    model->return_held_tx();
    send(40);  // back in entry order (after the next reclaim), then a whole ring of own entries, and more
    model->hold_back_next_tx();
    send(10);
    model->return_held_tx();
    send(20);
    const auto& frames = model->transmitted();
    ASSERT_EQ(frames.size(), next);
    for (std::uint32_t i = 0; i < next; ++i) {
        std::uint32_t number = 0;
        ASSERT_GE(frames[i].size(), sizeof number);
        std::memcpy(&number, frames[i].data(), sizeof number);
        ASSERT_EQ(number, i) << "frame " << i;
    }
    EXPECT_GT(next, 2800u);
    EXPECT_EQ(v->stats()->tx_errors, 0u);
    EXPECT_EQ(model->dma_faults(), 0u);
}

// What a burst promises its user: packets in order from the front, lengths within the buffer, one pool
// per burst, and every buffer back in the pool when the burst is cleared or dropped.
TEST_F(NetOnModel, BurstOwnsItsBuffersAndKeepsToOnePool) {
    auto* v = add<udrv::virtio_net::VirtioNet>(std::make_shared<VirtioNetModel>());
    auto* e = add<udrv::e1000e::E1000e>(std::make_shared<E1000eModel>());
    ASSERT_NE(v, nullptr);
    ASSERT_NE(e, nullptr);
    auto pool = *v->tx_pool(0), other = *e->tx_pool(0);
    const auto full = pool->available();
    {
        udrv::net::Burst b;
        EXPECT_TRUE(b.empty());
        EXPECT_EQ(b.pool(), nullptr);
        EXPECT_EQ(*pool->alloc_burst(b, 10, 100), 10u);
        EXPECT_EQ(b.size(), 10u);
        EXPECT_EQ(b.pool(), pool.get());
        EXPECT_EQ(pool->available(), full - 10);
        EXPECT_EQ(b.length(9), 100u);
        EXPECT_EQ(b.data(9).size(), 100u);
        EXPECT_TRUE(b.data(10).empty());  // beyond the burst
        EXPECT_EQ(b.length(10), 0u);
        EXPECT_EQ(b.resize(10, 60).error().code(), EINVAL);
        EXPECT_EQ(b.resize(0, pool->capacity_per_buffer() + 1).error().code(), EINVAL);
        ASSERT_TRUE(b.resize(0, 60));
        EXPECT_EQ(pool->alloc_burst(b, 1, pool->capacity_per_buffer() + 1).error().code(), EINVAL);
        // Another pool's packets do not join.
        auto foreign = other->alloc_burst(b, 1, 60);
        ASSERT_FALSE(foreign);
        EXPECT_EQ(foreign.error().code(), EINVAL);
        EXPECT_NE(foreign.error().message().find("another pool"), std::string::npos) << foreign.error().message();
        auto stray = *other->alloc();
        EXPECT_FALSE(b.push_back(std::move(stray)));
        EXPECT_TRUE(stray);  // kept by the caller
        // Front out, back in at either end; the order holds.
        udrv::net::Packet first = b.pop_front();
        EXPECT_EQ(first.size(), 60u);
        EXPECT_EQ(b.size(), 9u);
        std::byte* second = b.data(0).data();
        EXPECT_TRUE(b.push_front(std::move(first)));
        EXPECT_FALSE(first);
        EXPECT_EQ(b.length(0), 60u);
        EXPECT_EQ(b.data(1).data(), second);
        udrv::net::Packet last = b.pop_front();
        EXPECT_TRUE(b.push_back(std::move(last)));
        EXPECT_EQ(b.length(9), 60u);
        // Filling to kMax from a burst whose front was taken moves the rest down.
        EXPECT_EQ(*pool->alloc_burst(b, udrv::net::Burst::kMax, 64), udrv::net::Burst::kMax - 10);
        EXPECT_EQ(b.room(), 0u);
        EXPECT_EQ(*pool->alloc_burst(b, 5, 64), 0u);
        // An rx_burst into a burst of transmit buffers is refused, not mixed.
        auto r = v->rx_burst(0, b);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code(), EINVAL);
        b.clear();
        EXPECT_TRUE(b.empty());
        EXPECT_EQ(pool->available(), full);
        EXPECT_EQ(*pool->alloc_burst(b, 3, 64), 3u);
    }  // dropped: its three buffers go back
    EXPECT_EQ(pool->available(), full);
    // A pool runs short: the burst gets what there is.
    udrv::net::Burst all, more;
    while (all.room() && *pool->alloc_burst(all, all.room(), 64)) {
    }
    std::vector<udrv::net::Packet> rest;
    for (auto p = pool->alloc(); p; p = pool->alloc()) rest.push_back(std::move(*p));
    EXPECT_EQ(*pool->alloc_burst(more, 4, 64), 0u);
    rest.resize(rest.size() - 2);
    EXPECT_EQ(*pool->alloc_burst(more, 4, 64), 2u);
}

// A driver's descriptor slots own the buffers lent to the device: handles and bursts move in and out,
// a slot that is filled again gives back what it held, slot numbers wrap at the (power of two) size, a
// harvest keeps good frames and leaves a fresh buffer in their place, and everything goes back when the
// slots or the bursts are dropped.
TEST_F(NetOnModel, SlotsOwnTheBuffersLentToTheDevice) {
    auto* v = add<udrv::virtio_net::VirtioNet>(std::make_shared<VirtioNetModel>());
    ASSERT_NE(v, nullptr);
    auto pool = *v->tx_pool(0);
    const auto full = pool->available();
    const udrv::net::PacketLayout layout = pool->layout();
    EXPECT_THROW(udrv::net::Slots(6), std::invalid_argument);
    EXPECT_THROW(udrv::net::Slots(0), std::invalid_argument);
    {
        udrv::net::Slots s(8);
        EXPECT_EQ(s.size(), 8u);
        auto p = *pool->alloc();
        const std::uint64_t iova = udrv::net::PacketPool::frame_iova(p);
        s.put(3, std::move(p));
        EXPECT_FALSE(p);
        EXPECT_TRUE(s.holds(11));  // 11 is slot 3
        EXPECT_EQ(s.frame_iova(3, layout), iova);
        EXPECT_EQ(s.frame_iova(4, layout), 0u);  // empty
        s.put(3, *pool->alloc());                // the first buffer goes back
        EXPECT_EQ(pool->available(), full - 1);
        udrv::net::Packet out = s.take(3, 60);
        EXPECT_EQ(out.size(), 60u);
        EXPECT_FALSE(s.holds(3));
        EXPECT_FALSE(s.take(3));

        // A burst lent out from slot 6 wraps to slot 2; describe() sees each frame's address and length.
        udrv::net::Burst b;
        ASSERT_EQ(*pool->alloc_burst(b, 5, 100), 5u);
        std::vector<std::pair<std::size_t, std::uint64_t>> described;
        EXPECT_EQ(b.lend_front(10, s, 6,
                               [&](std::size_t slot, std::uint64_t at, std::uint16_t len, std::byte*) {
                                   EXPECT_EQ(len, 100u);
                                   described.emplace_back(slot, at);
                               }),
                  5u);
        EXPECT_TRUE(b.empty());
        ASSERT_EQ(described.size(), 5u);
        const std::size_t slots[] = {6, 7, 0, 1, 2};
        for (std::size_t k = 0; k < 5; ++k) {
            EXPECT_EQ(described[k].first, slots[k]);
            EXPECT_EQ(s.frame_iova(slots[k], layout), described[k].second);
        }
        EXPECT_EQ(pool->available(), full - 6);  // five lent, one held as `out`

        // The device is done with slots 5 to 0: 5 is empty, 6, 7 and 0 go back.
        s.give_back(5, 4);
        EXPECT_FALSE(s.holds(7));
        EXPECT_FALSE(s.holds(0));
        EXPECT_TRUE(s.holds(1));
        EXPECT_EQ(pool->available(), full - 3);

        // Numbers a device gave are checked: 99 names no slot, 7 is empty; neither gives anything back.
        EXPECT_EQ(s.give_back_each(2, [](std::size_t k) { return udrv::net::Slots::DeviceSlot{k ? 7u : 99u}; }), 2u);
        EXPECT_EQ(pool->available(), full - 3);
        // Lending stops at a slot the device still holds (1), and next_empty finds the way around it.
        udrv::net::Burst more;
        ASSERT_EQ(*pool->alloc_burst(more, 2, 60), 2u);
        EXPECT_EQ(more.lend_front(2, s, 0, [](std::size_t, std::uint64_t, std::uint16_t, std::byte*) {}), 1u);  // slot 0
        EXPECT_EQ(more.size(), 1u);
        EXPECT_EQ(s.next_empty(1), 3u);
        EXPECT_EQ(more.lend_front(1, s, s.next_empty(1), [](std::size_t, std::uint64_t, std::uint16_t, std::byte*) {}), 1u);
        EXPECT_TRUE(more.empty());
        s.give_back(0, 1);
        s.give_back(3, 1);
        EXPECT_EQ(pool->available(), full - 3);

        // A harvest of slots 1, 2 and 3 (3 is empty, so not the ring's: refilled, nothing kept) where
        // slot 2's frame is bad: slot 1's buffer moves into the burst and a fresh one takes its place,
        // slot 2 keeps its buffer for the device.
        const std::uint64_t bad_iova = s.frame_iova(2, layout), good_iova = s.frame_iova(1, layout);
        udrv::net::Burst rx;
        ASSERT_TRUE(rx.prepare_for(pool.get()));
        std::vector<std::uint64_t> refilled;
        EXPECT_EQ(rx.harvest(
                      s, 1, 3, [](std::size_t slot) { return slot == 2 ? -1 : 64; },
                      [&](std::size_t, std::uint64_t at) { refilled.push_back(at); }),
                  3u);
        ASSERT_EQ(rx.size(), 1u);
        EXPECT_EQ(rx.length(0), 64u);
        EXPECT_EQ(refilled.size(), 3u);
        EXPECT_NE(refilled[0], good_iova);
        EXPECT_EQ(refilled[1], bad_iova);
        EXPECT_TRUE(s.holds(1) && s.holds(2) && s.holds(3));
        EXPECT_EQ(pool->available(), full - 5);  // slots 1, 2, 3, the harvested frame, `out`
        rx.clear();
        out = udrv::net::Packet();
        EXPECT_EQ(pool->available(), full - 3);

        // A harvest ends at the first slot the device has not written back (kNotDone): slot 1's frame
        // is kept, slot 2 keeps its buffer undescribed, slot 3 is not looked at.
        refilled.clear();
        const std::uint64_t waiting_iova = s.frame_iova(2, layout);
        std::vector<std::size_t> looked_at;
        ASSERT_TRUE(rx.prepare_for(pool.get()));
        EXPECT_EQ(rx.harvest(
                      s, 1, 3,
                      [&](std::size_t slot) {
                          looked_at.push_back(slot);
                          return slot == 2 ? udrv::net::Burst::kNotDone : 64;
                      },
                      [&](std::size_t, std::uint64_t at) { refilled.push_back(at); }),
                  1u);
        EXPECT_EQ(rx.size(), 1u);
        EXPECT_EQ(looked_at, (std::vector<std::size_t>{1, 2}));
        EXPECT_EQ(refilled.size(), 1u);
        EXPECT_EQ(s.frame_iova(2, layout), waiting_iova);
        EXPECT_EQ(pool->available(), full - 4);  // slots 1, 2, 3 and the kept frame
        rx.clear();
        EXPECT_EQ(pool->available(), full - 3);
    }  // the slots go, and the three buffers they held with them
    EXPECT_EQ(pool->available(), full);

    // Slots holding two pools' buffers give each back to its own.
    auto* e = add<udrv::e1000e::E1000e>(std::make_shared<E1000eModel>());
    ASSERT_NE(e, nullptr);
    auto other = *e->tx_pool(0);
    const auto other_full = other->available();
    {
        udrv::net::Slots s(4);
        s.put(0, *pool->alloc());
        s.put(1, *other->alloc());
        s.put(2, *other->alloc());
        s.put(3, *pool->alloc());
        s.give_back(0, 4);
        EXPECT_EQ(pool->available(), full);
        EXPECT_EQ(other->available(), other_full);
    }
    // A harvest over a slot holding another pool's buffer (never, in a driver's ring) keeps no frame:
    // that buffer goes back to its own pool and the slot gets one of the burst's pool.
    {
        udrv::net::Slots s(4);
        s.put(0, *other->alloc());
        udrv::net::Burst rx;
        ASSERT_TRUE(rx.prepare_for(pool.get()));
        EXPECT_EQ(rx.harvest(
                      s, 0, 1, [](std::size_t) { return 64; }, [](std::size_t, std::uint64_t) {}),
                  1u);
        EXPECT_TRUE(rx.empty());
        EXPECT_EQ(other->available(), other_full);
        EXPECT_EQ(pool->available(), full - 1);
    }
    EXPECT_EQ(pool->available(), full);

    // Once the device is gone a harvest takes nothing (and the ring keeps its buffers).
    udrv::net::Slots s(4);
    s.put(0, *pool->alloc());
    udrv::net::Burst rx;
    ASSERT_TRUE(rx.prepare_for(pool.get()));
    pool->detach();
    EXPECT_EQ(rx.harvest(
                  s, 0, 1, [](std::size_t) { return 64; }, [](std::size_t, std::uint64_t) {}),
              0u);
    EXPECT_TRUE(s.holds(0));
}

// At unbind the pools are detached: a burst gets nothing more, tx_burst and rx_burst through the handle
// fail with ENODEV, and buffers a burst still holds stay readable and go back when it is dropped.
TEST_F(NetOnModel, BurstsAfterUnbind) {
    auto model = std::make_shared<VirtioNetModel>();
    auto dev = udrv::pci::bus().add_model(model->info(), model);
    ASSERT_TRUE(dev);
    auto h = udrv::net::open(model->address());
    ASSERT_TRUE(h) << h.error().message();
    auto pool = *h->tx_pool(0);
    udrv::net::Burst b, rx;
    ASSERT_EQ(*pool->alloc_burst(b, 4, 64), 4u);
    std::memset(b.data(3).data(), 0x5a, 64);
    ASSERT_TRUE(udrv::pci::bus().remove_device(model->address()));
    EXPECT_EQ(pool->alloc_burst(b, 1, 64).error().code(), ENODEV);
    EXPECT_EQ(h->tx_burst(0, b).error().code(), ENODEV);
    EXPECT_EQ(h->rx_burst(0, rx).error().code(), ENODEV);
    EXPECT_EQ(b.size(), 4u);
    EXPECT_EQ(b.data(3)[63], std::byte{0x5a});
    b.clear();  // back to the detached pool, under its lock
    EXPECT_EQ(pool->available(), pool->capacity());
}

// Zero-copy forwarding of a whole burst: frames received go out again by reference (the receive pool is
// checked once for the burst) and come back with the same bytes; a port that cannot reach the buffers
// (the models have an address space each) refuses the burst and leaves it whole.
TEST_F(NetOnModel, AReceivedBurstIsSentOnByReference) {
    auto vm = std::make_shared<VirtioNetModel>();
    auto em = std::make_shared<E1000eModel>();
    auto* v = add<udrv::virtio_net::VirtioNet>(vm);
    auto* e = add<udrv::e1000e::E1000e>(em);
    ASSERT_NE(v, nullptr);
    ASSERT_NE(e, nullptr);
    std::vector<std::byte> frame(60);
    for (std::uint8_t i = 0; i < 20; ++i) {
        frame[0] = std::byte{i};
        ASSERT_TRUE(vm->inject(frame));
        ASSERT_TRUE(em->inject(frame));
    }
    udrv::net::Burst in, back;
    ASSERT_EQ(*v->rx_burst(0, in, 5), 5u);  // at most what was asked for
    ASSERT_EQ(*v->rx_burst(0, in), 15u);    // appended
    ASSERT_EQ(in.size(), 20u);
    for (unsigned i = 0; i < 20; ++i) EXPECT_EQ(in.data(i)[0], std::byte(i));
    auto refused = e->tx_burst(0, in);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code(), EXDEV) << refused.error().message();
    EXPECT_EQ(in.size(), 20u);
    in.clear();
    ASSERT_EQ(*e->rx_burst(0, in), 20u);
    auto sent = e->tx_burst(0, in);  // its receive pool's buffers, by reference
    ASSERT_TRUE(sent) << sent.error().message();
    EXPECT_EQ(*sent, 20u);
    EXPECT_TRUE(in.empty());
    for (int i = 0; i < 100 && back.size() < 20; ++i) ASSERT_TRUE(e->rx_burst(0, back));
    ASSERT_EQ(back.size(), 20u);
    for (unsigned i = 0; i < 20; ++i) EXPECT_EQ(back.data(i)[0], std::byte(i));
}

// Forwarding what comes in back out of the same port, as `udrv net respond` and a loop-back forwarder
// do: the receive pool's buffers then sit in the receive ring, in the transmit ring (a driver may give
// them back only when its ring runs short) and in the application's burst at once, and the receive
// side must never be left without replacements while nothing is sent (the application transmits only
// what it received: neither side would move again).
TEST_F(NetOnModel, ForwardingOnOnePortNeverRunsOutOfBuffers) {
    auto forward = [](udrv::net::Device& dev, unsigned batch, std::uint64_t frames) -> std::string {
        udrv::net::Burst b;
        auto pool = *dev.tx_pool(0);
        if (auto made = pool->alloc_burst(b, batch, 64); !made || *made != batch) return "no frames to start with";
        if (auto sent = dev.tx_burst(0, b); !sent || *sent != batch) return "the first frames did not go out";
        std::uint64_t forwarded = 0;
        for (unsigned idle = 0; forwarded < frames;) {
            auto got = dev.rx_burst(0, b, batch);
            if (!got) return got.error().message();
            auto sent = dev.tx_burst(0, b);
            if (!sent) return sent.error().message();
            forwarded += *sent;
            idle = *got || *sent ? 0 : idle + 1;
            if (idle == 100) return fmt::format("stuck after {} frames: nothing received, nothing sent", forwarded);
        }
        return "";
    };
    auto* v = add<udrv::virtio_net::VirtioNet>(std::make_shared<VirtioNetModel>());
    auto* e = add<udrv::e1000e::E1000e>(std::make_shared<E1000eModel>());
    ASSERT_NE(v, nullptr);
    ASSERT_NE(e, nullptr);
    for (unsigned batch : {1u, 32u, 200u}) {
        EXPECT_EQ(forward(*v, batch, 5000), "") << "virtio-net, batch " << batch;
        EXPECT_EQ(forward(*e, batch, 5000), "") << "e1000e, batch " << batch;
    }
    // And while the application keeps a ring's worth of received frames aside: virtio-net's receive
    // then gives back what its own transmit ring holds.
    auto vm = std::make_shared<VirtioNetModel>("0000:00:0b.0");
    auto* v2 = add<udrv::virtio_net::VirtioNet>(vm);
    ASSERT_NE(v2, nullptr);
    const std::vector<std::byte> frame(60);
    for (int i = 0; i < 256; ++i) ASSERT_TRUE(vm->inject(frame));
    udrv::net::Burst kept;
    ASSERT_EQ(*v2->rx_burst(0, kept), 256u);
    EXPECT_EQ(forward(*v2, 32, 5000), "") << "virtio-net, batch 32, 256 frames kept aside";
}

// tx_done_cleanup gives back at once what a transmit ring still holds of what the device sent (a
// ring keeps it until it runs short otherwise): virtio-net all of it, e1000e whole groups of 32.
TEST_F(NetOnModel, TxDoneCleanupGivesBackWhatWasSent) {
    auto check = [&](auto model) {
        auto d = udrv::pci::bus().add_model(model->info(), model);
        ASSERT_TRUE(d);
        auto h = udrv::net::open(model->address());
        ASSERT_TRUE(h) << h.error().message();
        auto pool = *h->tx_pool(0);
        const auto full = pool->available();
        udrv::net::Burst b;
        ASSERT_EQ(*pool->alloc_burst(b, 64, 60), 64u);
        ASSERT_EQ(*h->tx_burst(0, b), 64u);
        EXPECT_EQ(pool->available(), full - 64);  // sent (the models send at once), still in the ring
        auto freed = h->tx_done_cleanup(0);
        ASSERT_TRUE(freed) << freed.error().message();
        EXPECT_EQ(*freed, 64u);
        EXPECT_EQ(pool->available(), full);
        EXPECT_EQ(*h->tx_done_cleanup(0), 0u);
        auto bad = h->tx_done_cleanup(7);
        ASSERT_FALSE(bad);
        EXPECT_EQ(bad.error().code(), EINVAL);
        ASSERT_TRUE(udrv::pci::bus().remove_device(model->address()));
        auto gone = h->tx_done_cleanup(0);
        ASSERT_FALSE(gone);
        EXPECT_EQ(gone.error().code(), ENODEV);
    };
    check(std::make_shared<VirtioNetModel>("0000:00:0d.0"));
    check(std::make_shared<E1000eModel>("0000:00:0e.0"));
}

// One receive queue's frames fanned out into several transmit queues: each transmit ring keeps what
// it sent until it runs short, and together they can hold every buffer the receive pool has left, so
// nothing is received, nothing sent and nothing given back. tx_done_cleanup on the queues forwarded
// into, whenever a receive comes back short, keeps it going (as DPDK applications use
// rte_eth_tx_done_cleanup).
TEST_F(NetOnModel, FanOutKeepsGoingWithTxDoneCleanup) {
    VirtioNetModel::Options o;
    o.pairs = 4;
    auto model = std::make_shared<VirtioNetModel>("0000:00:0c.0", o);
    auto* v = add<udrv::virtio_net::VirtioNet>(model);
    ASSERT_NE(v, nullptr);
    ASSERT_TRUE(v->set_queues(4));
    // Frames forwarded from queue 0 into queues 1, 2 and 3 in turn, 32 at a time, queue 0's ring kept
    // full of frames; stops after `frames` or 100 rounds without progress.
    auto fan_out = [&](bool cleanup, std::uint64_t frames) {
        const std::vector<std::byte> frame(60);
        udrv::net::Burst b;
        std::uint64_t forwarded = 0;
        for (unsigned next = 1, idle = 0; forwarded < frames && idle < 100; next = next % 3 + 1) {
            while (model->inject(frame, 0)) {
            }
            const unsigned got = v->rx_burst(0, b, 32).value();
            if (got < 32 && cleanup)
                for (unsigned q = 1; q < 4; ++q) (void)v->tx_done_cleanup(q).value();
            const unsigned sent = b.empty() ? 0 : v->tx_burst(next, b).value();
            b.clear();  // what a ring did not take is dropped
            forwarded += sent;
            idle = got || sent ? 0 : idle + 1;
        }
        return forwarded;
    };
    EXPECT_LT(fan_out(false, 20000), 1000u);  // stuck at 512: the three rings hold the pool's spare buffers
    EXPECT_EQ(fan_out(true, 20000), 20000u);  // and cleaning up gets it going again
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
    model->corrupt_next_rx_len(5);  // shorter than the net header
    ASSERT_TRUE(model->inject(frame));
    EXPECT_EQ(*v->rx_batch(0, rx), 0u);
    EXPECT_EQ(v->stats()->rx_errors, 2u);
    model->corrupt_next_rx_id(9999);   // a descriptor that is not in flight
    ASSERT_TRUE(model->inject(frame));
    auto r = v->rx_batch(0, rx);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EPROTO);
    EXPECT_NE(r.error().message().find("returned descriptor 9999 that is not in flight"), std::string::npos) << r.error().message();
    // The same checks on the burst path.
    udrv::net::Burst b;
    model->corrupt_next_rx_len(4096);
    ASSERT_TRUE(model->inject(frame));
    ASSERT_TRUE(model->inject(frame));
    EXPECT_EQ(*v->rx_burst(0, b), 1u);  // the good one
    EXPECT_EQ(b.length(0), 60u);
    EXPECT_EQ(v->stats()->rx_errors, 4u);
    model->corrupt_next_rx_id(7777);
    ASSERT_TRUE(model->inject(frame));
    auto rb = v->rx_burst(0, b);
    ASSERT_FALSE(rb);
    EXPECT_EQ(rb.error().code(), EPROTO);
    EXPECT_EQ(b.size(), 1u);  // what it held stays
}

// A used element's length: at least the net header, at most the buffer; its id: at most the ring's last
// (7 in an 8-entry ring).
TEST(VirtioUsedCheck, LengthsFromTheHeaderToTheBuffersEnd) {
    using udrv::virtio_net::check_used;
    using udrv::virtio_net::UsedCheck;
    auto any = [](std::uint32_t) { return true; };
    constexpr std::uint32_t kCapacity = 2036;
    EXPECT_EQ(check_used(0, 0, 7, any, 12, kCapacity), UsedCheck::bad_length);
    EXPECT_EQ(check_used(0, 11, 7, any, 12, kCapacity), UsedCheck::bad_length);
    EXPECT_EQ(check_used(0, 12, 7, any, 12, kCapacity), UsedCheck::ok);  // a header and no frame: an empty one
    EXPECT_EQ(check_used(7, 12 + kCapacity, 7, any, 12, kCapacity), UsedCheck::ok);
    EXPECT_EQ(check_used(0, 12 + kCapacity + 1, 7, any, 12, kCapacity), UsedCheck::bad_length);
    EXPECT_EQ(check_used(0, UINT32_MAX, 7, any, 12, kCapacity), UsedCheck::bad_length);
    EXPECT_EQ(check_used(8, 60, 7, any, 12, kCapacity), UsedCheck::bad_id);
    EXPECT_EQ(check_used(UINT32_MAX, 60, 7, any, 12, kCapacity), UsedCheck::bad_id);
    EXPECT_EQ(check_used(3, 60, 7, [](std::uint32_t id) { return id != 3; }, 12, kCapacity), UsedCheck::bad_id);
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
    udrv::net::Burst b;  // the same on the burst path
    ASSERT_TRUE(model->inject(frame, 0x01));
    ASSERT_TRUE(model->inject(frame));
    EXPECT_EQ(*e->rx_burst(0, b), 1u);
    EXPECT_EQ(b.length(0), 60u);
    EXPECT_EQ(e->stats()->rx_errors, 3u);
}

// What the receive loop believes of a written-back descriptor (status, errors, length; 2 KiB buffers).
TEST(E1000eRxDescriptor, OnlyDoneWholeErrorFreeFramesWithinTheBufferPass) {
    // The write-back half as the device stores it: length, checksum, status, errors, special.
    auto wb = [](std::uint8_t status, std::uint8_t errors, std::uint16_t length, std::uint16_t checksum = 0x1234) {
        return std::bit_cast<std::uint64_t>(udrv::e1000e::E1000e::RxWriteBack{length, checksum, status, errors, 0xabcd});
    };
    auto good = [](std::uint64_t w) { return udrv::e1000e::rx_descriptor_good<2048>(w); };
    EXPECT_TRUE(good(wb(0x03, 0, 60)));                      // done, end of packet
    EXPECT_TRUE(good(wb(0x07, 0, 2048)));                    // other status bits (checksum ignored), a full buffer
    EXPECT_TRUE(good(wb(0x03, 0, 1, 0)));                    // one byte, checksum 0
    EXPECT_FALSE(good(wb(0x02, 0, 60)));                     // not done
    EXPECT_FALSE(good(wb(0x01, 0, 60)));                     // part of a frame split over descriptors
    EXPECT_FALSE(good(wb(0x03, 0x01, 60)));                  // CRC error
    EXPECT_FALSE(good(wb(0x03, 0x80, 60)));                  // receive data error
    EXPECT_FALSE(good(wb(0x03, 0, 0)));                      // no frame
    EXPECT_FALSE(good(wb(0x04, 0, 0, 0)));                   // no frame, and status - 1 would read as done
    EXPECT_FALSE(good(wb(0x03, 0, 2049)));                   // past the buffer
    EXPECT_FALSE(good(wb(0x03, 0, 0xffff)));
    EXPECT_TRUE(udrv::e1000e::rx_descriptor_good<256>(wb(0x03, 0, 256)));
    EXPECT_FALSE(udrv::e1000e::rx_descriptor_good<256>(wb(0x03, 0, 257)));
    // Against the test field by field, for every length and the status and errors bits that matter.
    for (unsigned length = 0; length <= 0xffff; length += length < 4200 ? 1 : 97)
        for (unsigned status : {0x00u, 0x01u, 0x02u, 0x03u, 0x04u, 0xffu})
            for (unsigned errors : {0x00u, 0x01u, 0x80u})
                for (unsigned checksum : {0x0000u, 0x0001u, 0xffffu}) {
                    const bool want = (status & 3) == 3 && errors == 0 && length >= 1 && length <= 2048;
                    ASSERT_EQ(good(wb(static_cast<std::uint8_t>(status), static_cast<std::uint8_t>(errors), static_cast<std::uint16_t>(length),
                                      static_cast<std::uint16_t>(checksum))),
                              want)
                        << "status " << status << " errors " << errors << " length " << length << " checksum " << checksum;
                }
}

// A frame leaves the e1000e ring only with a fresh buffer to put in its place: while the application
// holds what the receive pool can spare, further frames wait in the ring, and arrive, in order, once it
// gives buffers back. Nothing is dropped or counted as an error meanwhile.
TEST_F(NetOnModel, E1000eFramesWaitInTheRingWhileThePoolIsShort) {
    auto model = std::make_shared<E1000eModel>();
    auto* e = add<udrv::e1000e::E1000e>(model);
    ASSERT_NE(e, nullptr);
    auto inject = [&](unsigned from, unsigned count) {
        for (unsigned k = from; k < from + count; ++k) {
            std::vector<std::byte> frame(60, std::byte{0});
            frame[0] = static_cast<std::byte>(k & 0xff);
            frame[1] = static_cast<std::byte>(k >> 8);
            ASSERT_TRUE(model->inject(frame)) << "frame " << k;
        }
    };
    auto numbers = [](const udrv::net::Burst& b) {
        std::vector<unsigned> out;
        for (unsigned i = 0; i < b.size(); ++i) out.push_back(std::to_integer<unsigned>(b.data(i)[0]) | std::to_integer<unsigned>(b.data(i)[1]) << 8);
        return out;
    };
    // 768 receive buffers, 256 of them in the ring: the application can hold 512.
    udrv::net::Burst first, held, second, third;
    inject(0, 200);
    ASSERT_EQ(*e->rx_burst(0, first), 200u);
    inject(200, 200);
    ASSERT_EQ(*e->rx_burst(0, held), 200u);
    inject(400, 150);
    ASSERT_EQ(*e->rx_burst(0, second), 112u);  // what the pool could replace
    EXPECT_EQ(*e->rx_burst(0, third), 0u);
    first.clear();
    ASSERT_EQ(*e->rx_burst(0, third), 38u);
    std::vector<unsigned> want(112);
    for (unsigned k = 0; k < 112; ++k) want[k] = 400 + k;
    EXPECT_EQ(numbers(second), want);
    want.resize(38);
    for (unsigned k = 0; k < 38; ++k) want[k] = 512 + k;
    EXPECT_EQ(numbers(third), want);
    const auto st = *e->stats();
    EXPECT_EQ(st.rx_errors, 0u);
    EXPECT_EQ(st.rx_dropped, 0u);
    EXPECT_EQ(model->frames_missed(), 0u);
    EXPECT_EQ(model->dma_faults(), 0u);
}

}  // namespace
