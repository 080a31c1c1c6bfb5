// NVMe controller: probe reads top to bottom as NVMe 1.4's initialisation (7.6.1), then the admin
// path, reset, the service thread and remove.
#include "controller.hpp"

#include <algorithm>
#include <cstring>

#include "udrv/log.hpp"
#include "udrv/rcu.hpp"
#include "udrv/ticks.hpp"

namespace udrv::nvme {
namespace {

using clock = std::chrono::steady_clock;
constexpr std::size_t kPage = 4096;
constexpr std::uint16_t kAdminDepth = 32;
constexpr std::uint16_t kWantedIoQueues = 16;
constexpr std::uint32_t kMaxTransfer = 512 * 1024;  // one PRP list page covers it
constexpr auto kAdminTimeout = std::chrono::seconds(10);
constexpr auto kServicePeriod = std::chrono::milliseconds(100);
constexpr auto kDrainAtRemove = std::chrono::seconds(5);

}  // namespace

Result<std::tuple<std::uintptr_t, std::size_t, std::uint64_t>> ControllerCore::find_mem(const void* p, std::size_t len) {
    const std::uintptr_t addr = dma::address_of(p);
    rcu::ReadLock lock;  // nests inside the queue's
    const MemMap& m = *mem_.load(std::memory_order_acquire);
    auto it = m.upper_bound(addr);
    if (it != m.begin()) {
        --it;
        const std::uintptr_t off = addr - it->first;
        if (addr >= it->first && off <= it->second.size && len <= it->second.size - off)
            return std::tuple{it->first, it->second.size, it->second.iova};
    }
    return fail(EFAULT, "{}: buffer at {:#x} ({} bytes) is not DMA-mapped memory: allocate it with alloc_buffer() or register it with "
                "register_memory()", name, addr, len);
}

void ControllerCore::edit_mem(const std::function<void(MemMap&)>& edit) {
    std::lock_guard lock(mem_mu_);
    auto next = std::make_unique<MemMap>(*mem_.load(std::memory_order_relaxed));
    edit(*next);
    const MemMap* old = mem_.exchange(next.release(), std::memory_order_acq_rel);
    mem_gen.fetch_add(1, std::memory_order_release);
    if (readers_possible.load(std::memory_order_acquire)) mem_retired_.push_back(old);
    else delete old;
}

void ControllerCore::reclaim_mem() {
    std::vector<const MemMap*> old;
    {
        std::lock_guard lock(mem_mu_);
        old.swap(mem_retired_);
    }
    if (old.empty()) return;
    rcu::synchronize();
    for (const MemMap* m : old) delete m;
}

ControllerCore::~ControllerCore() {
    for (const MemMap* m : mem_retired_) delete m;  // no queue is left to read them
    delete mem_.load();
}

// ---------------------------------------------------------------------------------------------------
// Bring-up (NVMe 1.4, 7.6.1)

Result<std::unique_ptr<Controller>> Controller::probe(Bound<pci::Device>& dev, const pci::DeviceId&, const ThisModule& module) {
    Mmio<kBarMin> regs = UDRV_TRY(dev.map_bar<kBarMin>(0));
    UDRV_TRY(dev.enable_bus_master());
    std::unique_ptr<Controller> c(new Controller(std::make_shared<ControllerCore>(dev->name(), regs), UDRV_TRY(dev.dma())));
    c->io_timeout_ = std::chrono::milliseconds(std::max<std::uint32_t>(module.param(kIoTimeout), 10));

    // 1. Capabilities: queue size limit, timeout, doorbell stride; NVM command set, 4 KiB pages.
    const std::uint64_t cap = regs.read64<kRegCap>();
    if (cap == ~0ull) return fail(ENODEV, "{}: registers read all ones: device gone", dev->name());
    UDRV_TRY(c->read_capabilities(cap));
    // 2. Disable, so that the admin queue can be set up.
    UDRV_TRY(c->disable_and_wait());
    // 3. Admin queue, and 4. enable: AQA/ASQ/ACQ, then CC (4 KiB pages, NVM set, 64/16-byte entries).
    UDRV_TRY(c->setup_admin_queue());
    UDRV_TRY(c->enable());
    // 5. Interrupt vectors: one per I/O queue (vector = queue id; the admin queue is polled).
    c->setup_interrupts(dev);
    {
        std::lock_guard lock(c->core_->mu);
        c->core_->controller = c.get();
        // 6. Identify Controller; 7. number of queues, shadow doorbells; 8. namespaces.
        UDRV_TRY(c->identify_controller());
        UDRV_TRY(c->setup_queues_and_doorbells());
        UDRV_TRY(c->identify_namespaces());
    }
    // 9. The service thread: timeouts and controller fatal status, off every I/O path.
    c->start_service();
    // 10. Publish: the controller as nvme<N>, each namespace as block device nvme<N>n<nsid>.
    UDRV_TRY(c->publish(dev));
    const ControllerInfo& i = c->info_;
    dev_info(dev.device(), "{}: {} (serial {}, firmware {}), NVMe {}.{}, {} namespace(s), {} I/O queues, {} KiB per command{}",
             c->name_, i.model, i.serial, i.firmware, i.version >> 16, (i.version >> 8) & 0xff, c->namespaces_.size(), i.io_queues,
             i.max_transfer / 1024, i.shadow_doorbells ? ", shadow doorbells" : "");
    return c;
}

Result<void> Controller::publish(Bound<pci::Device>& dev) {
    name_ = UDRV_TRY(nvme::publish(dev, *this, dev->name()));
    for (auto& ns : namespaces_) {
        const std::uint32_t nsid = ns->ns_.nsid;
        ns->block_name_ = UDRV_TRY(block::publish(dev, *ns, ClassName::exactly(fmt::format("{}n{}", name_, nsid)),
                                                  fmt::format("{}/ns{}", dev->name(), nsid)));
    }
    return {};
}

std::vector<ControllerDevice::NamespaceEntry> Controller::namespaces() const {
    std::vector<NamespaceEntry> out;
    for (auto& ns : namespaces_) out.push_back({ns->ns_, ns->block_name_});
    return out;
}

Result<void> Controller::read_capabilities(std::uint64_t cap) {
    ControllerCore& core = *core_;
    info_.max_queue_entries = static_cast<std::uint16_t>(std::min<std::uint64_t>((cap & 0xffff) + 1, 4096));
    info_.timeout_ms = static_cast<std::uint32_t>((cap >> 24) & 0xff) * 500;
    info_.doorbell_stride = 4u << ((cap >> 32) & 0xf);
    info_.version = core.regs.read32<kRegVs>();
    core.doorbell_stride = info_.doorbell_stride;
    core.max_queue_entries = info_.max_queue_entries;
    if (!((cap >> 37) & 1)) return fail(ENOTSUP, "{}: controller does not support the NVM command set (CAP.CSS)", core.name);
    if (((cap >> 48) & 0xf) != 0) return fail(ENOTSUP, "{}: controller's minimum page size is above 4 KiB (CAP.MPSMIN)", core.name);
    if (info_.max_queue_entries < 2) return fail(EPROTO, "{}: CAP.MQES allows no usable queue", core.name);
    // Every doorbell write goes through the window's bounds check: a doorbell beyond it would be lost
    // silently, and a shadow doorbell beyond the shadow page would be written out of bounds.
    const int fit = io_queues_in_window(info_.doorbell_stride, kBarMin);
    if (fit < 1)
        return fail(ENOTSUP, "{}: doorbell stride of {} bytes (CAP.DSTRD) leaves no I/O queue's doorbells within the {}-byte register window",
                    core.name, info_.doorbell_stride, kBarMin);
    if (fit < kWantedIoQueues) pr_info("{}: doorbell stride of {} bytes: at most {} I/O queues", core.name, info_.doorbell_stride, fit);
    return {};
}

Result<void> Controller::wait_ready(bool ready) {
    ControllerCore& core = *core_;
    const auto deadline = clock::now() + std::chrono::milliseconds(std::max<std::uint32_t>(info_.timeout_ms, 500));
    for (;;) {
        const std::uint32_t csts = core.regs.read32<kRegCsts>();
        if (csts == 0xffffffff) return fail(ENODEV, "{}: controller registers read all ones: device gone", core.name);
        // Disabling is how a controller with CSTS.CFS is recovered: only enabling fails on it.
        if (ready && (csts & kCstsFatal)) return fail(EIO, "{}: controller fatal status (CSTS.CFS) while enabling", core.name);
        if (bool(csts & kCstsReady) == ready) return {};
        if (clock::now() > deadline)
            return fail(ETIMEDOUT, "{}: controller did not become {} within CAP.TO ({} ms)", core.name, ready ? "ready" : "disabled",
                        info_.timeout_ms);
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
}

Result<void> Controller::disable_and_wait() {
    Mmio<kBarMin>& regs = core_->regs;
    if (regs.read32<kRegCc>() & kCcEnable) regs.write32<kRegCc>(regs.read32<kRegCc>() & ~kCcEnable);
    return wait_ready(false);
}

Result<void> Controller::setup_admin_queue() {
    const std::uint16_t depth = std::min(kAdminDepth, info_.max_queue_entries);
    auto sq = UDRV_TRY(dma_.coherent<Sqe>(depth));
    auto cq = UDRV_TRY(dma_.coherent<Cqe>(depth));
    auto prps = UDRV_TRY(dma_.pool(kPage, depth));
    const QueueDoorbells doorbells = UDRV_TRY(core_->doorbells_for(0));
    admin_.reset(new QueuePair(core_, 0, doorbells, depth, depth, 0, 512, block::Mode::polled, std::move(sq), std::move(cq), std::move(prps)));
    return {};
}

Result<void> Controller::enable() {
    Mmio<kBarMin>& regs = core_->regs;
    const std::uint16_t depth = admin_->depth_;
    regs.write32<kRegAqa>(static_cast<std::uint32_t>(depth - 1) << 16 | (depth - 1u));
    regs.write64<kRegAsq>(admin_->sq_.iova());
    regs.write64<kRegAcq>(admin_->cq_.iova());
    regs.write32<kRegIntms>(0xffffffff);  // admin interrupts masked: we poll it
    regs.write32<kRegCc>(kCcEnable | kCcIosqes | kCcIocqes);
    return wait_ready(true);
}

void Controller::setup_interrupts(Bound<pci::Device>& dev) {
    auto v = dev.alloc_irq_vectors(irq::IrqKind::msix, kWantedIoQueues + 1);
    if (!v) v = dev.alloc_irq_vectors_any(1);
    if (v) vectors_ = std::make_shared<irq::Vectors>(std::move(*v));
    else dev_warn(dev.device(), "no interrupts ({}): queues can only be polled", v.error().message());
}

Result<void> Controller::identify_controller() {
    auto id = UDRV_TRY(identify_locked(kCnsController, 0));
    UDRV_TRY_CTX(parse_identify_controller(id, info_, kMaxTransfer), "{}", core_->name);
    core_->max_transfer = info_.max_transfer;
    core_->oncs = info_.oncs;
    return {};
}

Result<void> Controller::setup_queues_and_doorbells() {
    ControllerCore& core = *core_;
    info_.io_queues = UDRV_TRY(negotiate_queues());
    qid_used_.assign(info_.io_queues + 1u, false);
    qid_used_[0] = true;
    // Shadow doorbells, when the controller offers them (emulated controllers do; real SSDs rarely).
    if (info_.oacs & kOacsDoorbellBuffer) {
        auto dbs = dma_.coherent<std::uint32_t>(kShadowBufferBytes / 4);
        auto eis = dma_.coherent<std::uint32_t>(kShadowBufferBytes / 4);
        if (dbs && eis) {
            core.shadow_db.emplace(std::move(*dbs));
            core.shadow_ei.emplace(std::move(*eis));
            if (auto r = config_shadow_doorbells(); r) {
                info_.shadow_doorbells = true;
            } else {
                pr_warn("{}: {}: using MMIO doorbells only", core.name, r.error().message());
                core.shadow_db.reset();
                core.shadow_ei.reset();
            }
        }
    }
    return {};
}

Result<void> Controller::identify_namespaces() {
    ControllerCore& core = *core_;
    auto list = UDRV_TRY(identify_locked(kCnsActiveNsList, 0));
    for (std::size_t i = 0; i < 1024; ++i) {
        std::uint32_t nsid;
        std::memcpy(&nsid, list.data() + i * 4, sizeof nsid);
        if (nsid == 0) break;
        if (info_.namespaces && nsid > info_.namespaces) {
            pr_warn("{}: active namespace list names {} beyond NN={}: ignored", core.name, nsid, info_.namespaces);
            continue;
        }
        auto nsd = UDRV_TRY(identify_locked(kCnsNamespace, nsid));
        auto parsed = parse_identify_namespace(nsid, nsd, info_.max_transfer);
        if (!parsed) {  // one bad namespace does not cost the others
            pr_warn("{}: {}: ignored", core.name, parsed.error().message());
            continue;
        }
        NamespaceInfo ns = std::move(*parsed);
        block::Info bi;
        bi.name = fmt::format("{}/ns{}", core.name, nsid);
        bi.block_size = ns.block_size();
        bi.blocks = ns.size;
        bi.max_transfer = info_.max_transfer;
        bi.splits = true;
        bi.max_queue_depth = info_.max_queue_entries - 1u;  // one SQ slot stays empty (full != empty)
        bi.max_queues = info_.io_queues;                     // shared by the controller's namespaces
        bi.write_zeroes = info_.oncs & kOncsWriteZeroes;
        bi.deallocate = info_.oncs & kOncsDatasetManagement;
        bi.volatile_cache = info_.vwc & 1;
        namespaces_.push_back(std::unique_ptr<Namespace>(new Namespace(*this, std::move(ns), std::move(bi))));
    }
    return {};
}

// ---------------------------------------------------------------------------------------------------
// Admin commands. Callers hold core_->mu: the admin queue is the control path's alone.

Result<std::uint32_t> Controller::admin(const Sqe& sqe, std::string_view what) {
    struct Wait {
        bool done = false;
        std::optional<Error> error;
    } w;
    UDRV_TRY_CTX(admin_->submit(sqe, [](void* c, const Result<void>& r) {
        auto* w = static_cast<Wait*>(c);
        w->done = true;
        if (!r) w->error = r.error();
    }, &w, nullptr), "{}: {}", core_->name, what);
    const auto deadline = clock::now() + kAdminTimeout;
    while (!w.done) {
        UDRV_TRY(admin_->process_completions());
        if (!w.done && clock::now() > deadline) {
            admin_->fail_all(Error(ETIMEDOUT, "admin command timed out"));
            Error e(ETIMEDOUT, fmt::format("{}: {} timed out after {} s", core_->name, what, kAdminTimeout.count()));
            if (!resetting_) (void)reset_locked(e.message(), false);  // the admin queue cannot be trusted any more
            return std::unexpected(e);
        }
    }
    if (w.error) return std::unexpected(std::move(*w.error).context(fmt::format("{}: {}", core_->name, what)));
    return admin_->last_result_;
}

Result<std::vector<std::byte>> Controller::identify(std::uint32_t cns, std::uint32_t nsid) {
    std::lock_guard lock(core_->mu);
    if (core_->controller != this) return fail(ENODEV, "{}: controller is being removed", core_->name);
    return identify_locked(cns, nsid);
}

Result<std::vector<std::byte>> Controller::identify_locked(std::uint32_t cns, std::uint32_t nsid) {
    auto buf = UDRV_TRY(dma_.region(kPage));
    UDRV_TRY(admin(cmd::identify(cns, nsid, buf.iova()), cns == kCnsController  ? "identify controller"
                                                         : cns == kCnsNamespace ? "identify namespace"
                                                                                : "identify"));
    auto b = buf.bytes();
    return std::vector<std::byte>(b.begin(), b.begin() + kPage);
}

// Set Features (Number of Queues); returns how many I/O queue pairs the controller grants and the
// driver can use: no more than have their doorbells in the mapped window (and so their shadow
// doorbells in the shadow page), which probe checked is at least one.
Result<std::uint16_t> Controller::negotiate_queues() {
    const std::uint32_t granted = UDRV_TRY(admin(cmd::set_number_of_queues(kWantedIoQueues, kWantedIoQueues), "set features (number of queues)"));
    const auto in_window = static_cast<std::uint32_t>(io_queues_in_window(info_.doorbell_stride, kBarMin));
    return static_cast<std::uint16_t>(std::min<std::uint32_t>({(granted & 0xffff) + 1, (granted >> 16) + 1, kWantedIoQueues, in_window}));
}

// Hands the shadow doorbell buffers (zeroed: no queue exists yet) to the controller.
Result<void> Controller::config_shadow_doorbells() {
    ControllerCore& core = *core_;
    for (auto& v : core.shadow_db->span()) v = 0;
    for (auto& v : core.shadow_ei->span()) v = 0;
    UDRV_TRY(admin(cmd::doorbell_buffer_config(core.shadow_db->iova(), core.shadow_ei->iova()), "doorbell buffer config"));
    return {};
}

// Creates queue pair q on the controller: the CQ, then the SQ (deleting the CQ if that fails).
Result<void> Controller::create_hw_queue(QueuePair& q) {
    ControllerCore& core = *core_;
    if (core.shadow_db) {  // the queue's doorbells start from zero, as the controller's do
        (*core.shadow_db)[core.shadow_index(q.qid_, false)] = (*core.shadow_db)[core.shadow_index(q.qid_, true)] = 0;
        (*core.shadow_ei)[core.shadow_index(q.qid_, false)] = (*core.shadow_ei)[core.shadow_index(q.qid_, true)] = 0;
    }
    const std::optional<std::uint16_t> vector = q.mode_ != block::Mode::polled ? std::optional<std::uint16_t>(q.qid_) : std::nullopt;
    UDRV_TRY(admin(cmd::create_io_cq(q.qid_, q.cq_depth_, q.cq_.iova(), vector), "create I/O completion queue"));
    if (auto r = admin(cmd::create_io_sq(q.qid_, q.depth_, q.sq_.iova(), q.qid_), "create I/O submission queue"); !r) {
        (void)admin(cmd::delete_io_cq(q.qid_), "delete I/O completion queue");
        return std::unexpected(r.error());
    }
    return {};
}

// Deletes an I/O queue pair, SQ before CQ as the spec requires, and frees its id.
void Controller::delete_hw_queue(std::uint16_t qid, bool quiet) {
    if (auto r = admin(cmd::delete_io_sq(qid), "delete I/O submission queue"); !r && !quiet) pr_warn("{}", r.error().message());
    if (auto r = admin(cmd::delete_io_cq(qid), "delete I/O completion queue"); !r && !quiet) pr_warn("{}", r.error().message());
    if (qid < qid_used_.size()) qid_used_[qid] = false;
}

// ---------------------------------------------------------------------------------------------------
// I/O queues

Result<std::unique_ptr<QueuePair>> Controller::create_queue_pair(std::uint32_t nsid, unsigned depth, block::Mode mode) {
    Namespace* ns = UDRV_TRY(find_namespace(nsid));
    ControllerCore& core = *core_;
    std::lock_guard lock(core.mu);
    if (core.controller != this) return fail(ENODEV, "{}: controller is being removed", core.name);
    if (failed_) return fail(ENODEV, "{}: the controller's last reset failed: rebind it", core.name);
    std::uint16_t qid = 0;
    for (std::uint16_t q = 1; q < qid_used_.size(); ++q)
        if (!qid_used_[q]) {
            qid = q;
            break;
        }
    if (!qid) return fail(EBUSY, "{}: all {} I/O queues are in use", core.name, info_.io_queues);
    if (mode != block::Mode::polled && (!vectors_ || vectors_->kind() != irq::IrqKind::msix || qid >= vectors_->size()))
        return fail(ENOTSUP, "{}: no MSI-X vector for queue {}: use polled mode", core.name, qid);
    if (depth == 0 || depth > info_.max_queue_entries - 1u)
        return fail(EINVAL, "{}: queue depth {}: the controller allows at most {} commands per queue (CAP.MQES)", core.name, depth,
                    info_.max_queue_entries - 1u);
    const auto qdepth = static_cast<std::uint16_t>(depth + 1);
    // A polled queue's CQ is larger than its SQ (4x, at least a page of entries) so that its head
    // doorbell can wait (see QueuePair::ring_cq).
    const unsigned cq_wanted = std::max<unsigned>(4u * qdepth, kPage / sizeof(Cqe));
    const std::uint16_t cq_depth =
        mode == block::Mode::polled ? static_cast<std::uint16_t>(std::clamp<unsigned>(cq_wanted, qdepth, info_.max_queue_entries)) : qdepth;
    auto sq = UDRV_TRY(dma_.coherent<Sqe>(qdepth));
    auto cq = UDRV_TRY(dma_.coherent<Cqe>(cq_depth));
    auto prps = UDRV_TRY(dma_.pool(kPage, qdepth));
    const QueueDoorbells doorbells = UDRV_TRY(core.doorbells_for(qid));
    std::unique_ptr<QueuePair> q(
        new QueuePair(core_, qid, doorbells, qdepth, cq_depth, nsid, ns->info().block_size, mode, std::move(sq), std::move(cq), std::move(prps)));
    q->timeout_ticks_ = to_ticks(io_timeout_);
    if (mode != block::Mode::polled) {
        q->vectors_ = vectors_;
        q->vector_ = &(*vectors_)[qid];
    }
    if (mode == block::Mode::hybrid) q->hybrid_ = std::make_unique<irq::HybridWaiter>(*q->vector_);
    UDRV_TRY(create_hw_queue(*q));
    qid_used_[qid] = true;
    core.io_queues.push_back(q.get());
    q->registered_ = true;
    return q;
}

// ---------------------------------------------------------------------------------------------------
// Reset: the one place that disables and re-enables the controller

void Controller::freeze_io_queues() {
    for (QueuePair* q : core_->io_queues) {
        const QueueState s = q->state();
        if (s == QueueState::active || s == QueueState::recovered || s == QueueState::broken)
            q->state_.store(QueueState::frozen, std::memory_order_release);
    }
    rcu::synchronize();  // from here on no owner is inside its queue: the rings are ours until we let go
}

// NVMe 1.4, 7.3.2 (as Linux's nvme_reset_ctrl): with every I/O queue frozen, a controller that still
// answers deletes its I/O queues first (it finishes or aborts their commands: QEMU 7.2's crashes when
// disabled with reads still in its block layer); then CC.EN=0 stops it, the admin queue starts over,
// the features come back, and every I/O queue is created again under its id and memory. What each had
// in flight (and the completions the controller posted) its owner reports on its next call.
Result<void> Controller::reset_locked(std::string_view why, bool graceful) {
    ControllerCore& core = *core_;
    if (resetting_) return fail(EBUSY, "{}: controller reset already in progress", core.name);
    resetting_ = true;
    struct Done {
        bool& flag;
        ~Done() { flag = false; }
    } done{resetting_};
    ++resets_;
    pr_warn("{}: resetting the controller: {}", core.name, why);
    freeze_io_queues();
    auto r = [&]() -> Result<void> {
        if (graceful && !(core.regs.read32<kRegCsts>() & kCstsFatal)) {
            for (QueuePair* q : core.io_queues) {
                if (q->state() != QueueState::frozen) continue;
                auto d = admin(cmd::delete_io_sq(q->qid_), "delete I/O submission queue");
                if (!d && d.error().code() == ETIMEDOUT) break;
                (void)admin(cmd::delete_io_cq(q->qid_), "delete I/O completion queue");
            }
        }
        core.regs.write32<kRegCc>(core.regs.read32<kRegCc>() & ~kCcEnable);
        UDRV_TRY(wait_ready(false));
        // The controller is stopped: what it posted stays where it is; collect it, then start over.
        for (QueuePair* q : core.io_queues)
            if (q->state() == QueueState::frozen) {
                (void)q->salvage();
                q->reset_rings();
            }
        admin_->reset_rings();
        admin_->fail_all(Error(EIO, fmt::format("{}: controller reset ({})", core.name, why)));
        UDRV_TRY(enable());
        const std::uint16_t granted = UDRV_TRY(negotiate_queues());
        if (granted < info_.io_queues)
            return fail(EIO, "{}: after reset the controller grants {} I/O queues, {} were in use", core.name, granted, info_.io_queues);
        if (core.shadow_db) UDRV_TRY(config_shadow_doorbells());
        for (QueuePair* q : core.io_queues) {
            if (q->state() != QueueState::frozen) continue;
            if (auto c = create_hw_queue(*q); !c) {
                pr_err("{}: queue {} could not be recreated: {}", core.name, q->qid_, c.error().message());
                q->state_.store(QueueState::removed, std::memory_order_release);
                continue;
            }
            q->state_.store(QueueState::recovered, std::memory_order_release);
        }
        return {};
    }();
    failed_ = !r;
    if (r) {
        pr_info("{}: controller reset done", core.name);
    } else {
        pr_err("{}: controller reset failed: {}", core.name, r.error().message());
        for (QueuePair* q : core.io_queues) q->state_.store(QueueState::removed, std::memory_order_release);
    }
    return r;
}

Result<void> Controller::reset() {
    std::lock_guard lock(core_->mu);
    if (core_->controller != this) return fail(ENODEV, "{}: controller is being removed", core_->name);
    return reset_locked("requested", true);
}

unsigned Controller::resets() const {
    std::lock_guard lock(core_->mu);
    return resets_;
}

// ---------------------------------------------------------------------------------------------------
// The service thread: CSTS.CFS and the queues' timeout reports, every 100 ms

void Controller::start_service() {
    service_ = std::thread([this] { service_loop(); });
}

void Controller::service_loop() {
    ControllerCore& core = *core_;
    std::unique_lock lock(core.mu);
    while (!stopping_) {
        service_cv_.wait_for(lock, kServicePeriod, [&] { return stopping_; });
        core.reclaim_mem();
        if (stopping_ || failed_) continue;
        if (core.regs.read32<kRegCsts>() & kCstsFatal) {
            (void)reset_locked("controller fatal status (CSTS.CFS)", false);
            continue;
        }
        // A queue that got an impossible completion: the controller (or its view of memory) is not to be
        // trusted until it has been reset, as Linux's nvme_reset_ctrl after a bogus CQE.
        if (std::any_of(core.io_queues.begin(), core.io_queues.end(), [](QueuePair* q) { return q->state() == QueueState::broken; })) {
            (void)reset_locked("an I/O queue got an invalid completion", false);
            continue;
        }
        for (QueuePair* q : std::vector<QueuePair*>(core.io_queues)) {
            const std::uint32_t report = q->timeout_report_.exchange(0, std::memory_order_acq_rel);
            if (!report) continue;
            const auto cid = static_cast<std::uint16_t>((report & 0xffff) - 1), stage = static_cast<std::uint16_t>(report >> 16);
            if (stage == 1) {  // first, ask the controller to abort it
                auto r = admin(cmd::abort(q->qid_, cid), "abort of a timed-out command");
                pr_warn("{}: queue {} command {} timed out; abort {}", core.name, q->qid_, cid, r ? "sent" : r.error().message());
            } else {  // the abort did not help: the command fails, and a reset brings the queues back
                (void)reset_locked(fmt::format("queue {} command {} timed out and the abort did not help", q->qid_, cid), true);
                break;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Remove

Controller::~Controller() {
    ControllerCore& core = *core_;
    {
        std::lock_guard lock(core.mu);
        stopping_ = true;
    }
    service_cv_.notify_all();
    if (service_.joinable()) service_.join();
    std::lock_guard lock(core.mu);
    core.removing.store(true, std::memory_order_release);  // owners of frozen queues hear ENODEV, not "try again"
    freeze_io_queues();
    // What is in flight gets a bounded while (the I/O timeout, at most 5 s) to complete, as Linux's
    // removal waits for its block layer to drain; we take the completions on the owners' behalf (their
    // queues are frozen). Then the queues are deleted, SQ before CQ.
    const auto deadline = clock::now() + std::min<clock::duration>(kDrainAtRemove, io_timeout_);
    for (QueuePair* q : core.io_queues) {
        if (q->state() != QueueState::frozen) continue;
        while (q->posted_.size() < q->outstanding_ && clock::now() < deadline) {
            if (!q->salvage()) std::this_thread::sleep_for(std::chrono::microseconds(50));
            else if (q->cq_unreported_) q->ring_cq();
        }
        delete_hw_queue(q->qid_, true);
    }
    for (QueuePair* q : core.io_queues) q->state_.store(QueueState::removed, std::memory_order_release);
    // A normal shutdown, so that the controller flushes its volatile cache: acknowledged writes are on
    // the medium. (Not for a probe that failed before enabling it, or a controller that is gone.)
    const std::uint32_t cc = core.regs.read32<kRegCc>();
    if (cc == 0xffffffff || !(cc & kCcEnable)) {
        release_after_remove();
        return;
    }
    core.regs.write32<kRegCc>((cc & ~kCcShnMask) | kCcShnNormal);
    const auto until = clock::now() + std::chrono::milliseconds(std::max<std::uint32_t>(info_.timeout_ms, 1000));
    while ((core.regs.read32<kRegCsts>() & kCstsShstMask) != kCstsShstDone && clock::now() < until)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    if ((core.regs.read32<kRegCsts>() & kCstsShstMask) == kCstsShstDone) pr_info("{}: shut down cleanly", core.name);
    else pr_warn("{}: shutdown did not complete within CAP.TO", core.name);
    core.regs.write32<kRegCc>(core.regs.read32<kRegCc>() & ~kCcEnable);
    release_after_remove();
}

// What the controller lets go of once it is stopped (core_->mu held): queues still held by their owners
// are removed and keep only their own memory and eventfds.
void Controller::release_after_remove() noexcept {
    core_->readers_possible.store(false, std::memory_order_release);  // every queue is removed (or frozen and synchronized)
    core_->controller = nullptr;
    core_->io_queues.clear();
    if (vectors_) vectors_->release_device();
    namespaces_.clear();
    streaming_.clear();
}

// ---------------------------------------------------------------------------------------------------
// Namespaces and memory

Result<Namespace*> Controller::find_namespace(std::uint32_t nsid) const {
    for (auto& n : namespaces_)
        if (n->nvme_info().nsid == nsid) return n.get();
    return fail(ENOENT, "{}: no active namespace {}", core_->name, nsid);
}

Result<block::Buffer> Controller::alloc_buffer(std::size_t bytes) {
    auto region = std::make_shared<dma::Region>(UDRV_TRY(dma_.region(bytes)));
    const std::uintptr_t start = dma::address_of(region->bytes().data());
    core_->edit_mem([&](ControllerCore::MemMap& m) { m[start] = {region->size(), region->iova()}; });
    std::weak_ptr<ControllerCore> weak = core_;
    std::shared_ptr<void> owner(nullptr, [region, weak, start](void*) {
        if (auto c = weak.lock()) c->edit_mem([&](ControllerCore::MemMap& m) { m.erase(start); });
    });
    return block::Buffer(region->bytes().first(bytes), std::move(owner));
}

Result<void> Controller::register_memory(std::span<std::byte> memory) {
    auto m = std::make_shared<dma::Streaming>(UDRV_TRY(dma_.streaming(memory)));
    core_->edit_mem([&](ControllerCore::MemMap& map) { map[dma::address_of(memory.data())] = {memory.size(), m->iova()}; });
    std::lock_guard lock(core_->mu);
    streaming_.push_back(std::move(m));
    return {};
}

void Controller::unregister_memory(std::span<std::byte> memory) {
    const std::uintptr_t key = dma::address_of(memory.data());
    std::optional<std::uint64_t> iova;
    core_->edit_mem([&](ControllerCore::MemMap& m) {
        if (auto it = m.find(key); it != m.end()) {
            iova = it->second.iova;
            m.erase(it);
        }
    });
    if (!iova) return;
    core_->reclaim_mem();  // no queue still translates through the old map when the mapping goes
    std::lock_guard lock(core_->mu);
    std::erase_if(streaming_, [&](auto& m) { return m->iova() == *iova; });
}

Result<std::unique_ptr<block::Queue>> Namespace::open_queue(unsigned depth, block::Mode mode) {
    auto q = UDRV_TRY(ctrl_.create_queue_pair(ns_.nsid, depth, mode));
    return std::unique_ptr<block::Queue>(std::move(q));
}

Result<block::Buffer> Namespace::alloc_buffer(std::size_t bytes) { return ctrl_.alloc_buffer(bytes); }
Result<void> Namespace::register_memory(std::span<std::byte> memory) { return ctrl_.register_memory(memory); }
void Namespace::unregister_memory(std::span<std::byte> memory) { ctrl_.unregister_memory(memory); }

}  // namespace udrv::nvme
