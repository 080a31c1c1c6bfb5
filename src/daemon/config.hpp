// udrvd's configuration: what it keeps loaded and bound. Written by hand (TOML or JSON, checked with
// the line of every mistake) or by the save_config method from the running state, so that a restart
// with it reproduces that state.
//
//     [daemon]
//     group = "udrv"            # besides root, members of this group may change state
//     watchdog_ms = 10000       # a host that does not answer a ping for this long is killed and restarted
//     restart_limit = 5         # restarts within restart_window_s before a device is given up
//     restart_window_s = 60
//
//     [[module]]
//     name = "udrv_nvme"
//     params = { io_timeout_ms = 2000 }     # or ["io_timeout_ms=2000"]
//
//     [[device]]
//     address = "0000:00:04.0"
//     driver = "udrv_nvme"      # optional: else the module whose alias matches the device
//     host = "storage"          # optional: devices naming the same host share one process
//     on_stop = "kernel"        # at shutdown: back to its kernel driver ("kernel", default) or stay on "vfio"
//
//     [[platform]]
//     description = "/etc/udrv/ramdisk.toml"   # platform devices (docs/platform.md), one host per file
//
//     [[export]]
//     type = "ublk"             # /dev/ublkbN for the kernel (docs/ublk.md)
//     device = "nvme0n1"        # a block device by name or path (0000:00:04.0/ns1)
//     queues = 1                # optional: ublk queues, one udrv queue each
//     depth = 64                # optional: requests per queue
//
//     [[nvmf_subsystem]]        # NVMe/TCP (docs/nvmf.md): served from its namespaces' driver host
//     nqn = "nqn.2026-12.io.udrv:disk1"
//     serial = "UDRV0001"       # optional
//     model = "udrv NVMe/TCP"   # optional
//     hosts = ["nqn.2014-08.org.nvmexpress:uuid:..."]   # optional: absent, any host may connect
//     namespaces = ["nvme0n1"]  # block devices; NSIDs 1, 2, ... in order, or [{ device = "nvme0n1", nsid = 5 }]
//     listen = ["0.0.0.0:4420"]
//
//     [nvmf]
//     discovery = ["0.0.0.0:8009"]   # where udrvd answers `nvme discover` (all subsystems)
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "udrv/nvmf.hpp"
#include "udrv/result.hpp"

namespace udrv::daemon {

struct ModuleConfig {
    std::string name;
    std::vector<std::string> params;  ///< "key=value"
};

struct DeviceConfig {
    std::string address;  ///< DDDD:BB:DD.F
    std::string driver;   ///< empty: by alias
    std::string host;     ///< empty: a host of its own
    bool return_to_kernel = true;
};

struct PlatformConfig {
    std::string description;
    std::string host;
};

struct ExportConfig {
    std::string type = "ublk";
    std::string device;  ///< block device name or path
    unsigned queues = 1, depth = 64;
};

struct NvmfNamespaceConfig {
    std::uint32_t nsid = 0;
    std::string device;  ///< block device name or path
};

struct NvmfSubsystemConfig {
    std::string nqn, serial = "udrv0000", model = "udrv NVMe/TCP";
    std::vector<std::string> hosts;  ///< empty: any host
    std::vector<NvmfNamespaceConfig> namespaces;
    std::vector<std::string> listen; ///< "address:port"
};

struct DaemonConfig {
    std::string group;
    unsigned watchdog_ms = 10000;
    unsigned restart_limit = 5;
    unsigned restart_window_s = 60;
    std::vector<ModuleConfig> modules;
    std::vector<DeviceConfig> devices;
    std::vector<PlatformConfig> platforms;
    std::vector<ExportConfig> exports;
    std::vector<NvmfSubsystemConfig> nvmf_subsystems;
    std::vector<std::string> nvmf_discovery;
    std::vector<int> nvmf_cpus;  ///< [nvmf] cpus: the target's workers, one pinned to each (nvmf::TargetOptions)
    unsigned nvmf_poll_us = nvmf::kDefaultPollUs;  ///< [nvmf] poll_us: how long a worker polls its quiet sockets before it sleeps
    bool nvmf_device_interrupts = nvmf::kDefaultDeviceInterrupts;  ///< [nvmf] device_interrupts: workers sleep while the devices work
};

/// A subsystem as JSON ({"nqn", "serial", "model", "hosts", "namespaces": [{"nsid", "device"}], "listen"}):
/// what the configuration, the RPC answers and the driver hosts use.
nlohmann::json nvmf_subsystem_json(const NvmfSubsystemConfig& s);

/// Parses a configuration: JSON when the first non-blank character is '{', else TOML. `source` names
/// the file in errors ("udrvd.toml:12: ...").
Result<DaemonConfig> parse_config(std::string_view text, std::string_view source);
Result<DaemonConfig> load_config(const std::filesystem::path& file);

/// The configuration as TOML (the format above) or JSON (the same keys).
std::string config_to_toml(const DaemonConfig& c);
nlohmann::ordered_json config_to_json(const DaemonConfig& c);
/// Writes `c` to `file` (JSON if it ends in .json, else TOML), atomically.
Result<void> save_config(const DaemonConfig& c, const std::filesystem::path& file);

/// A host name: letters, digits, '-', '_', '.', 1-64 characters.
bool valid_host_name(std::string_view s);

}  // namespace udrv::daemon
