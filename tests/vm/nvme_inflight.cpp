// NVMe driver checks that need a program: device status decoding, buffers that are not DMA memory or
// not dword aligned, controller resets with I/O in flight on two threads' queues, and unbinding with
// I/O in flight: every command must complete or fail (its callback runs, on the queue owner's next
// call), and the controller must shut down cleanly.
// Usage: udrv-vmtest-nvme ADDRESS
#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
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

// Writes a pattern to 8 blocks at `lba` and reads it back through `q`; true if it matches.
bool write_read_back(udrv::block::Queue& q, udrv::block::Device& ns, std::uint64_t lba, unsigned char seed) {
    const std::uint32_t blocks = 8;
    const std::size_t bytes = std::size_t{blocks} * ns.info().block_size;
    auto out = ns.alloc_buffer(bytes), in = ns.alloc_buffer(bytes);
    if (!out || !in) return false;
    for (std::size_t i = 0; i < bytes; ++i) out->bytes()[i] = std::byte(static_cast<unsigned char>(seed + i * 7));
    Tally t;
    if (!q.write(lba, blocks, out->bytes(), &Tally::cb, &t)) return false;
    while (t.ok + t.failed < 1) (void)q.wait(std::chrono::milliseconds(100));
    if (!q.read(lba, blocks, in->bytes(), &Tally::cb, &t)) return false;
    while (t.ok + t.failed < 2) (void)q.wait(std::chrono::milliseconds(100));
    return t.ok == 2 && std::memcmp(out->bytes().data(), in->bytes().data(), bytes) == 0;
}

// A second thread with its own polled queue: keeps 8 reads in flight until told to stop, then drains
// and checks that its queue still moves data.
struct Reader {
    udrv::block::Device* ns = nullptr;
    std::atomic<bool> stop{false};
    int submitted = 0;
    Tally t;
    bool works_after = false;
    std::string error;
    void run() {
        auto q = ns->open_queue(16, udrv::block::Mode::polled);
        if (!q) return void(error = q.error().message());
        auto buf = ns->alloc_buffer(8 * 4096);
        if (!buf) return void(error = buf.error().message());
        for (unsigned next = 0; !stop; ++next) {
            if ((*q)->outstanding() < 8) {
                if ((*q)->read(1000 + next % 64, 1, buf->bytes().subspan((next % 8) * 4096, 4096), &Tally::cb, &t)) ++submitted;
            }
            if (auto r = (*q)->poll(); !r) return void(error = r.error().message());
        }
        for (int i = 0; i < 100 && t.ok + t.failed < submitted; ++i) (void)(*q)->wait(std::chrono::milliseconds(100));
        works_after = write_read_back(**q, *ns, 3000, 0x5a);
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
    // PRPs address dwords: a buffer that does not start on one is refused, not handed to the device.
    auto wide = *ns->alloc_buffer(2 * 4096);
    auto odd = (*q)->read(0, 1, wide.bytes().subspan(2, ns->info().block_size), &Tally::cb, &t);
    check(!odd && odd.error().code() == EINVAL && odd.error().message().find("4-byte aligned") != std::string::npos,
          "a buffer 2 bytes into a page is refused: " + (odd ? std::string("accepted") : odd.error().message()));
    check(t.ok + t.failed == 1, "refused requests never run their callback");

    // Controller reset with commands in flight here (interrupt-driven queue) and in another thread
    // (polled queue): each command completes or fails with the reset's error, none is lost, and both
    // queues recreate themselves and move data afterwards.
    {
        Reader reader;
        reader.ns = ns;
        std::thread th([&] { reader.run(); });
        Tally mine;
        auto wbuf = *ns->alloc_buffer(32 * 4096);
        int in_flight = 0;
        for (int i = 0; i < 32; ++i)
            if ((*q)->write(std::uint64_t(i) * 8, 8, wbuf.bytes().subspan(std::size_t(i) * 4096, 4096), &Tally::cb, &mine)) ++in_flight;
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        auto r1 = ctrl->reset();
        for (int i = 0; i < 100 && mine.ok + mine.failed < in_flight; ++i) (void)(*q)->wait(std::chrono::milliseconds(100));
        check(r1.has_value(), "controller reset with I/O in flight" + (r1 ? std::string() : ": " + r1.error().message()));
        check(mine.ok + mine.failed == in_flight, "every command in flight at the reset came back: " + std::to_string(mine.ok) + " ok, " +
                                                      std::to_string(mine.failed) + " failed of " + std::to_string(in_flight));
        check(mine.failed == 0 || mine.last_error.find("reset") != std::string::npos, "failures name the reset: " + mine.last_error);
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        auto r2 = ctrl->reset();  // again, with only the other thread busy
        check(r2.has_value(), "a second reset" + (r2 ? std::string() : ": " + r2.error().message()));
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        reader.stop = true;
        th.join();
        check(reader.error.empty() && reader.submitted > 0 && reader.t.ok + reader.t.failed == reader.submitted,
              "the other thread's queue: " + std::to_string(reader.submitted) + " reads submitted, " + std::to_string(reader.t.ok) +
                  " ok, " + std::to_string(reader.t.failed) + " failed by the resets" + (reader.error.empty() ? "" : "; " + reader.error));
        check(reader.works_after, "the other thread's queue moves data after the resets");
        check(write_read_back(**q, *ns, 2000, 0xa5), "this thread's queue moves data after the resets");
        check(ctrl->resets() == 2, "the controller counts 2 resets: " + std::to_string(ctrl->resets()));
    }

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
    // The queue is the application's: it hears what became of its commands on its next call (on its own
    // thread, never from the unbind), and is refused from then on.
    auto first = (*q)->poll();
    check(!first && first.error().code() == ENODEV, "the queue's next call after unbind says the controller is gone: " +
                                                        (first ? std::string("accepted") : first.error().message()));
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
