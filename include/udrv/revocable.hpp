// A pointer that its owner can take back at any time (Rust-for-Linux's Revocable): what a class
// device's handle holds, so that an application keeping one past unbind gets ENODEV, never freed memory.
//
// Two ways in. The data path (a packet batch) reads the pointer inside an RCU read section: no lock,
// no atomic read-modify-write. The control path (open a queue, read statistics, which may block) holds
// a shared lock for the call. revoke() clears the pointer, then waits for both kinds of access in
// progress; after it returns nobody reaches the object through this Revocable.
#pragma once

#include <atomic>
#include <mutex>
#include <shared_mutex>

#include "udrv/rcu.hpp"

namespace udrv {

template <typename T>
class Revocable {
public:
    explicit Revocable(T* object) noexcept : object_(object) {}
    Revocable(const Revocable&) = delete;
    Revocable& operator=(const Revocable&) = delete;

    /// The object or nullptr, for the data path: only valid while the caller's rcu::ReadLock lives, and
    /// the call made through it must not block on anything a revoker may hold.
    T* get_in_read_section() const noexcept { return object_.load(std::memory_order_acquire); }

    /// Control-path access: revocation waits while it lives. Not inside an RCU read section.
    class Access {
    public:
        T* get() const noexcept { return object_; }
        T* operator->() const noexcept { return object_; }
        explicit operator bool() const noexcept { return object_ != nullptr; }

    private:
        friend class Revocable;
        explicit Access(const Revocable& r) : lock_(r.mu_), object_(r.object_.load(std::memory_order_acquire)) {}
        std::shared_lock<std::shared_mutex> lock_;  // taken before the pointer is read
        T* object_;
    };
    Access access() const { return Access(*this); }

    /// Takes the object back: from here on access() and get_in_read_section() see nullptr, and every
    /// access begun before has ended. Not from inside an access or a read section (it would wait for
    /// itself). Idempotent.
    void revoke() noexcept {
        {
            std::unique_lock lock(mu_);
            object_.store(nullptr, std::memory_order_release);
        }
        rcu::synchronize();
    }
    bool revoked() const noexcept { return object_.load(std::memory_order_acquire) == nullptr; }

private:
    std::atomic<T*> object_;
    mutable std::shared_mutex mu_;
};

}  // namespace udrv
