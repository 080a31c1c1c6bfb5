// Binds a device to vfio-pci, loads the edu driver module, lets it probe, unloads it and unbinds the
// device, N times in one process; then asserts from /proc that nothing leaked: open file descriptors,
// memory mappings and locked (DMA-pinned) memory are back where they were after the first round.
// Usage: udrv-vmtest-cycle ADDRESS MODULE.so ROUNDS
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "udrv/bind.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"

namespace {

#if defined(__SANITIZE_ADDRESS__)
// ASan's allocator maps regions of its own as its heap grows (LeakSanitizer checks the heap at exit); a
// mapping leaked per round would still show, as +rounds.
constexpr std::size_t kMapSlack = 8;
#else
constexpr std::size_t kMapSlack = 0;
#endif

struct Usage {
    std::size_t fds = 0, maps = 0, locked_kib = 0;
};

Usage measure() {
    Usage u;
    for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) (void)e, ++u.fds;
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line)) ++u.maps;
    std::ifstream status("/proc/self/status");
    while (std::getline(status, line))
        if (line.rfind("VmLck:", 0) == 0) u.locked_kib = std::stoul(line.substr(6));
    return u;
}

udrv::Result<void> round(const udrv::pci::Address& addr, const std::string& module) {
    UDRV_TRY(udrv::pci::bind_vfio(addr));
    {
        udrv::Loader loader;
        UDRV_TRY(loader.load(module));
        UDRV_TRY(udrv::pci::bus().scan());
        udrv::pci::Device* dev = udrv::pci::bus().find(addr);
        if (!dev || !dev->driver() || dev->driver()->name() != "udrv_edu")
            return udrv::fail(EIO, "{}: the edu driver did not bind", addr.to_string());
        UDRV_TRY(loader.unload("udrv_edu"));
        if (dev->is_bound()) return udrv::fail(EIO, "{}: still bound after the module was unloaded", addr.to_string());
        udrv::pci::bus().remove_all_devices();
    }
    UDRV_TRY(udrv::pci::unbind_vfio(addr));
    return {};
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s ADDRESS MODULE.so ROUNDS\n", argv[0]);
        return 2;
    }
    auto addr = udrv::pci::Address::parse(argv[1]);
    if (!addr) return std::fprintf(stderr, "%s\n", addr.error().message().c_str()), 2;
    const int rounds = std::stoi(argv[3]);
    udrv::set_log_level(udrv::LogLevel::warn);
    Usage base{};
    for (int i = 0; i < rounds; ++i) {
        if (auto r = round(*addr, argv[2]); !r) {
            std::printf("FAIL round %d: %s\n", i + 1, r.error().to_string().c_str());
            return 1;
        }
        if (i == 0) base = measure();  // after one round: libraries and caches are warm
    }
    Usage end = measure();
    std::printf("after round 1: %zu fds, %zu mappings, %zu KiB locked\n", base.fds, base.maps, base.locked_kib);
    std::printf("after round %d: %zu fds, %zu mappings, %zu KiB locked\n", rounds, end.fds, end.maps, end.locked_kib);
    bool ok = end.fds == base.fds && end.maps <= base.maps + kMapSlack && end.locked_kib == base.locked_kib;
    std::printf("%s: %d bind/load/probe/unload/unbind rounds %s\n", ok ? "PASS" : "FAIL", rounds, ok ? "leaked nothing" : "leaked");
    return ok ? 0 : 1;
}
