#include "host.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <set>
#include <mutex>
#include <thread>

#include "block_perf.hpp"
#include "class_json.hpp"
#include "poller.hpp"
#include "ublk_export.hpp"
#include "udrv/nvmf.hpp"
#include "udrv/block.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"
#include "udrv/net.hpp"
#include "udrv/netproto.hpp"
#include "udrv/nvme.hpp"
#include "udrv/pci.hpp"
#include "udrv/platform.hpp"
#include "udrv/rpc.hpp"

namespace udrv::daemon {
namespace {

using nlohmann::json;

json error_json(const Error& e) { return rpc::error_object(e); }

// A unit of work on a device, on a thread of its own; its reply goes out when it ends.
struct Job {
    std::string kind, device;
    std::atomic<bool> cancel{false};
    std::atomic<std::uint64_t> done{0};  // I/Os or frames so far, for live views
    std::thread thread;
};

class Host {
public:
    Host(Channel ch, std::vector<std::filesystem::path> dirs) : ch_(std::move(ch)), loader_(std::move(dirs)) {}

    int run() {
        auto r = serve();
        finish();
        if (!r) {
            pr_err("{}", r.error().to_string());
            return 1;
        }
        return 0;
    }

private:
    Result<void> serve() {
        UDRV_TRY(ch_.send({{"type", "hello"}, {"version", kHostProtocol}, {"pid", ::getpid()}}));
        json start = UDRV_TRY(ch_.receive_wait(-1));
        if (start.value("type", "") != "start") return fail(EPROTO, "udrvd's first message is not start");
        set_log_tag("host " + start.value("name", std::string("?")));
        if (auto r = start_devices(start); !r) {
            (void)ch_.send({{"type", "failed"}, {"error", error_json(r.error())}});
            return std::unexpected(r.error());
        }
        UDRV_TRY(ch_.send(ready_message()));
        recover_exports(start.value("exports", json::array()));

        poller_ = std::make_unique<Poller>(UDRV_TRY(Poller::create()));
        UDRV_TRY(poller_->add(ch_.fd(), EPOLLIN, [this](std::uint32_t) { on_channel(); }));
        UDRV_TRY(poller_->add(signals_.get(), EPOLLIN, [this](std::uint32_t) {
            signalfd_siginfo si{};
            while (::read(signals_.get(), &si, sizeof si) == sizeof si) stop_ = true;
        }));
        for (auto& [addr, fd] : removal_)
            UDRV_TRY(poller_->add(fd.get(), EPOLLIN, [this, a = addr](std::uint32_t) { on_removal(a); }));
        while (!stop_) {
            UDRV_TRY(poller_->run_once(std::chrono::milliseconds(500)));
            reap_jobs();
            reap_exports();
        }
        return {};
    }

    // Joins the threads of jobs that have ended.
    void reap_jobs() {
        std::vector<std::thread> done;
        {
            std::lock_guard lock(jobs_mu_);
            done.swap(finished_);
        }
        for (auto& t : done) t.join();
    }

    // ---- start: modules, devices, what they published ----

    Result<void> start_devices(const json& start) {
        // SIGTERM (udrvd's shutdown, or udrvd gone: the parent-death signal) ends the serving loop,
        // which unbinds every device cleanly; it arrives through a signalfd so nothing runs in a handler.
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigprocmask(SIG_BLOCK, &set, nullptr);
        signals_ = Fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
        if (!signals_) return fail_errno("signalfd");

        for (const auto& m : start.value("modules", json::array())) UDRV_TRY(load_module(m));
        std::vector<pci::Address> addrs;
        for (const auto& a : start.value("pci", json::array())) addrs.push_back(UDRV_TRY(pci::Address::parse(a.get<std::string>())));
        if (!addrs.empty()) {
            pci::bus().allow_only(addrs);
            UDRV_TRY(pci::bus().scan());
            for (const auto& a : addrs) {
                pci::Device* d = pci::bus().find(a);
                if (!d) return fail(ENODEV, "no PCI device {} (it was removed?)", a.to_string());
                if (d->info().driver != "vfio-pci") return fail(ENODEV, "{} is not on vfio-pci (it is on {})", a.to_string(), d->info().driver.value_or("no driver"));
                if (!d->is_bound()) UDRV_TRY(pci::bus().attach(*d));
                mine_.insert(a.to_string());
                if (auto fd = pci::bus().removal_notifier(a)) removal_.emplace(a.to_string(), std::move(*fd));
                else pr_warn("{}: hot-unplug will not be noticed: {}", a.to_string(), fd.error().message());
            }
        }
        for (const auto& file : start.value("platform", json::array())) {
            auto descs = UDRV_TRY(platform::load_description(file.get<std::string>()));
            std::vector<std::string> names;
            for (const auto& d : descs) names.push_back(d.name);
            UDRV_TRY(platform::bus().register_devices(std::move(descs)));
            for (const auto& n : names) {
                udrv::Device* d = platform::bus().find_device(n);
                if (d && !d->is_bound())
                    return fail(ENODEV, "{}", d->unbound_reason() ? d->unbound_reason()->message() : n + ": no driver took it");
            }
        }
        return {};
    }

    Result<void> load_module(const json& m) {
        const std::string name = m.value("name", "");
        std::vector<std::string> params = m.value("params", std::vector<std::string>{});
        if (loader_.find(name)) return {};  // a dependency of one loaded before
        auto r = loader_.load(name, params);
        if (!r) return std::unexpected(std::move(r.error()).context("loading " + name));
        return {};
    }

    json devices_json() const {
        json devs = json::array();
        for (auto* d : pci::bus().devices())
            if (d->is_bound()) devs.push_back({{"address", d->name()}, {"driver", d->driver()->name()}, {"bus", "pci"}});
        for (auto* d : platform::bus().devices())
            devs.push_back({{"address", d->name()}, {"driver", d->driver() ? d->driver()->name() : ""}, {"bus", "platform"}});
        return devs;
    }

    json classdevs_json() const {
        json out = json::array();
        for (const auto& l : block::list()) out.push_back({{"class", "block"}, {"info", tools::block_json(l)}});
        for (const auto& l : net::list()) out.push_back({{"class", "net"}, {"info", tools::net_json(l)}});
        for (const auto& l : nvme::list())
            out.push_back({{"class", "nvme"},
                           {"info", {{"name", l.id.name}, {"path", l.id.path}, {"driver", l.id.driver}, {"device", l.id.device}, {"bus", l.id.bus}}}});
        return out;
    }

    json modules_json() const {
        json mods = json::array();
        for (const auto* m : loader_.list())
            mods.push_back({{"name", m->name}, {"refcount", m->refcount}, {"used_by", m->used_by}, {"builtin", m->builtin}});
        return mods;
    }

    json ready_message() const {
        return {{"type", "ready"}, {"devices", devices_json()}, {"classdevs", classdevs_json()}, {"modules", modules_json()}};
    }

    // ---- exports (ublk): each serves one block device from this host ----

    json export_json(const exports::UblkExport& e) const {
        return {{"type", "ublk"}, {"dev_id", e.dev_id()}, {"path", e.path()}, {"device", e.device().id().name},
                {"device_path", e.device().id().path}, {"queues", e.options().queues}, {"depth", e.options().depth},
                {"requests", e.requests()}, {"errors", e.errors()}};
    }

    Result<json> export_ublk(const json& p, bool recover) {
        block::Handle dev = UDRV_TRY(block::open(p.value("device", "")));
        exports::UblkOptions o;
        o.queues = p.value("queues", 1u);
        o.depth = p.value("depth", 64u);
        o.recover = recover;
        o.dev_id = p.value("dev_id", -1);
        {
            std::lock_guard lock(exports_mu_);
            for (const auto& [id, e] : exports_)
                if (e->device().id().path == dev.id().path) return fail(EEXIST, "{} is exported already as {}", dev.id().name, e->path());
        }
        auto e = UDRV_TRY(exports::UblkExport::create(std::move(dev), o));
        json j = export_json(*e);
        std::lock_guard lock(exports_mu_);
        exports_[e->dev_id()] = std::move(e);
        return j;
    }

    Result<json> unexport_ublk(const json& p) {
        std::unique_ptr<exports::UblkExport> e;
        {
            std::lock_guard lock(exports_mu_);
            auto it = exports_.find(p.value("dev_id", -1));
            if (it == exports_.end()) return fail(ENOENT, "{} is not exported from this host", ublk::block_path(p.value("dev_id", -1)));
            e = std::move(it->second);
            exports_.erase(it);
        }
        json j = export_json(*e);
        UDRV_TRY(e->remove());
        return j;
    }

    // ---- NVMe/TCP subsystems whose namespaces this host's devices publish (udrvd sends the whole
    // subsystem each time it changes; the target updates it in place) ----

    Result<json> nvmf_set(const json& p) {
        nvmf::SubsystemSpec spec;
        spec.nqn = p.value("nqn", "");
        spec.serial = p.value("serial", "udrv0000");
        spec.model = p.value("model", "udrv NVMe/TCP");
        for (const auto& h : p.value("hosts", json::array())) spec.hosts.push_back(h.get<std::string>());
        spec.allow_any_host = spec.hosts.empty();
        for (const auto& n : p.value("namespaces", json::array())) {
            block::Handle dev = UDRV_TRY_CTX(block::open(n.value("device", "")), "{} namespace {}", spec.nqn, n.value("nsid", 0u));
            spec.namespaces.push_back({n.value("nsid", 0u), n.value("name", n.value("device", "")), std::make_shared<block::Handle>(std::move(dev))});
        }
        // udrvd listens and hands this host the connections to its subsystems (nvmf_connection).
        std::lock_guard lock(nvmf_mu_);
        if (!nvmf_) {  // the target's threads, as udrvd's [nvmf] configuration says
            nvmf::TargetOptions o;
            const json t = p.value("target", json::object());
            o.cpus = t.value("cpus", std::vector<int>{});
            o.poll_us = t.value("poll_us", o.poll_us);  // absent: TargetOptions' defaults
            o.device_interrupts = t.value("device_interrupts", o.device_interrupts);
            nvmf_ = UDRV_TRY(nvmf::Target::create(o));
        }
        UDRV_TRY(nvmf_->set_subsystem(std::move(spec)));
        return json{{"nqn", p.value("nqn", "")}};
    }

    Result<json> nvmf_remove(const json& p) {
        std::lock_guard lock(nvmf_mu_);
        if (!nvmf_) return fail(ENOENT, "no subsystem {} in this host", p.value("nqn", ""));
        UDRV_TRY(nvmf_->remove_subsystem(p.value("nqn", "")));
        return json{{"nqn", p.value("nqn", "")}};
    }

    // A connection udrvd accepted for one of this host's subsystems, its ICReq answered and its Connect read.
    void adopt_connection(const json& m, Fd fd) {
        if (m.value("type", "") != "nvmf_connection") return;  // nothing else carries a descriptor
        std::vector<std::byte> pending;
        const std::string hex = m.value("pending", "");
        auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
        for (std::size_t i = 0; i + 1 < hex.size(); i += 2) pending.push_back(std::byte(nibble(hex[i]) << 4 | nibble(hex[i + 1])));
        std::lock_guard lock(nvmf_mu_);
        if (!nvmf_) return;  // no subsystem here (any more): the connection closes, the initiator retries
        nvmf_->adopt(std::move(fd), m.value("peer", "?"), m.value("hdgst", false), m.value("ddgst", false), m.value("max_h2c_data", 131072u),
                     std::move(pending));
    }

    json nvmf_stats() {
        json out = json::array();
        std::lock_guard lock(nvmf_mu_);
        if (!nvmf_) return out;
        for (const auto& c : nvmf_->controllers())
            out.push_back({{"cntlid", c.cntlid}, {"subnqn", c.subnqn}, {"hostnqn", c.hostnqn}, {"peer", c.peer}, {"io_queues", c.io_queues},
                           {"commands", c.commands}, {"errors", c.errors}});
        return out;
    }

    // Exports this host takes over from the one that died, each on a thread of its own: the kernel
    // may take seconds to notice the old server is gone, and this host must answer pings meanwhile.
    void recover_exports(const json& list) {
        for (const auto& x : list) {
            json params = {{"device", x.value("device_path", "")}, {"dev_id", x.value("dev_id", -1)}, {"queues", x.value("queues", 1u)},
                           {"depth", x.value("depth", 64u)}};
            recoveries_.emplace_back([this, params] {
                auto r = export_ublk(params, true);
                json m = {{"type", "export"}, {"dev_id", params["dev_id"]}, {"device_path", params["device"]}};
                if (r) m["export"] = *r;
                else m["error"] = error_json(r.error());
                (void)ch_.send(m);
            });
        }
    }

    // Exports whose device went away under them (ENODEV): removed, and udrvd told.
    void reap_exports() {
        std::vector<std::unique_ptr<exports::UblkExport>> gone;
        {
            std::lock_guard lock(exports_mu_);
            for (auto it = exports_.begin(); it != exports_.end();) {
                if (it->second->broken()) {
                    gone.push_back(std::move(it->second));
                    it = exports_.erase(it);
                } else {
                    ++it;
                }
            }
        }
        for (auto& e : gone) {
            pr_warn("{}: {} lost its device: removing it (the kernel fails its requests)", e->device().id().name, e->path());
            (void)e->remove();
            (void)ch_.send({{"type", "export_gone"}, {"dev_id", e->dev_id()}, {"why", e->device().id().name + " went away"}});
        }
    }

    // Before a device goes (hot-unplug), the exports of it: requests complete or fail, then the kernel
    // device is deleted; nothing in the kernel waits on a device that is no longer there.
    void remove_exports_of(const std::string& bus_device) {
        std::vector<std::unique_ptr<exports::UblkExport>> gone;
        {
            std::lock_guard lock(exports_mu_);
            for (auto it = exports_.begin(); it != exports_.end();) {
                if (it->second->device().id().device == bus_device) {
                    gone.push_back(std::move(it->second));
                    it = exports_.erase(it);
                } else {
                    ++it;
                }
            }
        }
        for (auto& e : gone) {
            (void)e->remove();
            (void)ch_.send({{"type", "export_gone"}, {"dev_id", e->dev_id()}, {"why", bus_device + " was removed from the system"}});
        }
    }

    // ---- the channel ----

    void on_channel() {
        for (;;) {
            Fd passed;
            auto m = ch_.receive(&passed);
            if (!m) {  // udrvd is gone (or spoke nonsense): unbind everything and go
                if (m.error().code() != ECONNRESET) pr_err("control channel: {}", m.error().to_string());
                stop_ = true;
                return;
            }
            if (!*m) return;
            if (passed) {
                adopt_connection(**m, std::move(passed));
                continue;
            }
            handle(**m);
        }
    }

    void handle(const json& m) {
        const std::string type = m.value("type", "");
        if (type == "ping") {
            (void)ch_.send({{"type", "pong"}, {"seq", m.value("seq", 0)}});
        } else if (type == "stop") {
            stop_ = true;
        } else if (type == "call") {
            call(m.value("seq", std::uint64_t{0}), m.value("method", ""), m.value("params", json::object()));
        } else if (type == "load") {
            auto r = load_module(m);
            (void)ch_.send({{"type", "modules"}, {"seq", m.value("seq", 0)}, {"modules", modules_json()},
                            {"error", r ? json(nullptr) : error_json(r.error())}});
        } else if (type == "unload") {
            auto r = loader_.unload(m.value("name", ""));
            (void)ch_.send({{"type", "modules"}, {"seq", m.value("seq", 0)}, {"modules", modules_json()},
                            {"error", r ? json(nullptr) : error_json(r.error())}});
        } else {
            pr_warn("control channel: unknown message type '{}'", type);
        }
    }

    void reply(std::uint64_t seq, const Result<json>& r) const {
        json m = {{"type", "reply"}, {"seq", seq}};
        if (r) m["result"] = *r;
        else m["error"] = error_json(r.error());
        (void)ch_.send(m);
    }

    void call(std::uint64_t seq, const std::string& method, const json& params) {
        if (method == "stats") return reply(seq, stats());
        if (method == "ublk_export") return reply(seq, export_ublk(params, false));
        if (method == "ublk_unexport") return reply(seq, unexport_ublk(params));
        if (method == "nvmf_subsystem_set") return reply(seq, nvmf_set(params));
        if (method == "nvmf_subsystem_remove") return reply(seq, nvmf_remove(params));
        if (method == "block_perf" || method == "net_send") return start_job(seq, method, params);
        reply(seq, fail(EOPNOTSUPP, "the host has no method {}", method));
    }

    Result<json> stats() {
        json out = json::object();
        json nets = json::object();
        for (const auto& l : net::list())
            if (auto h = net::open(l.id.name))
                if (auto s = h->stats()) nets[l.id.name] = tools::net_stats_json(*s);
        out["net"] = nets;
        json jobs = json::array();
        std::lock_guard lock(jobs_mu_);
        for (const auto& [id, j] : jobs_) jobs.push_back({{"job", j->kind}, {"device", j->device}, {"done", j->done.load()}});
        out["jobs"] = jobs;
        json exps = json::array();
        {
            std::lock_guard elock(exports_mu_);
            for (const auto& [id, e] : exports_) exps.push_back(export_json(*e));
        }
        out["exports"] = exps;
        out["nvmf_controllers"] = nvmf_stats();
        return out;
    }

    // ---- jobs ----

    void start_job(std::uint64_t seq, const std::string& kind, const json& params) {
        auto job = std::make_shared<Job>();
        job->kind = kind;
        job->device = params.value("device", "");
        std::lock_guard lock(jobs_mu_);
        jobs_[seq] = job;
        job->thread = std::thread([this, seq, kind, params, job] {
            Result<json> r = kind == "block_perf" ? block_perf(params, *job) : net_send(params, *job);
            reply(seq, r);
            std::lock_guard l(jobs_mu_);
            finished_.push_back(std::move(jobs_[seq]->thread));
            jobs_.erase(seq);
        });
    }

    Result<json> block_perf(const json& p, Job& job) {
        block::Handle dev = UDRV_TRY(block::open(job.device));
        tools::PerfOpts o;
        o.pattern = p.value("pattern", o.pattern);
        o.mode = p.value("mode", o.mode);
        o.depth = p.value("depth", o.depth);
        o.io_size = p.value("io_size", o.io_size);
        o.threads = p.value("threads", o.threads);
        o.mix = p.value("mix", o.mix);
        o.seconds = p.value("seconds", o.seconds);
        o.json_out = p.value("json", false);
        o.histogram = p.value("histogram", false);
        if (p.contains("percentiles")) o.percentiles = p["percentiles"].get<std::vector<double>>();
        std::string text;
        o.out = [&text](std::string_view s) { text += s; };
        o.live = false;
        o.cancel = &job.cancel;
        o.ios_done = &job.done;
        const int status = UDRV_TRY(tools::run_block_perf(dev, o));
        return json{{"status", status}, {"output", text}};
    }

    // Numbered UDP frames on queue 0 for a while (a workload for tests and live views); ENODEV if the
    // device goes away meanwhile, as any user of it gets.
    Result<json> net_send(const json& p, Job& job) {
        net::Handle dev = UDRV_TRY(net::open(job.device));
        const double seconds = p.value("seconds", 5.0);
        const auto frames = UDRV_TRY(netproto::UdpFrames::create({0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, dev.mac(), {10, 0, 0, 2},
                                                                 {10, 0, 0, 255}, p.value("size", 64u)));
        std::shared_ptr<net::PacketPool> pool = UDRV_TRY(dev.tx_pool(0));
        std::array<net::Packet, 32> pkts;
        std::uint64_t sent = 0;
        const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
        while (std::chrono::steady_clock::now() < until && !job.cancel.load(std::memory_order_relaxed)) {
            const unsigned built = pool->alloc_bulk(pkts);
            if (built == 0 && !dev.alive()) return fail(ENODEV, "{} went away", job.device);
            for (unsigned i = 0; i < built; ++i) {
                UDRV_TRY(pkts[i].resize(frames.frame_size()));
                frames.stamp(pkts[i].data(), sent + i);
            }
            const unsigned n = UDRV_TRY(dev.tx_batch(0, std::span(pkts).first(built)));
            for (unsigned i = n; i < built; ++i) pkts[i] = net::Packet();
            sent += n;
            job.done.store(sent, std::memory_order_relaxed);
        }
        return json{{"sent", sent}};
    }

    // ---- hot-unplug: the kernel wants a device back ----

    void on_removal(const std::string& address) {
        auto it = removal_.find(address);
        if (it == removal_.end()) return;
        poller_->remove(it->second.get());
        pr_notice("{}: the kernel asks for the device back (it is being removed): unbinding it", address);
        remove_exports_of(address);
        (void)pci::bus().remove_device(address);  // remove runs, resources go, the VFIO device closes
        removal_.erase(it);
        mine_.erase(address);
        (void)ch_.send({{"type", "removed"}, {"address", address}, {"classdevs", classdevs_json()}});
        if (mine_.empty() && platform::bus().devices().empty()) stop_ = true;  // nothing left to drive
    }

    void finish() {
        {
            std::lock_guard lock(jobs_mu_);
            for (auto& [id, j] : jobs_) j->cancel = true;
        }
        // Jobs end within a second of being cancelled (their loops look at the flag).
        for (;;) {
            reap_jobs();
            {
                std::lock_guard lock(jobs_mu_);
                if (jobs_.empty() && finished_.empty()) break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        for (auto& t : recoveries_) t.join();
        {
            // Exports first: the kernel completes or fails their requests and deletes the devices.
            std::map<std::int32_t, std::unique_ptr<exports::UblkExport>> gone;
            std::lock_guard lock(exports_mu_);
            gone.swap(exports_);
        }
        {
            // NVMe/TCP: connections close (initiators reconnect to the next host), queues drain.
            std::lock_guard lock(nvmf_mu_);
            nvmf_.reset();
        }
        pci::bus().remove_all_devices();  // drivers' remove: controllers shut down (CC.SHN), NICs reset
        platform::bus().remove_all_devices();
    }

    Channel ch_;
    Loader loader_;
    std::unique_ptr<Poller> poller_;
    Fd signals_;
    std::map<std::string, Fd> removal_;
    std::set<std::string> mine_;  // the PCI devices this host drives (the bus also lists the others)
    std::atomic<bool> stop_{false};
    std::mutex jobs_mu_;
    std::map<std::uint64_t, std::shared_ptr<Job>> jobs_;
    std::vector<std::thread> finished_;
    std::vector<std::thread> recoveries_;  // taking over exports after a crash (joined at the end)
    std::mutex exports_mu_;
    std::mutex nvmf_mu_;
    std::unique_ptr<nvmf::Target> nvmf_;
    std::map<std::int32_t, std::unique_ptr<exports::UblkExport>> exports_;
};

}  // namespace

int run_host(Channel channel, std::vector<std::filesystem::path> module_dirs) {
    // udrvd gone (even by kill -9): SIGTERM, so the devices are unbound cleanly and the next udrvd
    // finds them free. Checked after setting it, in case udrvd died before.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() == 1) return 1;
    Host host(std::move(channel), std::move(module_dirs));
    return host.run();
}

}  // namespace udrv::daemon
