// The NVMe driver against the NVMe model: the paths a VM test cannot steer (PRP lists, splitting above
// MDTS, the CQ head doorbell's batching, completions the controller gets wrong, resets with commands in
// flight), run on the driver's real code with the model doing the controller's work.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>

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
    /// attach(), with the driver loaded with these parameters.
    udrv::nvme::Controller* attach_with(const std::vector<std::string>& params, NvmeModel::Options o = {}) {
        EXPECT_TRUE(loader.unload("udrv_nvme"));
        auto m = loader.load_builtin("udrv_nvme", params);
        EXPECT_TRUE(m) << (m ? "" : m.error().message());
        return attach(o);
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

// A batch's commands reach the controller with one SQ doorbell, at the batch's end; the controller has
// seen none of them before. poll() inside a batch hands over what it holds (a caller that waits in a
// batch does not stall); nested batches ring at the outermost end.
TEST_F(NvmeOnModel, BatchedSubmissionsRingTheDoorbellOnce) {
    auto* c = attach();
    ASSERT_NE(c, nullptr);
    auto* ns = *c->find_namespace(1);
    auto q = *ns->open_queue(32, udrv::block::Mode::polled);
    std::vector<udrv::block::Buffer> bufs;
    for (unsigned i = 0; i < 16; ++i) bufs.push_back(*ns->alloc_buffer(4096));
    Tally t;
    std::uint64_t doorbells0 = model->doorbell_writes(), commands0 = model->commands();
    {
        udrv::block::Batch outer(*q);
        for (unsigned i = 0; i < 8; ++i) ASSERT_TRUE(q->read(i * 8, 8, bufs[i].bytes(), &Tally::cb, &t));
        {
            udrv::block::Batch inner(*q);
            for (unsigned i = 8; i < 16; ++i) ASSERT_TRUE(q->read(i * 8, 8, bufs[i].bytes(), &Tally::cb, &t));
        }
        EXPECT_EQ(model->commands() - commands0, 0u) << "the inner batch's end rang the doorbell";
        EXPECT_EQ(model->doorbell_writes() - doorbells0, 0u);
    }
    EXPECT_EQ(model->doorbell_writes() - doorbells0, 1u);
    EXPECT_EQ(model->commands() - commands0, 16u);
    wait_for(*q, t, 16);
    EXPECT_EQ(t.ok, 16) << t.last_error;

    doorbells0 = model->doorbell_writes();
    {
        udrv::block::Batch batch(*q);
        ASSERT_TRUE(q->read(0, 8, bufs[0].bytes(), &Tally::cb, &t));
        wait_for(*q, t, 17);  // waiting inside the batch: poll() hands the command over
        EXPECT_EQ(t.ok, 17) << t.last_error;
    }
    EXPECT_EQ(model->doorbell_writes() - doorbells0, 1u) << "the batch's end rang again for nothing";

    doorbells0 = model->doorbell_writes();  // without a batch: a doorbell per command, as before
    for (unsigned i = 0; i < 4; ++i) ASSERT_TRUE(q->read(i * 8, 8, bufs[i].bytes(), &Tally::cb, &t));
    EXPECT_EQ(model->doorbell_writes() - doorbells0, 4u);
    wait_for(*q, t, 21);
    EXPECT_EQ(t.ok, 21) << t.last_error;
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
    // The controller is not trusted until reset: its service thread does that, and the queue comes back.
    for (int i = 0; i < 500 && c->resets() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(c->resets(), 1u);
    ASSERT_TRUE(q->read(0, 8, buf.bytes(), &Tally::cb, &t));
    wait_for(*q, t, 2);
    EXPECT_EQ(t.ok, 1) << t.last_error;
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

// A command the controller never completes: after io_timeout_ms the service thread aborts it, and the
// abort completes it (with its status).
TEST_F(NvmeOnModel, ATimedOutCommandIsAborted) {
    auto* c = attach_with({"io_timeout_ms=100"});
    ASSERT_NE(c, nullptr);
    auto* ns = *c->find_namespace(1);
    auto q = *ns->open_queue(4, udrv::block::Mode::polled);
    auto buf = *ns->alloc_buffer(4096);
    model->hold_completions(true);
    Tally t;
    ASSERT_TRUE(q->read(0, 8, buf.bytes(), &Tally::cb, &t));
    wait_for(*q, t, 1);
    EXPECT_EQ(t.failed, 1);
    EXPECT_NE(t.last_error.find("Command Abort Requested"), std::string::npos) << t.last_error;
    EXPECT_EQ(c->resets(), 0u);
    model->hold_completions(false);
    ASSERT_TRUE(q->read(0, 8, buf.bytes(), &Tally::cb, &t));
    wait_for(*q, t, 2);
    EXPECT_EQ(t.ok, 1) << t.last_error;
}

// An abort that does not help: past a second timeout the controller is reset, the command fails, and
// the queue works again.
TEST_F(NvmeOnModel, ACommandThatCannotBeAbortedCostsAReset) {
    NvmeModel::Options o;
    o.honour_abort = false;
    auto* c = attach_with({"io_timeout_ms=100"}, o);
    ASSERT_NE(c, nullptr);
    auto* ns = *c->find_namespace(1);
    auto q = *ns->open_queue(4, udrv::block::Mode::polled);
    auto buf = *ns->alloc_buffer(4096);
    model->hold_completions(true);
    Tally t;
    ASSERT_TRUE(q->read(0, 8, buf.bytes(), &Tally::cb, &t));
    for (int i = 0; i < 500 && t.done() < 1; ++i) (void)q->wait(std::chrono::milliseconds(10));  // EAGAIN while frozen
    ASSERT_EQ(t.done(), 1);
    EXPECT_EQ(t.last_code, ETIMEDOUT) << t.last_error;
    EXPECT_NE(t.last_error.find("timed out and the abort did not help"), std::string::npos) << t.last_error;
    EXPECT_EQ(c->resets(), 1u);
    model->hold_completions(false);
    ASSERT_TRUE(q->read(0, 8, buf.bytes(), &Tally::cb, &t));
    wait_for(*q, t, 2);
    EXPECT_EQ(t.ok, 1) << t.last_error;
}

// CSTS.CFS: the service thread resets the controller; what was in flight fails with EIO and may be
// resubmitted at once.
TEST_F(NvmeOnModel, FatalStatusResetsTheController) {
    auto* c = attach();
    ASSERT_NE(c, nullptr);
    auto* ns = *c->find_namespace(1);
    auto q = *ns->open_queue(4, udrv::block::Mode::polled);
    auto buf = *ns->alloc_buffer(4096);
    model->hold_completions(true);
    Tally t;
    ASSERT_TRUE(q->read(0, 8, buf.bytes(), &Tally::cb, &t));
    model->set_fatal();
    for (int i = 0; i < 500 && t.done() < 1; ++i) (void)q->wait(std::chrono::milliseconds(10));
    ASSERT_EQ(t.done(), 1);
    EXPECT_EQ(t.last_code, EIO) << t.last_error;
    EXPECT_EQ(c->resets(), 1u);
    model->hold_completions(false);
    ASSERT_TRUE(q->read(0, 8, buf.bytes(), &Tally::cb, &t));
    wait_for(*q, t, 2);
    EXPECT_EQ(t.ok, 1) << t.last_error;
}

// Unbinding while an application holds a queue with a command in flight: the controller waits up to
// the I/O timeout, deletes the queue and shuts down; the queue's owner hears of the command (its
// callback runs) and gets ENODEV from then on, and dropping the queue later is safe.
TEST_F(NvmeOnModel, RemoveWithAQueueStillHeld) {
    auto* c = attach_with({"io_timeout_ms=100"});
    ASSERT_NE(c, nullptr);
    auto* ns = *c->find_namespace(1);
    auto q = *ns->open_queue(4, udrv::block::Mode::interrupt);
    auto buf = *ns->alloc_buffer(4096);
    model->hold_completions(true);
    Tally t;
    ASSERT_TRUE(q->read(0, 8, buf.bytes(), &Tally::cb, &t));
    udrv::pci::bus().remove_all_devices();
    EXPECT_TRUE(model->shut_down());
    auto r = q->poll();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ENODEV);
    EXPECT_NE(r.error().message().find("the controller was removed"), std::string::npos) << r.error().message();
    EXPECT_EQ(t.failed, 1);
    EXPECT_EQ(t.last_code, ENODEV) << t.last_error;
    EXPECT_EQ(q->read(0, 8, buf.bytes(), &Tally::cb, &t).error().code(), ENODEV);
    EXPECT_EQ(q->wait(std::chrono::milliseconds(1)).error().code(), ENODEV);
    q.reset();
    EXPECT_EQ(t.done(), 1);
}

// While remove drains what is in flight (up to the I/O timeout), the queue's owner is told the truth:
// the controller is going away (ENODEV), not "being reset, try again" (EAGAIN), which kept a hot-unplug
// workload retrying under the sanitizer build.
TEST_F(NvmeOnModel, DuringRemoveTheOwnerHearsEnodevNotTryAgain) {
    auto* c = attach_with({"io_timeout_ms=1500"});
    ASSERT_NE(c, nullptr);
    auto* ns = *c->find_namespace(1);
    auto q = *ns->open_queue(4, udrv::block::Mode::polled);
    auto buf = *ns->alloc_buffer(4096);
    model->hold_completions(true);  // the drain waits for this read until the timeout
    Tally t;
    ASSERT_TRUE(q->read(0, 8, buf.bytes(), &Tally::cb, &t));
    std::thread remover([] { udrv::pci::bus().remove_all_devices(); });
    std::optional<udrv::Error> seen;
    for (int i = 0; i < 2000 && !seen; ++i) {  // submit until remove has frozen the queue
        auto r = q->read(8, 8, buf.bytes(), &Tally::cb, &t);
        // A full queue (completions are held) is an honest EAGAIN from before the freeze: the remover
        // thread can start late under the sanitizer build. Keep asking until the freeze answers.
        const bool full = !r && r.error().code() == EAGAIN && r.error().message().find("has room for") != std::string::npos;
        if (!r && !full) seen = r.error();
        else std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    remover.join();
    ASSERT_TRUE(seen);
    EXPECT_EQ(seen->code(), ENODEV) << seen->message();
    EXPECT_EQ(q->wait(std::chrono::milliseconds(1)).error().code(), ENODEV);
    q.reset();
}

// Probe failing at each step leaves nothing behind (LSan checks the memory under make asan) and says
// what went wrong.
TEST_F(NvmeOnModel, ProbeFailuresSayWhatAndLeakNothing) {
    struct Case {
        const char* what;
        NvmeModel::Options o;
        const char* expect;
    };
    std::vector<Case> cases;
    {
        NvmeModel::Options o;
        o.nvm_command_set = false;
        cases.push_back({"no NVM command set", o, "does not support the NVM command set"});
    }
    {
        NvmeModel::Options o;
        o.never_ready = true;
        cases.push_back({"never ready", o, "did not become ready"});
    }
    for (std::uint8_t opcode : {udrv::nvme::kAdminIdentify, udrv::nvme::kAdminSetFeatures}) {
        NvmeModel::Options o;
        o.fail_admin_opcode = opcode;
        cases.push_back({"admin command fails", o, opcode == udrv::nvme::kAdminIdentify ? "identify controller" : "set features"});
    }
    for (const Case& k : cases) {
        SCOPED_TRACE(k.what);
        log.clear();
        model = std::make_shared<NvmeModel>("0000:00:04.0", k.o);
        auto d = udrv::pci::bus().add_model(model->info(), model);
        ASSERT_TRUE(d);
        EXPECT_EQ((*d)->driver_data<udrv::nvme::Controller>(), nullptr);
        bool said = false;
        for (auto& m : log) said |= m.find(k.expect) != std::string::npos;
        EXPECT_TRUE(said) << (log.empty() ? "(no log)" : log.back());
        udrv::pci::bus().remove_all_devices();
        EXPECT_EQ(model.use_count(), 1) << "the binding let go of the model";
    }
}

// A queue the controller refuses to create: the caller gets the controller's status, and the queue id
// is free again for the next attempt.
TEST_F(NvmeOnModel, QueueCreationRefused) {
    NvmeModel::Options o;
    o.fail_admin_opcode = udrv::nvme::kAdminCreateSq;
    auto* c = attach(o);
    ASSERT_NE(c, nullptr);
    auto q = (*c->find_namespace(1))->open_queue(4, udrv::block::Mode::polled);
    ASSERT_FALSE(q);
    EXPECT_NE(q.error().message().find("create I/O submission queue"), std::string::npos) << q.error().message();
    EXPECT_NE(q.error().message().find("Invalid Field"), std::string::npos) << q.error().message();
}

// The I/O path takes no lock the control path holds: with an admin command stuck in the controller
// (its thread holds the controller's lock, waiting), I/O on a queue still completes.
TEST_F(NvmeOnModel, IoDoesNotWaitForAdminWork) {
    auto* c = attach();
    ASSERT_NE(c, nullptr);
    auto* ns = *c->find_namespace(1);
    auto q = *ns->open_queue(4, udrv::block::Mode::polled);
    auto buf = *ns->alloc_buffer(4096);
    model->hold_admin(true);
    std::atomic<bool> identified{false};
    const std::uint64_t admin_before = model->commands_on(0);
    std::thread admin([&] { identified = c->identify(udrv::nvme::kCnsController, 0).has_value(); });
    while (model->commands_on(0) == admin_before) std::this_thread::yield();  // the Identify is in the controller
    Tally t;
    for (int i = 0; i < 64; ++i) {
        ASSERT_TRUE(q->read(0, 8, buf.bytes(), &Tally::cb, &t));
        wait_for(*q, t, i + 1);
    }
    EXPECT_EQ(t.ok, 64);
    EXPECT_FALSE(identified);  // still waiting: the reads did not wait for it
    model->hold_admin(false);
    admin.join();
    EXPECT_TRUE(identified);
}

TEST_F(NvmeOnModel, RemoveShutsTheControllerDown) {
    auto* c = attach();
    ASSERT_NE(c, nullptr);
    udrv::pci::bus().remove_all_devices();
    EXPECT_TRUE(model->shut_down());
}

}  // namespace

// The per-queue buffer-address cache (two ways per page set): far more buffers than it holds, used in
// turn, each read lands in its own buffer; memory unregistered after use is refused, not served from a
// stale entry.
TEST_F(NvmeOnModel, BufferAddressesStayRightPastTheCache) {
    auto* c = attach();
    ASSERT_NE(c, nullptr);
    auto* ns = *c->find_namespace(1);
    auto q = *ns->open_queue(8, udrv::block::Mode::polled);
    for (std::size_t b = 0; b < 300; ++b) std::memset(model->media().data() + b * 512, static_cast<int>(b % 200), 512);
    std::vector<udrv::block::Buffer> bufs;
    for (int i = 0; i < 300; ++i) bufs.push_back(*ns->alloc_buffer(512));
    Tally t;
    for (int round = 0; round < 2; ++round)
        for (std::size_t i = 0; i < bufs.size(); ++i) {
            std::memset(bufs[i].bytes().data(), 0xff, 512);  // no block holds 0xff
            ASSERT_TRUE(q->read(i, 1, bufs[i].bytes(), &Tally::cb, &t));
            wait_for(*q, t, static_cast<int>(round * bufs.size() + i + 1));
            ASSERT_EQ(bufs[i].bytes()[511], std::byte(i % 200)) << "buffer " << i << ", round " << round;
        }
    EXPECT_EQ(t.failed, 0) << t.last_error;
    EXPECT_EQ(model->dma_faults(), 0u);

    std::vector<std::byte> own(8192);
    auto page = std::span(own).subspan((4096 - reinterpret_cast<std::uintptr_t>(own.data()) % 4096) % 4096, 4096);
    ASSERT_TRUE(ns->register_memory(page));
    ASSERT_TRUE(q->read(0, 8, page, &Tally::cb, &t));
    wait_for(*q, t, 601);
    ns->unregister_memory(page);
    auto r = q->read(0, 8, page, &Tally::cb, &t);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EFAULT);
}
