// Read-copy-update for the data path's one shared question: is the device still there? Queues and
// handles are used on their owner threads; unbinding (on another thread) revokes them and must not
// free or unmap what a call in progress is using. A call takes a ReadLock (a few instructions, no
// atomic operation, no system call) and checks its object's state; the unbinding thread changes the
// state, then synchronize() waits until every read section that began before has ended, and only then
// tears down. userspace-rcu's bulletproof flavour (liburcu-bp) underneath: any thread may read, with no
// registration.
#pragma once

namespace udrv::rcu {

/// A read-side critical section, for the scope of the object. Nests.
class ReadLock {
public:
    ReadLock() noexcept;
    ~ReadLock();
    ReadLock(const ReadLock&) = delete;
    ReadLock& operator=(const ReadLock&) = delete;
};

/// Waits until every read-side critical section that had begun when it was called has ended. Must not
/// be called inside one.
void synchronize() noexcept;

/// A full memory barrier on every thread of the process (membarrier(2)), for asymmetric handshakes: a
/// fast path that orders its accesses with a compiler barrier only, and a rare slow path that calls
/// this between its store and its load, behave as if both had fenced.
void fence_all_threads() noexcept;

}  // namespace udrv::rcu
