// The NVMe driver against the NVMe model: the paths a VM test cannot steer (PRP lists, splitting above
// MDTS, the CQ head doorbell's batching, completions the controller gets wrong, resets with commands in
// flight), run on the driver's real code with the model doing the controller's work.
#include <gtest/gtest.h>

#include <cstring>

#include "nvme/nvme.hpp"
#include "nvme_model.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"

namespace {

using udrv::models::NvmeModel;

struct Tally {
    int ok = 0, failed = 0;
    std::string last_error;
    int last_code = 0;
    static void cb(void* c, const udrv::Result<void>& r) {
        auto* t = static_cast<Tally*>(c);
        if (r) ++t->ok;
        else ++t->failed, t->last_error = r.error().message(), t->last_code = r.error().code();
    }
    int done() const { return ok + failed; }
};

class NvmeOnModel : public ::testing::Test {
protected:
    void SetUp() override {
        udrv::set_log_sink([this](udrv::LogLevel, std::string_view m) { log.emplace_back(m); });
        ASSERT_TRUE(loader.load_builtin("udrv_nvme"));
    }
    void TearDown() override {
        udrv::pci::bus().remove_all_devices();
        udrv::set_log_sink(nullptr);
    }
    udrv::nvme::Controller* attach(NvmeModel::Options o = {}) {
        model = std::make_shared<NvmeModel>("0000:00:04.0", o);
        auto d = udrv::pci::bus().add_model(model->info(), model);
        EXPECT_TRUE(d) << (d ? "" : d.error().message());
        auto* c = d ? (*d)->driver_data<udrv::nvme::Controller>() : nullptr;
        EXPECT_NE(c, nullptr) << (log.empty() ? "" : log.back());
        return c;
    }
    void wait_for(udrv::block::Queue& q, Tally& t, int n) {
        for (int i = 0; i < 100000 && t.done() < n; ++i) ASSERT_TRUE(q.wait(std::chrono::milliseconds(10)));
        ASSERT_EQ(t.done(), n);
    }
    udrv::Loader loader;
    std::shared_ptr<NvmeModel> model;
    std::vector<std::string> log;
};

TEST_F(NvmeOnModel, ProbesAndMovesData) {
    auto* c = attach();
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->info().model, "udrv NVMe model");
    auto* ns = *c->find_namespace(1);
    EXPECT_EQ(ns->info().blocks, 8192u);
    auto q = ns->open_queue(8, udrv::block::Mode::polled);
    ASSERT_TRUE(q) << q.error().message();
    auto buf = *ns->alloc_buffer(4096), back = *ns->alloc_buffer(4096);
    for (std::size_t i = 0; i < 4096; ++i) buf.bytes()[i] = std::byte(i * 13);
    Tally t;
    ASSERT_TRUE((*q)->write(16, 8, buf.bytes(), &Tally::cb, &t));
    wait_for(**q, t, 1);
    ASSERT_TRUE((*q)->read(16, 8, back.bytes(), &Tally::cb, &t));
    wait_for(**q, t, 2);
    EXPECT_EQ(t.ok, 2) << t.last_error;
    EXPECT_EQ(std::memcmp(buf.bytes().data(), back.bytes().data(), 4096), 0);
    EXPECT_EQ(std::memcmp(model->media().data() + 16 * 512, buf.bytes().data(), 4096), 0);  // on the medium
    EXPECT_EQ(model->dma_faults(), 0u);
}

TEST_F(NvmeOnModel, LargeTransfersUsePrpListsAndSplitAboveMdts) {
    NvmeModel::Options o;
    o.mdts = 4;  // 64 KiB per command
    auto* c = attach(o);
    ASSERT_NE(c, nullptr);
    auto* ns = *c->find_namespace(1);
    EXPECT_EQ(ns->info().max_transfer, 64u * 1024);
    auto q = *ns->open_queue(16, udrv::block::Mode::polled);
    const std::size_t bytes = 256 * 1024;  // four commands, each with a PRP list
    auto buf = *ns->alloc_buffer(bytes), back = *ns->alloc_buffer(bytes);
    for (std::size_t i = 0; i < bytes; ++i) buf.bytes()[i] = std::byte(i * 7 + 1);
    Tally t;
    ASSERT_TRUE(q->write(100, bytes / 512, buf.bytes(), &Tally::cb, &t));
    wait_for(*q, t, 1);  // one callback for the whole request
    ASSERT_TRUE(q->read(100, bytes / 512, back.bytes(), &Tally::cb, &t));
    wait_for(*q, t, 2);
    EXPECT_EQ(t.ok, 2) << t.last_error;
    EXPECT_EQ(std::memcmp(buf.bytes().data(), back.bytes().data(), bytes), 0);
    EXPECT_EQ(model->commands_on(1), 8u);
    EXPECT_EQ(model->largest_transfer(), 64u * 1024);
    EXPECT_GE(model->prp_lists(), 8u);
    EXPECT_EQ(model->dma_faults(), 0u);
    // An unaligned buffer start (dword aligned, not page aligned) still maps page by page.
    ASSERT_TRUE(q->read(0, 16, back.bytes().subspan(512, 16 * 512), &Tally::cb, &t));
    wait_for(*q, t, 3);
    EXPECT_EQ(t.ok, 3) << t.last_error;
}

// A polled queue reports its CQ head only now and then; the controller must never find its CQ full.
TEST_F(NvmeOnModel, CqHeadDoorbellsAreBatchedWithoutOverflowingTheCq) {
    auto* c = attach();
    ASSERT_NE(c, nullptr);
    auto* ns = *c->find_namespace(1);
    for (unsigned depth : {1u, 7u, 32u, 255u}) {
        auto q = *ns->open_queue(depth, udrv::block::Mode::polled);
        std::vector<udrv::block::Buffer> bufs;
        for (unsigned i = 0; i < depth; ++i) bufs.push_back(*ns->alloc_buffer(4096));
        struct Loop {
            udrv::block::Queue* q;
            udrv::block::Buffer* buf;
            int* left;
            static void cb(void* c, const udrv::Result<void>& r) {
                auto* l = static_cast<Loop*>(c);
                ASSERT_TRUE(r) << r.error().message();
                if (--*l->left >= 0) {
                    ASSERT_TRUE(l->q->read(0, 8, l->buf->bytes(), &cb, c));
                }
            }
        };
        int left = 20000;
        std::vector<Loop> loops;
        for (unsigned i = 0; i < depth; ++i) loops.push_back({q.get(), &bufs[i], &left});
        const std::uint64_t doorbells0 = model->doorbell_writes(), commands0 = model->commands();
        for (auto& l : loops) ASSERT_TRUE(q->read(0, 8, l.buf->bytes(), &Loop::cb, &l));
        while (q->outstanding()) ASSERT_TRUE(q->poll());
        const std::uint64_t commands = model->commands() - commands0, doorbells = model->doorbell_writes() - doorbells0;
        EXPECT_EQ(model->cq_overflows(), 0u) << "depth " << depth;
        EXPECT_GE(commands, 20000u);
        EXPECT_LT(doorbells, commands * 11 / 10) << "depth " << depth << ": CQ head doorbells are not batched";
    }
}

TEST_F(NvmeOnModel, StatusCodesAreNamed) {
    auto* c = attach();
    ASSERT_NE(c, nullptr);
    auto* ns = *c->find_namespace(1);
    auto q = *ns->open_queue(4, udrv::block::Mode::polled);
    auto buf = *ns->alloc_buffer(4096);
    model->fail_next(udrv::nvme::kIoRead, 0x281);  // Unrecovered Read Error
    Tally t;
    ASSERT_TRUE(q->read(0, 8, buf.bytes(), &Tally::cb, &t));
    wait_for(*q, t, 1);
    EXPECT_EQ(t.failed, 1);
    EXPECT_NE(t.last_error.find("Unrecovered Read Error (SCT 2h Media/Data Integrity, SC 81h)"), std::string::npos) << t.last_error;
    ASSERT_TRUE(q->read(8191, 2, buf.bytes(), &Tally::cb, &t).error().code() == ERANGE ||
                (wait_for(*q, t, 2), t.last_code == EINVAL));  // past the end: refused, or LBA Out of Range
}

// A completion for a command nobody submitted: the queue fails everything instead of completing the wrong one.
TEST_F(NvmeOnModel, AnInvalidCompletionFailsTheQueueNotTheWrongCommand) {
    auto* c = attach();
    ASSERT_NE(c, nullptr);
    auto* ns = *c->find_namespace(1);
    auto q = *ns->open_queue(4, udrv::block::Mode::polled);
    auto buf = *ns->alloc_buffer(4096);
    model->corrupt_next_cid(3);
    Tally t;
    ASSERT_TRUE(q->read(0, 8, buf.bytes(), &Tally::cb, &t));
    auto r = q->poll();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EPROTO);
    EXPECT_NE(r.error().message().find("got an invalid completion (cid 3"), std::string::npos) << r.error().message();
    EXPECT_EQ(t.failed, 1);  // its callback ran, with the error
    EXPECT_EQ(q->read(0, 8, buf.bytes(), &Tally::cb, &t).error().code(), ENODEV);
}

// A reset with commands in flight: each completes or fails (its callback runs), and the queue works after.
TEST_F(NvmeOnModel, ResetWithCommandsInFlight) {
    auto* c = attach();
    ASSERT_NE(c, nullptr);
    auto* ns = *c->find_namespace(1);
    auto q = *ns->open_queue(8, udrv::block::Mode::polled);
    auto buf = *ns->alloc_buffer(4096);
    model->hold_completions(true);
    Tally t;
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(q->read(0, 8, buf.bytes(), &Tally::cb, &t));
    model->hold_completions(false);
    ASSERT_TRUE(c->reset());
    EXPECT_EQ(model->resets(), 1u);
    wait_for(*q, t, 4);  // the owner's next poll notices the reset and fails what was in flight
    EXPECT_EQ(t.failed, 4);
    // Deleting the I/O queues before the disable (a graceful reset) aborts what they held, and the queue
    // reports those completions once it exists again.
    EXPECT_NE(t.last_error.find("Command Aborted due to SQ Deletion"), std::string::npos) << t.last_error;
    ASSERT_TRUE(q->read(0, 8, buf.bytes(), &Tally::cb, &t));
    wait_for(*q, t, 5);
    EXPECT_EQ(t.ok, 1) << t.last_error;
}

TEST_F(NvmeOnModel, RemoveShutsTheControllerDown) {
    auto* c = attach();
    ASSERT_NE(c, nullptr);
    udrv::pci::bus().remove_all_devices();
    EXPECT_TRUE(model->shut_down());
}

}  // namespace
