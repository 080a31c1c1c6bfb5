// Read-copy-update for the data path's one shared question: is the device still there? Queues and
// handles are used on their owner threads; unbinding (on another thread) revokes them and must not
// free or unmap what a call in progress is using. A call takes a ReadLock and checks its object's
// state; the unbinding thread changes the state, then synchronize() waits until every read section
// that began before has ended, and only then tears down.
//
// The read side is inline and costs a handful of instructions: a thread-local record (initial-exec
// TLS in libudrv, so no __tls_get_addr from a driver module), a nesting count, and one store of the
// grace-period number the section began in. No atomic read-modify-write, no fence, no system call:
// synchronize() pays instead, with a process-wide barrier (membarrier, as liburcu's "memb" flavour).
// liburcu-bp did this job before; its read side could not be inlined (0.13's reader record is declared
// over-aligned but not placed so, which UBSan rejects) and, called, cost 170 instructions per NVMe I/O.
#pragma once

#include <atomic>
#include <cstdint>

namespace udrv::rcu {

namespace detail {

/// One per thread that has read, registered on its first read section and kept in a list that
/// synchronize() walks. Records are never freed (a thread's is reused after it exits), so a pointer
/// to one stays valid for the life of the process.
struct Reader {
    std::atomic<std::uint64_t> period{0};  // 0: outside; else the grace period its outermost section began in
    std::uint32_t nesting = 0;             // the owner thread's alone
    bool in_use = false;                   // guarded by the registry's lock
    Reader* next = nullptr;                // the registry's list, guarded by its lock
};

// SAFETY: initial-exec TLS in a library that is linked, never dlopen'd: its variables live in the
// static TLS block, where a driver module's access is one thread-pointer-relative load.
[[gnu::tls_model("initial-exec")]] extern thread_local constinit Reader* this_reader;
extern std::atomic<std::uint64_t> current_period;  // starts at 1: 0 marks a reader outside
Reader* register_reader() noexcept;

}  // namespace detail

/// A read-side critical section, for the scope of the object. Nests. The reads it protects happen
/// after the section is entered and before it is left (compiler barriers; synchronize()'s membarrier
/// supplies the hardware ordering).
class ReadLock {
public:
    ReadLock() noexcept {
        detail::Reader* r = detail::this_reader;
        if (!r) [[unlikely]]
            r = detail::register_reader();
        if (r->nesting++ == 0) r->period.store(detail::current_period.load(std::memory_order_acquire), std::memory_order_relaxed);
        std::atomic_signal_fence(std::memory_order_seq_cst);
        reader_ = r;
    }
    ~ReadLock() {
        std::atomic_signal_fence(std::memory_order_seq_cst);
        if (--reader_->nesting == 0) reader_->period.store(0, std::memory_order_release);
    }
    ReadLock(const ReadLock&) = delete;
    ReadLock& operator=(const ReadLock&) = delete;

private:
    detail::Reader* reader_;
};

/// Waits until every read-side critical section that had begun when it was called has ended. Must not
/// be called inside one (it would wait for itself: it aborts with a message instead).
void synchronize() noexcept;

/// A full memory barrier on every thread of the process (membarrier(2)), for asymmetric handshakes: a
/// fast path that orders its accesses with a compiler barrier only, and a rare slow path that calls
/// this between its store and its load, behave as if both had fenced.
void fence_all_threads() noexcept;

}  // namespace udrv::rcu
