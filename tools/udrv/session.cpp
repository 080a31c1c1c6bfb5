#include "session.hpp"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>

#include "output.hpp"
#include "udrv/log.hpp"
#include "udrv/modprobe.hpp"
#include "udrv/platform.hpp"

namespace udrv::tools {
namespace {

// Set from a signal handler and read by every thread: a lock-free atomic.
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);

std::string why_not_bound(const pci::DeviceInfo& d) {
    if (d.driver != "vfio-pci")
        return fmt::format("on {}: `udrv bind {}` first", d.driver ? "the kernel's " + *d.driver + " driver" : "no driver",
                           d.address.to_string());
    return {};
}

}  // namespace

void show_and_hold(const Loader& loader, bool hold) {
    print(loader.format_lsmod());
    std::fflush(stdout);
    if (!hold) return;
    install_stop_signals();
    pr_info("udrv: modules loaded; Ctrl-C unloads them");
    while (!stop_requested()) pause();
}

Result<std::unique_ptr<Session>> Session::open(SessionOptions o) {
    std::unique_ptr<Session> s(new Session());
    s->loader_ = std::make_unique<Loader>(modprobe::default_module_dirs());
    UDRV_TRY(s->loader_->load_builtins());  // the drivers built into the tool, as at boot

    // Which PCI devices: those named, or those on vfio-pci the command is about.
    std::vector<pci::Address> named;
    for (const auto& text : o.devices) named.push_back(UDRV_TRY(pci::Address::parse(text)));
    std::vector<Error> problems;
    auto infos = UDRV_TRY(pci::scan(pci::kSysfsDevices, &problems));
    std::vector<pci::Address> allow;
    for (const auto& d : infos) {
        const bool is_named = std::find(named.begin(), named.end(), d.address) != named.end();
        const bool considered = !named.empty() ? is_named : o.wanted ? o.wanted(d) : d.driver == "vfio-pci";
        if (!considered) continue;
        if (std::string why = why_not_bound(d); !why.empty()) {
            if (is_named) return fail(ENODEV, "{} is {}", d.address.to_string(), why);
            s->skipped_.push_back({d.address.to_string(), why});
            continue;
        }
        allow.push_back(d.address);
    }
    for (const auto& a : named)
        if (std::none_of(infos.begin(), infos.end(), [&](auto& d) { return d.address == a; }))
            return fail(ENODEV, "no PCI device {} (udrv lspci lists them)", a.to_string());
    if (!allow.empty()) {
        pci::bus().allow_only(allow);
        UDRV_TRY(pci::bus().scan());
        for (const auto& a : allow) {
            pci::Device* d = pci::bus().find(a);
            if (!d || d->is_bound()) continue;
            auto r = pci::bus().attach(*d);  // probing again says why the first probe failed
            if (r) continue;
            if (std::find(named.begin(), named.end(), a) != named.end()) return std::unexpected(std::move(r).error());
            s->skipped_.push_back({a.to_string(), r.error().message()});
        }
    }
    for (const auto& file : o.platform_descriptions) {
        auto descs = UDRV_TRY(platform::load_description(file));
        UDRV_TRY(platform::bus().register_devices(std::move(descs)));
    }
    return s;
}

Session::~Session() {
    // Unbind (remove + devres: clean shutdowns) before the modules go with the loader.
    pci::bus().remove_all_devices();
    platform::bus().remove_all_devices();
}

void install_stop_signals() {
    static const bool installed = [] {
        std::signal(SIGINT, [](int) { g_stop = true; });
        std::signal(SIGTERM, [](int) { g_stop = true; });
        return true;
    }();
    (void)installed;
}

bool stop_requested() noexcept { return g_stop.load(std::memory_order_relaxed); }
void request_stop() noexcept { g_stop = true; }
const std::atomic<bool>& stop_flag() noexcept { return g_stop; }

}  // namespace udrv::tools
