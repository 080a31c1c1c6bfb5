#include "udrv/rcu.hpp"

// The grace period (why waiting for the records below is enough): synchronize() first makes its
// caller's removal visible and starts a new period, then runs a barrier on every thread (membarrier).
// A reader whose section store (period = p) was not yet visible at that barrier performs its protected
// reads after it, so it sees the removal; a reader whose store was visible is waited for while its
// record holds a period older than the new one. Readers that began in the new period are not waited for.
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "udrv/log.hpp"

namespace udrv::rcu {

namespace detail {
thread_local constinit Reader* this_reader = nullptr;
std::atomic<std::uint64_t> current_period{1};
}  // namespace detail

namespace {

std::mutex& registry_mu() {
    static std::mutex m;  // a function-local: usable from any static constructor or destructor
    return m;
}
detail::Reader* registry_head = nullptr;  // guarded by registry_mu(); records are never freed

// Gives the thread's record back when the thread exits. A read section in a thread_local destructor
// that runs after this one registers again (and is released again): glibc runs destructors registered
// while it runs them.
struct Registration {
    detail::Reader* reader = nullptr;
    ~Registration() {
        if (!reader) return;
        std::lock_guard lock(registry_mu());
        reader->period.store(0, std::memory_order_release);
        reader->nesting = 0;
        reader->in_use = false;
        detail::this_reader = nullptr;
    }
};
thread_local Registration registration;

}  // namespace

detail::Reader* detail::register_reader() noexcept {
    std::lock_guard lock(registry_mu());
    Reader* r = registry_head;
    while (r && r->in_use) r = r->next;
    if (!r) {
        r = new Reader;
        r->next = registry_head;
        registry_head = r;
    }
    r->in_use = true;
    registration.reader = r;
    this_reader = r;
    return r;
}

void synchronize() noexcept {
    if (const detail::Reader* self = detail::this_reader; self && self->nesting) {
        std::fputs("udrv: rcu::synchronize() called inside a read section (it would wait for itself for ever): a bug in the caller\n",
                   stderr);
        std::abort();
    }
    std::lock_guard lock(registry_mu());  // one grace period at a time; registration waits
    const std::uint64_t period = detail::current_period.fetch_add(1, std::memory_order_seq_cst) + 1;
    fence_all_threads();
    for (const detail::Reader* r = registry_head; r; r = r->next) {
        // A section may sleep (a net handle's rx_wait does, bounded by its timeout): yield first, then
        // back off to sleeping.
        for (unsigned spins = 0;; ++spins) {
            const std::uint64_t p = r->period.load(std::memory_order_acquire);
            if (p == 0 || p >= period) break;
            if (spins < 100) std::this_thread::yield();
            else std::this_thread::sleep_for(std::chrono::microseconds(spins < 1000 ? 10 : 1000));
        }
    }
    std::atomic_thread_fence(std::memory_order_seq_cst);  // the caller's frees come after the readers' last reads
}

// The private expedited command (Linux 4.14) interrupts only this process's running threads; it needs
// registering once. MEMBARRIER_CMD_GLOBAL (4.3) needs none but waits for a scheduler tick everywhere.
void fence_all_threads() noexcept {
    static const bool expedited = ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    if ((!expedited || ::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) &&
        ::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) != 0) {
        static std::once_flag once;  // a kernel before 4.3, or a seccomp filter that refuses membarrier
        std::call_once(once, [] {
            pr_err("membarrier(2) is not available ({}): revoking a device under a running queue is not safe on this system; "
                   "allow the membarrier system call (seccomp profile) or use Linux 4.14 or later", std::strerror(errno));
        });
    }
    std::atomic_thread_fence(std::memory_order_seq_cst);
}

}  // namespace udrv::rcu
