// What devices write back into rings: NVMe completion entries, virtio used elements, e1000e receive
// descriptors. Whatever a validator accepts is then used as the driver uses it (as an index into the
// queue's bookkeeping, as a length into the buffer), so ASan catches a check that lets a bad one through.
#include <fuzzer/FuzzedDataProvider.h>

#include <vector>

#include "e1000e/e1000e.hpp"
#include "udrv/nvme_spec.hpp"
#include "virtio_net/virtio_net.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    // NVMe: a queue of `depth` command ids, some outstanding.
    const std::uint16_t depth = in.ConsumeIntegralInRange<std::uint16_t>(2, 1024), qid = in.ConsumeIntegral<std::uint16_t>();
    std::vector<std::uint8_t> busy(depth);
    for (auto& b : busy) b = in.ConsumeBool();
    std::vector<std::uint64_t> submitted(depth, 7);
    udrv::nvme::Cqe c{};
    c.result = in.ConsumeIntegral<std::uint32_t>();
    c.sq_head = in.ConsumeIntegral<std::uint16_t>();
    c.sq_id = in.ConsumeBool() ? qid : in.ConsumeIntegral<std::uint16_t>();
    c.cid = in.ConsumeIntegral<std::uint16_t>();
    c.status = in.ConsumeIntegral<std::uint16_t>();
    if (udrv::nvme::completion_plausible(c, qid, depth, [&](std::uint16_t cid) { return busy.at(cid) != 0; })) {
        submitted[c.cid] = 0;            // the slot the completion names
        (void)submitted[c.sq_head];      // the SQ head it reports lies in the queue
        (void)udrv::nvme::status_name(c.status >> 1);
    }
    // virtio: a ring of `ring` descriptors with buffers of `capacity` bytes after a 12-byte header.
    const std::size_t ring = in.ConsumeIntegralInRange<std::size_t>(1, 1024), capacity = in.ConsumeIntegralInRange<std::size_t>(1, 4096);
    std::vector<std::vector<std::byte>> buffers(ring);
    for (auto& b : buffers)
        if (in.ConsumeBool()) b.resize(12 + capacity);
    const auto id = in.ConsumeIntegral<std::uint32_t>(), len = in.ConsumeIntegral<std::uint32_t>();
    if (udrv::virtio_net::check_used(id, len, ring - 1, [&](std::uint32_t i) { return !buffers.at(i).empty(); }, 12,
                                     static_cast<std::uint32_t>(capacity)) == udrv::virtio_net::UsedCheck::ok) {
        auto& b = buffers[id];
        if (len < 12) __builtin_trap();  // accepted a buffer without room for its header
        (void)b.at(len - 1);             // the frame's last byte lies in the buffer
    }
    // e1000e: a 2 KiB buffer and what the descriptor says about it.
    std::vector<std::byte> rx(2048);
    const auto wb = in.ConsumeIntegral<std::uint64_t>();
    if (udrv::e1000e::rx_descriptor_good<2048>(wb)) {
        const auto length = static_cast<std::uint16_t>(wb);
        if (length == 0 || ((wb >> 32) & 3) != 3 || ((wb >> 40) & 0xff) != 0) __builtin_trap();  // accepted what it must not
        (void)rx.at(length - 1u);  // the frame's last byte lies in the buffer
    }
    return 0;
}
