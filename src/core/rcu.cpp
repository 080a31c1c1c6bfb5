#include "udrv/rcu.hpp"

// liburcu-bp's read-side code is called, not inlined (_LGPL_SOURCE): 0.13 declares its per-thread
// reader record 128-byte aligned but does not place it so, and its inline code then trips UBSan's
// alignment check in every sanitized build. A call is a few nanoseconds.
#include <urcu-bp.h>

namespace udrv::rcu {

ReadLock::ReadLock() noexcept { urcu_bp_read_lock(); }
ReadLock::~ReadLock() { urcu_bp_read_unlock(); }

void synchronize() noexcept { urcu_bp_synchronize_rcu(); }

}  // namespace udrv::rcu
