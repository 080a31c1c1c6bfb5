#include "daemon.hpp"

#include <grp.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include <fmt/chrono.h>
#include <fmt/ranges.h>

#include "uevent.hpp"
#include "udrv/ublk.hpp"
#include "udrv/bind.hpp"
#include "udrv/classdev.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"
#include "udrv/modprobe.hpp"
#include "udrv/modsig.hpp"
#include "udrv/module.hpp"
#include "udrv/pci.hpp"
#include "udrv/platform.hpp"

#if UDRV_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace udrv::daemon {

using nlohmann::json;

namespace {

std::string exit_text(int status) {
    if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        const int sig = WTERMSIG(status);
        const char* name = sigabbrev_np(sig);
        return fmt::format("killed by signal {} (SIG{}){}", sig, name ? name : "?", WCOREDUMP(status) ? ", core dumped" : "");
    }
    return fmt::format("ended with status {:#x}", status);
}

// "nvme0n1" -> ("nvme", 0, "n1"); a name without a number keeps no number.
struct SplitName {
    std::string prefix;
    std::optional<unsigned> number;
    std::string rest;
};
SplitName split_name(const std::string& n) {
    std::size_t i = 0;
    while (i < n.size() && !std::isdigit(static_cast<unsigned char>(n[i]))) ++i;
    std::size_t j = i;
    while (j < n.size() && j - i < 6 && std::isdigit(static_cast<unsigned char>(n[j]))) ++j;
    if (i == j || i == 0) return {n, std::nullopt, ""};
    return {n.substr(0, i), static_cast<unsigned>(std::stoul(n.substr(i, j - i))), n.substr(j)};
}

std::vector<std::string> builtin_names(const std::vector<Modinfo>& mods) {
    std::vector<std::string> out;
    for (const auto& m : mods) out.emplace_back(m.name());
    return out;
}

// The host program's built-in modules: it prints their metadata (fields in order) as JSON.
Result<std::vector<Modinfo>> read_builtin_modinfo(const std::filesystem::path& host) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return fail_errno("pipe");
    Fd rd(fds[0]), wr(fds[1]);
    const std::string path = host.string();
    const pid_t pid = ::fork();
    if (pid < 0) return fail_errno("fork");
    if (pid == 0) {
        ::dup2(wr.get(), 1);
        ::execl(path.c_str(), path.c_str(), "--builtin-modinfo", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    wr.reset();
    std::string text;
    char buf[65536];
    for (ssize_t n; (n = ::read(rd.get(), buf, sizeof buf)) != 0;) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || text.size() > (16u << 20)) break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return fail(ENOEXEC, "{} --builtin-modinfo {}", path, exit_text(status));
    auto j = json::parse(text, nullptr, false);
    if (!j.is_array()) return fail(EPROTO, "{} --builtin-modinfo printed no JSON array", path);
    std::vector<Modinfo> out;
    for (const auto& m : j) {
        Modinfo info;
        for (const auto& kv : m)
            if (kv.is_array() && kv.size() == 2 && kv[0].is_string() && kv[1].is_string())
                info.fields.emplace_back(kv[0].get<std::string>(), kv[1].get<std::string>());
        out.push_back(std::move(info));
    }
    return out;
}

// An error a host sent ({"code": -errno, "message": "... (ENAME)"}) as the Error it was.
Error error_from_json(const json& e) {
    const int code = e.is_object() ? -e.value("code", -EIO) : EIO;
    std::string msg = e.is_object() ? e.value("message", std::string("failed")) : std::string("failed");
    const std::string suffix = fmt::format(" ({})", errno_name(code));
    if (msg.ends_with(suffix)) msg.resize(msg.size() - suffix.size());
    return Error(code > 0 ? code : EIO, std::move(msg));
}

}  // namespace

const char* Daemon::state_name(DevState s) {
    switch (s) {
        case DevState::waiting: return "waiting";
        case DevState::starting: return "starting";
        case DevState::running: return "running";
        case DevState::restarting: return "restarting";
        case DevState::failed: return "failed";
        case DevState::removed: return "removed";
        case DevState::stopping: return "stopping";
    }
    return "?";
}

bool Daemon::Module::is_driver() const {
    for (auto a : info.get_all("alias"))
        if (a.starts_with("pci:") || a.starts_with("of:")) return true;
    return false;
}

Result<std::unique_ptr<Daemon>> Daemon::create(Options o) {
    std::unique_ptr<Daemon> d(new Daemon(std::move(o)));
    UDRV_TRY(d->init());
    return d;
}

// The discovery target's thread reads discovery_lines_ (declared after it): it stops first.
Daemon::~Daemon() { discovery_.reset(); }

Result<void> Daemon::init() {
    if (!opt_.config_file.empty()) cfg_ = UDRV_TRY(load_config(opt_.config_file));
    if (!cfg_.group.empty()) {
        group* g = ::getgrnam(cfg_.group.c_str());
        if (!g) return fail(ENOENT, "{}: group '{}' does not exist (create it: groupadd {}), or leave 'group' out", opt_.config_file.string(),
                            cfg_.group, cfg_.group);
        group_ = g->gr_gid;
    }
    std::error_code ec;
    if (!std::filesystem::exists(opt_.host_binary, ec))
        return fail(ENOENT, "the driver host program {} is missing (it is built beside udrvd; --host-binary names another)",
                    opt_.host_binary.string());
    builtin_ = UDRV_TRY(read_builtin_modinfo(opt_.host_binary));
    poller_ = std::make_unique<Poller>(UDRV_TRY(Poller::create()));
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGTERM, SIGINT, SIGCHLD, SIGHUP}) sigaddset(&set, s);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    signals_ = Fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signals_) return fail_errno("signalfd");
    UDRV_TRY(poller_->add(signals_.get(), EPOLLIN, [this](std::uint32_t) {
        signalfd_siginfo si{};
        while (::read(signals_.get(), &si, sizeof si) == sizeof si) {
            if (si.ssi_signo == SIGCHLD) {
                int status = 0;
                for (pid_t pid; (pid = ::waitpid(-1, &status, WNOHANG)) > 0;) on_child_exit(pid, status);
            } else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
                if (!stopping_) pr_notice("udrvd: {} received: stopping", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
                shutdown();
            }
        }
    }));
    if (opt_.watch_uevents) {
        if (auto fd = open_uevent_socket()) {
            uevents_ = std::move(*fd);
            UDRV_TRY(poller_->add(uevents_.get(), EPOLLIN, [this](std::uint32_t) { on_uevent(); }));
        } else {
            pr_warn("udrvd: hot-plug events will not be seen: {}", fd.error().message());
        }
    }
    server_ = UDRV_TRY(RpcServer::listen(*poller_, opt_.socket, group_));
    register_methods();
    register_nvmf_methods();
    for (const auto& a : cfg_.nvmf_discovery) UDRV_TRY_CTX(nvmf_discovery_listen(a), "{}: [nvmf] discovery", opt_.config_file.string());
    for (const auto& sc : cfg_.nvmf_subsystems) {  // served once their namespaces' host is up
        for (const auto& a : sc.listen) UDRV_TRY_CTX(front_listen(a), "{}: subsystem {}", opt_.config_file.string(), sc.nqn);
        nvmf_[sc.nqn] = sc;
    }
    poller_->after(std::chrono::milliseconds(1000), [this] { watchdog_tick(); });

    for (const auto& m : cfg_.modules) UDRV_TRY_CTX(insmod(m.name, m.params, "config"), "{}: module {}", opt_.config_file.string(), m.name);
    // Modules that drive no device run now, in the modules host (loaded there once it is up).
    if (std::any_of(modules_.begin(), modules_.end(), [](const Module& m) { return !m.is_driver(); }))
        UDRV_TRY(start_host("modules", {}, true));
    // A configured device that is absent or cannot be taken now stays configured, with why: it is
    // taken when it appears (hot-plug), and save_config keeps it.
    for (const auto& dc : cfg_.devices) {
        if (auto d = manage_pci(dc); !d) {
            ManagedDevice& m = devices_[dc.address];
            m.id = dc.address;
            m.driver = dc.driver;
            m.host_name = dc.host;
            m.return_to_kernel = dc.return_to_kernel;
            m.state = d.error().code() == ENOENT || d.error().code() == ENODEV ? DevState::removed : DevState::failed;
            m.why = d.error().message();
            event(fmt::format("{}: configured, but not taken: {}", dc.address, m.why));
        }
    }
    for (const auto& pc : cfg_.platforms)
        if (auto d = manage_platform(pc); !d) pr_err("udrvd: {}: platform {}: {}", opt_.config_file.string(), pc.description, d.error().message());
    for (auto& [id, d] : devices_) try_start(d);
    return {};
}

// ---- modules ----

Result<Daemon::Module> Daemon::find_module(const std::string& name) const {
    for (auto& info : builtin_)
        if (info.name() == name) return Module{name, {}, {}, info, true, {}};
    for (const auto& dir : opt_.module_dirs) {
        std::filesystem::path f = dir / (name + ".so");
        std::error_code ec;
        if (!std::filesystem::exists(f, ec)) continue;
        auto infos = UDRV_TRY(read_modinfo(f));
        if (infos.size() != 1) return fail(ENOEXEC, "{}: holds {} modules; a loadable module file declares exactly one", f.string(), infos.size());
        return Module{name, {}, {}, std::move(infos.front()), false, f};
    }
    std::vector<std::string> where;
    for (const auto& dir : opt_.module_dirs) where.push_back(dir.string());
    return fail(ENOENT, "module {} not found: not built into the driver host ({}) nor in {}", name, fmt::join(builtin_names(builtin_), ", "),
                fmt::join(where, ", "));
}

// The hosts' loaders apply the signature policy when they load the module; udrvd applies it first,
// so that a refusal is the answer to insmod (or the device's reason), not a host that fails to start.
Result<void> Daemon::check_signature(const Module& m) {
    const modsig::Settings s = UDRV_TRY(modsig::settings_from_environment());
    if (s.policy == modsig::Policy::off) return {};
    const std::string image = UDRV_TRY(read_module_file(m.file));
    auto ring = modsig::Keyring::load(s.keyring_dir);
    Result<const modsig::Keyring*> ring_ptr = ring ? Result<const modsig::Keyring*>(&*ring) : std::unexpected(ring.error());
    auto verdict = UDRV_TRY(modsig::check(std::as_bytes(std::span(image)), s.policy, ring_ptr, m.file.string()));
    if (!verdict.warning.empty()) event(fmt::format("module {}: {}; loaded anyway (signature policy permissive): hosts tainted (E)", m.name, verdict.warning));
    return {};
}

Result<void> Daemon::insmod(const std::string& name, const std::vector<std::string>& params, const std::string& origin, bool start_waiting) {
    for (const auto& m : modules_)
        if (m.name == name) return fail(EEXIST, "module {} is already loaded (udrv lsmod)", name);
    Module m = UDRV_TRY(find_module(name));
    UDRV_TRY(parse_module_params(m.info, name, params));  // metadata only: no module code runs in udrvd
    if (!m.file.empty()) UDRV_TRY(check_signature(m));
    for (const std::string& dep : m.info.depends()) {
        if (std::none_of(modules_.begin(), modules_.end(), [&](const Module& x) { return x.name == dep; }))
            UDRV_TRY_CTX(insmod(dep, {}, "dependency", false), "{} depends on {}", name, dep);
    }
    m.params = params;
    m.origin = origin;
    modules_.push_back(std::move(m));
    const Module& added = modules_.back();
    event(fmt::format("module {} loaded ({}{}{})", name, origin, params.empty() ? "" : ", ", fmt::join(params, " ")));
    if (added.is_driver() && start_waiting) {
        for (auto& [id, d] : devices_)
            if (d.state == DevState::waiting) try_start(d);
    }
    return {};
}

// The driver for a device: the one named, a loaded module whose alias matches, a driver built into
// the hosts, else a module file in the module directories (through depmod's index where there is
// one, honouring modprobe.d's blacklist and alias lines). `options` receives modprobe.d's options for
// a module to be loaded. The error says why none.
Result<std::string> Daemon::driver_for(const ManagedDevice& d, std::vector<std::string>* options) {
    if (!d.driver.empty()) return d.driver;
    auto info = pci::read_device(opt_.sysfs / "bus/pci/devices" / d.id);
    if (!info) return std::unexpected(info.error());
    const std::string alias = pci::modalias(*info);
    for (const auto& m : modules_)
        if (m.info.matches(alias)) return m.name;
    for (const auto& bi : builtin_)
        if (bi.matches(alias)) return std::string(bi.name());
    auto config = modprobe::read_config();
    if (!config) return std::unexpected(config.error());
    for (const auto& w : config->warnings) event(w);
    std::vector<std::pair<std::string, std::string>> blacklisted;
    for (const auto& dir : opt_.module_dirs) {
        std::error_code ec;
        auto index = std::filesystem::exists(dir / "modules.dep", ec) ? modprobe::read(dir) : modprobe::scan(dir);
        if (!index) {
            event(fmt::format("{}: {}", dir.string(), index.error().message()));
            continue;
        }
        auto names = modprobe::match(*index, *config, alias, &blacklisted);
        if (names.empty()) continue;
        if (options)
            if (auto o = config->options.find(names.front()); o != config->options.end()) *options = o->second;
        return names.front();
    }
    if (!blacklisted.empty())
        return fail(ENODEV, "{} matches it but is blacklisted ({}): udrv modprobe {} loads it anyway, or name it (udrv bind --driver)",
                    blacklisted.front().first, blacklisted.front().second, blacklisted.front().first);
    return fail(ENODEV, "no udrv driver matches it ({}): udrv insmod one whose alias matches, or name one (udrv bind --driver)", alias);
}

// ---- devices ----

Result<Daemon::ManagedDevice*> Daemon::manage_pci(const DeviceConfig& c) {
    const pci::Address addr = UDRV_TRY(pci::Address::parse(c.address));
    if (devices_.contains(addr.to_string())) return fail(EEXIST, "{} is managed by udrvd already (udrv unbind it first)", addr.to_string());
    UDRV_TRY(pci::read_device(opt_.sysfs / "bus/pci/devices" / addr.to_string()));  // present (ENOENT if not)
    ManagedDevice d;
    d.id = addr.to_string();
    d.driver = c.driver;
    d.host_name = c.host;
    d.return_to_kernel = c.return_to_kernel;
    pci::BindOptions bo;
    bo.sysfs = opt_.sysfs;
    auto b = UDRV_TRY(pci::bind_vfio(addr, bo));
    d.kernel_driver = b.already ? std::string() : b.previous_driver;
    auto [it, _] = devices_.emplace(d.id, std::move(d));
    return &it->second;
}

Result<Daemon::ManagedDevice*> Daemon::manage_platform(const PlatformConfig& c) {
    std::filesystem::path p = std::filesystem::absolute(c.description);
    if (devices_.contains(p.string())) return fail(EEXIST, "{} is managed by udrvd already", p.string());
    UDRV_TRY(platform::load_description(p));  // checked here, with its line numbers, before a host tries
    ManagedDevice d;
    d.id = p.string();
    d.platform = true;
    d.host_name = c.host;
    auto [it, _] = devices_.emplace(d.id, std::move(d));
    return &it->second;
}

void Daemon::try_start(ManagedDevice& d) {
    if (stopping_ || d.host || d.state == DevState::stopping || d.state == DevState::removed || d.state == DevState::failed) return;
    std::vector<std::string> group{d.id};
    if (!d.host_name.empty())
        for (auto& [id, o] : devices_)
            if (id != d.id && o.host_name == d.host_name && !o.host &&
                (o.state == DevState::waiting || o.state == DevState::restarting || o.state == DevState::starting))
                group.push_back(id);
    for (const auto& id : group) {
        ManagedDevice& m = devices_.at(id);
        if (m.platform) continue;
        std::vector<std::string> options;
        auto drv = driver_for(m, &options);
        if (!drv) {
            std::error_code ec;
            if (!std::filesystem::is_directory(opt_.sysfs / "bus/pci/devices" / id, ec)) {
                // Gone from the system: a hot-unplug whose host ended before its word of the removal got
                // here (the kernel's remove event came while the host still had it). Removed, so that a
                // rescan takes it again, as when the word comes first.
                m.state = DevState::removed;
                m.why = "removed from the system; it comes back when the device reappears (rescan)";
                event(fmt::format("{}: removed from the system", id));
            } else {
                m.state = DevState::waiting;
                m.why = drv.error().message();
            }
            if (id == d.id) return;
            continue;
        }
        m.driver_used = *drv;
        if (std::none_of(modules_.begin(), modules_.end(), [&](const Module& x) { return x.name == *drv; }))
            if (auto r = insmod(*drv, options, "autoload", false); !r) {
                m.state = DevState::failed;
                m.why = r.error().message();
                event(fmt::format("{}: cannot load its driver: {}", id, m.why));
                if (id == d.id) return;
            }
    }
    std::erase_if(group, [&](const std::string& id) { return devices_.at(id).state == DevState::failed || (!devices_.at(id).platform && devices_.at(id).driver_used.empty()); });
    if (group.empty()) return;
    const std::string name = d.host_name.empty() ? (d.platform ? std::filesystem::path(d.id).stem().string() : d.id) : d.host_name;
    auto h = start_host(name, group, false);
    for (const auto& id : group) {
        ManagedDevice& m = devices_.at(id);
        if (!h) {
            m.state = DevState::failed;
            m.why = h.error().message();
        } else {
            m.state = DevState::starting;
            m.host = *h;
        }
    }
}

Daemon::Host* Daemon::host_of(const std::string& device_id) {
    auto it = devices_.find(device_id);
    if (it == devices_.end() || !it->second.host) return nullptr;
    auto h = hosts_.find(it->second.host);
    return h == hosts_.end() ? nullptr : &h->second;
}

Result<unsigned> Daemon::start_host(const std::string& name, std::vector<std::string> devices, bool misc) {
    auto [mine, theirs] = UDRV_TRY(Channel::pair());
    std::vector<std::string> args = {opt_.host_binary.string(), "--fd", "3", "--name", name};
    for (const auto& d : opt_.module_dirs) args.insert(args.end(), {"--module-dir", d.string()});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) return fail_errno("fork");
    if (pid == 0) {
        // The child: its channel on fd 3, stdout to stderr (the log), the signals udrvd blocked unblocked.
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        if (::dup2(theirs.fd(), 3) < 0) ::_exit(127);
        ::dup2(2, 1);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    theirs.close();
    const unsigned id = next_host_++;
    Host& h = hosts_[id];
    h.id = id;
    h.name = name;
    h.pid = pid;
    h.ch = std::move(mine);
    h.misc = misc;
    h.devices = std::move(devices);
    h.started = h.last_pong = clock::now();
    UDRV_TRY(poller_->add(h.ch.fd(), EPOLLIN, [this, id](std::uint32_t) {
        if (auto it = hosts_.find(id); it != hosts_.end()) on_host_message(it->second);
    }));
    pr_info("udrvd: host {} ({}) started, pid {}", id, name, pid);
    return id;
}

void Daemon::on_host_message(Host& h) {
    for (;;) {
        auto m = h.ch.receive();
        if (!m) {
            poller_->remove(h.ch.fd());
            h.ch.close();
            if (m.error().code() != ECONNRESET) pr_err("udrvd: host {}: {}", h.id, m.error().message());
            // The process is going or gone; its exit status (SIGCHLD) says how. One that lingers is killed.
            const pid_t pid = h.pid;
            poller_->after(std::chrono::milliseconds(5000), [this, id = h.id, pid] {
                if (auto it = hosts_.find(id); it != hosts_.end() && !it->second.exited) ::kill(pid, SIGKILL);
            });
            return;
        }
        if (!*m) return;
        handle_host_message(h, **m);
        if (!hosts_.contains(h.id)) return;
    }
}

void Daemon::handle_host_message(Host& h, const json& m) {
    const std::string type = m.value("type", "");
    if (type == "hello") {
        if (m.value("version", 0) != kHostProtocol) {
            pr_err("udrvd: host {} speaks protocol {}, udrvd {}: stopping it", h.id, m.value("version", 0), kHostProtocol);
            ::kill(h.pid, SIGKILL);
            return;
        }
        json start = {{"type", "start"}, {"name", h.name}, {"modules", json::array()}, {"pci", json::array()}, {"platform", json::array()}};
        std::vector<std::string> mods;
        for (const auto& id : h.devices) {
            const ManagedDevice& d = devices_.at(id);
            if (d.platform) {
                start["platform"].push_back(d.id);
                for (const auto& mod : modules_)
                    for (auto a : mod.info.get_all("alias"))
                        if (a.starts_with("of:") && std::find(mods.begin(), mods.end(), mod.name) == mods.end()) mods.push_back(mod.name);
                for (const auto& bi : builtin_)
                    for (auto a : bi.get_all("alias"))
                        if (a.starts_with("of:") && std::find(mods.begin(), mods.end(), bi.name()) == mods.end()) mods.emplace_back(bi.name());
            } else {
                start["pci"].push_back(d.id);
                if (std::find(mods.begin(), mods.end(), d.driver_used) == mods.end()) mods.push_back(d.driver_used);
            }
        }
        start["exports"] = json::array();
        for (auto& x : exports_)
            if (std::find(h.devices.begin(), h.devices.end(), x.device_id) != h.devices.end()) {
                start["exports"].push_back({{"type", "ublk"}, {"device_path", x.device_path}, {"dev_id", x.dev_id}, {"queues", x.queues}, {"depth", x.depth}});
                x.state = "recovering";
            }
        for (const auto& name : mods) {
            json entry = {{"name", name}, {"params", json::array()}};
            for (const auto& mod : modules_)
                if (mod.name == name) entry["params"] = mod.params;
            start["modules"].push_back(entry);
        }
        if (auto r = h.ch.send(start); !r) pr_err("udrvd: host {}: {}", h.id, r.error().message());
    } else if (type == "ready") {
        h.ready = true;
        h.last_pong = clock::now();
        h.modules = m.value("modules", json::array());
        h.bound = m.value("devices", json::array());
        h.classdevs = json::array();
        for (const auto& c : m.value("classdevs", json::array())) h.classdevs.push_back(globalize(c));
        std::vector<std::string> names;
        for (const auto& c : h.classdevs) names.push_back(c["info"].value("name", ""));
        for (const auto& id : h.devices) {
            ManagedDevice& d = devices_.at(id);
            if (d.state == DevState::starting || d.state == DevState::restarting) d.state = DevState::running;
            d.why.clear();
        }
        event(fmt::format("host {} ({}) is up, pid {}: {}{}", h.id, h.name, h.pid, fmt::join(h.devices, ", "),
                          names.empty() ? "" : fmt::format(" publishing {}", fmt::join(names, ", "))));
        for (auto& r : h.waiting_ready) r.result({{"host", h.id}, {"pid", h.pid}, {"classdevs", names}});
        h.waiting_ready.clear();
        if (h.misc) load_misc_modules(h);
        apply_configured_exports();
        nvmf_apply_all();
    } else if (type == "failed") {
        const Error err = error_from_json(m.value("error", json::object()));
        const int code = err.code();
        const std::string& msg = err.message();
        h.stopping = true;  // it exits by itself
        for (const auto& id : h.devices) {
            ManagedDevice& d = devices_.at(id);
            if (d.state == DevState::stopping) continue;
            d.why = msg;
            // A group held by a host that is still going away, a device still settling: worth trying again.
            if (code == EBUSY || code == EAGAIN) {
                d.host = 0;
                schedule_restart(d, msg);
            } else {
                d.state = DevState::failed;
                event(fmt::format("{}: the driver could not take it: {}", id, msg));
            }
        }
        for (auto& r : h.waiting_ready) r.error(err);
        h.waiting_ready.clear();
    } else if (type == "pong") {
        h.last_pong = clock::now();
    } else if (type == "reply" || type == "modules") {
        auto it = h.calls.find(m.value("seq", std::uint64_t{0}));
        if (it == h.calls.end()) return;
        PendingCall call = std::move(it->second);
        h.calls.erase(it);
        if (type == "modules") h.modules = m.value("modules", json::array());
        if (m.contains("error") && !m["error"].is_null()) {
            const Error err = error_from_json(m["error"]);
            if (call.on_error) call.on_error(err);
            call.responder.error(err);
        } else {
            call.responder.send(call.finish ? call.finish(m.value("result", json())) : Result<json>(m.value("result", json())));
        }
    } else if (type == "export") {  // a restarted host took over an export, or could not
        const std::int32_t dev_id = m.value("dev_id", -1);
        auto it = std::find_if(exports_.begin(), exports_.end(), [&](const Export& x) { return x.dev_id == dev_id; });
        if (it == exports_.end()) return;
        if (m.contains("export")) {
            it->state = "running";
            event(fmt::format("{}: {} taken over by host {}: the kernel's held requests are reissued", it->name, ublk::block_path(dev_id), h.id));
        } else {
            const Error err = error_from_json(m.value("error", json::object()));
            drop_exports(it->device_id, "the new host could not take it over: " + err.message());
        }
    } else if (type == "export_gone") {
        const std::int32_t dev_id = m.value("dev_id", -1);
        auto it = std::find_if(exports_.begin(), exports_.end(), [&](const Export& x) { return x.dev_id == dev_id; });
        if (it != exports_.end()) {
            event(fmt::format("{}: {} removed: {}", it->name, ublk::block_path(dev_id), m.value("why", "")));
            exports_.erase(it);
        }
    } else if (type == "removed") {
        const std::string addr = m.value("address", "");
        h.classdevs = json::array();
        for (const auto& c : m.value("classdevs", json::array())) h.classdevs.push_back(globalize(c));
        std::erase(h.devices, addr);
        if (auto it = devices_.find(addr); it != devices_.end()) {
            it->second.state = DevState::removed;
            it->second.host = 0;
            it->second.why = "hot-removed; it comes back when the device reappears (rescan)";
            release_names(addr);
        }
        event(fmt::format("{}: removed from the system: its driver was unbound in host {}", addr, h.id));
        if (h.devices.empty() && !h.misc) stop_host(h);  // it stops by itself; this makes sure
    }
}

// The modules that drive no device run in the modules host: loaded one by one, so that one whose init
// fails is refused alone (and forgotten), with its caller told why.
void Daemon::load_misc_modules(Host& h) {
    for (const auto& m : modules_) {
        if (m.is_driver()) continue;
        if (std::any_of(h.modules.begin(), h.modules.end(), [&](const json& x) { return x.value("name", "") == m.name; })) continue;
        std::vector<Responder> waiters = std::move(misc_waiters_[m.name]);
        misc_waiters_.erase(m.name);
        const std::uint64_t seq = ++h.seq;
        auto forget = [this, n = m.name, waiters](const Error& e) {
            std::erase_if(modules_, [&](const Module& x) { return x.name == n; });
            event(fmt::format("module {} could not be loaded: {}", n, e.message()));
            for (std::size_t i = 1; i < waiters.size(); ++i) waiters[i].error(e);
        };
        auto loaded = [n = m.name, waiters](json) -> Result<json> {
            for (std::size_t i = 1; i < waiters.size(); ++i) waiters[i].result({{"name", n}, {"driver", false}});
            return json{{"name", n}, {"driver", false}};
        };
        if (auto sent = h.ch.send({{"type", "load"}, {"seq", seq}, {"name", m.name}, {"params", m.params}}); !sent) {
            for (auto& w : waiters) w.error(sent.error());
            continue;
        }
        h.calls[seq] = PendingCall{waiters.empty() ? Responder{} : waiters.front(), loaded, forget};
    }
}

void Daemon::on_child_exit(pid_t pid, int status) {
    auto it = std::find_if(hosts_.begin(), hosts_.end(), [&](const auto& kv) { return kv.second.pid == pid; });
    if (it == hosts_.end()) return;
    Host& h = it->second;
    h.exited = true;
    const std::string reason = h.killed_by_watchdog ? fmt::format("it stopped answering (watchdog, {} ms) and was killed", cfg_.watchdog_ms)
                                                    : exit_text(status);
    on_host_gone(h, reason);
}

void Daemon::on_host_gone(Host& h, const std::string& reason) {
    if (h.ch) {
        poller_->remove(h.ch.fd());
        h.ch.close();
    }
    const bool expected = h.stopping || stopping_;
    if (expected) pr_info("udrvd: host {} ({}) ended: {}", h.id, h.name, reason);
    else pr_warn("udrvd: host {} ({}, pid {}) died: {}", h.id, h.name, h.pid, reason);
    for (auto& [seq, call] : h.calls) {
        const Error err(ENODEV, fmt::format("the driver host serving it ({}) {}", h.name, expected ? "stopped" : "died: " + reason));
        if (call.on_error) call.on_error(err);
        call.responder.error(err);
    }
    h.calls.clear();
    for (auto& r : h.waiting_ready) r.error(Error(ECHILD, fmt::format("the driver host ({}) died while starting: {}", h.name, reason)));
    const std::vector<std::string> devs = h.devices;
    const unsigned id = h.id;
    const bool misc = h.misc;
    hosts_.erase(id);
    // Its NVMe/TCP subsystems wait for the next host (their initiators reconnect meanwhile).
    for (auto& [nqn, rt] : nvmf_rt_)
        if (rt.host == id) {
            rt.host = 0;
            rt.state = "waiting";
            rt.why = fmt::format("its driver host {}", expected ? "stopped" : "died; served again when it is back");
        }
    nvmf_update_discovery();
    // The modules host comes back with its modules (their init runs again), within the same limit.
    if (misc && !expected && std::any_of(modules_.begin(), modules_.end(), [](const Module& m) { return !m.is_driver(); })) {
        const auto now = clock::now();
        while (!misc_restarts_.empty() && now - misc_restarts_.front() > std::chrono::seconds(cfg_.restart_window_s)) misc_restarts_.pop_front();
        if (misc_restarts_.size() < cfg_.restart_limit) {
            misc_restarts_.push_back(now);
            poller_->after(std::chrono::milliseconds(100 << misc_restarts_.size()), [this] {
                if (!stopping_ && std::none_of(hosts_.begin(), hosts_.end(), [](const auto& kv) { return kv.second.misc; }))
                    (void)start_host("modules", {}, true);
            });
        } else {
            event(fmt::format("the modules host died {} times within {} s: not restarting it; its modules are not running", misc_restarts_.size(),
                              cfg_.restart_window_s));
        }
    }
    for (const auto& dev_id : devs) {
        auto it = devices_.find(dev_id);
        if (it == devices_.end() || it->second.host != id) continue;
        ManagedDevice& d = it->second;
        d.host = 0;
        if (d.state == DevState::stopping) {
            drop_exports(dev_id, "its device was unbound");
            auto waiters = std::move(d.unbind_waiters);
            auto r = unmanage(dev_id, d.return_to_kernel);
            for (auto& w : waiters) r ? w.result({{"device", dev_id}, {"unbound", true}}) : w.error(r.error());
            continue;
        }
        if (stopping_ || d.state == DevState::removed || d.state == DevState::failed) {
            drop_exports(dev_id, expected ? "its host stopped" : "its host died: " + reason);
            continue;
        }
        for (auto& x : exports_)
            if (x.device_id == dev_id) x.state = "recovering";  // the kernel holds the requests for the next host
        event(fmt::format("{}: its driver host died: {}", dev_id, reason));
        schedule_restart(d, reason);
    }
    if (stopping_ && hosts_.empty()) done_ = true;
}

void Daemon::schedule_restart(ManagedDevice& d, const std::string& reason) {
    const auto now = clock::now();
    const auto window = std::chrono::seconds(cfg_.restart_window_s);
    while (!d.restarts.empty() && now - d.restarts.front() > window) d.restarts.pop_front();
    if (d.restarts.size() >= cfg_.restart_limit) {
        d.state = DevState::failed;
        d.why = fmt::format("gave up after {} restarts within {} s; the last failure: {}", d.restarts.size(), cfg_.restart_window_s, reason);
        event(fmt::format("{}: {} (udrv unbind and bind it to try again)", d.id, d.why));
        drop_exports(d.id, "its device was given up");
        return;
    }
    const auto delay = std::min(std::chrono::milliseconds(100L << std::min<std::size_t>(d.restarts.size(), 10)), std::chrono::milliseconds(5000));
    d.restarts.push_back(now);
    ++d.restarts_total;
    d.state = DevState::restarting;
    d.why = reason;
    event(fmt::format("{}: restarting its driver host in {} ms (restart {} of at most {} within {} s)", d.id, delay.count(), d.restarts.size(),
                      cfg_.restart_limit, cfg_.restart_window_s));
    d.restart_timer = poller_->after(delay, [this, id = d.id] {
        if (auto it = devices_.find(id); it != devices_.end() && it->second.state == DevState::restarting) {
            it->second.restart_timer = 0;
            try_start(it->second);
        }
    });
}

void Daemon::watchdog_tick() {
    const auto now = clock::now();
    for (auto& [id, h] : hosts_) {
        if (h.exited || h.killed_by_watchdog || h.stopping || !h.ch) continue;  // a stopping host has stop_host's deadline
        if (now - h.last_pong > std::chrono::milliseconds(cfg_.watchdog_ms)) {
            pr_warn("udrvd: host {} ({}, pid {}) has not answered for {} ms: killing it", id, h.name, h.pid, cfg_.watchdog_ms);
            h.killed_by_watchdog = true;
            ::kill(h.pid, SIGKILL);
            continue;
        }
        if (h.ready) (void)h.ch.send({{"type", "ping"}, {"seq", ++h.seq}});
    }
    if (!done_) poller_->after(std::chrono::milliseconds(std::min(1000u, cfg_.watchdog_ms / 4)), [this] { watchdog_tick(); });
}

void Daemon::stop_host(Host& h) {
    if (h.stopping && !stopping_) return;
    h.stopping = true;
    if (h.ch) (void)h.ch.send({{"type", "stop"}});
    else ::kill(h.pid, SIGTERM);
    // A host that does not finish its drivers' remove in time is killed: the devices are reset by the next probe.
    const pid_t pid = h.pid;
    poller_->after(std::chrono::milliseconds(30000), [this, id = h.id, pid] {
        if (auto it = hosts_.find(id); it != hosts_.end() && !it->second.exited) {
            pr_warn("udrvd: host {} did not stop within 30 s: killing it", id);
            ::kill(pid, SIGKILL);
        }
    });
}

Result<void> Daemon::unmanage(const std::string& id, bool return_to_kernel) {
    auto it = devices_.find(id);
    if (it == devices_.end()) return fail(ENOENT, "{} is not managed by udrvd", id);
    ManagedDevice& d = it->second;
    if (d.host) {  // stop its host first; this runs again when the host has gone
        d.state = DevState::stopping;
        if (Host* h = host_of(id)) stop_host(*h);
        return {};
    }
    if (d.restart_timer) poller_->cancel(d.restart_timer);
    drop_exports(id, "its device is no longer managed");
    release_names(id);
    Result<void> r;
    if (!d.platform && return_to_kernel) {
        pci::BindOptions bo;
        bo.sysfs = opt_.sysfs;
        if (auto addr = pci::Address::parse(id)) {
            auto back = pci::unbind_vfio(*addr, bo);
            if (!back && back.error().code() != ENODEV) r = std::unexpected(back.error());
            else if (back) event(fmt::format("{}: given back to {}", id, back->empty() ? "no driver" : *back));
        }
    }
    devices_.erase(it);
    return r;
}

// ---- hot-plug ----

void Daemon::on_uevent() {
    while (auto e = read_uevent(uevents_.get())) {
        if (e->subsystem != "pci" || e->pci_slot.empty()) continue;
        auto it = devices_.find(e->pci_slot);
        if (it == devices_.end()) continue;
        ManagedDevice& d = it->second;
        if (e->action == "remove" && d.state != DevState::removed && d.state != DevState::stopping) {
            if (!d.host) {
                d.state = DevState::removed;
                d.why = "removed from the system; it comes back when the device reappears (rescan)";
                event(fmt::format("{}: removed from the system", d.id));
            }
        } else if (e->action == "add" && d.state == DevState::removed) {
            event(fmt::format("{}: it is back (added to the system): taking it again", d.id));
            // The kernel probes its own driver right after the event; bind once that has settled.
            poller_->after(std::chrono::milliseconds(300), [this, id = d.id] { retake(id, 0); });
        }
    }
}

void Daemon::retake(const std::string& id, unsigned attempt) {
    auto it = devices_.find(id);
    if (it == devices_.end() || it->second.state != DevState::removed) return;
    ManagedDevice& d = it->second;
    pci::BindOptions bo;
    bo.sysfs = opt_.sysfs;
    auto b = pci::bind_vfio(*pci::Address::parse(id), bo);
    if (!b) {
        if (attempt < 10) {
            poller_->after(std::chrono::milliseconds(300), [this, id, attempt] { retake(id, attempt + 1); });
            return;
        }
        d.state = DevState::failed;
        d.why = b.error().message();
        event(fmt::format("{}: cannot take it back: {}", id, d.why));
        return;
    }
    if (!b->already && !b->previous_driver.empty()) d.kernel_driver = b->previous_driver;
    d.state = DevState::waiting;
    d.restarts.clear();
    try_start(d);
}

// ---- names ----

json Daemon::globalize(const json& c) {
    json g = c;
    json& info = g["info"];
    const std::string local = info.value("name", "");
    info["local_name"] = local;
    info["name"] = global_name(local, info.value("device", ""));
    return g;
}

std::string Daemon::global_name(const std::string& local, const std::string& bus_device) {
    SplitName s = split_name(local);
    if (!s.number) return local;
    NameKey key{bus_device, s.prefix, *s.number};
    auto it = names_.find(key);
    if (it == names_.end()) {
        std::set<unsigned> used;
        for (const auto& [k, v] : names_)
            if (k.prefix == s.prefix) used.insert(v);
        unsigned n = 0;
        while (used.contains(n)) ++n;
        it = names_.emplace(key, n).first;
    }
    return s.prefix + std::to_string(it->second) + s.rest;
}

void Daemon::release_names(const std::string& bus_device) {
    std::erase_if(names_, [&](const auto& kv) { return kv.first.bus_device == bus_device; });
}

// ---- forwarding work to the host that owns a device ----

void Daemon::forward(const std::string& device, const std::string& method, json params, Responder r,
                     std::function<Result<json>(json)> finish) {
    const std::string want = device;
    const std::string path = udrv::detail::normalize_class_path(device);
    for (auto& [id, h] : hosts_) {
        if (!h.ready || !h.ch) continue;
        for (const auto& c : h.classdevs) {
            const json& info = c["info"];
            if (info.value("name", "") != want && info.value("path", "") != path) continue;
            params["device"] = info.value("local_name", "");
            const std::uint64_t seq = ++h.seq;
            if (auto s = h.ch.send({{"type", "call"}, {"seq", seq}, {"method", method}, {"params", params}}); !s) return r.error(s.error());
            h.calls[seq] = PendingCall{r, std::move(finish), {}};
            return;
        }
    }
    std::vector<std::string> known;
    for (const auto& [id, h] : hosts_)
        for (const auto& c : h.classdevs) known.push_back(c["info"].value("name", "") + " (" + c["info"].value("path", "") + ")");
    r.error(Error(ENODEV, fmt::format("no device {} in udrvd{}{}", device, known.empty() ? " (udrv bind one)" : "; there are: ",
                                      fmt::join(known, ", "))));
}

// ---- exports ----

void Daemon::export_ublk(const std::string& device, unsigned queues, unsigned depth, Responder r) {
    const std::string path = udrv::detail::normalize_class_path(device);
    for (auto& [id, h] : hosts_) {
        if (!h.ready || !h.ch) continue;
        for (const auto& c : h.classdevs) {
            const json& info = c["info"];
            if (c.value("class", "") != "block" || (info.value("name", "") != device && info.value("path", "") != path)) continue;
            for (const auto& x : exports_)
                if (x.device_path == info.value("path", ""))
                    return r.error(Error(EEXIST, fmt::format("{} is exported already as {}", x.name, ublk::block_path(x.dev_id))));
            std::string device_id = info.value("device", "");
            if (std::find(h.devices.begin(), h.devices.end(), device_id) == h.devices.end() && !h.devices.empty()) device_id = h.devices.front();
            const std::uint64_t seq = ++h.seq;
            json params = {{"device", info.value("local_name", "")}, {"queues", queues}, {"depth", depth}};
            if (auto s = h.ch.send({{"type", "call"}, {"seq", seq}, {"method", "ublk_export"}, {"params", params}}); !s) return r.error(s.error());
            Export x{device_id, info.value("path", ""), info.value("name", ""), -1, queues, depth, "running"};
            h.calls[seq] = PendingCall{r,
                                       [this, x](json res) mutable -> Result<json> {
                                           x.dev_id = res.value("dev_id", -1);
                                           exports_.push_back(x);
                                           event(fmt::format("{}: exported as {}", x.name, ublk::block_path(x.dev_id)));
                                           return json{{"device", x.name}, {"path", ublk::block_path(x.dev_id)}, {"dev_id", x.dev_id},
                                                       {"queues", x.queues}, {"depth", x.depth}};
                                       },
                                       {}};
            return;
        }
    }
    r.error(Error(ENODEV, fmt::format("no block device {} in udrvd (udrv block list shows them)", device)));
}

void Daemon::drop_exports(const std::string& device_id, const std::string& why) {
    for (auto it = exports_.begin(); it != exports_.end();) {
        if (it->device_id != device_id) {
            ++it;
            continue;
        }
        // No host serves it now: the kernel is told to fail what it holds, and the device goes. On a
        // thread of its own: a kernel that took its time over it must not stop udrvd answering.
        event(fmt::format("{}: deleting {} ({}): the kernel fails its requests", it->name, ublk::block_path(it->dev_id), why));
        std::thread([dev_id = it->dev_id] {
            auto ctrl = ublk::Control::open();
            if (!ctrl) return;
            (void)ctrl->stop(dev_id);
            if (auto r = ctrl->remove(dev_id); !r && r.error().code() != ENODEV) pr_warn("udrvd: {}", r.error().message());
        }).detach();
        it = exports_.erase(it);
    }
}

// Exports the configuration asks for, once their device is published (after a host is ready).
void Daemon::apply_configured_exports() {
    for (const auto& ec : cfg_.exports) {
        const std::string path = udrv::detail::normalize_class_path(ec.device);
        bool done = std::any_of(exports_.begin(), exports_.end(), [&](const Export& x) { return x.name == ec.device || x.device_path == path; });
        if (done) continue;
        bool published = false;
        for (const auto& [id, h] : hosts_)
            for (const auto& c : h.classdevs)
                published |= h.ready && c.value("class", "") == "block" && (c["info"].value("name", "") == ec.device || c["info"].value("path", "") == path);
        if (!published) continue;
        Responder none;
        export_ublk(ec.device, ec.queues, ec.depth, none);
    }
}

// ---- events, configuration, life cycle ----

void Daemon::event(const std::string& text) {
    pr_notice("udrvd: {}", text);
    const auto now = std::chrono::system_clock::now();
    events_.push_back({{"seq", ++event_seq_}, {"time", fmt::format("{:%FT%T}Z", std::chrono::floor<std::chrono::seconds>(now))}, {"text", text}});
    while (events_.size() > 256) events_.pop_front();
}

DaemonConfig Daemon::running_config() const {
    DaemonConfig c = cfg_;
    c.modules.clear();
    c.devices.clear();
    c.platforms.clear();
    for (const auto& m : modules_)
        if (m.origin == "insmod" || m.origin == "config") c.modules.push_back({m.name, m.params});
    for (const auto& [id, d] : devices_) {
        if (d.platform) c.platforms.push_back({d.id, d.host_name});
        else c.devices.push_back({d.id, d.driver, d.host_name, d.return_to_kernel});
    }
    // Exports running now, and the configured ones whose device is not up yet.
    std::erase_if(c.exports, [&](const ExportConfig& ec) {
        const std::string path = udrv::detail::normalize_class_path(ec.device);
        return std::any_of(exports_.begin(), exports_.end(), [&](const Export& x) { return x.name == ec.device || x.device_path == path; });
    });
    for (const auto& x : exports_) c.exports.push_back({"ublk", x.device_path, x.queues, x.depth});
    c.nvmf_subsystems.clear();
    for (const auto& [nqn, s] : nvmf_) c.nvmf_subsystems.push_back(s);
    c.nvmf_discovery = discovery_listen_;
    return c;
}

void Daemon::shutdown() {
    if (stopping_) return;
    stopping_ = true;
    server_->close();  // no new clients; those connected get their answers
    event("stopping: drivers unbind in their hosts, then devices go back where the configuration says");
    for (auto& [id, h] : hosts_) stop_host(h);
    if (hosts_.empty()) done_ = true;
}

void Daemon::notify_ready() {
#if UDRV_HAVE_SYSTEMD
    sd_notifyf(0, "READY=1\nSTATUS=%zu devices, %zu hosts\nMAINPID=%d", devices_.size(), hosts_.size(), static_cast<int>(::getpid()));
#endif
}

int Daemon::run() {
    notify_ready();
    pr_notice("udrvd: listening on {} ({} device(s) configured)", opt_.socket.string(), devices_.size());
    while (!done_) {
        if (auto r = poller_->run_once(std::chrono::milliseconds(1000)); !r) {
            pr_err("udrvd: {}", r.error().to_string());
            return 1;
        }
    }
#if UDRV_HAVE_SYSTEMD
    sd_notify(0, "STOPPING=1");
#endif
    int rc = 0;
    std::vector<std::string> ids;
    for (const auto& [id, d] : devices_) ids.push_back(id);
    for (const auto& id : ids)
        if (auto r = unmanage(id, devices_.at(id).return_to_kernel); !r) {
            pr_err("udrvd: {}: {}", id, r.error().message());
            rc = 1;
        }
    pr_notice("udrvd: stopped");
    return rc;
}

}  // namespace udrv::daemon
