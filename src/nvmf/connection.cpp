// One NVMe/TCP connection (one queue of a controller), owned by one worker thread: PDUs are read into
// a staging buffer (large data straight into the device buffer it is for), checked, and turned into
// commands; the device's completions become C2HData and CapsuleResp PDUs, sent in batches.
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "target_impl.hpp"
#include "udrv/log.hpp"

namespace udrv::nvmf::detail {

namespace {
constexpr std::size_t kRxBytes = 64 << 10;
constexpr std::uint32_t kDirectReceive = 8192;  // data at least this long is received into its buffer directly
constexpr std::uint8_t kOpFabrics = 0x7f;
constexpr std::uint8_t kFcPropertySet = 0x00, kFcConnect = 0x01, kFcPropertyGet = 0x04;
constexpr std::uint8_t kAdminGetLogPage = 0x02, kAdminIdentify = 0x06, kAdminAbort = 0x08, kAdminSetFeatures = 0x09,
                       kAdminGetFeatures = 0x0a, kAdminAer = 0x0c, kAdminKeepAlive = 0x18;

std::string nqn_field(std::span<const std::byte> b) {
    std::string s;
    for (std::byte x : b) {
        if (x == std::byte{0}) break;
        s.push_back(static_cast<char>(x));
    }
    return s;
}
}  // namespace

Connection::Connection(Worker& w, Fd fd, std::string peer, const Limits* agreed, std::span<const std::byte> pending)
    : w_(w), fd_(std::move(fd)), peer_(std::move(peer)), rx_(kRxBytes) {
    limits_.max_in_capsule = w_.target().opt.in_capsule;
    limits_.max_h2c_data = w_.target().opt.max_transfer;
    if (agreed) {
        ic_done_ = true;
        limits_.hdgst = agreed->hdgst;
        limits_.ddgst = agreed->ddgst;
        limits_.max_h2c_data = std::min(agreed->max_h2c_data, limits_.max_h2c_data);
        const std::size_t n = std::min(pending.size(), rx_.size());
        std::copy_n(pending.begin(), n, rx_.begin());
        rx_end_ = n;
    }
    // Until Connect says how deep the queue is: room for Connect itself.
    cmds_.resize(1);
    free_cmds_ = {0};
}

Connection::~Connection() = default;

void Connection::start() {
    if (rx_end_ > rx_begin_ && !process()) return;
    on_readable();
}

Command* Connection::alloc_command() {
    if (free_cmds_.empty()) return nullptr;
    Command& c = cmds_[free_cmds_.back()];
    c.tag = free_cmds_.back();
    free_cmds_.pop_back();
    c.state = Command::State::receiving;
    c.len = c.received = 0;
    c.data = {};
    c.own.clear();
    c.slot = -1;
    c.nq = nullptr;
    c.status = kScSuccess;
    c.dsm_next = 0;
    c.at_device = false;
    c.then_r2t = false;
    c.conn = this;
    return &c;
}

void Connection::release(Command& c) {
    if (c.slot >= 0 && c.nq) w_.release_slot(*c.nq, c.slot);
    c.slot = -1;
    c.nq = nullptr;
    c.state = Command::State::free;
    free_cmds_.push_back(c.tag);
}

void Connection::close(const std::string& why) {
    if (closed_) return;
    closed_ = true;
    if (!why.empty()) pr_info("nvmf: {} queue {}{}: closed: {}", peer_, qid_, ctrl_ ? fmt::format(" of controller {}", ctrl_->cntlid) : "", why);
    if (ctrl_) {
        if (qid_ == 0) {
            ctrl_->dead.store(true, std::memory_order_release);
            w_.target().drop_controller(ctrl_->cntlid);
        } else {
            std::lock_guard lock(ctrl_->mu);
            ctrl_->io_qids.erase(qid_);
        }
    }
    if (waiting_on_) {
        auto& wq = waiting_on_->waiting;
        wq.erase(std::remove(wq.begin(), wq.end(), this), wq.end());
        waiting_on_ = nullptr;
    }
    slot_wait_.clear();
    w_.forget(this);
    fd_.reset();
    // Commands at the device keep their buffers until the device answers; the rest go now.
    for (auto& c : cmds_)
        if (c.state != Command::State::free && !c.at_device) release(c);
    rx_cmd_ = nullptr;
    txq_.clear();
}

void Connection::fatal(const FatalError& e, std::span<const std::byte> header) {
    pr_warn("nvmf: {}: {} (fatal error status {:#x} at byte {}): ending the connection", peer_, e.message, static_cast<unsigned>(e.fes), e.fei);
    std::array<std::byte, kMaxTxHeader> b{};
    const std::size_t n = build_c2h_term_req(b, e.fes, e.fei, header);
    // Best effort: the host may not be reading; what it does not take is dropped with the connection.
    (void)::send(fd_.get(), b.data(), n, MSG_NOSIGNAL | MSG_DONTWAIT);
    close("");
}

// ---- receive ----

void Connection::on_readable() {
    while (!closed_) {
        // Long data with nothing staged: straight into its buffer.
        if (state_ == Rx::data && rx_begin_ == rx_end_ && dst_.size() - dst_done_ >= kDirectReceive) {
            const ssize_t n = ::recv(fd_.get(), dst_.data() + dst_done_, dst_.size() - dst_done_, MSG_DONTWAIT);
            if (n == 0) return close("the host closed the connection");
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) return;
                if (errno == EINTR) continue;
                return close(fmt::format("receiving: {}", std::strerror(errno)));
            }
            if (h_.has_ddgst) crc_ = crc32c_update(crc_, dst_.subspan(dst_done_, static_cast<std::size_t>(n)));
            const bool drained = dst_done_ + static_cast<std::uint32_t>(n) < dst_.size();
            dst_done_ += static_cast<std::uint32_t>(n);
            if (dst_done_ == dst_.size()) {
                if (h_.has_ddgst) state_ = Rx::ddgst;
                else data_done();
            }
            if (drained) return;  // the rest has not arrived yet
            continue;
        }
        if (rx_begin_ == rx_end_) rx_begin_ = rx_end_ = 0;
        else if (rx_end_ == rx_.size() && rx_begin_ > 0) {
            std::memmove(rx_.data(), rx_.data() + rx_begin_, rx_end_ - rx_begin_);
            rx_end_ -= rx_begin_;
            rx_begin_ = 0;
        }
        const ssize_t n = ::recv(fd_.get(), rx_.data() + rx_end_, rx_.size() - rx_end_, MSG_DONTWAIT);
        if (n == 0) return close("the host closed the connection");
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR) continue;
            return close(fmt::format("receiving: {}", std::strerror(errno)));
        }
        rx_end_ += static_cast<std::size_t>(n);
        const bool drained = static_cast<std::size_t>(n) < rx_.size() - (rx_end_ - static_cast<std::size_t>(n));
        if (!process()) return;
        // A short read emptied the socket: asking again would only say EAGAIN (a system call per
        // command); epoll says when there is more.
        if (drained) return;
    }
}

bool Connection::process() {
    while (!closed_) {
        const std::size_t avail = rx_end_ - rx_begin_;
        const std::span<const std::byte> in(rx_.data() + rx_begin_, avail);
        switch (state_) {
        case Rx::header: {
            if (avail < kCommonHeaderBytes) return true;
            const CommonHeader ch = read_common(in);
            auto h = check_header(ch, limits_, ic_done_);
            if (!h) {
                fatal(h.error(), in.first(std::min<std::size_t>(avail, std::max<std::size_t>(ch.hlen, kCommonHeaderBytes))));
                return false;
            }
            if (avail < h->header_total) {
                if (h->header_total > rx_.size()) return true;  // cannot happen: headers are at most 132 bytes
                return true;
            }
            std::copy_n(in.begin(), h->header_total, hdr_.begin());
            const auto type = static_cast<PduType>(ch.type);
            if (h->header_total > ch.hlen && type != PduType::ic_req && type != PduType::h2c_term_req &&
                !header_digest_ok(std::span<const std::byte>(hdr_).first(h->header_total), ch.hlen)) {
                fatal({Fes::header_digest_error, 0, fmt::format("{} header digest mismatch", pdu_type_name(ch.type))}, in.first(ch.hlen));
                return false;
            }
            rx_begin_ += h->header_total;
            h_ = *h;
            switch (type) {
            case PduType::ic_req: on_icreq(); break;
            case PduType::h2c_term_req: {
                const std::uint16_t fes = get16(hdr_, 8);
                close(fmt::format("the host ended it (H2CTermReq, fatal error status {:#x})", fes));
                return false;
            }
            case PduType::capsule_cmd: on_capsule(); break;
            case PduType::h2c_data: on_h2c_data(); break;
            default: break;  // check_header let no other type through
            }
            break;
        }
        case Rx::pad: {
            const std::uint32_t n = static_cast<std::uint32_t>(std::min<std::size_t>(avail, pad_left_));
            rx_begin_ += n;
            pad_left_ -= n;
            if (pad_left_ > 0) return true;
            state_ = Rx::data;
            if (dst_.empty()) data_done();
            break;
        }
        case Rx::data: {
            if (avail == 0) return true;
            const std::size_t n = std::min<std::size_t>(avail, dst_.size() - dst_done_);
            std::copy_n(in.begin(), n, dst_.begin() + dst_done_);
            if (h_.has_ddgst) crc_ = crc32c_update(crc_, dst_.subspan(dst_done_, n));
            dst_done_ += static_cast<std::uint32_t>(n);
            rx_begin_ += n;
            if (dst_done_ < dst_.size()) return true;
            if (h_.has_ddgst) state_ = Rx::ddgst;
            else data_done();
            break;
        }
        case Rx::ddgst: {
            if (avail < kDigestBytes) return true;
            const bool ok = get32(in, 0) == crc32c_final(crc_);
            rx_begin_ += kDigestBytes;
            if (!ok && rx_cmd_) {
                pr_warn("nvmf: {}: data digest mismatch on command {:#x}: it fails with a transient transport error", peer_, rx_cmd_->cid);
                rx_cmd_->status = kScTransientTransport;
            }
            data_done();
            break;
        }
        }
    }
    return false;
}

void Connection::start_data(Command& c, std::span<std::byte> dst, std::uint32_t pad) {
    rx_cmd_ = &c;
    dst_ = dst;
    dst_done_ = 0;
    crc_ = kCrcInit;
    pad_left_ = pad;
    state_ = pad ? Rx::pad : Rx::data;
    if (state_ == Rx::data && dst_.empty()) data_done();
}

void Connection::on_icreq() {
    const std::uint16_t pfv = get16(hdr_, 8);
    const std::uint8_t hpda = std::to_integer<std::uint8_t>(hdr_[10]);
    const std::uint8_t dgst = std::to_integer<std::uint8_t>(hdr_[11]);
    if (pfv != 0) return fatal({Fes::unsupported_parameter, 8, fmt::format("ICReq PFV {} (only 0, NVMe/TCP 1.0)", pfv)}, std::span(hdr_).first(kIcBytes));
    if (hpda > 31) return fatal({Fes::invalid_header_field, 10, fmt::format("ICReq HPDA {}", hpda)}, std::span(hdr_).first(kIcBytes));
    limits_.hdgst = dgst & kDigestHeader;
    limits_.ddgst = dgst & kDigestData;
    ic_done_ = true;
    TxItem& t = push_tx();
    t.hlen = static_cast<std::uint16_t>(build_ic_resp(t.hdr, dgst & (kDigestHeader | kDigestData), limits_.max_h2c_data));
    state_ = Rx::header;
}

void Connection::on_capsule() {
    const nvme::Sqe sqe = read_sqe(std::span<const std::byte>(hdr_).subspan(kCommonHeaderBytes, 64));
    Command* c = alloc_command();
    if (!c) {
        // More commands than the queue has entries: the host ignored SQ flow control.
        return fatal({Fes::pdu_sequence_error, 0, fmt::format("a command beyond the queue's {} entries", cmds_.size())},
                     std::span(hdr_).first(kCapsuleCmdHeaderBytes));
    }
    c->sqe = sqe;
    c->cid = command_id(sqe);
    if (sqflow_ && sq_entries_) sqhd_ = static_cast<std::uint16_t>((sqhd_ + 1) % sq_entries_);
    if (counters_) counters_->commands.store(counters_->commands.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    const std::uint8_t op = opcode(sqe);
    const Sgl sgl = read_sgl(sqe);
    // Which commands bring data from the host, and where it goes.
    const bool fabrics = op == kOpFabrics;
    const std::uint8_t fctype = static_cast<std::uint8_t>(sqe.nsid);
    const bool host_data = fabrics ? fctype == kFcConnect : (qid_ > 0 && (op == nvme::kIoWrite || op == nvme::kIoDsm));
    const std::uint32_t in_capsule = h_.data_len;
    if (in_capsule > 0) {
        // Data in the capsule: the command must say so, with its exact length at offset 0.
        if (!host_data || sgl.type != kSglInCapsule || sgl.address != 0 || sgl.length != in_capsule) {
            c->status = (!host_data || sgl.type != kSglInCapsule) ? (kScInvalidField | kDnr) : (kScSglLengthInvalid | kDnr);
            c->own.resize(in_capsule);  // received and dropped
            c->len = in_capsule;
            return start_data(*c, c->own, h_.data_offset - h_.header_total);
        }
    } else if (host_data && sgl.length > 0 && sgl.type != kSglTransport) {
        c->status = kScInvalidField | kDnr;  // an in-capsule descriptor with no data in the capsule
        state_ = Rx::header;
        return execute(*c);
    }
    c->len = host_data ? sgl.length : 0;
    if (!host_data || c->len == 0) {
        state_ = Rx::header;
        return execute(*c);
    }
    // Where the data lands: a device buffer for writes, the command's own memory otherwise.
    if (op == nvme::kIoWrite && !fabrics) {
        const Namespace* n = ns(sqe.nsid);
        const std::uint64_t nlb = (sqe.cdw12 & 0xffff) + 1;
        if (!n || c->len > w_.target().opt.max_transfer || c->len != nlb * n->info.block_size) {
            c->status = !n ? (kScInvalidNamespace | kDnr) : c->len > w_.target().opt.max_transfer ? (kScInvalidField | kDnr) : (kScSglLengthInvalid | kDnr);
        } else if (in_capsule == 0) {
            // Its R2T goes out once it has a device buffer to receive into; until then it waits, and the
            // connection reads on (stopping here would also stop the data that frees buffers).
            if (!slot_for(*c, *n)) {
                c->then_r2t = true;
                state_ = Rx::header;
                return;
            }
            if (c->slot >= 0) c->data = slot_bytes(*c);
        } else if (slot_wait_.empty() && take_free_slot(*c, *n)) {
            if (c->slot >= 0) c->data = slot_bytes(*c);
        }  // else the data arrives into the command's own memory, copied into a buffer when there is one
    } else if (c->len > 65536) {
        c->status = kScInvalidField | kDnr;  // no admin or DSM payload is this long
    }
    if (c->status != kScSuccess && in_capsule == 0) {
        // Nothing to receive for a command that fails: answer now rather than ask for its data.
        state_ = Rx::header;
        return execute(*c);
    }
    if (c->data.empty()) {
        c->own.resize(c->len);
        c->data = c->own;
    }
    if (in_capsule > 0) return start_data(*c, c->data, h_.data_offset - h_.header_total);
    // Ask for it: one R2T for all of it (the host splits it into H2CData PDUs of MAXH2CDATA at most).
    c->state = Command::State::awaiting_h2c;
    TxItem& t = push_tx();
    t.hlen = static_cast<std::uint16_t>(build_r2t(t.hdr, c->cid, c->tag, 0, c->len, limits_.hdgst));
    state_ = Rx::header;
}

void Connection::resume() {
    // A buffer came free in the queue this connection's first waiting command waits on: as many of the
    // waiting commands as there are buffers for go on, in order.
    waiting_on_ = nullptr;
    while (!closed_ && !slot_wait_.empty()) {
        Command& c = *slot_wait_.front();
        const Namespace* n = ns(c.sqe.nsid);
        if (n && !take_free_slot(c, *n)) {
            waiting_on_ = &w_.queue_for(*n);
            w_.wait_for_slot(*waiting_on_, this);
            return;
        }
        slot_wait_.pop_front();
        c.state = Command::State::executing;
        if (!c.then_r2t) {
            execute_io(c);  // with its buffer now (or its failure: no namespace, a queue that failed)
            continue;
        }
        c.then_r2t = false;
        if (!n) {
            complete(c, {0, 0, kScInvalidNamespace | kDnr});  // the namespace went while it waited
        } else if (c.status != kScSuccess) {
            complete(c, {0, 0, c.status});
        } else {
            c.data = slot_bytes(c);
            c.state = Command::State::awaiting_h2c;
            TxItem& t = push_tx();
            t.hlen = static_cast<std::uint16_t>(build_r2t(t.hdr, c.cid, c.tag, 0, c.len, limits_.hdgst));
        }
    }
}

void Connection::on_h2c_data() {
    const std::span<const std::byte> hb(hdr_);
    const std::uint16_t cccid = get16(hb, 8), ttag = get16(hb, 10);
    const std::uint32_t datao = get32(hb, 12), datal = get32(hb, 16);
    const auto header = std::span<const std::byte>(hdr_).first(kDataHeaderBytes);
    if (ttag >= cmds_.size() || cmds_[ttag].state != Command::State::awaiting_h2c || cmds_[ttag].cid != cccid)
        return fatal({Fes::invalid_header_field, 10, fmt::format("H2CData for transfer tag {} (command {:#x}) that no R2T asked for", ttag, cccid)}, header);
    Command& c = cmds_[ttag];
    if (datal != h_.data_len) return fatal({Fes::invalid_header_field, 16, fmt::format("H2CData DATAL {} with {} data bytes", datal, h_.data_len)}, header);
    if (datao != c.received || std::uint64_t{datao} + datal > c.len)
        return fatal({Fes::data_out_of_range, 12, fmt::format("H2CData at {} (+{}) where {} of {} bytes have arrived", datao, datal, c.received, c.len)},
                     header);
    rx_h2c_ = true;
    start_data(c, c.data.subspan(datao, datal), h_.data_offset - h_.header_total);
}

void Connection::data_done() {
    state_ = Rx::header;
    Command* c = rx_cmd_;
    rx_cmd_ = nullptr;
    if (!c) return;
    if (rx_h2c_) {
        rx_h2c_ = false;
        c->received += static_cast<std::uint32_t>(dst_.size());
        if (c->received < c->len) return;  // more H2CData to come
    } else {
        c->received = static_cast<std::uint32_t>(dst_.size());
    }
    execute(*c);
}

// ---- commands ----

const Namespace* Connection::ns(std::uint32_t nsid) {
    if (!ctrl_) return nullptr;
    const std::uint64_t g = ctrl_->subsys->generation.load(std::memory_order_acquire);
    if (g != snap_gen_) {
        snap_ = ctrl_->subsys->snapshot();
        snap_gen_ = g;
    }
    return snap_ ? snap_->find(nsid) : nullptr;
}

// A free device buffer of the namespace's queue for c, now: false when there is none. A queue whose
// set-up failed has none to give: c fails (status set, true).
bool Connection::take_free_slot(Command& c, const Namespace& n) {
    NsQueue& nq = w_.queue_for(n);
    if (!nq.error.empty()) {
        c.status = kScInternal;
        return true;
    }
    if (nq.free_slots.empty()) return false;
    c.slot = nq.free_slots.back();
    nq.free_slots.pop_back();
    c.nq = &nq;
    return true;
}

// A buffer for c now, or c waits for one behind this connection's other waiting commands (false);
// resume() goes on with it. c.len must be what the buffer is to hold. True at once for a command that
// has a buffer or has failed.
bool Connection::slot_for(Command& c, const Namespace& n) {
    if (c.nq || c.status != kScSuccess) return true;  // it has one (resume() took it), or it fails anyway
    if (slot_wait_.empty() && take_free_slot(c, n)) return true;
    c.state = Command::State::awaiting_slot;
    slot_wait_.push_back(&c);
    if (!waiting_on_) {
        waiting_on_ = &w_.queue_for(n);
        w_.wait_for_slot(*waiting_on_, this);
    }
    return false;
}

void Connection::execute(Command& c) {
    c.state = Command::State::executing;
    if (ctrl_) ctrl_->touch();
    if (c.status != kScSuccess) return complete(c, {0, 0, c.status});
    const std::uint8_t op = opcode(c.sqe);
    if (op == kOpFabrics) return execute_fabrics(c);
    if (!connected_) return complete(c, {0, 0, kScSequenceError | kDnr});
    if (qid_ == 0) return execute_admin(c);
    return execute_io(c);
}

void Connection::execute_fabrics(Command& c) {
    const std::uint8_t fctype = static_cast<std::uint8_t>(c.sqe.nsid);
    if (fctype == kFcConnect) return connect(c);
    if (!connected_) return complete(c, {0, 0, kScSequenceError | kDnr});
    if (qid_ != 0) return complete(c, {0, 0, kScInvalidField | kDnr});  // properties only through the admin queue
    if (fctype == kFcPropertyGet) return complete(c, property_get(*ctrl_, w_.target().opt, c.sqe));
    if (fctype == kFcPropertySet) return complete(c, property_set(*ctrl_, c.sqe));
    complete(c, {0, 0, kScInvalidOpcode | kDnr});
}

void Connection::connect(Command& c) {
    if (connected_) return complete(c, {0, 0, kScSequenceError | kDnr});
    auto invalid = [&](std::uint32_t offset, bool in_data) { complete(c, {(in_data ? 1u << 16 : 0u) | offset, 0, kScConnectInvalidParam | kDnr}); };
    const std::uint16_t recfmt = static_cast<std::uint16_t>(c.sqe.cdw10);
    const std::uint16_t qid = static_cast<std::uint16_t>(c.sqe.cdw10 >> 16);
    const std::uint16_t sqsize = static_cast<std::uint16_t>(c.sqe.cdw11);
    const std::uint8_t cattr = static_cast<std::uint8_t>(c.sqe.cdw11 >> 16);
    const std::uint32_t kato = c.sqe.cdw12;
    if (recfmt != 0) return complete(c, {0, 0, kScConnectIncompatibleFormat | kDnr});
    if (c.data.size() != 1024) return complete(c, {0, 0, kScSglLengthInvalid | kDnr});
    const std::span<const std::byte> d = c.data;
    const std::uint16_t cntlid = get16(d, 16);
    const std::string subnqn = nqn_field(d.subspan(256, 256)), hostnqn = nqn_field(d.subspan(512, 256));
    if (sqsize == 0 || sqsize >= w_.target().opt.queue_entries) return invalid(44, false);
    auto subsys = w_.target().find_subsystem(subnqn);
    if (!subsys) {
        pr_info("nvmf: {}: connect to {}: no such subsystem", peer_, subnqn);
        return invalid(256, true);
    }
    auto snap = subsys->snapshot();
    if (!snap->host_allowed(hostnqn)) {
        pr_warn("nvmf: {}: host {} may not connect to {} (not among its hosts)", peer_, hostnqn, subnqn);
        return complete(c, {0, 0, kScConnectInvalidHost | kDnr});
    }
    std::shared_ptr<Controller> ctrl;
    if (qid == 0) {
        if (cntlid != 0xffff && cntlid != 0xfffe) return invalid(16, true);
        auto r = w_.target().new_controller(subsys, hostnqn, peer_, kato);
        if (!r) return complete(c, {0, 0, 0x181});  // Connect Controller Busy: out of controller ids
        ctrl = *r;
    } else {
        ctrl = w_.target().find_controller(cntlid);
        if (!ctrl || ctrl->subsys != subsys || ctrl->hostnqn != hostnqn || ctrl->dead.load()) return invalid(16, true);
        if (!(ctrl->csts.load() & nvme::kCstsReady)) return invalid(16, true);
        const std::uint16_t granted = ctrl->io_queues_granted.load();
        if (qid > (granted ? granted : std::min(w_.target().opt.max_io_queues, 64u))) return invalid(42, false);
        std::lock_guard lock(ctrl->mu);
        if (!ctrl->io_qids.insert(qid).second) return invalid(42, false);
    }
    ctrl_ = ctrl;
    qid_ = qid;
    connected_ = true;
    sqflow_ = !(cattr & 0x04);
    sq_entries_ = static_cast<std::uint16_t>(sqsize + 1);
    counters_ = &ctrl->counters[std::min<std::size_t>(qid, ctrl->counters.size() - 1)];
    counters_->commands.store(1, std::memory_order_relaxed);
    snap_ = snap;
    snap_gen_ = subsys->generation.load(std::memory_order_acquire);
    if (qid == 0) {
        ctrl->known_generation = snap_gen_;
        for (const auto& n : snap->namespaces) ctrl->known_nsids.push_back(n.nsid);
    }
    ctrl->touch();
    // The command table grows to the queue's size (this command stays where it is, at tag 0).
    cmds_.resize(sq_entries_);
    for (std::uint16_t t = static_cast<std::uint16_t>(sq_entries_ - 1); t >= 1; --t) free_cmds_.push_back(t);
    // Commands in the table keep their addresses: only the connect command existed before the resize,
    // and it is answered below without being touched again.
    Command& cc = cmds_[0];
    pr_info("nvmf: {}: {} queue {} of controller {} for {} (host {}{})", peer_, qid == 0 ? "admin" : "I/O", qid, ctrl->cntlid, subnqn, hostnqn,
            sqflow_ ? "" : ", no SQ flow control");
    complete(cc, {ctrl->cntlid, 0, kScSuccess});
}

void Connection::execute_admin(Command& c) {
    auto& t = w_.target();
    if (!snap_ || snap_gen_ != ctrl_->subsys->generation.load(std::memory_order_acquire)) (void)ns(0);
    const SubsystemState& s = *snap_;
    const std::uint8_t op = opcode(c.sqe);
    const Sgl sgl = read_sgl(c.sqe);
    switch (op) {
    case kAdminIdentify:
    case kAdminGetLogPage: {
        if (sgl.type != kSglTransport) return complete(c, {0, 0, kScInvalidField | kDnr});
        Completion r = op == kAdminIdentify ? admin_identify(*ctrl_, s, t.opt, c.sqe, c.own) : admin_get_log_page(*ctrl_, s, t, c.sqe, c.own);
        if (r.sf != kScSuccess) return complete(c, r);
        c.own.resize(std::min<std::size_t>(c.own.size(), sgl.length));
        c.data = c.own;
        return send_data_and_complete(c, r);
    }
    case kAdminSetFeatures:
    case kAdminGetFeatures: return complete(c, admin_features(*ctrl_, s, t.opt, c.sqe));
    case kAdminKeepAlive: return complete(c, {});
    case kAdminAbort: return complete(c, {1, 0, kScSuccess});  // not aborted: commands here finish promptly
    case kAdminAer:
        if (ctrl_->aer_cids.size() > 3) return complete(c, {0, 0, kScAerLimit | kDnr});
        ctrl_->aer_cids.push_back(c.cid);
        release(c);  // answered when an event happens
        deliver_aens();
        return;
    default: return complete(c, {0, 0, kScInvalidOpcode | kDnr});
    }
}

void Connection::execute_io(Command& c) {
    const std::uint8_t op = opcode(c.sqe);
    const Namespace* n = ns(c.sqe.nsid);
    if (!n) {
        if (op == nvme::kIoFlush && c.sqe.nsid == 0xffffffffu) return complete(c, {});  // every namespace: nothing cached here
        return complete(c, {0, 0, kScInvalidNamespace | kDnr});
    }
    const std::uint64_t slba = std::uint64_t{c.sqe.cdw10} | std::uint64_t{c.sqe.cdw11} << 32;
    const std::uint32_t nlb = (c.sqe.cdw12 & 0xffff) + 1;
    switch (op) {
    case nvme::kIoRead:
    case nvme::kIoWrite: {
        const std::uint64_t bytes = std::uint64_t{nlb} * n->info.block_size;
        if (slba >= n->info.blocks || nlb > n->info.blocks - slba) return complete(c, {0, 0, kScLbaOutOfRange | kDnr});
        if (op == nvme::kIoRead) {
            const Sgl sgl = read_sgl(c.sqe);
            if (sgl.type != kSglTransport) return complete(c, {0, 0, kScInvalidField | kDnr});
            if (bytes > w_.target().opt.max_transfer) return complete(c, {0, 0, kScInvalidField | kDnr});
            if (sgl.length != bytes) return complete(c, {0, 0, kScSglLengthInvalid | kDnr});
            c.len = static_cast<std::uint32_t>(bytes);
            if (!slot_for(c, *n)) return;  // goes on when a buffer is free
            if (c.status != kScSuccess) return complete(c, {0, 0, c.status});
            c.data = slot_bytes(c);
        } else {
            if (c.data.size() != bytes) return complete(c, {0, 0, kScSglLengthInvalid | kDnr});
            if (c.data.data() == c.own.data()) {
                // Its data came in the capsule when no buffer was free: into one now, or wait for one.
                if (!slot_for(c, *n)) return;
                if (c.status != kScSuccess) return complete(c, {0, 0, c.status});
                const auto dst = slot_bytes(c);
                std::copy(c.own.begin(), c.own.end(), dst.begin());
                c.data = dst;
            }
        }
        return submit_io(c);
    }
    case nvme::kIoFlush:
    case nvme::kIoWriteZeroes:
        if (op == nvme::kIoWriteZeroes) {
            if (!n->info.write_zeroes) return complete(c, {0, 0, kScInvalidOpcode | kDnr});
            if (slba >= n->info.blocks || nlb > n->info.blocks - slba) return complete(c, {0, 0, kScLbaOutOfRange | kDnr});
        }
        c.len = 0;
        if (!slot_for(c, *n)) return;
        if (c.status != kScSuccess) return complete(c, {0, 0, c.status});
        return submit_io(c);
    case nvme::kIoDsm: {
        const std::uint32_t ranges = (c.sqe.cdw10 & 0xff) + 1;
        if (!(c.sqe.cdw11 & (1u << 2))) return complete(c, {});  // only hints: nothing to do
        if (!n->info.deallocate) return complete(c, {});        // deallocation is advisory where the device has none
        if (c.data.size() < ranges * 16u) return complete(c, {0, 0, kScSglLengthInvalid | kDnr});
        for (std::uint32_t i = 0; i < ranges; ++i) {
            const std::uint32_t rnlb = get32(c.data, 16 * i + 4);
            const std::uint64_t rslba = get64(c.data, 16 * i + 8);
            if (rslba >= n->info.blocks || rnlb > n->info.blocks - rslba) return complete(c, {0, 0, kScLbaOutOfRange | kDnr});
        }
        // The ranges move to the command's own memory (they are there already) and go one by one.
        std::vector<std::byte> ranges_copy(c.data.begin(), c.data.begin() + ranges * 16);
        c.own = std::move(ranges_copy);
        c.data = c.own;
        c.len = 0;
        if (!slot_for(c, *n)) return;
        if (c.status != kScSuccess) return complete(c, {0, 0, c.status});
        c.data = c.own;
        c.dsm_next = 0;
        return dsm_step(c);
    }
    default: return complete(c, {0, 0, kScInvalidOpcode | kDnr});
    }
}

void Connection::submit_io(Command& c) {
    const std::uint8_t op = opcode(c.sqe);
    const std::uint64_t slba = std::uint64_t{c.sqe.cdw10} | std::uint64_t{c.sqe.cdw11} << 32;
    const std::uint32_t nlb = (c.sqe.cdw12 & 0xffff) + 1;
    block::Queue& q = *c.nq->q;
    Result<void> r;
    switch (op) {
    case nvme::kIoRead: r = q.read(slba, nlb, c.data, &Connection::io_done, &c); break;
    case nvme::kIoWrite: r = q.write(slba, nlb, c.data, &Connection::io_done, &c); break;
    case nvme::kIoFlush: r = q.flush(&Connection::io_done, &c); break;
    case nvme::kIoWriteZeroes: r = q.write_zeroes(slba, nlb, &Connection::io_done, &c); break;
    default: r = fail(EINVAL, "opcode {:#x}", op);
    }
    if (!r) return complete(c, {0, 0, r.error().code() == ENODEV ? kScInternal : kScDataTransferError});
    c.at_device = true;
    ++at_device_;
}

void Connection::dsm_step(Command& c) {
    const std::uint32_t ranges = static_cast<std::uint32_t>(c.data.size() / 16);
    while (c.dsm_next < ranges) {
        const std::uint32_t rnlb = get32(c.data, 16 * c.dsm_next + 4);
        const std::uint64_t rslba = get64(c.data, 16 * c.dsm_next + 8);
        ++c.dsm_next;
        if (rnlb == 0) continue;
        auto r = c.nq->q->deallocate(rslba, rnlb, &Connection::io_done, &c);
        if (!r) return complete(c, {0, 0, kScInternal});
        c.at_device = true;
        ++at_device_;
        return;
    }
    complete(c, {});
}

void Connection::io_done(void* ctx, const Result<void>& r) {
    Command& c = *static_cast<Command*>(ctx);
    Connection& self = *c.conn;
    c.at_device = false;
    --self.at_device_;
    if (self.closed_) return self.release(c);
    const std::uint8_t op = opcode(c.sqe);
    if (!r) {
        const std::uint16_t sf = r.error().code() == ENODEV ? kScInternal : op == nvme::kIoRead ? kScUnrecoveredRead : op == nvme::kIoWrite ? kScWriteFault : kScInternal;
        return self.complete(c, {0, 0, sf});
    }
    if (op == nvme::kIoDsm) return self.dsm_step(c);
    if (op == nvme::kIoRead) return self.send_data_and_complete(c, {});
    self.complete(c, {});
}

// ---- send ----

Connection::TxItem& Connection::push_tx() {
    txq_.emplace_back();
    w_.mark_dirty(this);
    return txq_.back();
}

void Connection::complete(Command& c, Completion r) {
    if (closed_) return release(c);
    if (r.sf != kScSuccess && counters_) counters_->errors.store(counters_->errors.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    TxItem& t = push_tx();
    nvme::Cqe cqe{};
    cqe.result = r.dw0;
    cqe.reserved = r.dw1;
    cqe.sq_head = sqhd_;
    cqe.sq_id = qid_;
    cqe.cid = c.cid;
    cqe.status = static_cast<std::uint16_t>(r.sf << 1);
    t.hlen = static_cast<std::uint16_t>(build_capsule_resp(t.hdr, cqe, limits_.hdgst));
    t.release = &c;
    c.state = Command::State::sending;
}

void Connection::send_data_and_complete(Command& c, Completion r) {
    if (closed_) return release(c);
    if (!c.data.empty()) {
        // With SQ flow control off the last data PDU may carry the success: no response capsule.
        const bool success = !sqflow_ && r.sf == kScSuccess;
        TxItem& t = push_tx();
        t.hlen = static_cast<std::uint16_t>(build_c2h_data(t.hdr, c.cid, 0, static_cast<std::uint32_t>(c.data.size()), true, success, limits_.hdgst,
                                                           limits_.ddgst));
        t.data = c.data;
        if (limits_.ddgst) {
            t.has_ddgst = true;
            put32(t.ddgst, 0, crc32c(c.data));
        }
        if (success) {
            t.release = &c;
            c.state = Command::State::sending;
            return;
        }
    }
    complete(c, r);
}

void Connection::flush() {
    if (closed_) return;
    while (!txq_.empty()) {
        std::array<iovec, 64> iov;
        std::size_t n = 0, skip = tx_off_;
        for (auto it = txq_.begin(); it != txq_.end() && n + 3 <= iov.size(); ++it) {
            auto add = [&](const void* p, std::size_t len) {
                if (skip >= len) {
                    skip -= len;
                    return;
                }
                // SAFETY: iovecs point into buffers the queue owns until the item is popped (headers, digests)
                // or into device buffers its command holds until then; sendmsg only reads them.
                iov[n++] = {const_cast<std::byte*>(static_cast<const std::byte*>(p)) + skip, len - skip};
                skip = 0;
            };
            add(it->hdr.data(), it->hlen);
            if (!it->data.empty()) add(it->data.data(), it->data.size());
            if (it->has_ddgst) add(it->ddgst.data(), kDigestBytes);
        }
        msghdr m{};
        m.msg_iov = iov.data();
        m.msg_iovlen = n;
        const ssize_t sent = ::sendmsg(fd_.get(), &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!writable_armed_) {
                    writable_armed_ = true;
                    w_.watch_writable(this, true);
                }
                return;
            }
            return close(fmt::format("sending: {}", std::strerror(errno)));
        }
        std::size_t left = tx_off_ + static_cast<std::size_t>(sent);
        while (!txq_.empty() && left >= txq_.front().size()) {
            left -= txq_.front().size();
            if (Command* c = txq_.front().release) release(*c);
            txq_.pop_front();
        }
        tx_off_ = left;
    }
    if (writable_armed_) {
        writable_armed_ = false;
        w_.watch_writable(this, false);
    }
}

void Connection::on_writable() { flush(); }

// ---- events and keep alive (the admin queue's thread) ----

void Connection::deliver_aens() {
    if (!ctrl_ || qid_ != 0 || closed_) return;
    const std::uint64_t g = ctrl_->subsys->generation.load(std::memory_order_acquire);
    if (g != ctrl_->known_generation) {
        ctrl_->known_generation = g;
        auto s = ctrl_->subsys->snapshot();
        std::vector<std::uint32_t> now;
        for (const auto& n : s->namespaces) now.push_back(n.nsid);
        std::vector<std::uint32_t> changed;
        std::set_symmetric_difference(now.begin(), now.end(), ctrl_->known_nsids.begin(), ctrl_->known_nsids.end(), std::back_inserter(changed));
        ctrl_->known_nsids = now;
        if (!changed.empty()) {
            std::lock_guard lock(ctrl_->mu);
            for (auto n : changed)
                if (std::find(ctrl_->changed_nsids.begin(), ctrl_->changed_nsids.end(), n) == ctrl_->changed_nsids.end()) ctrl_->changed_nsids.push_back(n);
            if (ctrl_->aen_config & (1u << 8)) ctrl_->ns_changed.store(true);
        }
    }
    if (!ctrl_->ns_changed.load() || ctrl_->aer_cids.empty()) return;
    Command* c = alloc_command();
    if (!c) return;  // every entry busy: the next tick tries again
    ctrl_->ns_changed.store(false);
    c->cid = ctrl_->aer_cids.front();
    ctrl_->aer_cids.erase(ctrl_->aer_cids.begin());
    c->state = Command::State::executing;
    // Notice (type 2), Namespace Attribute Changed (0), Changed Namespace List log (4).
    complete(*c, {0x2u | (0x00u << 8) | (0x04u << 16), 0, kScSuccess});
}

void Connection::tick(clock::time_point now) {
    if (closed_ || !ctrl_) return;
    if (ctrl_->dead.load(std::memory_order_acquire) && qid_ != 0) return close("its controller is gone");
    if (ctrl_->subsys->removed.load(std::memory_order_acquire)) return close("its subsystem was removed");
    if (qid_ != 0) return;
    deliver_aens();
    if (ctrl_->kato_ms) {
        const auto last = clock::time_point(clock::duration(ctrl_->last_traffic.load(std::memory_order_relaxed)));
        // The spec lets the controller wait a little longer than KATO; a slow VM needs the slack.
        if (now - last > std::chrono::milliseconds(ctrl_->kato_ms) + std::chrono::seconds(2))
            close(fmt::format("no keep alive within {} ms", ctrl_->kato_ms));
    }
}

}  // namespace udrv::nvmf::detail
