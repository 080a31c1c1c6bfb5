// udrvd's JSON-RPC methods (docs/udrvd.md documents each with its parameters and errors).
#include <algorithm>

#include "daemon.hpp"
#include "rpc_params.hpp"
#include "udrv/classdev.hpp"
#include "udrv/log.hpp"
#include "udrv/module.hpp"
#include "udrv/pci.hpp"
#include "udrv/ublk.hpp"

namespace udrv::daemon {

using nlohmann::json;

namespace {

// Module parameters as the command line gives them ("k=v" strings) or as an object ({"k": v}).
Result<std::vector<std::string>> module_params(const json& p) {
    std::vector<std::string> out;
    if (!p.is_object() || !p.contains("params")) return out;
    const json& v = p["params"];
    if (v.is_array()) {
        for (const auto& e : v) {
            if (!e.is_string()) return fail(EINVAL, "\"params\" entries must be \"key=value\" strings");
            out.push_back(e.get<std::string>());
        }
    } else if (v.is_object()) {
        for (const auto& [k, x] : v.items()) {
            if (x.is_string()) out.push_back(k + "=" + x.get<std::string>());
            else if (x.is_boolean()) out.push_back(k + (x.get<bool>() ? "=y" : "=n"));
            else if (x.is_number_integer()) out.push_back(k + "=" + x.dump());
            else return fail(EINVAL, "parameter {} must be a string, integer or boolean", k);
        }
    } else {
        return fail(EINVAL, "\"params\" must be an array of \"key=value\" or an object");
    }
    return out;
}

}  // namespace

void Daemon::register_methods() {
    RpcServer& s = *server_;

    s.add("rpc_get_methods", Access::read, [this](const rpc::Request&, const Peer&, Responder r) { r.result(server_->method_names()); });

    s.add("get_version", Access::read, [](const rpc::Request&, const Peer&, Responder r) {
        r.result({{"version", UDRV_VERSION}, {"module_abi", kModuleAbi}, {"host_protocol", kHostProtocol}});
    });

    s.add("lsmod", Access::read, [this](const rpc::Request&, const Peer&, Responder r) {
        json out = json::array();
        for (const auto& m : modules_) {
            json users = json::array();
            for (const auto& [id, h] : hosts_)
                for (const auto& hm : h.modules)
                    if (hm.value("name", "") == m.name) {
                        if (h.misc) {
                            for (const auto& u : hm.value("used_by", json::array())) users.push_back(u);
                        } else {
                            for (const auto& d : h.devices) users.push_back(d);
                        }
                    }
            for (const auto& o : modules_)
                for (const auto& dep : o.info.depends())
                    if (dep == m.name) users.push_back(o.name);
            out.push_back({{"name", m.name}, {"origin", m.origin}, {"params", m.params}, {"driver", m.is_driver()}, {"builtin", m.builtin},
                           {"file", m.file.string()}, {"used_by", users}, {"version", std::string(m.info.get("version").value_or(""))}});
        }
        r.result(out);
    });

    s.add("insmod", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto name = str_param(q.params, "name", true);
        auto params = module_params(q.params);
        if (!name) return invalid(r, name.error());
        if (!params) return invalid(r, params.error());
        if (auto ok = insmod(*name, *params, "insmod"); !ok) return r.error(ok.error());
        const Module& m = *std::find_if(modules_.begin(), modules_.end(), [&](const Module& x) { return x.name == *name; });
        if (m.is_driver()) return r.result({{"name", *name}, {"driver", true}});
        // A module that drives no device runs in the modules host: its init runs there now.
        auto misc = std::find_if(hosts_.begin(), hosts_.end(), [](const auto& kv) { return kv.second.misc && !kv.second.stopping; });
        if (misc == hosts_.end() || !misc->second.ready) {  // loaded when the modules host is up
            misc_waiters_[*name].push_back(r);
            if (misc == hosts_.end())
                if (auto id = start_host("modules", {}, true); !id) {
                    std::erase_if(modules_, [&](const Module& x) { return x.name == *name; });
                    misc_waiters_.erase(*name);
                    r.error(id.error());
                }
            return;
        }
        misc_waiters_[*name].push_back(r);
        load_misc_modules(misc->second);
    });

    s.add("rmmod", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto name = str_param(q.params, "name", true);
        if (!name) return invalid(r, name.error());
        auto it = std::find_if(modules_.begin(), modules_.end(), [&](const Module& x) { return x.name == *name; });
        if (it == modules_.end()) return r.error(Error(ENOENT, fmt::format("module {} is not loaded (udrv lsmod)", *name)));
        std::vector<std::string> users;
        for (const auto& [id, h] : hosts_) {
            if (h.misc) continue;
            for (const auto& hm : h.modules)
                if (hm.value("name", "") == *name)
                    for (const auto& d : h.devices) users.push_back(fmt::format("{} (host {}, pid {})", d, h.id, h.pid));
        }
        for (const auto& [id, d] : devices_)
            if (d.driver_used == *name && !d.host && d.state != DevState::failed) users.push_back(fmt::format("{} ({})", id, state_name(d.state)));
        for (const auto& o : modules_)
            for (const auto& dep : o.info.depends())
                if (dep == *name) users.push_back("module " + o.name);
        if (!users.empty())
            return r.error(Error(EBUSY, fmt::format("module {} is in use by {}: unbind those devices (udrv unbind ADDRESS) or remove those "
                                                    "modules first", *name, fmt::join(users, ", "))));
        if (it->is_driver()) {
            modules_.erase(it);
            event(fmt::format("module {} removed", *name));
            return r.result({{"name", *name}});
        }
        auto misc = std::find_if(hosts_.begin(), hosts_.end(), [](const auto& kv) { return kv.second.misc && kv.second.ready; });
        if (misc == hosts_.end()) {
            modules_.erase(it);
            return r.result({{"name", *name}});
        }
        Host& h = misc->second;
        const std::uint64_t seq = ++h.seq;
        if (auto sent = h.ch.send({{"type", "unload"}, {"seq", seq}, {"name", *name}}); !sent) return r.error(sent.error());
        h.calls[seq] = PendingCall{r, [this, n = *name](json) -> Result<json> {
                                       std::erase_if(modules_, [&](const Module& x) { return x.name == n; });
                                       event(fmt::format("module {} removed", n));
                                       return json{{"name", n}};
                                   },
                                   {}};
    });

    s.add("bind", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto addr = str_param(q.params, "address", true);
        auto driver = str_param(q.params, "driver", false);
        auto host = str_param(q.params, "host", false);
        auto on_stop = str_param(q.params, "on_stop", false);
        if (!addr) return invalid(r, addr.error());
        if (!driver || !host || !on_stop) return invalid(r, (!driver ? driver : !host ? host : on_stop).error());
        if (!host->empty() && !valid_host_name(*host)) return invalid(r, Error(EINVAL, "host names hold letters, digits, '-', '_', '.'"));
        if (!on_stop->empty() && *on_stop != "kernel" && *on_stop != "vfio")
            return invalid(r, Error(EINVAL, "on_stop is \"kernel\" or \"vfio\""));
        if (!driver->empty())
            if (auto m = find_module(*driver); !m) return r.error(m.error());
        auto d = manage_pci({*addr, *driver, *host, *on_stop != "vfio"});
        if (!d) return r.error(d.error());
        ManagedDevice& dev = **d;
        try_start(dev);
        if (dev.host) return hosts_.at(dev.host).waiting_ready.push_back(r);
        r.result({{"device", dev.id}, {"state", state_name(dev.state)}, {"why", dev.why}});
    });

    s.add("unbind", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto addr = str_param(q.params, "address", true);
        if (!addr) return invalid(r, addr.error());
        std::string id = *addr;
        if (auto a = pci::Address::parse(id)) id = a->to_string();
        auto it = devices_.find(id);
        if (it == devices_.end()) return r.error(Error(ENOENT, fmt::format("{} is not managed by udrvd (udrv device list shows those that are)", id)));
        ManagedDevice& d = it->second;
        if (d.host) {
            d.unbind_waiters.push_back(r);
            (void)unmanage(id, d.return_to_kernel);
            return;
        }
        auto done = unmanage(id, d.return_to_kernel);
        done ? r.result({{"device", id}, {"unbound", true}}) : r.error(done.error());
    });

    s.add("platform_add", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto desc = str_param(q.params, "description", true);
        auto host = str_param(q.params, "host", false);
        if (!desc) return invalid(r, desc.error());
        if (!host) return invalid(r, host.error());
        auto d = manage_platform({*desc, *host});
        if (!d) return r.error(d.error());
        try_start(**d);
        if ((*d)->host) return hosts_.at((*d)->host).waiting_ready.push_back(r);
        r.result({{"device", (*d)->id}, {"state", state_name((*d)->state)}, {"why", (*d)->why}});
    });

    s.add("device_list", Access::read, [this](const rpc::Request&, const Peer&, Responder r) {
        json out = json::array();
        for (const auto& [id, d] : devices_) {
            json names = json::array();
            const Host* h = d.host && hosts_.contains(d.host) ? &hosts_.at(d.host) : nullptr;
            if (h)
                for (const auto& c : h->classdevs)
                    if (c["info"].value("device", "") == id || d.platform) names.push_back(c["info"].value("name", ""));
            out.push_back({{"device", id}, {"bus", d.platform ? "platform" : "pci"}, {"state", state_name(d.state)}, {"why", d.why},
                           {"driver", d.driver_used.empty() ? d.driver : d.driver_used}, {"host", d.host}, {"pid", h ? h->pid : 0},
                           {"restarts", d.restarts_total}, {"classdevs", names}, {"on_stop", d.return_to_kernel ? "kernel" : "vfio"}});
        }
        r.result(out);
    });

    s.add("host_list", Access::read, [this](const rpc::Request&, const Peer&, Responder r) {
        json out = json::array();
        const auto now = clock::now();
        for (const auto& [id, h] : hosts_)
            out.push_back({{"host", id}, {"name", h.name}, {"pid", h.pid}, {"ready", h.ready}, {"devices", h.devices}, {"modules", h.modules},
                           {"uptime_s", std::chrono::duration_cast<std::chrono::seconds>(now - h.started).count()}});
        r.result(out);
    });

    for (const char* cls : {"block", "net", "nvme"}) {
        s.add(std::string(cls) + "_list", Access::read, [this, cls = std::string(cls)](const rpc::Request&, const Peer&, Responder r) {
            json out = json::array();
            for (const auto& [id, h] : hosts_)
                for (const auto& c : h.classdevs)
                    if (c.value("class", "") == cls) out.push_back(c["info"]);
            r.result(out);
        });
    }

    s.add("stats", Access::read, [this](const rpc::Request&, const Peer&, Responder r) {
        // Every ready host is asked; the answer goes out when the last has replied (or died).
        struct Gather {
            Responder r;
            json out = {{"hosts", json::array()}, {"devices", json::array()}};
            std::size_t pending = 0;
        };
        auto g = std::make_shared<Gather>();
        g->r = r;
        for (const auto& [id, d] : devices_)
            g->out["devices"].push_back({{"device", id}, {"state", state_name(d.state)}, {"restarts", d.restarts_total}, {"why", d.why}});
        std::vector<Host*> ready;
        for (auto& [id, h] : hosts_)
            if (h.ready && h.ch) ready.push_back(&h);
        g->pending = ready.size();
        if (ready.empty()) return r.result(g->out);
        for (Host* h : ready) {
            const std::uint64_t seq = ++h->seq;
            json names = json::object();  // local -> global class names of this host
            for (const auto& c : h->classdevs) names[c["info"].value("local_name", "")] = c["info"].value("name", "");
            auto finish = [g, id = h->id, pid = h->pid, names](json res) -> Result<json> {
                json net = json::object();
                const json host_net = res.value("net", json::object());
                for (const auto& [local, st] : host_net.items()) net[names.value(local, local)] = st;
                json jobs = json::array();
                for (auto j : res.value("jobs", json::array())) {
                    j["device"] = names.value(j.value("device", ""), j.value("device", ""));
                    jobs.push_back(j);
                }
                g->out["hosts"].push_back({{"host", id}, {"pid", pid}, {"net", net}, {"jobs", jobs},
                                           {"nvmf_controllers", res.value("nvmf_controllers", json::array())}});
                if (--g->pending == 0) g->r.result(g->out);
                return json();
            };
            auto skip = [g](const Error&) {
                if (--g->pending == 0) g->r.result(g->out);
            };
            if (!h->ch.send({{"type", "call"}, {"seq", seq}, {"method", "stats"}, {"params", json::object()}})) {
                skip(Error(EIO, ""));
                continue;
            }
            h->calls[seq] = PendingCall{Responder{}, finish, skip};  // the answer is g's, once every host has replied
        }
    });

    s.add("block_perf", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto dev = str_param(q.params, "device", true);
        if (!dev) return invalid(r, dev.error());
        forward(*dev, "block_perf", q.params, r);
    });

    s.add("net_send", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto dev = str_param(q.params, "device", true);
        if (!dev) return invalid(r, dev.error());
        forward(*dev, "net_send", q.params, r);
    });

    s.add("ublk_export", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto dev = str_param(q.params, "device", true);
        if (!dev) return invalid(r, dev.error());
        const unsigned queues = q.params.is_object() ? q.params.value("queues", 1u) : 1u;
        const unsigned depth = q.params.is_object() ? q.params.value("depth", 64u) : 64u;
        export_ublk(*dev, queues, depth, r);
    });

    s.add("ublk_unexport", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto dev = str_param(q.params, "device", true);
        if (!dev) return invalid(r, dev.error());
        const std::string path = udrv::detail::normalize_class_path(*dev);
        auto it = std::find_if(exports_.begin(), exports_.end(), [&](const Export& x) {
            return x.name == *dev || x.device_path == path || ublk::block_path(x.dev_id) == *dev;
        });
        if (it == exports_.end()) return r.error(Error(ENOENT, fmt::format("{} is not exported (udrv export list)", *dev)));
        const Export x = *it;
        Host* h = host_of(x.device_id);
        if (!h || !h->ready || !h->ch) {  // no host serves it: delete it here
            drop_exports(x.device_id, "unexported");
            return r.result({{"device", x.name}, {"path", ublk::block_path(x.dev_id)}});
        }
        const std::uint64_t seq = ++h->seq;
        if (auto sent = h->ch.send({{"type", "call"}, {"seq", seq}, {"method", "ublk_unexport"}, {"params", {{"dev_id", x.dev_id}}}}); !sent)
            return r.error(sent.error());
        h->calls[seq] = PendingCall{r,
                                    [this, x](json) -> Result<json> {
                                        std::erase_if(exports_, [&](const Export& e) { return e.dev_id == x.dev_id; });
                                        event(fmt::format("{}: {} removed (unexported)", x.name, ublk::block_path(x.dev_id)));
                                        return json{{"device", x.name}, {"path", ublk::block_path(x.dev_id)}};
                                    },
                                    {}};
    });

    s.add("export_list", Access::read, [this](const rpc::Request&, const Peer&, Responder r) {
        json out = json::array();
        for (const auto& x : exports_)
            out.push_back({{"type", "ublk"}, {"device", x.name}, {"device_path", x.device_path}, {"path", ublk::block_path(x.dev_id)},
                           {"dev_id", x.dev_id}, {"queues", x.queues}, {"depth", x.depth}, {"state", x.state}});
        r.result(out);
    });

    s.add("get_config", Access::read, [this](const rpc::Request&, const Peer&, Responder r) {
        r.result(json::parse(config_to_json(running_config()).dump()));
    });

    s.add("save_config", Access::change, [this](const rpc::Request& q, const Peer&, Responder r) {
        auto path = str_param(q.params, "path", false);
        if (!path) return invalid(r, path.error());
        const std::filesystem::path file = path->empty() ? opt_.config_file : std::filesystem::path(*path);
        if (file.empty()) return r.error(Error(EINVAL, "udrvd runs without --config: say where to save (\"path\")"));
        if (auto ok = save_config(running_config(), file); !ok) return r.error(ok.error());
        event(fmt::format("configuration saved to {}", file.string()));
        r.result({{"path", file.string()}});
    });

    s.add("get_events", Access::read, [this](const rpc::Request& q, const Peer&, Responder r) {
        const std::uint64_t since = q.params.is_object() ? q.params.value("since", std::uint64_t{0}) : 0;
        json out = json::array();
        for (const auto& e : events_)
            if (e.value("seq", std::uint64_t{0}) > since) out.push_back(e);
        r.result(out);
    });
}

}  // namespace udrv::daemon
