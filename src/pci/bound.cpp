// Bound<pci::Device>: the operations a driver may do on a device bound to it (through VFIO, or on a
// device model).
#include "udrv/pci.hpp"

namespace udrv {

Result<pci::Device::Binding*> Bound<pci::Device>::binding() const {
    pci::Device& d = device();
    if (!d.binding_)
        return fail(ENODEV, "{} is not opened through VFIO (kernel driver: {}): bind it with `udrv bind {}`", d.name(),
                    d.info().driver.value_or("none"), d.name());
    return d.binding_.get();
}

Result<const hw::BarMapping*> Bound<pci::Device>::map_bar_raw(unsigned index, std::size_t min_size) const {
    pci::Device::Binding* b = UDRV_TRY(binding());
    if (auto it = b->bars.find(index); it != b->bars.end()) {
        if (it->second->size() < min_size)
            return fail(ENXIO, "{}: BAR{} is {} bytes, driver needs {}", device().name(), index, it->second->size(), min_size);
        return it->second.get();
    }
    auto info = UDRV_TRY(b->fn->region(index));
    if (info.size < min_size)
        return fail(ENXIO, "{}: BAR{} is {} KiB, driver needs {} KiB", device().name(), index, info.size / 1024, (min_size + 1023) / 1024);
    auto m = UDRV_TRY(b->fn->map_bar(index));
    const hw::BarMapping* bar = m.get();
    b->bars.emplace(index, std::move(m));
    return bar;
}

Result<void> Bound<pci::Device>::enable_bus_master() const { return UDRV_TRY(binding())->fn->enable_bus_master(); }

Result<std::uint8_t> Bound<pci::Device>::read_config8(std::uint32_t off) const {
    std::uint8_t b[1];
    UDRV_TRY(UDRV_TRY(binding())->fn->read_config(off, b));
    return b[0];
}
Result<std::uint16_t> Bound<pci::Device>::read_config16(std::uint32_t off) const { return UDRV_TRY(binding())->fn->read_config16(off); }
Result<std::uint32_t> Bound<pci::Device>::read_config32(std::uint32_t off) const {
    std::uint8_t b[4];
    UDRV_TRY(UDRV_TRY(binding())->fn->read_config(off, b));
    return static_cast<std::uint32_t>(b[0] | b[1] << 8 | b[2] << 16 | static_cast<std::uint32_t>(b[3]) << 24);
}
Result<void> Bound<pci::Device>::write_config16(std::uint32_t off, std::uint16_t v) const {
    return UDRV_TRY(binding())->fn->write_config16(off, v);
}
Result<void> Bound<pci::Device>::write_config32(std::uint32_t off, std::uint32_t v) const {
    const std::uint8_t b[4] = {std::uint8_t(v), std::uint8_t(v >> 8), std::uint8_t(v >> 16), std::uint8_t(v >> 24)};
    return UDRV_TRY(binding())->fn->write_config(off, b);
}

Result<void> Bound<pci::Device>::set_dma_mask(unsigned bits) const {
    if (bits < 12 || bits > 64) return fail(EINVAL, "{}: DMA mask of {} bits makes no sense (12-64)", device().name(), bits);
    UDRV_TRY(binding())->dma_limit = bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
    return {};
}

Result<dma::Allocator> Bound<pci::Device>::dma() const {
    pci::Device::Binding* b = UDRV_TRY(binding());
    return dma::Allocator(b->dma, b->dma_limit);
}

Result<dma::Region> Bound<pci::Device>::alloc_dma(std::size_t bytes) const {
    return UDRV_TRY_CTX(UDRV_TRY(dma()).region(bytes), "{}", device().name());
}

Result<dma::Pool> Bound<pci::Device>::create_dma_pool(std::size_t buffer_size, std::uint32_t count) const {
    return UDRV_TRY_CTX(UDRV_TRY(dma()).pool(buffer_size, count), "{}", device().name());
}

Result<dma::Streaming> Bound<pci::Device>::map_streaming(std::span<std::byte> memory) const {
    return UDRV_TRY_CTX(UDRV_TRY(dma()).streaming(memory), "{}", device().name());
}

Result<irq::Vectors> Bound<pci::Device>::alloc_irq_vectors(irq::IrqKind kind, unsigned count) const {
    return irq::Vectors::enable(UDRV_TRY(binding())->fn, kind, count);
}

Result<irq::Vectors> Bound<pci::Device>::alloc_irq_vectors_any(unsigned count) const {
    pci::Device::Binding* b = UDRV_TRY(binding());
    for (irq::IrqKind k : {irq::IrqKind::msix, irq::IrqKind::msi})
        if (UDRV_TRY(b->fn->irq_count(k)) >= count) return irq::Vectors::enable(b->fn, k, count);
    if (count == 1 && UDRV_TRY(b->fn->irq_count(irq::IrqKind::intx)) >= 1) return irq::Vectors::enable(b->fn, irq::IrqKind::intx, 1);
    return fail(ENOTSUP, "{}: no interrupt mode offers {} vector(s)", device().name(), count);
}

}  // namespace udrv
