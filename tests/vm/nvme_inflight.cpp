// NVMe driver checks that need a program: device status decoding, a buffer that is not DMA memory,
// and unbinding with I/O in flight: every command must complete or fail (its callback runs), and the
// controller must shut down cleanly. Usage: udrv-vmtest-nvme ADDRESS
#include <cstdio>
#include <string>
#include <vector>

#include "nvme/nvme.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"

namespace {

int failures = 0;
void check(bool ok, const std::string& what) {
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
    failures += !ok;
}

struct Tally {
    int ok = 0, failed = 0;
    std::string last_error;
    static void cb(void* c, const udrv::Result<void>& r) {
        auto* t = static_cast<Tally*>(c);
        if (r) ++t->ok;
        else ++t->failed, t->last_error = r.error().message();
    }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) return std::fprintf(stderr, "usage: %s ADDRESS\n", argv[0]), 2;
    std::vector<std::string> log;
    udrv::set_log_sink([&](udrv::LogLevel, std::string_view m) {
        log.emplace_back(m);
        std::fprintf(stderr, "%.*s\n", static_cast<int>(m.size()), m.data());
    });
    udrv::Loader loader;
    if (!loader.load("udrv_nvme") || !udrv::pci::bus().scan()) return std::fprintf(stderr, "setup failed\n"), 1;
    auto addr = udrv::pci::Address::parse(argv[1]);
    udrv::pci::Device* dev = addr ? udrv::pci::bus().find(*addr) : nullptr;
    auto* ctrl = dev ? dev->driver_data<udrv::nvme::Controller>() : nullptr;
    if (!ctrl) return std::fprintf(stderr, "%s is not bound to udrv_nvme\n", argv[1]), 1;
    auto* ns = *ctrl->find_namespace(1);
    auto q = ns->open_queue(128, udrv::block::Mode::interrupt);
    if (!q) return std::fprintf(stderr, "%s\n", q.error().message().c_str()), 1;
    auto buf = *ns->alloc_buffer(4096);

    // A read past the end: the device answers with a status the driver names.
    Tally t;
    const std::uint64_t end = ns->info().blocks;
    check((*q)->read(end, 1, buf.bytes(), &Tally::cb, &t).has_value(), "read past the end is submitted");
    while (t.ok + t.failed == 0) (void)(*q)->wait(std::chrono::milliseconds(1000));
    check(t.failed == 1 && t.last_error.find("LBA Out of Range (SCT 0h Generic, SC 80h") != std::string::npos,
          "device status decoded: " + t.last_error);

    // Memory the device cannot reach is refused before the device sees it.
    std::vector<std::byte> plain(4096);
    auto r = (*q)->read(0, 1, plain, &Tally::cb, &t);
    check(!r && r.error().code() == EFAULT, "plain heap memory is refused: " + (r ? std::string("accepted") : r.error().message()));

    // Unbind with I/O in flight.
    Tally inflight;
    std::vector<udrv::block::Buffer> bufs;
    int submitted = 0;
    for (int i = 0; i < 100; ++i) {
        bufs.push_back(*ns->alloc_buffer(64 * 1024));
        auto s = (i % 2) ? (*q)->write(std::uint64_t(i) * 128, 128, bufs.back().bytes(), &Tally::cb, &inflight)
                         : (*q)->read(std::uint64_t(i) * 128, 128, bufs.back().bytes(), &Tally::cb, &inflight);
        if (s) ++submitted;
        else break;  // queue full is fine: what was submitted must all come back
    }
    std::printf("INFO %d commands in flight at unbind\n", submitted);
    udrv::pci::bus().unbind(*dev);
    check(inflight.ok + inflight.failed == submitted,
          "every in-flight command completed or failed: " + std::to_string(inflight.ok) + " ok, " + std::to_string(inflight.failed) + " failed");
    bool clean = false;
    for (auto& l : log) clean = clean || l.find("shut down cleanly") != std::string::npos;
    check(clean, "controller shut down cleanly (CSTS.SHST complete)");
    auto after = (*q)->read(0, 1, buf.bytes(), &Tally::cb, &t);
    check(!after && after.error().code() == ENODEV, "the queue refuses I/O after unbind: " + (after ? std::string("accepted") : after.error().message()));
    q->reset();
    udrv::set_log_sink(nullptr);
    std::printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
