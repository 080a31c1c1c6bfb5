#include "udrv/rcu.hpp"

// liburcu-bp's read-side code is called, not inlined (_LGPL_SOURCE): 0.13 declares its per-thread
// reader record 128-byte aligned but does not place it so, and its inline code then trips UBSan's
// alignment check in every sanitized build. A call is a few nanoseconds.
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <urcu-bp.h>

#include <atomic>

namespace udrv::rcu {

ReadLock::ReadLock() noexcept { urcu_bp_read_lock(); }
ReadLock::~ReadLock() { urcu_bp_read_unlock(); }

void synchronize() noexcept { urcu_bp_synchronize_rcu(); }

// The private expedited command (Linux 4.14) interrupts only this process's running threads; it needs
// registering once. MEMBARRIER_CMD_GLOBAL (4.3) needs none but waits for a scheduler tick everywhere.
void fence_all_threads() noexcept {
    static const bool expedited = ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    if (!expedited || ::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
        (void)::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0);
    std::atomic_thread_fence(std::memory_order_seq_cst);
}

}  // namespace udrv::rcu
