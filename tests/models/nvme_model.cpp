#include "nvme_model.hpp"

#include <algorithm>
#include <cstddef>

namespace udrv::models {
namespace {

using namespace udrv::nvme;
constexpr std::size_t kPage = 4096;
constexpr std::uint16_t kSuccess = 0;
constexpr std::uint16_t sf(std::uint16_t sct, std::uint16_t sc) { return static_cast<std::uint16_t>(sct << 8 | sc); }
constexpr std::uint16_t kInvalidOpcode = sf(0, 0x01), kInvalidField = sf(0, 0x02), kDataTransferError = sf(0, 0x04),
                        kAbortRequested = sf(0, 0x07), kAbortSqDeleted = sf(0, 0x08), kInvalidNamespace = sf(0, 0x0b),
                        kLbaOutOfRange = sf(0, 0x80), kInvalidQueueId = sf(1, 0x01), kInvalidQueueSize = sf(1, 0x02),
                        kInvalidQueueDeletion = sf(1, 0x0c), kCqInvalid = sf(1, 0x00), kPrpOffsetInvalid = sf(0, 0x13);

}  // namespace

NvmeModel::NvmeModel(std::string address, Options o)
    : ModelFunction(std::move(address), 0x1b36, 0x0010, 0x010802, 2), o_(o), sqs_(o.io_queues + 1u), cqs_(o.io_queues + 1u),
      per_queue_(o.io_queues + 1u), media_(o.blocks << o.lba_shift) {
    add_bar(0, 16384);
    add_msix(o.msix_vectors, 0, 0x3000);
    // CAP: MQES, CQR (contiguous queues), TO = 1 (500 ms), DSTRD 0, NVM command set, MPSMIN 0.
    const std::uint64_t cap = (o.max_queue_entries - 1u) | 1ull << 16 | 1ull << 24 | std::uint64_t{o.nvm_command_set} << 37;
    set_reg<std::uint64_t>(0, kRegCap, cap);
    set_reg<std::uint32_t>(0, kRegVs, 0x00010400);
}

std::uint64_t NvmeModel::commands_on(std::uint16_t qid) const {
    std::lock_guard lock(mu_);
    return qid < per_queue_.size() ? per_queue_[qid] : 0;
}

void NvmeModel::fail_next(std::uint8_t opcode, std::uint16_t status, unsigned count) {
    std::lock_guard lock(mu_);
    failures_.push_back({opcode, status, count});
}
void NvmeModel::hold_completions(bool hold) {
    std::lock_guard lock(mu_);
    hold_ = hold;
}
void NvmeModel::corrupt_next_cid(std::uint16_t cid) {
    std::lock_guard lock(mu_);
    corrupt_cid_ = cid;
}
void NvmeModel::set_fatal() {
    std::lock_guard lock(mu_);
    set_reg<std::uint32_t>(0, kRegCsts, reg<std::uint32_t>(0, kRegCsts) | kCstsFatal);
}

void NvmeModel::hold_admin(bool hold) {
    std::lock_guard lock(mu_);
    hold_admin_ = hold;
    if (hold) return;
    auto held = std::move(held_admin_);
    held_admin_.clear();
    for (const Held& h : held) (void)complete(0, h.cid, h.sf, h.result);
}

void NvmeModel::release() {
    std::lock_guard lock(mu_);
    auto held = std::move(held_);
    held_.clear();
    for (const Held& h : held) (void)complete(h.sqid, h.cid, h.sf, h.result);
}

void NvmeModel::on_mmio_written(unsigned bar, std::size_t offset, unsigned width, std::uint64_t value) {
    if (bar != 0) return;
    std::lock_guard lock(mu_);
    if (offset == kRegCc && width == 4) controller_config(static_cast<std::uint32_t>(value));
    else if (offset >= kRegDoorbells && width == 4) doorbell(offset, static_cast<std::uint32_t>(value));
}

void NvmeModel::controller_config(std::uint32_t cc) {
    std::uint32_t csts = reg<std::uint32_t>(0, kRegCsts);
    const bool was_ready = csts & kCstsReady;
    if ((cc & kCcShnMask) != 0) {  // normal or abrupt shutdown: done at once
        csts = (csts & ~kCstsShstMask) | kCstsShstDone;
        shut_down_ = true;
    }
    if ((cc & kCcEnable) && !was_ready) {
        const std::uint32_t aqa = reg<std::uint32_t>(0, kRegAqa);
        Queue& asq = sqs_[0];
        Queue& acq = cqs_[0];
        asq = Queue{reg<std::uint64_t>(0, kRegAsq), static_cast<std::uint16_t>((aqa & 0xfff) + 1), 0, 0, 0, true, false, 0, true};
        acq = Queue{reg<std::uint64_t>(0, kRegAcq), static_cast<std::uint16_t>(((aqa >> 16) & 0xfff) + 1), 0, 0, 0, true, false, 0, true};
        if (!o_.never_ready) csts |= kCstsReady;
        shut_down_ = false;
    } else if (!(cc & kCcEnable) && was_ready) {
        // Disabled: every queue and what they hold is gone (a controller reset).
        for (auto& q : sqs_) q = Queue{};
        for (auto& q : cqs_) q = Queue{};
        held_.clear();
        held_admin_.clear();
        pending_.clear();
        shadow_db_ = shadow_ei_ = 0;
        csts &= ~(kCstsReady | kCstsFatal);
        ++resets_;
    }
    set_reg<std::uint32_t>(0, kRegCsts, csts);
}

void NvmeModel::doorbell(std::size_t offset, std::uint32_t value) {
    ++doorbells_;
    const std::size_t index = (offset - kRegDoorbells) / 4;  // stride 4: SQ y tail at 2y, CQ y head at 2y+1
    const auto qid = static_cast<std::uint16_t>(index / 2);
    if (qid >= sqs_.size() || !(reg<std::uint32_t>(0, kRegCsts) & kCstsReady)) return;
    if (index % 2 == 0) {
        Queue& sq = sqs_[qid];
        if (!sq.exists || value >= sq.size) return;  // a real controller would raise an asynchronous event
        sq.tail = static_cast<std::uint16_t>(value);
        run_sq(qid);
    } else {
        Queue& cq = cqs_[qid];
        if (!cq.exists || value >= cq.size) return;
        cq.head = static_cast<std::uint16_t>(value);
        flush_pending(qid);
    }
    if (shadow_ei_ && qid > 0) {  // ask to be told of the next change to this doorbell too
        const std::uint32_t now = index % 2 == 0 ? sqs_[qid].tail : cqs_[qid].head;
        (void)dma_write(shadow_ei_ + index * 4, &now, 4);
    }
}

void NvmeModel::run_sq(std::uint16_t qid) {
    Queue& sq = sqs_[qid];
    while (sq.exists && sq.head != sq.tail) {
        Sqe c{};
        if (!dma_read(sq.base + std::uint64_t{sq.head} * sizeof(Sqe), &c, sizeof c)) return;
        sq.head = static_cast<std::uint16_t>((sq.head + 1) % sq.size);
        ++commands_;
        ++per_queue_[qid];
        std::uint32_t result = 0;
        const std::uint16_t status = execute(qid, c, result);
        const auto cid = static_cast<std::uint16_t>(c.cdw0 >> 16);
        if (qid != 0 && hold_) {
            held_.push_back({qid, cid, status, result});
            continue;
        }
        if (qid == 0 && hold_admin_) {
            held_admin_.push_back({qid, cid, status, result});
            continue;
        }
        (void)complete(qid, cid, status, result);
    }
}

std::uint16_t NvmeModel::execute(std::uint16_t sqid, const Sqe& c, std::uint32_t& result) {
    const auto opcode = static_cast<std::uint8_t>(c.cdw0);
    if (sqid == 0) return admin(c, result);
    for (auto& f : failures_)
        if (f.count && f.opcode == opcode) {
            --f.count;
            return f.sf;
        }
    return io(c);
}

std::uint16_t NvmeModel::admin(const Sqe& c, std::uint32_t& result) {
    const auto opcode = static_cast<std::uint8_t>(c.cdw0);
    if (o_.fail_admin_opcode == opcode) return o_.fail_admin_status;
    switch (opcode) {
        case kAdminIdentify: {
            std::vector<std::byte> page(kPage);
            const std::uint32_t cns = c.cdw10 & 0xff;
            if (cns == kCnsController) identify_controller(page.data());
            else if (cns == kCnsNamespace) {
                if (c.nsid != 1) return kInvalidNamespace;
                identify_namespace(page.data());
            } else if (cns == kCnsActiveNsList) {
                const std::uint32_t one = c.nsid < 1 ? 1 : 0;
                std::memcpy(page.data(), &one, 4);
            } else {
                return kInvalidField;
            }
            return transfer(c, page.data(), kPage, true);
        }
        case kAdminSetFeatures:
            if ((c.cdw10 & 0xff) != kFeatureNumQueues) return kInvalidField;
            result = static_cast<std::uint32_t>(o_.io_queues - 1u) << 16 | (o_.io_queues - 1u);
            return kSuccess;
        case kAdminCreateCq: {
            const auto qid = static_cast<std::uint16_t>(c.cdw10), size = static_cast<std::uint16_t>((c.cdw10 >> 16) + 1);
            if (qid == 0 || qid >= cqs_.size() || cqs_[qid].exists) return kInvalidQueueId;
            if (size < 2 || size > o_.max_queue_entries) return kInvalidQueueSize;
            if (!(c.cdw11 & 1)) return kInvalidField;  // only physically contiguous queues
            cqs_[qid] = Queue{c.prp1, size, 0, 0, 0, true, bool(c.cdw11 & 2), static_cast<std::uint16_t>(c.cdw11 >> 16), true};
            return kSuccess;
        }
        case kAdminCreateSq: {
            const auto qid = static_cast<std::uint16_t>(c.cdw10), size = static_cast<std::uint16_t>((c.cdw10 >> 16) + 1);
            const auto cqid = static_cast<std::uint16_t>(c.cdw11 >> 16);
            if (qid == 0 || qid >= sqs_.size() || sqs_[qid].exists) return kInvalidQueueId;
            if (cqid >= cqs_.size() || !cqs_[cqid].exists) return kCqInvalid;
            if (size < 2 || size > o_.max_queue_entries) return kInvalidQueueSize;
            sqs_[qid] = Queue{c.prp1, size, 0, 0, cqid, true, false, 0, true};
            return kSuccess;
        }
        case kAdminDeleteSq: {
            const auto qid = static_cast<std::uint16_t>(c.cdw10);
            if (qid == 0 || qid >= sqs_.size() || !sqs_[qid].exists) return kInvalidQueueId;
            // Commands still held fail as aborted by the deletion; then the queue is gone.
            for (auto it = held_.begin(); it != held_.end();)
                if (it->sqid == qid) {
                    (void)complete(qid, it->cid, kAbortSqDeleted, 0);
                    it = held_.erase(it);
                } else {
                    ++it;
                }
            sqs_[qid] = Queue{};
            return kSuccess;
        }
        case kAdminDeleteCq: {
            const auto qid = static_cast<std::uint16_t>(c.cdw10);
            if (qid == 0 || qid >= cqs_.size() || !cqs_[qid].exists) return kInvalidQueueId;
            for (const Queue& sq : sqs_)
                if (sq.exists && sq.cqid == qid) return kInvalidQueueDeletion;
            cqs_[qid] = Queue{};
            return kSuccess;
        }
        case kAdminAbort: {
            const auto sqid = static_cast<std::uint16_t>(c.cdw10), cid = static_cast<std::uint16_t>(c.cdw10 >> 16);
            auto it = std::find_if(held_.begin(), held_.end(), [&](const Held& h) { return h.sqid == sqid && h.cid == cid; });
            result = 1;  // bit 0 set: not aborted
            if (it != held_.end() && o_.honour_abort) {
                (void)complete(sqid, cid, kAbortRequested, 0);
                held_.erase(it);
                result = 0;
            }
            return kSuccess;
        }
        case kAdminDoorbellBuffer:
            if (!o_.shadow_doorbells) return kInvalidOpcode;
            shadow_db_ = c.prp1;
            shadow_ei_ = c.prp2;
            return kSuccess;
        default: return kInvalidOpcode;
    }
}

std::uint16_t NvmeModel::io(const Sqe& c) {
    const auto opcode = static_cast<std::uint8_t>(c.cdw0);
    if (c.nsid != 1) return kInvalidNamespace;
    const std::uint64_t slba = c.cdw10 | std::uint64_t{c.cdw11} << 32;
    const std::uint64_t nlb = (c.cdw12 & 0xffff) + 1ull;
    const std::size_t block = std::size_t{1} << o_.lba_shift;
    auto in_range = [&] { return slba < o_.blocks && nlb <= o_.blocks - slba; };
    switch (opcode) {
        case kIoFlush: return kSuccess;
        case kIoRead:
        case kIoWrite: {
            if (!in_range()) return kLbaOutOfRange;
            const std::size_t len = nlb * block;
            if (len > (kPage << o_.mdts)) return kInvalidField;  // above MDTS
            largest_transfer_ = std::max(largest_transfer_, len);
            return transfer(c, media_.data() + slba * block, len, opcode == kIoRead);
        }
        case kIoWriteZeroes:
            if (!in_range()) return kLbaOutOfRange;
            std::fill_n(media_.begin() + static_cast<std::ptrdiff_t>(slba * block), nlb * block, std::byte{0});
            return kSuccess;
        case kIoDsm: {
            const unsigned ranges = (c.cdw10 & 0xff) + 1;
            std::vector<std::byte> list(ranges * 16);
            if (const std::uint16_t s = transfer(c, list.data(), list.size(), false)) return s;
            for (unsigned r = 0; r < ranges; ++r) {
                std::uint32_t len;
                std::uint64_t lba;
                std::memcpy(&len, list.data() + r * 16 + 4, 4);
                std::memcpy(&lba, list.data() + r * 16 + 8, 8);
                if (lba >= o_.blocks || len > o_.blocks - lba) return kLbaOutOfRange;
                if (c.cdw11 & 4) std::fill_n(media_.begin() + static_cast<std::ptrdiff_t>(lba * block), std::size_t{len} * block, std::byte{0});
            }
            return kSuccess;
        }
        default: return kInvalidOpcode;
    }
}

// PRP1 may start anywhere dword-aligned; what follows starts on page boundaries: PRP2 is the second
// page, or (more than two pages) a list of page addresses, whose last entry chains to the next list page.
std::uint16_t NvmeModel::transfer(const Sqe& c, std::byte* buf, std::size_t len, bool to_host) {
    auto move = [&](std::uint64_t iova, std::byte* p, std::size_t n) {
        return to_host ? dma_write(iova, p, n) : dma_read(iova, p, n);
    };
    if (c.prp1 & 3) return kPrpOffsetInvalid;
    const std::size_t first = std::min(len, kPage - (c.prp1 & (kPage - 1)));
    if (!move(c.prp1, buf, first)) return kDataTransferError;
    std::size_t done = first;
    if (done == len) return kSuccess;
    if (len - done <= kPage) {
        if (c.prp2 & (kPage - 1)) return kPrpOffsetInvalid;
        return move(c.prp2, buf + done, len - done) ? kSuccess : kDataTransferError;
    }
    ++prp_lists_;
    std::uint64_t list = c.prp2;
    if (list & 7) return kPrpOffsetInvalid;
    while (done < len) {
        std::uint64_t page = 0;
        if (!dma_read(list, &page, 8)) return kDataTransferError;
        // The last slot of a list page chains to the next list page when more than a page remains.
        if (((list + 8) & (kPage - 1)) == 0 && len - done > kPage) {
            if (page & 7) return kPrpOffsetInvalid;
            list = page;
            continue;
        }
        if (page & (kPage - 1)) return kPrpOffsetInvalid;
        const std::size_t n = std::min(kPage, len - done);
        if (!move(page, buf + done, n)) return kDataTransferError;
        done += n;
        list += 8;
    }
    return kSuccess;
}

bool NvmeModel::complete(std::uint16_t sqid, std::uint16_t cid, std::uint16_t status, std::uint32_t result) {
    if (post(sqid, cid, status, result)) return true;
    const std::uint16_t cqid = sqid == 0 ? 0 : sqs_[sqid].cqid;
    if (!cqs_[cqid].exists) return false;
    ++cq_overflows_;  // the driver let its CQ fill: the controller waits for the head doorbell
    pending_.push_back({sqid, cid, status, result});
    return false;
}

bool NvmeModel::post(std::uint16_t sqid, std::uint16_t cid, std::uint16_t status, std::uint32_t result) {
    Queue& sq = sqs_[sqid];
    const std::uint16_t cqid = sqid == 0 ? 0 : sq.cqid;
    Queue& cq = cqs_[cqid];
    if (!cq.exists || static_cast<std::uint16_t>((cq.tail + 1) % cq.size) == cq.head) return false;
    Cqe e{};
    e.result = result;
    e.sq_head = sq.head;
    e.sq_id = sqid;
    e.cid = cid;
    if (corrupt_cid_ && sqid != 0) {
        e.cid = *corrupt_cid_;
        corrupt_cid_.reset();
    }
    e.status = static_cast<std::uint16_t>(status << 1 | (cq.phase ? 1 : 0));
    // The entry first, its phase bit last: the driver reads the phase before the rest.
    Cqe staged = e;
    staged.status = static_cast<std::uint16_t>(e.status ^ 1);
    const std::uint64_t at = cq.base + std::uint64_t{cq.tail} * sizeof(Cqe);
    (void)dma_write(at, &staged, sizeof staged);
    (void)dma_write(at + offsetof(Cqe, status), &e.status, sizeof e.status);
    if (++cq.tail == cq.size) {
        cq.tail = 0;
        cq.phase = !cq.phase;
    }
    if (cq.irq) interrupt(cq.vector);
    return true;
}

void NvmeModel::flush_pending(std::uint16_t cqid) {
    for (auto it = pending_.begin(); it != pending_.end();) {
        const std::uint16_t to = it->sqid == 0 ? 0 : sqs_[it->sqid].cqid;
        if (to != cqid) {
            ++it;
            continue;
        }
        if (!post(it->sqid, it->cid, it->sf, it->result)) break;
        it = pending_.erase(it);
    }
}

void NvmeModel::identify_controller(std::byte* page) const {
    auto put = [&](std::size_t off, auto v) { std::memcpy(page + off, &v, sizeof v); };
    auto text = [&](std::size_t off, std::size_t len, std::string_view s) {
        std::memset(page + off, ' ', len);
        std::memcpy(page + off, s.data(), std::min(len, s.size()));
    };
    put(0, std::uint16_t{0x1b36});
    put(2, std::uint16_t{0x1af4});
    text(4, 20, "model0001");
    text(24, 40, "udrv NVMe model");
    text(64, 8, "1.0");
    put(77, o_.mdts);
    put(80, std::uint32_t{0x00010400});
    put(256, static_cast<std::uint16_t>(o_.shadow_doorbells ? kOacsDoorbellBuffer : 0));
    put(512, std::uint8_t{0x66});  // SQES: 64 bytes
    put(513, std::uint8_t{0x44});  // CQES: 16 bytes
    put(516, std::uint32_t{1});    // NN
    put(520, std::uint16_t{0x000c});  // ONCS: write zeroes, dataset management
    put(525, std::uint8_t{1});     // VWC
    std::memcpy(page + 768, "nqn.2026-12.io.udrv:model", 25);
}

void NvmeModel::identify_namespace(std::byte* page) const {
    auto put = [&](std::size_t off, auto v) { std::memcpy(page + off, &v, sizeof v); };
    put(0, o_.blocks);
    put(8, o_.blocks);
    put(16, o_.blocks);
    put(25, std::uint8_t{0});  // one LBA format
    put(26, std::uint8_t{0});
    put(128, static_cast<std::uint32_t>(o_.lba_shift) << 16);
}

}  // namespace udrv::models
