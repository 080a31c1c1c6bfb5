// udrvd, the driver manager: the control plane of a running system. It keeps a table of modules
// (what insmod asked for, with parameters), a table of devices it manages (bound to vfio-pci, each
// driven in a driver host process), and the hosts. It never touches a device itself: hosts do
// (host.hpp), and udrvd learns what they did from their messages. A host that dies or hangs takes
// only its own devices down: udrvd logs why, starts a new host after a back-off (a limited number of
// times within a window), and keeps the devices' class names, so users find them again.
//
// Clients speak JSON-RPC 2.0 on a Unix socket (rpc_server.hpp); docs/udrvd.md lists the methods.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "channel.hpp"
#include "config.hpp"
#include "poller.hpp"
#include "rpc_server.hpp"
#include "udrv/modinfo.hpp"
#include "udrv/nvmf.hpp"
#include <mutex>

namespace udrv::daemon {

struct Options {
    std::filesystem::path config_file;   ///< empty: start with nothing configured
    std::filesystem::path socket;        ///< where to listen
    std::filesystem::path host_binary;   ///< udrv-host
    std::vector<std::filesystem::path> module_dirs;
    std::filesystem::path sysfs = "/sys";
    bool watch_uevents = true;
};

class Daemon {
public:
    static Result<std::unique_ptr<Daemon>> create(Options o);
    ~Daemon();
    /// Serves until SIGTERM/SIGINT, then shuts down: hosts stop (drivers' remove: CC.SHN, resets),
    /// devices go back where the configuration says. Returns the exit status.
    int run();

private:
    using clock = std::chrono::steady_clock;

    struct Module {
        std::string name;
        std::vector<std::string> params;
        std::string origin;  ///< "insmod", "config", "autoload"
        Modinfo info;
        bool builtin = false;
        std::filesystem::path file;
        bool is_driver() const;
    };

    enum class DevState { waiting, starting, running, restarting, failed, removed, stopping };
    static const char* state_name(DevState s);

    struct ManagedDevice {
        std::string id;        ///< PCI address, or a platform description's path
        bool platform = false;
        std::string driver;    ///< asked for (may be empty: by alias)
        std::string host_name; ///< configured host to share; empty: its own
        bool return_to_kernel = true;
        std::string kernel_driver;  ///< what had it before udrvd (for on_stop = kernel)
        DevState state = DevState::waiting;
        std::string why;       ///< the last failure, or why it waits
        std::deque<clock::time_point> restarts;
        unsigned restarts_total = 0;
        unsigned host = 0;     ///< host id while it has one
        std::string driver_used;
        Poller::TimerId restart_timer = 0;
        std::vector<Responder> unbind_waiters;  ///< unbind callers, answered when the device is given back
    };

    struct PendingCall {
        Responder responder;
        std::function<Result<nlohmann::json>(nlohmann::json)> finish;  // turns the host's result into the answer
        std::function<void(const Error&)> on_error;                    // besides answering the error
    };

    struct Host {
        unsigned id = 0;
        std::string name;
        pid_t pid = -1;
        Channel ch;
        bool ready = false, stopping = false, killed_by_watchdog = false, exited = false;
        bool misc = false;  ///< the host of modules that drive no device
        std::vector<std::string> devices;  ///< ManagedDevice ids
        nlohmann::json modules = nlohmann::json::array(), classdevs = nlohmann::json::array(), bound = nlohmann::json::array();
        clock::time_point started, last_pong;
        std::uint64_t seq = 0;
        std::map<std::uint64_t, PendingCall> calls;
        std::vector<Responder> waiting_ready;  ///< bind/insmod callers waiting for this host's start
    };

    /// A block device exported to the kernel (ublk), served from its device's host.
    struct Export {
        std::string device_id;    ///< the managed device whose host serves it
        std::string device_path;  ///< the block device's stable path ("0000:00:04.0/ns1")
        std::string name;         ///< its class name in udrvd ("nvme0n1")
        std::int32_t dev_id = -1; ///< /dev/ublkbN
        unsigned queues = 1, depth = 64;
        std::string state;        ///< "running", or "recovering" (its host died: the kernel holds its I/O)
    };

    explicit Daemon(Options o) : opt_(std::move(o)) {}
    Result<void> init();
    void register_methods();

    // modules
    Result<Module> find_module(const std::string& name) const;
    /// Adds a module to the table (metadata checked, no code run); a driver module then starts the
    /// devices that waited for one, unless `start_waiting` is false (a module loaded for a device being
    /// started now).
    Result<void> check_signature(const Module& m);
    Result<void> insmod(const std::string& name, const std::vector<std::string>& params, const std::string& origin, bool start_waiting = true);
    Result<std::string> driver_for(const ManagedDevice& d, std::vector<std::string>* options = nullptr);

    // devices and hosts
    Result<ManagedDevice*> manage_pci(const DeviceConfig& c);
    Result<ManagedDevice*> manage_platform(const PlatformConfig& c);
    void try_start(ManagedDevice& d);
    Result<unsigned> start_host(const std::string& name, std::vector<std::string> devices, bool misc);
    void on_host_message(Host& h);
    void on_host_gone(Host& h, const std::string& reason);
    void on_child_exit(pid_t pid, int status);
    void handle_host_message(Host& h, const nlohmann::json& m);
    void schedule_restart(ManagedDevice& d, const std::string& reason);
    void watchdog_tick();
    Result<void> unmanage(const std::string& id, bool return_to_kernel);
    void on_uevent();
    void retake(const std::string& id, unsigned attempt);
    void stop_host(Host& h);
    Host* host_of(const std::string& device_id);
    void forward(const std::string& device, const std::string& method, nlohmann::json params, Responder r,
                 std::function<Result<nlohmann::json>(nlohmann::json)> finish = {});

    // class device names, global across hosts and stable across restarts
    std::string global_name(const std::string& local, const std::string& bus_device);
    std::string local_name(const std::string& global) const;
    void release_names(const std::string& bus_device);
    nlohmann::json globalize(const nlohmann::json& classdev);

    // exports
    void export_ublk(const std::string& device, unsigned queues, unsigned depth, Responder r);
    /// Deletes the kernel devices of `device_id`'s exports that no host serves (the kernel fails their
    /// I/O instead of holding it), and forgets them.
    void drop_exports(const std::string& device_id, const std::string& why);
    void apply_configured_exports();

    // NVMe/TCP subsystems (nvmf.cpp): udrvd keeps their configuration and has the driver host that
    // publishes their namespaces serve them; it answers discovery itself, for all of them.
    struct NvmfRuntime {
        unsigned host = 0;
        std::string state = "waiting", why;
    };
    void register_nvmf_methods();
    void nvmf_apply(const std::string& nqn, Responder r);
    void nvmf_apply_all();
    void nvmf_withdraw(const std::string& nqn);
    void nvmf_update_discovery();
    Result<void> nvmf_discovery_listen(const std::string& address);
    nlohmann::json nvmf_json(const NvmfSubsystemConfig& s) const;
    std::map<std::string, NvmfSubsystemConfig> nvmf_;
    std::map<std::string, NvmfRuntime> nvmf_rt_;
    std::unique_ptr<nvmf::Target> discovery_;
    std::vector<std::string> discovery_listen_;
    struct DiscoveryLine {
        nvmf::DiscoveryEntry entry;
        std::vector<std::string> hosts;  ///< empty: any
    };
    std::mutex discovery_mu_;  // discovery_lines_: read by the discovery target's thread
    std::vector<DiscoveryLine> discovery_lines_;
    // The listeners are udrvd's, so that any number of subsystems in any number of hosts share a port:
    // udrvd answers a connection's ICReq, reads its Connect, and hands the socket to the host that
    // serves the subsystem it names (discovery, and subsystems no host serves, to its own target).
    struct FrontConn {
        Fd fd;
        std::string peer, local;
        nvmf::Handshake hs;
        Poller::TimerId timer = 0;
    };
    std::map<std::string, Fd> front_listeners_;  ///< by address ("127.0.0.1:4420")
    std::map<int, std::unique_ptr<FrontConn>> front_conns_;
    Result<void> front_listen(const std::string& address);
    void front_sync();
    void front_accept(const std::string& local, int listen_fd);
    void front_read(int fd);
    void front_close(int fd, const std::string& why);
    void front_route(FrontConn& fc);
    nvmf::Target& discovery_target();

    void event(const std::string& text);
    DaemonConfig running_config() const;
    void shutdown();
    void notify_ready();

    Options opt_;
    DaemonConfig cfg_;
    std::vector<Modinfo> builtin_;  ///< the driver host's built-in modules (from udrv-host --builtin-modinfo)
    std::optional<gid_t> group_;
    std::unique_ptr<Poller> poller_;
    std::unique_ptr<RpcServer> server_;
    Fd signals_, uevents_;
    std::vector<Module> modules_;
    std::map<std::string, ManagedDevice> devices_;
    std::vector<Export> exports_;
    std::map<unsigned, Host> hosts_;
    unsigned next_host_ = 1;
    bool stopping_ = false, done_ = false;
    struct NameKey {
        std::string bus_device, prefix;
        unsigned local;
        auto operator<=>(const NameKey&) const = default;
    };
    std::map<NameKey, unsigned> names_;
    std::map<std::string, std::vector<Responder>> misc_waiters_;  ///< insmod callers, until the modules host loads it
    std::deque<clock::time_point> misc_restarts_;
    void load_misc_modules(Host& h);
    std::deque<nlohmann::json> events_;
    std::uint64_t event_seq_ = 0;
};

}  // namespace udrv::daemon
