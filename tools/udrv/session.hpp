// What every command that drives devices does first, written once: load the drivers, find the devices
// it names (or, naming none, those on vfio-pci it is about), let the PCI bus bind only those (its
// allow list, like DPDK's -a: other udrv processes may be driving the rest), register platform
// descriptions, and say why a device could not be taken. At the end everything is unbound (drivers
// shut their devices down cleanly) before the modules unload. Devices are then used through their
// class (udrv/block.hpp, udrv/net.hpp, udrv/nvme.hpp), never a driver's type.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "udrv/loader.hpp"
#include "udrv/pci.hpp"

namespace udrv::tools {

struct SessionOptions {
    /// PCI devices the command names (-s): each must end up bound to a udrv driver, or open() fails
    /// with the reason.
    std::vector<std::string> devices;
    /// With none named: the devices on vfio-pci to bind, or all of them (null).
    std::function<bool(const pci::DeviceInfo&)> wanted;
    /// Platform description files whose devices to register.
    std::vector<std::string> platform_descriptions;
};

class Session {
public:
    static Result<std::unique_ptr<Session>> open(SessionOptions o);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    /// Devices the command was about that no udrv driver drives, with why ("on the kernel's nvme
    /// driver: `udrv bind ...` first", a probe's error), for list commands to show.
    struct Skipped {
        std::string address, reason;
    };
    const std::vector<Skipped>& skipped() const noexcept { return skipped_; }

private:
    Session() = default;
    std::unique_ptr<Loader> loader_;
    std::vector<Skipped> skipped_;
};

/// insmod and modprobe without udrvd: prints the modules `loader` holds, like lsmod, and with `hold`
/// keeps them loaded until Ctrl-C (the loader's owner then unloads them, in reverse).
void show_and_hold(const Loader& loader, bool hold);

/// SIGINT and SIGTERM ask running loops to stop (installed on first call; idempotent).
void install_stop_signals();
/// Has a stop been asked for (a signal, or request_stop() from a thread that failed)?
bool stop_requested() noexcept;
void request_stop() noexcept;
/// The flag behind stop_requested(), for code that takes an atomic (PerfOpts::cancel).
const std::atomic<bool>& stop_flag() noexcept;

}  // namespace udrv::tools
