// The kernel's ublk interface (drivers/block/ublk_drv.c, Linux >= 6.0): block devices /dev/ublkbN whose
// I/O a user-space server handles over io_uring. This is the low layer: io_uring commands to
// /dev/ublk-control and /dev/ublkcN, and the per-queue table of request descriptors the kernel shares
// with the server (mmap). What the kernel writes there is untrusted: every descriptor is copied out
// and checked before use (ublk::check_request, fuzzed). The server logic is src/export/ublk_export.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "udrv/fileio.hpp"
#include "udrv/result.hpp"

struct io_uring;

namespace udrv::ublk {

/// What a device looks like to the kernel (UBLK_CMD_ADD_DEV and SET_PARAMS).
struct Params {
    std::uint16_t queues = 1;
    std::uint16_t depth = 64;            ///< requests in flight per queue (at most 4096)
    std::uint32_t max_io_bytes = 256 << 10;
    std::uint32_t block_size = 512;      ///< a power of two, 512-65536... as the kernel accepts (<= page size)
    std::uint64_t blocks = 0;
    bool volatile_cache = false;         ///< the kernel sends FLUSH (and emulates FUA with it)
    bool discard = false, write_zeroes = false;
    bool recovery = true;                ///< UBLK_F_USER_RECOVERY | _REISSUE: a new server may take over, I/O reissued
};

/// The device's state as the kernel reports it (GET_DEV_INFO).
struct DevInfo {
    std::int32_t dev_id = -1;
    std::uint16_t queues = 0, depth = 0;
    std::uint16_t state = 0;  ///< UBLK_S_DEV_DEAD 0, LIVE 1, QUIESCED 2
    std::int32_t server_pid = 0;
    std::uint64_t flags = 0;
};
const char* state_name(std::uint16_t state);

/// /dev/ublk-control. One command at a time (each waits for its answer); any thread.
class Control {
public:
    /// ENOENT naming the module to load when there is no ublk in the kernel.
    static Result<Control> open(const std::string& path = "/dev/ublk-control");
    Control(Control&&) noexcept;
    Control& operator=(Control&&) = delete;
    ~Control();

    /// Adds a device (dev_id -1: the kernel picks the number). Returns its info.
    Result<DevInfo> add(std::int32_t dev_id, const Params& p);
    Result<void> set_params(std::int32_t dev_id, const Params& p);
    /// Makes the disk visible; blocks until every queue has fetched all its requests, so the queues'
    /// threads must be running. `pid` is the server's.
    Result<void> start(std::int32_t dev_id, std::int32_t pid);
    /// The kernel fails the requests it holds and ends the queues' fetches (ABORT).
    Result<void> stop(std::int32_t dev_id);
    Result<void> remove(std::int32_t dev_id);
    Result<DevInfo> info(std::int32_t dev_id);
    /// Recovery after the server died: the device must be QUIESCED (EBUSY until the kernel noticed).
    Result<void> start_recovery(std::int32_t dev_id);
    /// Blocks until the new server's queues fetched all requests; requests held are reissued.
    Result<void> end_recovery(std::int32_t dev_id, std::int32_t pid);

private:
    explicit Control(Fd fd);
    Result<std::int32_t> command(std::uint32_t op, std::int32_t dev_id, std::uint64_t addr, std::uint16_t len, std::uint64_t data0);
    Fd fd_;
    std::unique_ptr<::io_uring> ring_;
};

/// One request the kernel hands the server, copied out of shared memory.
struct Request {
    std::uint8_t op = 0;        ///< UBLK_IO_OP_READ, WRITE, FLUSH, DISCARD, WRITE_ZEROES
    std::uint32_t flags = 0;    ///< UBLK_IO_F_*
    std::uint32_t sectors = 0;  ///< 512-byte sectors
    std::uint64_t start = 0;    ///< first sector
};
/// Checks a request against the device: a known operation, whole blocks, inside the capacity, no
/// larger than a request buffer. EPROTO (with why) when the kernel's descriptor makes no sense.
Result<void> check_request(const Request& r, const Params& p);

/// One queue of a device, owned by one thread: the shared descriptor table and an io_uring on
/// /dev/ublkcN through which the server fetches requests and commits results.
class Queue {
public:
    /// `char_dev` is /dev/ublkcN opened once per server (each queue registers it in its ring).
    static Result<Queue> open(int char_dev, std::uint16_t qid, std::uint16_t depth);
    Queue(Queue&&) noexcept;
    Queue& operator=(Queue&&) = delete;
    ~Queue();

    /// Asks for the next request in slot `tag`, with `buffer` (max_io_bytes) for its data.
    void fetch(std::uint16_t tag, void* buffer);
    /// Reports slot `tag`'s result (bytes done, or -errno) and asks for the next request.
    void commit_and_fetch(std::uint16_t tag, std::int32_t result, void* buffer);
    /// Hands queued commands to the kernel.
    Result<void> submit();
    /// A command the kernel finished: for a fetch, tag's request is ready (res 0) or the device is
    /// going away (res -ENODEV: stop using the slot).
    struct Completion {
        std::uint16_t tag;
        std::int32_t res;
    };
    /// Takes up to `max` completions without waiting; returns how many.
    unsigned take(Completion* out, unsigned max);
    /// Hands queued commands to the kernel and waits until a completion is there or `timeout` passes:
    /// one system call where submit() and a wait would be two (the idle path, once per request at QD1).
    Result<void> submit_and_wait(std::chrono::milliseconds timeout);
    /// Slot `tag`'s request, copied out of the table the kernel writes.
    Request request(std::uint16_t tag) const;
    std::uint16_t depth() const noexcept { return depth_; }

private:
    Queue() = default;
    std::uint16_t qid_ = 0, depth_ = 0;
    std::unique_ptr<::io_uring> ring_;
    const void* descs_ = nullptr;  // mmap of depth descriptors, read-only
    std::size_t descs_len_ = 0;
    unsigned pending_ = 0;
};

/// The block device node of device `dev_id` (/dev/ublkbN) and its server's char device (/dev/ublkcN).
std::string block_path(std::int32_t dev_id);
std::string char_path(std::int32_t dev_id);

}  // namespace udrv::ublk
