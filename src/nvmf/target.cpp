// The NVMe/TCP target: subsystems and controllers, listening sockets, and the worker threads that own
// the connections (spread over them round-robin as they are accepted, as SPDK spreads new queue pairs
// over its poll groups).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "target_impl.hpp"
#include "udrv/log.hpp"

namespace udrv::nvmf {

using namespace detail;

std::string Address::text() const { return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port); }

Result<Address> parse_address(std::string_view text, std::uint16_t default_port) {
    Address a;
    a.port = default_port;
    std::string_view host = text, port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) return fail(EINVAL, "{}: an IPv6 address in brackets lacks its ']'", text);
        host = text.substr(1, close - 1);
        const auto rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return fail(EINVAL, "{}: expected ':PORT' after the address", text);
            port = rest.substr(1);
        }
    } else if (const auto colon = text.rfind(':'); colon != std::string_view::npos && text.find(':') == colon) {
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    if (host.empty()) host = "0.0.0.0";
    in6_addr a6{};
    in_addr a4{};
    const std::string h(host);
    if (::inet_pton(AF_INET, h.c_str(), &a4) != 1 && ::inet_pton(AF_INET6, h.c_str(), &a6) != 1)
        return fail(EINVAL, "{}: '{}' is not an IPv4 or IPv6 address (names are not resolved)", text, h);
    a.host = h;
    if (!port.empty()) {
        unsigned p = 0;
        for (char ch : port) {
            if (ch < '0' || ch > '9' || p > 65535) return fail(EINVAL, "{}: port '{}' is not a number from 1 to 65535", text, port);
            p = p * 10 + static_cast<unsigned>(ch - '0');
        }
        if (p == 0 || p > 65535) return fail(EINVAL, "{}: port '{}' is not a number from 1 to 65535", text, port);
        a.port = static_cast<std::uint16_t>(p);
    }
    return a;
}

Result<void> check_nqn(std::string_view nqn) {
    if (nqn.empty() || nqn.size() > 223) return fail(EINVAL, "NQN '{}' has {} bytes (1 to 223)", nqn, nqn.size());
    if (nqn == kDiscoveryNqn) return {};
    if (!nqn.starts_with("nqn.")) return fail(EINVAL, "NQN '{}' does not start with 'nqn.' (e.g. nqn.2026-12.io.udrv:disk1)", nqn);
    for (char c : nqn)
        if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) return fail(EINVAL, "NQN '{}' has a space or a control character", nqn);
    const bool uuid = nqn.starts_with("nqn.2014-08.org.nvmexpress:uuid:");
    if (!uuid && (nqn.size() < 12 || nqn[8] != '-' || nqn.find(':') == std::string_view::npos))
        return fail(EINVAL, "NQN '{}' is not 'nqn.yyyy-mm.reverse.domain:name'", nqn);
    return {};
}

Result<Fd> listen_socket(const Address& a) {
    const bool v6 = a.host.find(':') != std::string::npos;
    Fd fd(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return fail(errno, "socket for {}: {}", a.text(), std::strerror(errno));
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int r;
    if (v6) {
        sockaddr_in6 sin6{};
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons(a.port);
        ::inet_pton(AF_INET6, a.host.c_str(), &sin6.sin6_addr);
        // SAFETY: a sockaddr_in6 passed with its own size, as bind expects.
        r = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sin6), sizeof sin6);
    } else {
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_port = htons(a.port);
        ::inet_pton(AF_INET, a.host.c_str(), &sin.sin_addr);
        // SAFETY: a sockaddr_in passed with its own size, as bind expects.
        r = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sin), sizeof sin);
    }
    if (r != 0) {
        const int e = errno;
        if (e == EADDRINUSE)
            return fail(e, "{} is in use (another target? the kernel's nvmet: see /sys/kernel/config/nvmet/ports; ss -ltnp 'sport = :{}')", a.text(), a.port);
        if (e == EADDRNOTAVAIL) return fail(e, "{}: no interface of this machine has that address", a.text());
        return fail(e, "binding {}: {}", a.text(), std::strerror(e));
    }
    if (::listen(fd.get(), 128) != 0) return fail(errno, "listening on {}: {}", a.text(), std::strerror(errno));
    return fd;
}

std::optional<std::pair<Fd, std::string>> accept_connection(int listen_fd) {
    for (;;) {
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        // SAFETY: accept4 writes at most `len` bytes of the peer's address into ss.
        const int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) pr_warn("nvmf: accepting a connection: {}", std::strerror(errno));
            return std::nullopt;
        }
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char buf[INET6_ADDRSTRLEN] = "?";
        std::uint16_t port = 0;
        if (ss.ss_family == AF_INET) {
            sockaddr_in sin{};
            std::memcpy(&sin, &ss, sizeof sin);
            ::inet_ntop(AF_INET, &sin.sin_addr, buf, sizeof buf);
            port = ntohs(sin.sin_port);
        } else if (ss.ss_family == AF_INET6) {
            sockaddr_in6 sin6{};
            std::memcpy(&sin6, &ss, sizeof sin6);
            ::inet_ntop(AF_INET6, &sin6.sin6_addr, buf, sizeof buf);
            port = ntohs(sin6.sin6_port);
        }
        return std::make_pair(Fd(fd), Address{buf, port}.text());
    }
}

namespace detail {

const Namespace* SubsystemState::find(std::uint32_t nsid) const {
    auto it = std::lower_bound(namespaces.begin(), namespaces.end(), nsid, [](const Namespace& n, std::uint32_t id) { return n.nsid < id; });
    return it != namespaces.end() && it->nsid == nsid ? &*it : nullptr;
}

bool SubsystemState::host_allowed(const std::string& hostnqn) const {
    return allow_any_host || std::find(hosts.begin(), hosts.end(), hostnqn) != hosts.end();
}

// ---- workers ----

Worker::Worker(TargetImplView& t, unsigned index, int cpu) : t_(t), index_(index), cpu_(cpu) {}

Worker::~Worker() { stop(); }

void Worker::start() {
    // SAFETY (both): plain descriptor-creating calls; the Fds own the results.
    epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
    wake_ = Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_.get();
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev);
    thread_ = std::thread([this] { run(); });
    if (cpu_ >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu_, &set);
        if (int e = ::pthread_setaffinity_np(thread_.native_handle(), sizeof set, &set))
            pr_warn("nvmf: worker {} stays unpinned: CPU {}: {}", index_, cpu_, std::strerror(e));
    }
}

void Worker::stop() {
    if (!thread_.joinable()) return;
    stop_.store(true);
    const std::uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
    thread_.join();
}

void Worker::adopt(Fd fd, std::string peer, std::optional<Limits> agreed, std::vector<std::byte> pending) {
    {
        std::lock_guard lock(inbox_mu_);
        inbox_.push_back({std::move(fd), std::move(peer), agreed, std::move(pending)});
    }
    const std::uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
}

void Worker::watch_listener(int fd, bool on) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(epoll_.get(), on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev);
}

NsQueue& Worker::queue_for(const Namespace& ns) {
    for (auto& q : queues_)
        if (q->dev == ns.backing.get()) return *q;
    auto nq = std::make_unique<NsQueue>();
    nq->dev = ns.backing.get();
    nq->keep = ns.backing;
    const std::uint32_t depth = std::min<std::uint32_t>(ns.info.max_queue_depth ? ns.info.max_queue_depth : 64, 64);
    nq->slot_bytes = t_.opt.max_transfer;
    auto q = ns.backing->open_queue(depth, t_.opt.device_interrupts ? block::Mode::interrupt : block::Mode::polled);
    if (!q && t_.opt.device_interrupts) {
        pr_info("nvmf: worker {}: namespace {} ({}): {}: polling it instead", index_, ns.nsid, ns.device, q.error().message());
        q = ns.backing->open_queue(depth, block::Mode::polled);
    }
    if (!q) nq->error = q.error().message();
    else {
        nq->q = std::move(*q);
        if (const int fd = nq->q->completion_fd(); fd >= 0) {
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.fd = fd;
            if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) == 0) {
                nq->irq_fd = fd;
                // Completions wake this worker on its own CPU, as the kernel's managed affinity does.
                if (cpu_ >= 0)
                    if (auto r = nq->q->set_interrupt_cpu(cpu_); !r)
                        pr_info("nvmf: worker {}: namespace {} ({}): its interrupt stays where it is: {}", index_, ns.nsid, ns.device, r.error().message());
            } else pr_info("nvmf: worker {}: namespace {} ({}): cannot wait on its interrupt ({}): polling it instead", index_, ns.nsid, ns.device, std::strerror(errno));
        }
        auto b = ns.backing->alloc_buffer(std::size_t{depth} * nq->slot_bytes);
        if (!b) nq->error = b.error().message();
        else {
            nq->buffers = std::move(*b);
            for (std::uint32_t i = depth; i-- > 0;) nq->free_slots.push_back(static_cast<std::uint16_t>(i));
        }
    }
    if (!nq->error.empty()) pr_err("nvmf: worker {}: namespace {} ({}): {}: its commands fail", index_, ns.nsid, ns.device, nq->error);
    queues_.push_back(std::move(nq));
    return *queues_.back();
}

NsQueue* Worker::queue_of_irq(int fd) {
    for (auto& q : queues_)
        if (q->irq_fd == fd) return q.get();
    return nullptr;
}

void Worker::release_slot(NsQueue& nq, int slot) {
    nq.free_slots.push_back(static_cast<std::uint16_t>(slot));
    if (!nq.waiting.empty()) {
        Connection* c = nq.waiting.front();
        nq.waiting.pop_front();
        resumable_.push_back(c);
    }
}

void Worker::mark_dirty(Connection* c) {
    if (std::find(dirty_.begin(), dirty_.end(), c) == dirty_.end()) dirty_.push_back(c);
}

void Worker::watch_writable(Connection* c, bool on) {
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
    ev.data.fd = c->fd();
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c->fd(), &ev);
}

void Worker::forget(Connection* c) {
    if (c->fd() >= 0) {
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c->fd(), nullptr);
        by_fd_.erase(c->fd());
    }
    dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), c), dirty_.end());
    resumable_.erase(std::remove(resumable_.begin(), resumable_.end(), c), resumable_.end());
}

void Worker::flush_dirty() {
    // flush() may close a connection, which takes it off dirty_: work on a copy.
    std::vector<Connection*> now;
    now.swap(dirty_);
    for (Connection* c : now)
        if (!c->closed()) c->flush();
}

void Worker::run() {
    std::array<epoll_event, 64> evs;
    auto last_tick = clock::now();
    auto last_pdu = last_tick;
    const auto poll_window = std::chrono::microseconds(t_.opt.poll_us);
    while (!stop_.load(std::memory_order_acquire)) {
        bool busy = false;
        for (auto& q : queues_)
            if (q->q && q->q->outstanding()) {
                (void)q->q->poll();  // callbacks queue responses (errors come back through them)
                if (q->irq_fd < 0) busy = true;  // else its interrupt wakes the epoll_wait below
            }
        // Connections whose waiting commands can have the buffers freed meanwhile.
        while (!resumable_.empty()) {
            Connection* c = resumable_.front();
            resumable_.erase(resumable_.begin());
            if (!c->closed()) c->resume();
        }
        flush_dirty();
        // While the devices hold commands, poll them and the sockets in turn; idle, sleep in epoll.
        // (Looking at the sockets only every 20 µs while spinning on the devices measured slower at
        // QD1 in the TCG VM: bench/README.md, NVMe/TCP.)
        // Within the poll window after the last PDU, poll the sockets too (an epoll_wait that does not
        // sleep): a command arriving then costs no wake-up.
        if (!busy && t_.opt.poll_us && !conns_.empty() && clock::now() - last_pdu < poll_window) busy = true;
        const int n = ::epoll_wait(epoll_.get(), evs.data(), static_cast<int>(evs.size()), busy ? 0 : 50);
        if (n > 0 && t_.opt.poll_us) last_pdu = clock::now();
        for (int i = 0; i < n; ++i) {
            const int fd = evs[static_cast<std::size_t>(i)].data.fd;
            const std::uint32_t what = evs[static_cast<std::size_t>(i)].events;
            if (fd == wake_.get()) {
                std::uint64_t v;
                (void)!::read(wake_.get(), &v, sizeof v);
                std::vector<Incoming> in;
                {
                    std::lock_guard lock(inbox_mu_);
                    in.swap(inbox_);
                }
                for (auto& x : in) {
                    const int raw = x.fd.get();
                    auto c = std::make_unique<Connection>(*this, std::move(x.fd), std::move(x.peer), x.agreed ? &*x.agreed : nullptr, x.pending);
                    epoll_event ev{};
                    ev.events = EPOLLIN;
                    ev.data.fd = raw;
                    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, raw, &ev);
                    by_fd_[raw] = c.get();
                    Connection* cp = c.get();
                    conns_.push_back(std::move(c));
                    if (x.agreed) cp->start();
                }
                continue;
            }
            if (NsQueue* q = queue_of_irq(fd)) {
                q->q->clear_completion_event();  // the top of the loop polls it next
                continue;
            }
            auto it = by_fd_.find(fd);
            if (it == by_fd_.end()) {
                t_.accept_on(fd);  // a listening socket (worker 0's)
                continue;
            }
            Connection* c = it->second;
            if (what & EPOLLOUT) c->on_writable();
            if (!c->closed() && (what & (EPOLLIN | EPOLLERR | EPOLLHUP))) c->on_readable();
        }
        flush_dirty();
        const auto now = clock::now();
        if (now - last_tick > std::chrono::milliseconds(100)) {
            last_tick = now;
            for (auto& c : conns_) c->tick(now);
            flush_dirty();
            // Closed connections go once the device has answered all their commands.
            std::erase_if(conns_, [](const std::unique_ptr<Connection>& c) { return c->closed() && c->at_device() == 0; });
        }
    }
    // Stopping: connections close; what the device still holds completes before the queues go.
    for (auto& c : conns_) c->close("the target is stopping");
    const auto until = clock::now() + std::chrono::seconds(10);
    for (;;) {
        bool left = false;
        for (auto& q : queues_)
            if (q->q && q->q->outstanding()) {
                (void)q->q->poll();
                left = true;
            }
        if (!left || clock::now() > until) break;
    }
    // The queues go first, while the connections their callbacks name still exist (a queue that still
    // holds commands fails them as it closes), then the connections, then the buffers.
    for (auto& q : queues_) {
        if (q->irq_fd >= 0) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, q->irq_fd, nullptr);  // the vector outlives the queue
        q->q.reset();
    }
    conns_.clear();
    queues_.clear();
}

}  // namespace detail

// ---- the target ----

struct Target::Impl final : TargetImplView {
    mutable std::mutex mu;
    std::map<std::string, std::shared_ptr<Subsystem>> subsystems;
    std::map<std::uint16_t, std::shared_ptr<Controller>> controllers;
    std::uint16_t next_cntlid = 1;
    struct Listener {
        Address addr;
        Fd fd;
    };
    std::vector<Listener> listening;
    std::function<std::vector<DiscoveryEntry>(const std::string&)> discovery_source;
    std::vector<std::unique_ptr<Worker>> workers;
    std::atomic<unsigned> next_worker{0};

    std::shared_ptr<Subsystem> find_subsystem(const std::string& nqn) override {
        std::lock_guard lock(mu);
        auto it = subsystems.find(nqn);
        if (it == subsystems.end() || it->second->removed.load()) return nullptr;
        return it->second;
    }

    Result<std::shared_ptr<Controller>> new_controller(std::shared_ptr<Subsystem> s, const std::string& hostnqn, const std::string& peer,
                                                      std::uint32_t kato_ms) override {
        std::lock_guard lock(mu);
        for (unsigned tries = 0; tries < 0xffef; ++tries) {
            const std::uint16_t id = next_cntlid;
            next_cntlid = next_cntlid >= 0xffef ? 1 : static_cast<std::uint16_t>(next_cntlid + 1);
            if (controllers.contains(id)) continue;
            auto c = std::make_shared<Controller>();
            c->cntlid = id;
            c->subsys = std::move(s);
            c->hostnqn = hostnqn;
            c->peer = peer;
            c->kato_ms = kato_ms;
            controllers[id] = c;
            return c;
        }
        return fail(EBUSY, "no controller id free");
    }

    std::shared_ptr<Controller> find_controller(std::uint16_t cntlid) override {
        std::lock_guard lock(mu);
        auto it = controllers.find(cntlid);
        return it == controllers.end() ? nullptr : it->second;
    }

    void drop_controller(std::uint16_t cntlid) override {
        std::lock_guard lock(mu);
        controllers.erase(cntlid);
    }

    std::vector<DiscoveryEntry> discovery_entries(const std::string& hostnqn) override {
        std::function<std::vector<DiscoveryEntry>(const std::string&)> src;
        {
            std::lock_guard lock(mu);
            src = discovery_source;
        }
        if (src) return src(hostnqn);
        std::vector<DiscoveryEntry> out;
        std::lock_guard lock(mu);
        for (const auto& [nqn, s] : subsystems) {
            auto snap = s->snapshot();
            if (snap->discovery || !snap->host_allowed(hostnqn)) continue;
            std::uint16_t port_id = 1;
            for (const auto& l : listening) out.push_back({nqn, l.addr, port_id++});
        }
        return out;
    }

    void accept_on(int listen_fd) override {
        while (auto c = accept_connection(listen_fd)) worker_for(c->first.get()).adopt(std::move(c->first), std::move(c->second));
    }

    // With pinned workers, the one on the CPU the socket's packets arrive on (the kernel records it as
    // they come; here the ICReq and Connect have come); else, or when no worker is there, round-robin.
    Worker& worker_for(int fd) {
        if (!opt.cpus.empty()) {
            int cpu = -1;
            socklen_t len = sizeof cpu;
            if (::getsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu, &len) == 0 && cpu >= 0)
                for (auto& w : workers)
                    if (w->cpu() == cpu) return *w;
        }
        return *workers[next_worker.fetch_add(1) % static_cast<unsigned>(workers.size())];
    }
};

Target::Target(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Target>> Target::create(TargetOptions o) {
    if (!o.cpus.empty()) {
        if (o.cpus.size() > kMaxWorkers) return fail(EINVAL, "{} worker CPUs (at most {})", o.cpus.size(), kMaxWorkers);
        for (int c : o.cpus)
            if (c < 0 || c >= CPU_SETSIZE) return fail(EINVAL, "worker CPU {} (0-{})", c, CPU_SETSIZE - 1);
        std::vector<int> sorted = o.cpus;
        std::sort(sorted.begin(), sorted.end());
        if (auto d = std::adjacent_find(sorted.begin(), sorted.end()); d != sorted.end()) return fail(EINVAL, "worker CPU {} is listed twice", *d);
        o.threads = static_cast<unsigned>(o.cpus.size());
    }
    if (o.threads == 0 || o.threads > kMaxWorkers) return fail(EINVAL, "{} worker threads (1-{})", o.threads, kMaxWorkers);
    if (o.poll_us > kMaxPollUs) return fail(EINVAL, "poll window {} µs (at most {})", o.poll_us, kMaxPollUs);
    if (o.queue_entries < 2 || o.queue_entries > 1024) return fail(EINVAL, "{} queue entries (2-1024)", o.queue_entries);
    if (o.max_transfer < 4096 || o.max_transfer > (1u << 20) || (o.max_transfer & (o.max_transfer - 1)))
        return fail(EINVAL, "largest transfer {} bytes (a power of two from 4 KiB to 1 MiB)", o.max_transfer);
    if (o.in_capsule < 1024 || o.in_capsule > 65536 || o.in_capsule % 16)
        return fail(EINVAL, "in-capsule data {} bytes (1024-65536, a multiple of 16; Connect's 1024 must fit)", o.in_capsule);
    auto impl = std::make_unique<Impl>();
    impl->opt = o;
    if (o.discovery) {
        auto d = std::make_shared<Subsystem>();
        d->nqn = kDiscoveryNqn;
        auto st = std::make_shared<SubsystemState>();
        st->nqn = kDiscoveryNqn;
        st->serial = "udrv-discovery";
        st->model = "udrv NVMe/TCP discovery";
        st->discovery = true;
        d->replace(std::move(st));
        impl->subsystems[kDiscoveryNqn] = d;
    }
    for (unsigned i = 0; i < o.threads; ++i) impl->workers.push_back(std::make_unique<Worker>(*impl, i, o.cpus.empty() ? -1 : o.cpus[i]));
    for (auto& w : impl->workers) w->start();
    return std::unique_ptr<Target>(new Target(std::move(impl)));
}

Target::~Target() {
    {
        std::lock_guard lock(impl_->mu);
        for (auto& l : impl_->listening) impl_->workers[0]->watch_listener(l.fd.get(), false);
        impl_->listening.clear();
        for (auto& [n, s] : impl_->subsystems) s->removed.store(true);
    }
    for (auto& w : impl_->workers) w->stop();
    impl_->workers.clear();
}

namespace {
std::array<std::byte, 16> make_nguid(const std::string& nqn, std::uint32_t nsid) {
    // Unique per subsystem and namespace, and stable across restarts (the host's multipath code matches
    // paths by it); never the backing device's own ids, which the kernel may see through its own driver.
    std::array<std::byte, 16> g{};
    std::string seed = nqn + "/" + std::to_string(nsid);
    for (int i = 0; i < 4; ++i) {
        seed.push_back(static_cast<char>('a' + i));
        put32(g, 4 * static_cast<std::size_t>(i), crc32c(std::as_bytes(std::span(seed.data(), seed.size()))));
    }
    return g;
}

bool printable(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}
}  // namespace

Result<void> Target::set_subsystem(SubsystemSpec spec) {
    UDRV_TRY(check_nqn(spec.nqn));
    if (spec.nqn == kDiscoveryNqn) return fail(EINVAL, "{} is the discovery subsystem's NQN", spec.nqn);
    if (spec.serial.empty() || spec.serial.size() > 20 || !printable(spec.serial))
        return fail(EINVAL, "serial '{}': 1 to 20 printable ASCII characters", spec.serial);
    if (spec.model.empty() || spec.model.size() > 40 || !printable(spec.model)) return fail(EINVAL, "model '{}': 1 to 40 printable ASCII characters", spec.model);
    for (const auto& h : spec.hosts) UDRV_TRY_CTX(check_nqn(h), "host NQN of {}", spec.nqn);
    auto st = std::make_shared<SubsystemState>();
    st->nqn = spec.nqn;
    st->serial = spec.serial;
    st->model = spec.model;
    st->allow_any_host = spec.allow_any_host;
    st->hosts = spec.hosts;
    for (auto& n : spec.namespaces) {
        if (n.nsid == 0 || n.nsid > kMaxNamespaces) return fail(EINVAL, "{}: namespace id {} (1-{})", spec.nqn, n.nsid, kMaxNamespaces);
        if (!n.backing) return fail(EINVAL, "{}: namespace {} has no block device", spec.nqn, n.nsid);
        if (st->find(n.nsid)) return fail(EEXIST, "{}: namespace {} twice", spec.nqn, n.nsid);
        const block::Info& info = n.backing->info();
        if (info.block_size < 512 || info.block_size > 4096 || (info.block_size & (info.block_size - 1)) || info.blocks == 0)
            return fail(EINVAL, "{}: {} has {} blocks of {} bytes: NVMe/TCP hosts take 512 to 4096-byte blocks", spec.nqn, n.device, info.blocks,
                        info.block_size);
        if (!info.splits && info.max_transfer && info.max_transfer < impl_->opt.max_transfer)
            return fail(EINVAL, "{}: {} moves at most {} bytes per command; the target's transfers are {} (set max_transfer)", spec.nqn, n.device,
                        info.max_transfer, impl_->opt.max_transfer);
        Namespace ns{n.nsid, n.device, n.backing, info, make_nguid(spec.nqn, n.nsid)};
        auto pos = std::lower_bound(st->namespaces.begin(), st->namespaces.end(), n.nsid, [](const Namespace& a, std::uint32_t id) { return a.nsid < id; });
        st->namespaces.insert(pos, std::move(ns));
    }
    std::lock_guard lock(impl_->mu);
    auto& s = impl_->subsystems[spec.nqn];
    if (!s) {
        s = std::make_shared<Subsystem>();
        s->nqn = spec.nqn;
        pr_info("nvmf: subsystem {}: {} namespace(s), {}", spec.nqn, st->namespaces.size(),
                spec.allow_any_host ? "any host" : fmt::format("hosts {}", fmt::join(spec.hosts, ", ")));
    }
    s->replace(std::move(st));
    // The discovery log changed too.
    if (auto d = impl_->subsystems.find(kDiscoveryNqn); d != impl_->subsystems.end()) d->second->generation.fetch_add(1);
    return {};
}

Result<void> Target::remove_subsystem(const std::string& nqn) {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->subsystems.find(nqn);
    if (it == impl_->subsystems.end() || nqn == kDiscoveryNqn) return fail(ENOENT, "no subsystem {}", nqn);
    it->second->removed.store(true);
    impl_->subsystems.erase(it);
    if (auto d = impl_->subsystems.find(kDiscoveryNqn); d != impl_->subsystems.end()) d->second->generation.fetch_add(1);
    return {};
}

Result<void> Target::listen(const Address& a) {
    std::lock_guard lock(impl_->mu);
    for (const auto& l : impl_->listening)
        if (l.addr.host == a.host && l.addr.port == a.port) return {};
    Fd fd = UDRV_TRY(listen_socket(a));
    impl_->workers[0]->watch_listener(fd.get(), true);
    impl_->listening.push_back({a, std::move(fd)});
    pr_info("nvmf: listening on {} (NVMe/TCP)", a.text());
    if (auto d = impl_->subsystems.find(kDiscoveryNqn); d != impl_->subsystems.end()) d->second->generation.fetch_add(1);
    return {};
}

Result<void> Target::stop_listening(const Address& a) {
    std::lock_guard lock(impl_->mu);
    auto it = std::find_if(impl_->listening.begin(), impl_->listening.end(), [&](const auto& l) { return l.addr.host == a.host && l.addr.port == a.port; });
    if (it == impl_->listening.end()) return fail(ENOENT, "not listening on {}", a.text());
    impl_->workers[0]->watch_listener(it->fd.get(), false);
    impl_->listening.erase(it);
    return {};
}

std::vector<Address> Target::listeners() const {
    std::lock_guard lock(impl_->mu);
    std::vector<Address> out;
    for (const auto& l : impl_->listening) out.push_back(l.addr);
    return out;
}

void Target::adopt(Fd socket, std::string peer, bool hdgst, bool ddgst, std::uint32_t max_h2c_data, std::vector<std::byte> pending) {
    Limits l;
    l.hdgst = hdgst;
    l.ddgst = ddgst;
    l.max_h2c_data = max_h2c_data;
    const int one = 1;
    ::setsockopt(socket.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    Worker& w = impl_->worker_for(socket.get());
    w.adopt(std::move(socket), std::move(peer), l, std::move(pending));
}

Handshake::Step Handshake::failed(std::uint16_t fes, std::uint32_t fei, std::string why, std::span<const std::byte> header) {
    error_ = std::move(why);
    reply_.assign(kMaxTxHeader, std::byte{0});
    reply_.resize(build_c2h_term_req(reply_, static_cast<Fes>(fes), fei, header));
    return Step::failed;
}

Handshake::Step Handshake::feed(std::span<const std::byte> in) {
    buf_.insert(buf_.end(), in.begin(), in.end());
    if (!ic_done_) {
        if (buf_.size() < kCommonHeaderBytes) return Step::more;
        auto h = check_header(read_common(buf_), Limits{}, false);
        if (!h) return failed(static_cast<std::uint16_t>(h.error().fes), h.error().fei, h.error().message, std::span(buf_).first(kCommonHeaderBytes));
        if (buf_.size() < kIcBytes) return Step::more;
        if (get16(buf_, 8) != 0) return failed(static_cast<std::uint16_t>(Fes::unsupported_parameter), 8, "ICReq PFV is not 1.0", std::span(buf_).first(kIcBytes));
        const std::uint8_t dgst = std::to_integer<std::uint8_t>(buf_[11]);
        hdgst_ = dgst & kDigestHeader;
        ddgst_ = dgst & kDigestData;
        reply_.assign(kIcBytes, std::byte{0});
        build_ic_resp(reply_, dgst & (kDigestHeader | kDigestData), max_h2c_data_);
        buf_.erase(buf_.begin(), buf_.begin() + kIcBytes);
        ic_done_ = true;
    }
    if (buf_.size() < kCommonHeaderBytes) return Step::more;
    Limits l;
    l.hdgst = hdgst_;
    l.ddgst = ddgst_;
    l.max_in_capsule = opt_.in_capsule;
    l.max_h2c_data = max_h2c_data_;
    const CommonHeader ch = read_common(buf_);
    auto h = check_header(ch, l, true);
    if (!h) return failed(static_cast<std::uint16_t>(h.error().fes), h.error().fei, h.error().message, std::span(buf_).first(kCommonHeaderBytes));
    if (static_cast<PduType>(ch.type) != PduType::capsule_cmd)
        return failed(static_cast<std::uint16_t>(Fes::pdu_sequence_error), 0, fmt::format("{} before any Connect", pdu_type_name(ch.type)),
                      std::span(buf_).first(kCommonHeaderBytes));
    if (buf_.size() < ch.plen) return Step::more;
    const nvme::Sqe sqe = read_sqe(std::span<const std::byte>(buf_).subspan(kCommonHeaderBytes, 64));
    if (opcode(sqe) != 0x7f || static_cast<std::uint8_t>(sqe.nsid) != 0x01 || h->data_len < 1024)
        return failed(static_cast<std::uint16_t>(Fes::pdu_sequence_error), 0, "the first command is not a Connect with its data in the capsule",
                      std::span(buf_).first(kCapsuleCmdHeaderBytes));
    auto field = [&](std::size_t off) {
        std::string s;
        for (std::size_t i = 0; i < 256 && buf_[h->data_offset + off + i] != std::byte{0}; ++i) s.push_back(static_cast<char>(buf_[h->data_offset + off + i]));
        return s;
    };
    subnqn_ = field(256);
    hostnqn_ = field(512);
    return Step::routed;
}

void Target::set_discovery_source(std::function<std::vector<DiscoveryEntry>(const std::string&)> source) {
    std::lock_guard lock(impl_->mu);
    impl_->discovery_source = std::move(source);
}

std::vector<ControllerStats> Target::controllers() const {
    std::lock_guard lock(impl_->mu);
    std::vector<ControllerStats> out;
    for (const auto& [id, c] : impl_->controllers) {
        ControllerStats s;
        s.cntlid = id;
        s.subnqn = c->subsys->nqn;
        s.hostnqn = c->hostnqn;
        s.peer = c->peer;
        {
            std::lock_guard l(c->mu);
            s.io_queues = static_cast<unsigned>(c->io_qids.size());
        }
        for (const auto& q : c->counters) {
            s.commands += q.commands.load(std::memory_order_relaxed);
            s.errors += q.errors.load(std::memory_order_relaxed);
        }
        out.push_back(std::move(s));
    }
    return out;
}

}  // namespace udrv::nvmf
