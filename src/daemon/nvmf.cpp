// udrvd's NVMe/TCP subsystems: configured here (RPC methods named as SPDK's, or [[nvmf_subsystem]] in the
// configuration), served by the driver host that publishes their namespaces (the data path stays in
// the process that owns the device's queues), and listed by udrvd's own discovery controller.
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <set>

#include "daemon.hpp"
#include "rpc_params.hpp"
#include "udrv/classdev.hpp"
#include "udrv/log.hpp"

namespace udrv::daemon {

using nlohmann::json;

namespace {

// A listener as SPDK's RPC gives it ({"trtype": "tcp", "traddr": ..., "trsvcid": ...}) or as "addr:port".
Result<std::string> listen_param(const json& p, std::uint16_t default_port) {
    if (p.is_object() && p.contains("listen_address")) {
        const json& a = p["listen_address"];
        if (!a.is_object()) return fail(EINVAL, "\"listen_address\" is an object: {{\"trtype\": \"tcp\", \"traddr\": ..., \"trsvcid\": ...}}");
        const std::string trtype = a.value("trtype", "tcp");
        if (trtype != "tcp" && trtype != "TCP") return fail(EINVAL, "transport '{}': udrvd serves NVMe/TCP only (\"trtype\": \"tcp\")", trtype);
        const std::string host = a.value("traddr", "0.0.0.0");
        const std::string port = a.contains("trsvcid") ? (a["trsvcid"].is_string() ? a["trsvcid"].get<std::string>() : a["trsvcid"].dump())
                                                       : std::to_string(default_port);
        const std::string text = host.find(':') != std::string::npos ? "[" + host + "]:" + port : host + ":" + port;
        return UDRV_TRY(nvmf::parse_address(text, default_port)).text();
    }
    const std::string text = UDRV_TRY(str_param(p, "address", true));
    return UDRV_TRY(nvmf::parse_address(text, default_port)).text();
}

}  // namespace

json Daemon::nvmf_json(const NvmfSubsystemConfig& s) const {
    json j = nvmf_subsystem_json(s);
    j["allow_any_host"] = s.hosts.empty();
    if (auto it = nvmf_rt_.find(s.nqn); it != nvmf_rt_.end()) {
        j["state"] = it->second.state;
        if (!it->second.why.empty()) j["why"] = it->second.why;
        if (auto h = hosts_.find(it->second.host); h != hosts_.end()) j["host_pid"] = h->second.pid;
    }
    return j;
}

void Daemon::nvmf_update_discovery() {
    std::vector<DiscoveryLine> lines;
    for (const auto& [nqn, s] : nvmf_) {
        auto rt = nvmf_rt_.find(nqn);
        if (rt == nvmf_rt_.end() || rt->second.state != "serving") continue;
        std::uint16_t port_id = 1;
        for (const auto& l : s.listen)
            if (auto a = nvmf::parse_address(l)) lines.push_back({{nqn, *a, port_id++}, s.hosts});
    }
    std::lock_guard lock(discovery_mu_);
    discovery_lines_ = std::move(lines);
}

nvmf::Target& Daemon::discovery_target() {
    if (!discovery_) {
        nvmf::TargetOptions o;
        o.threads = 1;
        discovery_ = *nvmf::Target::create(o);  // valid options: cannot fail
        discovery_->set_discovery_source([this](const std::string& hostnqn) {
            std::vector<nvmf::DiscoveryEntry> out;
            std::lock_guard lock(discovery_mu_);
            for (const auto& l : discovery_lines_)
                if (l.hosts.empty() || std::find(l.hosts.begin(), l.hosts.end(), hostnqn) != l.hosts.end()) out.push_back(l.entry);
            return out;
        });
    }
    return *discovery_;
}

Result<void> Daemon::nvmf_discovery_listen(const std::string& address) {
    const nvmf::Address a = UDRV_TRY(nvmf::parse_address(address, 8009));
    UDRV_TRY(front_listen(a.text()));
    if (std::find(discovery_listen_.begin(), discovery_listen_.end(), a.text()) == discovery_listen_.end()) discovery_listen_.push_back(a.text());
    return {};
}

// ---- the listeners ----

Result<void> Daemon::front_listen(const std::string& address) {
    const nvmf::Address a = UDRV_TRY(nvmf::parse_address(address));
    const std::string key = a.text();
    if (front_listeners_.contains(key)) return {};
    Fd fd = UDRV_TRY(nvmf::listen_socket(a));
    const int raw = fd.get();
    UDRV_TRY(poller_->add(raw, EPOLLIN, [this, key, raw](std::uint32_t) { front_accept(key, raw); }));
    front_listeners_[key] = std::move(fd);
    pr_info("udrvd: nvmf: listening on {} (NVMe/TCP)", key);
    return {};
}

// Listeners nobody names any more close.
void Daemon::front_sync() {
    std::set<std::string> wanted(discovery_listen_.begin(), discovery_listen_.end());
    for (const auto& [nqn, s] : nvmf_) wanted.insert(s.listen.begin(), s.listen.end());
    for (auto it = front_listeners_.begin(); it != front_listeners_.end();) {
        if (wanted.contains(it->first)) {
            ++it;
            continue;
        }
        poller_->remove(it->second.get());
        pr_info("udrvd: nvmf: no longer listening on {}", it->first);
        it = front_listeners_.erase(it);
    }
}

void Daemon::front_accept(const std::string& local, int listen_fd) {
    while (auto c = nvmf::accept_connection(listen_fd)) {
        auto fc = std::make_unique<FrontConn>();
        fc->fd = std::move(c->first);
        fc->peer = std::move(c->second);
        fc->local = local;
        const int fd = fc->fd.get();
        if (!poller_->add(fd, EPOLLIN, [this, fd](std::uint32_t) { front_read(fd); })) continue;
        // A connection that does not say what it wants within 10 s goes.
        fc->timer = poller_->after(std::chrono::seconds(10), [this, fd] { front_close(fd, "no Connect within 10 s"); });
        front_conns_[fd] = std::move(fc);
    }
}

void Daemon::front_close(int fd, const std::string& why) {
    auto it = front_conns_.find(fd);
    if (it == front_conns_.end()) return;
    if (!why.empty()) pr_info("udrvd: nvmf: {} on {}: {}", it->second->peer, it->second->local, why);
    poller_->remove(fd);
    poller_->cancel(it->second->timer);
    front_conns_.erase(it);
}

void Daemon::front_read(int fd) {
    auto it = front_conns_.find(fd);
    if (it == front_conns_.end()) return;
    FrontConn& fc = *it->second;
    std::array<std::byte, 16384> buf;
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n == 0) return front_close(fd, "closed before its Connect");
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        return front_close(fd, fmt::format("receiving: {}", std::strerror(errno)));
    }
    const auto step = fc.hs.feed(std::span(buf.data(), static_cast<std::size_t>(n)));
    if (auto reply = fc.hs.take_reply(); !reply.empty()) (void)::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (step == nvmf::Handshake::Step::failed) return front_close(fd, fc.hs.error() + ": ended with a C2HTermReq");
    if (step == nvmf::Handshake::Step::routed) front_route(fc);
}

void Daemon::front_route(FrontConn& fc) {
    const int fd = fc.fd.get();
    poller_->remove(fd);
    poller_->cancel(fc.timer);
    auto node = front_conns_.extract(fd);
    FrontConn& c = *node.mapped();
    const std::string& nqn = c.hs.subnqn();
    // The subsystem's own host, if it serves it on this listener; else udrvd's target answers (discovery,
    // or a Connect Invalid Parameters that names the subsystem). A configured subsystem whose host is not
    // serving it now (restarting) gets no answer but a closed connection: the initiator retries after its
    // reconnect delay, where a refusal (DNR) would make it give up.
    if (auto s = nvmf_.find(nqn); s != nvmf_.end()) {
        auto rt = nvmf_rt_.find(nqn);
        if (rt == nvmf_rt_.end() || rt->second.state != "serving") {
            pr_info("udrvd: nvmf: {} wants {}, which is not served now ({}): closed, to be retried", c.peer, nqn,
                    rt == nvmf_rt_.end() ? "not set up" : rt->second.why);
            return;  // c (and its socket) goes with the node
        }
    }
    if (auto s = nvmf_.find(nqn); s != nvmf_.end()) {
        auto rt = nvmf_rt_.find(nqn);
        const auto& l = s->second.listen;
        if (rt != nvmf_rt_.end() && rt->second.state == "serving" && std::find(l.begin(), l.end(), c.local) != l.end()) {
            if (auto h = hosts_.find(rt->second.host); h != hosts_.end() && h->second.ready && h->second.ch) {
                const auto pending = c.hs.take_pending();
                static constexpr char hex[] = "0123456789abcdef";
                std::string text;
                text.reserve(pending.size() * 2);
                for (std::byte b : pending) {
                    text.push_back(hex[std::to_integer<unsigned>(b) >> 4]);
                    text.push_back(hex[std::to_integer<unsigned>(b) & 15]);
                }
                json m = {{"type", "nvmf_connection"}, {"peer", c.peer}, {"hdgst", c.hs.hdgst()}, {"ddgst", c.hs.ddgst()},
                          {"max_h2c_data", c.hs.max_h2c_data()}, {"pending", text}};
                if (auto sent = h->second.ch.send(m, fd); sent) return;  // the host has its own copy; ours closes
                else pr_warn("udrvd: nvmf: handing {} to host {}: {}", c.peer, h->second.id, sent.error().message());
            }
        }
    }
    discovery_target().adopt(std::move(c.fd), c.peer, c.hs.hdgst(), c.hs.ddgst(), c.hs.max_h2c_data(), c.hs.take_pending());
}

void Daemon::nvmf_withdraw(const std::string& nqn) {
    auto rt = nvmf_rt_.find(nqn);
    if (rt == nvmf_rt_.end()) return;
    if (auto h = hosts_.find(rt->second.host); h != hosts_.end() && h->second.ready && h->second.ch) {
        const std::uint64_t seq = ++h->second.seq;
        if (h->second.ch.send({{"type", "call"}, {"seq", seq}, {"method", "nvmf_subsystem_remove"}, {"params", {{"nqn", nqn}}}}))
            h->second.calls[seq] = PendingCall{Responder{}, [](json j) -> Result<json> { return j; }, {}};
    }
    rt->second.host = 0;
}

void Daemon::nvmf_apply(const std::string& nqn, Responder r) {
    auto it = nvmf_.find(nqn);
    if (it == nvmf_.end()) return r.error(Error(ENOENT, fmt::format("no subsystem {} (udrv rpc nvmf_get_subsystems)", nqn)));
    const NvmfSubsystemConfig& s = it->second;
    NvmfRuntime& rt = nvmf_rt_[nqn];
    auto waiting = [&](std::string why) {
        rt.state = "waiting";
        rt.why = std::move(why);
        nvmf_update_discovery();
        r.result(nvmf_json(s));
    };
    if (s.namespaces.empty()) return waiting("no namespace yet (nvmf_subsystem_add_ns)");
    // The host that publishes every namespace's block device serves the subsystem.
    Host* server = nullptr;
    json namespaces = json::array();
    for (const auto& n : s.namespaces) {
        const std::string path = udrv::detail::normalize_class_path(n.device);
        Host* found = nullptr;
        std::string local;
        for (auto& [id, h] : hosts_) {
            if (!h.ready || !h.ch) continue;
            for (const auto& c : h.classdevs) {
                const json& info = c["info"];
                if (c.value("class", "") == "block" && (info.value("name", "") == n.device || info.value("path", "") == path)) {
                    found = &h;
                    local = info.value("local_name", "");
                }
            }
        }
        if (!found) return waiting(fmt::format("{} is not published (udrv bind its device; udrv block list)", n.device));
        if (server && server != found)
            return waiting(fmt::format("its namespaces are in different driver hosts ({} and {}): give their devices one host "
                                       "(host = \"name\" in [[device]])", server->name, found->name));
        server = found;
        namespaces.push_back({{"nsid", n.nsid}, {"device", local}, {"name", n.device}});
    }
    if (s.listen.empty()) return waiting("no listener yet (nvmf_subsystem_add_listener)");
    if (rt.host && rt.host != server->id) nvmf_withdraw(nqn);
    json params = nvmf_subsystem_json(s);
    params["namespaces"] = namespaces;
    params["target"] = {{"cpus", cfg_.nvmf_cpus}, {"poll_us", cfg_.nvmf_poll_us}, {"device_interrupts", cfg_.nvmf_device_interrupts}};  // for the host's first subsystem
    const std::uint64_t seq = ++server->seq;
    if (auto sent = server->ch.send({{"type", "call"}, {"seq", seq}, {"method", "nvmf_subsystem_set"}, {"params", params}}); !sent)
        return r.error(sent.error());
    const unsigned host_id = server->id;
    server->calls[seq] = PendingCall{r,
                                     [this, nqn, host_id](json) -> Result<json> {
                                         auto i = nvmf_.find(nqn);
                                         if (i == nvmf_.end()) return fail(ENOENT, "subsystem {} was deleted meanwhile", nqn);
                                         NvmfRuntime& x = nvmf_rt_[nqn];
                                         const bool was = x.state == "serving";
                                         x.host = host_id;
                                         x.state = "serving";
                                         x.why.clear();
                                         if (!was) event(fmt::format("nvmf: {} served on {}", nqn, fmt::join(i->second.listen, ", ")));
                                         nvmf_update_discovery();
                                         return nvmf_json(i->second);
                                     },
                                     [this, nqn](const Error& e) {
                                         NvmfRuntime& x = nvmf_rt_[nqn];
                                         x.state = "failed";
                                         x.why = e.message();
                                         event(fmt::format("nvmf: {}: {}", nqn, e.message()));
                                         nvmf_update_discovery();
                                     }};
}

// After a host comes up (or back): the subsystems whose namespaces it publishes.
void Daemon::nvmf_apply_all() {
    for (const auto& [nqn, s] : nvmf_) {
        auto rt = nvmf_rt_.find(nqn);
        const bool served = rt != nvmf_rt_.end() && rt->second.state == "serving" && hosts_.contains(rt->second.host) &&
                            hosts_.at(rt->second.host).ready && !hosts_.at(rt->second.host).exited;
        if (!served) nvmf_apply(nqn, Responder{});
    }
}

void Daemon::register_nvmf_methods() {
    RpcServer& srv = *server_;

    srv.add("nvmf_create_subsystem", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto nqn = str_param(q.params, "nqn", true);
        if (!nqn) return invalid(r, nqn.error());
        if (auto ok = nvmf::check_nqn(*nqn); !ok) return invalid(r, ok.error());
        if (*nqn == nvmf::kDiscoveryNqn) return invalid(r, Error(EINVAL, "the discovery subsystem is udrvd's own (add a listener to it)"));
        if (nvmf_.contains(*nqn)) return r.error(Error(EEXIST, fmt::format("subsystem {} exists (nvmf_delete_subsystem first)", *nqn)));
        NvmfSubsystemConfig s;
        s.nqn = *nqn;
        if (auto v = str_param(q.params, "serial_number", false); v && !v->empty()) s.serial = *v;
        if (auto v = str_param(q.params, "model_number", false); v && !v->empty()) s.model = *v;
        if (s.serial.size() > 20 || s.model.size() > 40) return invalid(r, Error(EINVAL, "serial_number is at most 20 characters, model_number 40"));
        if (q.params.contains("hosts") && q.params["hosts"].is_array())
            for (const auto& h : q.params["hosts"])
                if (h.is_string()) s.hosts.push_back(h.get<std::string>());
        for (const auto& h : s.hosts)
            if (auto ok = nvmf::check_nqn(h); !ok) return invalid(r, ok.error());
        nvmf_[s.nqn] = s;
        event(fmt::format("nvmf: subsystem {} created", s.nqn));
        nvmf_apply(s.nqn, r);
    });

    srv.add("nvmf_delete_subsystem", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto nqn = str_param(q.params, "nqn", true);
        if (!nqn) return invalid(r, nqn.error());
        if (!nvmf_.contains(*nqn)) return r.error(Error(ENOENT, fmt::format("no subsystem {}", *nqn)));
        nvmf_withdraw(*nqn);
        nvmf_.erase(*nqn);
        nvmf_rt_.erase(*nqn);
        nvmf_update_discovery();
        front_sync();
        event(fmt::format("nvmf: subsystem {} deleted: its hosts are disconnected", *nqn));
        r.result(true);
    });

    srv.add("nvmf_subsystem_add_ns", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto nqn = str_param(q.params, "nqn", true);
        if (!nqn) return invalid(r, nqn.error());
        auto it = nvmf_.find(*nqn);
        if (it == nvmf_.end()) return r.error(Error(ENOENT, fmt::format("no subsystem {}", *nqn)));
        const json ns = q.params.contains("namespace") ? q.params["namespace"] : q.params;
        std::string device = ns.is_object() ? ns.value("bdev_name", ns.value("device", "")) : "";
        if (device.empty()) return invalid(r, Error(EINVAL, "missing the block device: {\"namespace\": {\"bdev_name\": \"nvme0n1\"}}"));
        std::uint32_t nsid = ns.value("nsid", 0u);
        auto& s = it->second;
        if (nsid == 0) {
            nsid = 1;
            while (std::any_of(s.namespaces.begin(), s.namespaces.end(), [&](const auto& n) { return n.nsid == nsid; })) ++nsid;
        }
        if (nsid > nvmf::kMaxNamespaces) return invalid(r, Error(EINVAL, fmt::format("nsid {} (1-{})", nsid, nvmf::kMaxNamespaces)));
        for (const auto& n : s.namespaces) {
            if (n.nsid == nsid) return r.error(Error(EEXIST, fmt::format("{} has a namespace {} already ({})", *nqn, nsid, n.device)));
            if (n.device == device) return r.error(Error(EEXIST, fmt::format("{} is namespace {} of {} already", device, n.nsid, *nqn)));
        }
        s.namespaces.push_back({nsid, device});
        std::sort(s.namespaces.begin(), s.namespaces.end(), [](const auto& a, const auto& b) { return a.nsid < b.nsid; });
        nvmf_apply(*nqn, r);
    });

    srv.add("nvmf_subsystem_remove_ns", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto nqn = str_param(q.params, "nqn", true);
        if (!nqn) return invalid(r, nqn.error());
        auto it = nvmf_.find(*nqn);
        if (it == nvmf_.end()) return r.error(Error(ENOENT, fmt::format("no subsystem {}", *nqn)));
        const std::uint32_t nsid = q.params.value("nsid", 0u);
        auto& v = it->second.namespaces;
        if (!std::erase_if(v, [&](const auto& n) { return n.nsid == nsid; }))
            return r.error(Error(ENOENT, fmt::format("{} has no namespace {}", *nqn, nsid)));
        if (v.empty()) nvmf_withdraw(*nqn);
        nvmf_apply(*nqn, r);
    });

    srv.add("nvmf_subsystem_add_listener", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto nqn = str_param(q.params, "nqn", true);
        if (!nqn) return invalid(r, nqn.error());
        const bool discovery = *nqn == nvmf::kDiscoveryNqn;
        auto addr = listen_param(q.params, discovery ? 8009 : 4420);
        if (!addr) return invalid(r, addr.error());
        if (discovery) {
            if (auto ok = nvmf_discovery_listen(*addr); !ok) return r.error(ok.error());
            event(fmt::format("nvmf: discovery on {}", *addr));
            return r.result({{"nqn", *nqn}, {"listen", discovery_listen_}});
        }
        auto it = nvmf_.find(*nqn);
        if (it == nvmf_.end()) return r.error(Error(ENOENT, fmt::format("no subsystem {}", *nqn)));
        if (auto ok = front_listen(*addr); !ok) return r.error(ok.error());
        auto& l = it->second.listen;
        if (std::find(l.begin(), l.end(), *addr) == l.end()) l.push_back(*addr);
        nvmf_apply(*nqn, r);
    });

    srv.add("nvmf_subsystem_add_host", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto nqn = str_param(q.params, "nqn", true);
        auto host = str_param(q.params, "host", true);
        if (!nqn) return invalid(r, nqn.error());
        if (!host) return invalid(r, host.error());
        if (auto ok = nvmf::check_nqn(*host); !ok) return invalid(r, ok.error());
        auto it = nvmf_.find(*nqn);
        if (it == nvmf_.end()) return r.error(Error(ENOENT, fmt::format("no subsystem {}", *nqn)));
        auto& h = it->second.hosts;
        if (std::find(h.begin(), h.end(), *host) == h.end()) h.push_back(*host);
        nvmf_apply(*nqn, r);
    });

    srv.add("nvmf_subsystem_remove_host", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto nqn = str_param(q.params, "nqn", true);
        auto host = str_param(q.params, "host", true);
        if (!nqn) return invalid(r, nqn.error());
        if (!host) return invalid(r, host.error());
        auto it = nvmf_.find(*nqn);
        if (it == nvmf_.end()) return r.error(Error(ENOENT, fmt::format("no subsystem {}", *nqn)));
        std::erase(it->second.hosts, *host);
        nvmf_apply(*nqn, r);
    });

    srv.add("nvmf_get_subsystems", Access::read, [this](const rpc::Request&, const Peer&, Responder r) {
        json out = json::array();
        if (!discovery_listen_.empty()) out.push_back({{"nqn", nvmf::kDiscoveryNqn}, {"listen", discovery_listen_}, {"state", "serving"}});
        for (const auto& [nqn, s] : nvmf_) out.push_back(nvmf_json(s));
        r.result(out);
    });
}

}  // namespace udrv::daemon
