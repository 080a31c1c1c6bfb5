// A udrv block device exported to the kernel as /dev/ublkbN (SPDK's ublk target is the model). Runs in
// the driver host that owns the device: each ublk queue is served by one thread that also owns one
// udrv block queue, so a request goes from the kernel's io_uring completion to the device's submission
// queue and back with no lock and no hand-off.
//
// Copies: the kernel copies each request's data between its pages and the queue's request buffer
// (ublk_drv's copy, one per request); the buffers are the device's own I/O memory (block::Device::
// alloc_buffer: DMA-mapped for NVMe), so the device transfers them in place: one copy per request in
// all, none in udrv. (ublk's zero-copy needs a newer kernel interface than Linux 6.12's.)
//
// Recovery: the device is created with UBLK_F_USER_RECOVERY | _REISSUE. When the host dies the kernel
// quiesces it and holds its I/O; the next host re-attaches (recover = true: START_USER_RECOVERY, its
// queues fetch, END_USER_RECOVERY) and the kernel reissues what was in flight.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "udrv/block.hpp"
#include "udrv/ublk.hpp"

namespace udrv::exports {

struct UblkOptions {
    std::int32_t dev_id = -1;  ///< -1: a new device; else the device to take over (recover)
    bool recover = false;
    unsigned queues = 1;       ///< ublk queues, one udrv queue each (at most the device's max_queues)
    unsigned depth = 64;       ///< requests per queue
    std::uint32_t max_io_bytes = 256 << 10;
};

class UblkExport {
public:
    /// Creates (or, with recover, takes over) the ublk device for `dev` and starts serving it.
    static Result<std::unique_ptr<UblkExport>> create(block::Handle dev, UblkOptions o);
    /// remove(), if not done.
    ~UblkExport();
    UblkExport(const UblkExport&) = delete;
    UblkExport& operator=(const UblkExport&) = delete;

    std::int32_t dev_id() const noexcept { return dev_id_; }
    std::string path() const { return ublk::block_path(dev_id_); }
    const block::Handle& device() const noexcept { return dev_; }
    const UblkOptions& options() const noexcept { return o_; }
    /// The device went away under the export (ENODEV): requests fail; the owner should remove() it.
    bool broken() const noexcept { return broken_.load(std::memory_order_acquire); }
    std::uint64_t requests() const noexcept;
    std::uint64_t errors() const noexcept;

    /// Ends the export: the kernel completes or fails every request (STOP_DEV; the queues serve until
    /// it has), the queue threads end, the device is deleted (DEL_DEV). Idempotent.
    Result<void> remove();

private:
    struct Worker;
    UblkExport(block::Handle dev, UblkOptions o, ublk::Params p);
    Result<void> start(ublk::Control& ctrl);
    void serve(Worker& w);

    block::Handle dev_;
    UblkOptions o_;
    ublk::Params params_;
    std::int32_t dev_id_ = -1;
    Fd char_dev_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::atomic<bool> broken_{false};
    bool removed_ = false;
};

}  // namespace udrv::exports
