#include "udrv/ublk.hpp"

#include <fcntl.h>
#include <liburing.h>
#include <linux/ublk_cmd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

namespace udrv::ublk {
namespace {

constexpr std::size_t kSqe128 = 128;
constexpr std::size_t kCmdOffset = 48;  // where a uring_cmd's payload starts in an SQE (io_uring_sqe::cmd)

// A fresh 128-byte SQE for a uring_cmd with `payload` (ublk's command structure).
template <typename T>
Result<io_uring_sqe*> uring_cmd(io_uring* ring, int fd, bool fixed, std::uint32_t op, const T& payload) {
    static_assert(sizeof(T) <= kSqe128 - kCmdOffset);
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    if (!sqe) return fail(EBUSY, "ublk: no free io_uring entry");
    // The ring was made with IORING_SETUP_SQE128: each entry is 128 bytes, the command payload
    // starting at io_uring_sqe::cmd (byte 48). Written as bytes, as the kernel reads them.
    auto* bytes = static_cast<unsigned char*>(static_cast<void*>(sqe));
    std::memset(bytes, 0, kSqe128);
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = fd;
    sqe->flags = fixed ? IOSQE_FIXED_FILE : 0;
    sqe->cmd_op = op;
    std::memcpy(bytes + kCmdOffset, &payload, sizeof payload);
    return sqe;
}

Result<std::unique_ptr<io_uring>> make_ring(unsigned entries, std::string_view what) {
    auto ring = std::make_unique<io_uring>();
    if (int r = io_uring_queue_init(entries, ring.get(), IORING_SETUP_SQE128); r < 0)
        return fail(-r, "{}: io_uring with 128-byte entries: {} (Linux >= 5.19 is needed)", what, std::strerror(-r));
    return ring;
}

// An address the kernel reads or writes on the command's behalf (ublk commands carry user pointers).
std::uint64_t user_addr(const void* p) {
    // SAFETY: only converts the pointer to the integer ublk's command structures carry; the memory it
    // names (a local structure, a request buffer) outlives the command that uses it.
    return reinterpret_cast<std::uintptr_t>(p);
}

std::uint64_t features(const Params& p) { return p.recovery ? (UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE) : 0; }

unsigned log2u(std::uint32_t v) { return 31u - static_cast<unsigned>(__builtin_clz(v)); }

}  // namespace

const char* state_name(std::uint16_t s) {
    switch (s) {
        case UBLK_S_DEV_DEAD: return "dead";
        case UBLK_S_DEV_LIVE: return "live";
        case UBLK_S_DEV_QUIESCED: return "quiesced";
        default: return "?";
    }
}

std::string block_path(std::int32_t dev_id) { return "/dev/ublkb" + std::to_string(dev_id); }
std::string char_path(std::int32_t dev_id) { return "/dev/ublkc" + std::to_string(dev_id); }

// ---- control ----

Control::Control(Fd fd) : fd_(std::move(fd)) {}
Control::Control(Control&&) noexcept = default;
Control::~Control() {
    if (ring_) io_uring_queue_exit(ring_.get());
}

Result<Control> Control::open(const std::string& path) {
    Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) return fail(ENOENT, "{} does not exist: the kernel has no ublk (modprobe ublk_drv; Linux >= 6.0)", path);
        return fail_errno("cannot open {}", path);
    }
    Control c(std::move(fd));
    c.ring_ = UDRV_TRY(make_ring(4, path));
    return c;
}

Result<std::int32_t> Control::command(std::uint32_t op, std::int32_t dev_id, std::uint64_t addr, std::uint16_t len, std::uint64_t data0) {
    ublksrv_ctrl_cmd c{};
    c.dev_id = static_cast<std::uint32_t>(dev_id);
    c.queue_id = 0xffff;
    c.len = len;
    c.addr = addr;
    c.data[0] = data0;
    UDRV_TRY(uring_cmd(ring_.get(), fd_.get(), false, op, c));
    if (int r = io_uring_submit_and_wait(ring_.get(), 1); r < 0) return fail(-r, "ublk control command {:#x}: {}", op, std::strerror(-r));
    io_uring_cqe* cqe = nullptr;
    if (int r = io_uring_wait_cqe(ring_.get(), &cqe); r < 0) return fail(-r, "ublk control command {:#x}: {}", op, std::strerror(-r));
    const std::int32_t res = cqe->res;
    io_uring_cqe_seen(ring_.get(), cqe);
    if (res < 0) return fail(-res, "ublk control command {:#x} for device {}: {}", op, dev_id, std::strerror(-res));
    return res;
}

namespace {
DevInfo from(const ublksrv_ctrl_dev_info& i) {
    return DevInfo{static_cast<std::int32_t>(i.dev_id), i.nr_hw_queues, i.queue_depth, i.state, i.ublksrv_pid, i.flags};
}
}  // namespace

Result<DevInfo> Control::add(std::int32_t dev_id, const Params& p) {
    if (p.queues == 0 || p.depth == 0 || p.depth > UBLK_MAX_QUEUE_DEPTH)
        return fail(EINVAL, "ublk: {} queues of depth {} (1-{} requests per queue)", p.queues, p.depth, UBLK_MAX_QUEUE_DEPTH);
    ublksrv_ctrl_dev_info info{};
    info.nr_hw_queues = p.queues;
    info.queue_depth = p.depth;
    info.max_io_buf_bytes = p.max_io_bytes;
    info.dev_id = static_cast<std::uint32_t>(dev_id);
    info.ublksrv_pid = ::getpid();
    info.flags = features(p);
    UDRV_TRY_CTX(command(UBLK_CMD_ADD_DEV, dev_id, user_addr(&info), sizeof info, 0), "adding a ublk device");
    return from(info);
}

Result<void> Control::set_params(std::int32_t dev_id, const Params& p) {
    if (p.block_size < 512 || (p.block_size & (p.block_size - 1)) || p.block_size > 4096)
        return fail(EINVAL, "ublk: block size {} (a power of two, 512-4096: the kernel's limit is the page size)", p.block_size);
    const std::uint64_t sectors_per_block = p.block_size / 512;
    ublk_params u{};
    u.len = sizeof u;
    u.types = UBLK_PARAM_TYPE_BASIC;
    u.basic.attrs = p.volatile_cache ? UBLK_ATTR_VOLATILE_CACHE : 0;
    u.basic.logical_bs_shift = static_cast<std::uint8_t>(log2u(p.block_size));
    u.basic.physical_bs_shift = u.basic.logical_bs_shift;
    u.basic.io_min_shift = u.basic.logical_bs_shift;
    u.basic.io_opt_shift = u.basic.logical_bs_shift;
    u.basic.max_sectors = p.max_io_bytes >> 9;
    u.basic.dev_sectors = p.blocks * sectors_per_block;
    if (p.discard || p.write_zeroes) {
        u.types |= UBLK_PARAM_TYPE_DISCARD;
        u.discard.discard_granularity = p.block_size;
        u.discard.max_discard_sectors = p.discard ? (p.max_io_bytes >> 9) : 0;
        u.discard.max_write_zeroes_sectors = p.write_zeroes ? (p.max_io_bytes >> 9) : 0;
        u.discard.max_discard_segments = 1;
    }
    UDRV_TRY_CTX(command(UBLK_CMD_SET_PARAMS, dev_id, user_addr(&u), sizeof u, 0), "setting ublk{}'s parameters", dev_id);
    return {};
}

Result<void> Control::start(std::int32_t dev_id, std::int32_t pid) {
    UDRV_TRY_CTX(command(UBLK_CMD_START_DEV, dev_id, 0, 0, static_cast<std::uint64_t>(pid)), "starting ublk{}", dev_id);
    return {};
}
Result<void> Control::stop(std::int32_t dev_id) {
    UDRV_TRY_CTX(command(UBLK_CMD_STOP_DEV, dev_id, 0, 0, 0), "stopping ublk{}", dev_id);
    return {};
}
Result<void> Control::remove(std::int32_t dev_id) {
    UDRV_TRY_CTX(command(UBLK_CMD_DEL_DEV, dev_id, 0, 0, 0), "deleting ublk{}", dev_id);
    return {};
}
Result<DevInfo> Control::info(std::int32_t dev_id) {
    ublksrv_ctrl_dev_info info{};
    UDRV_TRY_CTX(command(UBLK_CMD_GET_DEV_INFO, dev_id, user_addr(&info), sizeof info, 0), "ublk{}", dev_id);
    return from(info);
}
Result<void> Control::start_recovery(std::int32_t dev_id) {
    UDRV_TRY_CTX(command(UBLK_CMD_START_USER_RECOVERY, dev_id, 0, 0, 0), "recovering ublk{}", dev_id);
    return {};
}
Result<void> Control::end_recovery(std::int32_t dev_id, std::int32_t pid) {
    UDRV_TRY_CTX(command(UBLK_CMD_END_USER_RECOVERY, dev_id, 0, 0, static_cast<std::uint64_t>(pid)), "ending ublk{}'s recovery", dev_id);
    return {};
}

// ---- requests ----

Result<void> check_request(const Request& r, const Params& p) {
    const std::uint64_t sectors_per_block = p.block_size / 512;
    const std::uint64_t capacity = p.blocks * sectors_per_block;
    switch (r.op) {
        case UBLK_IO_OP_FLUSH: return {};
        case UBLK_IO_OP_READ:
        case UBLK_IO_OP_WRITE:
            if (static_cast<std::uint64_t>(r.sectors) * 512 > p.max_io_bytes)
                return fail(EPROTO, "ublk request of {} sectors is larger than the {}-byte buffer", r.sectors, p.max_io_bytes);
            [[fallthrough]];
        case UBLK_IO_OP_DISCARD:
        case UBLK_IO_OP_WRITE_ZEROES:
            if (r.sectors == 0) return fail(EPROTO, "ublk request of 0 sectors");
            if (r.start % sectors_per_block || r.sectors % sectors_per_block)
                return fail(EPROTO, "ublk request at sector {} of {} sectors is not in whole {}-byte blocks", r.start, r.sectors, p.block_size);
            if (r.start >= capacity || r.sectors > capacity - r.start)
                return fail(EPROTO, "ublk request at sector {} of {} sectors lies past the end ({} sectors)", r.start, r.sectors, capacity);
            if ((r.op == UBLK_IO_OP_DISCARD && !p.discard) || (r.op == UBLK_IO_OP_WRITE_ZEROES && !p.write_zeroes))
                return fail(EPROTO, "ublk request of an operation ({}) the device did not offer", r.op);
            return {};
        default: return fail(EPROTO, "ublk request with unknown operation {}", r.op);
    }
}

// ---- queues ----

Queue::Queue(Queue&& o) noexcept
    : qid_(o.qid_), depth_(o.depth_), ring_(std::move(o.ring_)), descs_(std::exchange(o.descs_, nullptr)), descs_len_(o.descs_len_),
      pending_(o.pending_) {}

Queue::~Queue() {
    if (ring_) io_uring_queue_exit(ring_.get());
    // SAFETY: descs_ is the mapping made in open() (descs_len_ bytes), not used after this.
    if (descs_) ::munmap(const_cast<void*>(descs_), descs_len_);
}

Result<Queue> Queue::open(int char_dev, std::uint16_t qid, std::uint16_t depth) {
    Queue q;
    q.qid_ = qid;
    q.depth_ = depth;
    const long page = ::sysconf(_SC_PAGESIZE);
    q.descs_len_ = (depth * sizeof(ublksrv_io_desc) + static_cast<std::size_t>(page) - 1) / static_cast<std::size_t>(page) *
                   static_cast<std::size_t>(page);
    const off_t off = UBLKSRV_CMD_BUF_OFFSET + static_cast<off_t>(qid) * (UBLK_MAX_QUEUE_DEPTH * sizeof(ublksrv_io_desc));
    // SAFETY: a read-only shared mapping of this queue's descriptor table as ublk_drv lays it out (one
    // ublksrv_io_desc per tag, the queue's table at qid * UBLK_MAX_QUEUE_DEPTH descriptors); owned by
    // the Queue and unmapped in its destructor. Read only by copying descriptors out (request()).
    void* m = ::mmap(nullptr, q.descs_len_, PROT_READ, MAP_SHARED | MAP_POPULATE, char_dev, off);
    if (m == MAP_FAILED) return fail_errno("ublk queue {}: mapping its request table", qid);
    q.descs_ = m;
    q.ring_ = UDRV_TRY(make_ring(depth, "ublk queue"));
    if (int r = io_uring_register_files(q.ring_.get(), &char_dev, 1); r < 0)
        return fail(-r, "ublk queue {}: registering the device with io_uring: {}", qid, std::strerror(-r));
    return q;
}

void Queue::fetch(std::uint16_t tag, void* buffer) {
    ublksrv_io_cmd c{qid_, tag, 0, user_addr(buffer)};
    if (auto sqe = uring_cmd(ring_.get(), 0, true, UBLK_IO_FETCH_REQ, c)) {
        io_uring_sqe_set_data64(*sqe, tag);
        ++pending_;
    }
}

void Queue::commit_and_fetch(std::uint16_t tag, std::int32_t result, void* buffer) {
    ublksrv_io_cmd c{qid_, tag, result, user_addr(buffer)};
    if (auto sqe = uring_cmd(ring_.get(), 0, true, UBLK_IO_COMMIT_AND_FETCH_REQ, c)) {
        io_uring_sqe_set_data64(*sqe, tag);
        ++pending_;
    }
}

Result<void> Queue::submit() {
    if (!pending_) return {};
    int r = io_uring_submit(ring_.get());
    if (r < 0) return fail(-r, "ublk queue {}: submitting: {}", qid_, std::strerror(-r));
    pending_ = 0;
    return {};
}

unsigned Queue::take(Completion* out, unsigned max) {
    unsigned n = 0;
    io_uring_cqe* cqe = nullptr;
    while (n < max && io_uring_peek_cqe(ring_.get(), &cqe) == 0 && cqe) {
        out[n++] = Completion{static_cast<std::uint16_t>(io_uring_cqe_get_data64(cqe)), cqe->res};
        io_uring_cqe_seen(ring_.get(), cqe);
    }
    return n;
}

Result<void> Queue::submit_and_wait(std::chrono::milliseconds timeout) {
    __kernel_timespec ts{timeout.count() / 1000, (timeout.count() % 1000) * 1000000};
    io_uring_cqe* cqe = nullptr;
    int r = io_uring_submit_and_wait_timeout(ring_.get(), &cqe, 1, &ts, nullptr);
    if (r < 0 && r != -ETIME && r != -EINTR) return fail(-r, "ublk queue {}: submitting and waiting: {}", qid_, std::strerror(-r));
    pending_ = 0;
    return {};
}

Request Queue::request(std::uint16_t tag) const {
    ublksrv_io_desc d{};
    if (tag < depth_) std::memcpy(&d, static_cast<const unsigned char*>(descs_) + tag * sizeof d, sizeof d);
    return Request{static_cast<std::uint8_t>(d.op_flags & 0xff), d.op_flags >> 8, d.nr_sectors, d.start_sector};
}

}  // namespace udrv::ublk
