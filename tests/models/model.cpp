#include "model.hpp"

#include <unistd.h>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_TOGGLE_COLLECT
#endif

namespace udrv::models {

namespace {
// Callgrind's collection off for the scope (a few instructions, nothing else, outside valgrind).
struct Uncounted {
    Uncounted() { CALLGRIND_TOGGLE_COLLECT; }
    ~Uncounted() { CALLGRIND_TOGGLE_COLLECT; }
    Uncounted(const Uncounted&) = delete;
    Uncounted& operator=(const Uncounted&) = delete;
};
}  // namespace

void ModelFunction::mmio_written(unsigned bar, std::size_t offset, unsigned width, std::uint64_t value) {
    Uncounted device_work;
    on_mmio_written(bar, offset, width, value);
}

std::optional<std::uint64_t> ModelFunction::mmio_read(unsigned bar, std::size_t offset, unsigned width) {
    Uncounted device_work;
    return on_mmio_read(bar, offset, width);
}

ModelFunction::ModelFunction(std::string address, std::uint16_t vendor, std::uint16_t device, std::uint32_t class_code,
                             std::uint8_t revision)
    : address_(std::move(address)) {
    auto put16 = [&](std::size_t o, std::uint16_t v) { std::memcpy(&config_[o], &v, 2); };
    put16(0x00, vendor);
    put16(0x02, device);
    put16(0x04, 0x0002);  // memory space on, bus mastering off: the driver turns it on
    config_[0x08] = revision;
    config_[0x09] = static_cast<std::uint8_t>(class_code);
    config_[0x0a] = static_cast<std::uint8_t>(class_code >> 8);
    config_[0x0b] = static_cast<std::uint8_t>(class_code >> 16);
    put16(0x2c, 0x1af4);  // subsystem: QEMU's
    put16(0x2e, 0x1100);
}

ModelFunction::~ModelFunction() = default;

pci::DeviceInfo ModelFunction::info() const {
    pci::DeviceInfo d;
    d.address = *pci::Address::parse(address_);
    d.config = *pci::ConfigSpace::parse(config_);
    d.vendor_id = d.config.vendor_id;
    d.device_id = d.config.device_id;
    d.subsystem_vendor = d.config.subsystem_vendor;
    d.subsystem_device = d.config.subsystem_device;
    d.class_code = d.config.class_code;
    d.revision = d.config.revision;
    d.driver = "vfio-pci";  // what a device given to udrv would be on
    d.iommu_group = 0;
    for (unsigned i = 0; i < 6; ++i)
        if (!bars_[i].empty()) d.bars.push_back(pci::Bar{i, 0xfe000000ull + i * 0x100000ull, bars_[i].size(), false, false, false});
    return d;
}

void ModelFunction::add_bar(unsigned index, std::size_t size) {
    bars_[index].assign(size, std::byte{0});
    const std::uint32_t addr = 0xfe000000u + index * 0x100000u;
    std::memcpy(&config_[0x10 + 4 * index], &addr, 4);
}

std::uint8_t ModelFunction::next_cap_offset(std::size_t len) {
    const std::uint8_t at = cap_end_;
    cap_end_ = static_cast<std::uint8_t>((at + len + 3) & ~3u);
    config_[0x06] |= 0x10;  // status: capability list
    if (last_cap_) config_[last_cap_ + 1] = at;
    else config_[0x34] = at;
    last_cap_ = at;
    return at;
}

void ModelFunction::add_msix(unsigned vectors, unsigned bar, std::uint32_t offset) {
    const std::uint8_t at = next_cap_offset(12);
    config_[at] = pci::kCapMsix;
    const std::uint16_t ctl = static_cast<std::uint16_t>(vectors - 1);
    std::memcpy(&config_[at + 2], &ctl, 2);
    const std::uint32_t table = offset | bar, pba = (offset + 16 * vectors) | bar;
    std::memcpy(&config_[at + 4], &table, 4);
    std::memcpy(&config_[at + 8], &pba, 4);
    msix_vectors_ = vectors;
    irq_fds_.assign(vectors, -1);
}

void ModelFunction::add_vendor_capability(std::span<const std::uint8_t> body) {
    const std::uint8_t at = next_cap_offset(2 + body.size());
    config_[at] = pci::kCapVendor;
    std::memcpy(&config_[at + 2], body.data(), body.size());
}

void ModelFunction::interrupt(unsigned v) {
    if (v >= irq_fds_.size() || irq_fds_[v] < 0) return;
    const std::uint64_t one = 1;
    if (::write(irq_fds_[v], &one, sizeof one) == sizeof one) ++interrupts_;
}

bool ModelFunction::dma_read(std::uint64_t iova, void* out, std::size_t len) {
    auto p = iommu_->translate(iova, len);
    if (!p) {
        ++dma_faults_;
        return false;
    }
    std::memcpy(out, *p, len);
    return true;
}

bool ModelFunction::dma_write(std::uint64_t iova, const void* in, std::size_t len) {
    auto p = iommu_->translate(iova, len);
    if (!p) {
        ++dma_faults_;
        return false;
    }
    std::memcpy(*p, in, len);
    return true;
}

Result<hw::RegionInfo> ModelFunction::region(unsigned index) const {
    if (index == 7) return hw::RegionInfo{config_.size(), 0, true, true, false};
    if (index > 5 || bars_[index].empty()) return hw::RegionInfo{};
    return hw::RegionInfo{bars_[index].size(), 0, true, true, true};
}

Result<std::unique_ptr<hw::BarMapping>> ModelFunction::map_bar(unsigned index) const {
    if (index > 5 || bars_[index].empty()) return fail(ENXIO, "{}: BAR{} is not implemented", address_, index);
    auto* self = const_cast<ModelFunction*>(this);  // the model listens to its own registers
    return std::make_unique<hw::BarMapping>(self->bars_[index].data(), bars_[index].size(), index, self);
}

Result<void> ModelFunction::read_config(std::uint32_t offset, std::span<std::uint8_t> out) const {
    if (offset > config_.size() || out.size() > config_.size() - offset) return fail(ERANGE, "{}: config read beyond 4 KiB", address_);
    std::memcpy(out.data(), config_.data() + offset, out.size());
    return {};
}

Result<void> ModelFunction::write_config(std::uint32_t offset, std::span<const std::uint8_t> in) const {
    if (offset > config_.size() || in.size() > config_.size() - offset) return fail(ERANGE, "{}: config write beyond 4 KiB", address_);
    std::memcpy(const_cast<std::uint8_t*>(config_.data()) + offset, in.data(), in.size());
    return {};
}

Result<std::uint32_t> ModelFunction::irq_count(hw::IrqKind kind) const { return kind == hw::IrqKind::msix ? msix_vectors_ : 0; }

Result<void> ModelFunction::set_irq_eventfds(hw::IrqKind kind, std::uint32_t start, std::span<const std::int32_t> fds) const {
    if (kind != hw::IrqKind::msix || start + fds.size() > irq_fds_.size())
        return fail(EINVAL, "{}: {} vectors {}..{} do not exist", address_, hw::irq_kind_name(kind), start, start + fds.size());
    for (std::size_t i = 0; i < fds.size(); ++i) irq_fds_[start + i] = fds[i];
    return {};
}

Result<void> ModelFunction::disable_irqs(hw::IrqKind kind) const noexcept {
    if (kind == hw::IrqKind::msix) std::fill(irq_fds_.begin(), irq_fds_.end(), -1);
    return {};
}

}  // namespace udrv::models
