#include "udrv/hw.hpp"

namespace udrv::hw {

std::string_view irq_kind_name(IrqKind k) noexcept {
    switch (k) {
        case IrqKind::intx: return "INTx";
        case IrqKind::msi: return "MSI";
        case IrqKind::msix: return "MSI-X";
        case IrqKind::err: return "error";
        case IrqKind::req: return "device request";
    }
    return "?";
}

Result<std::uint16_t> PciFunction::read_config16(std::uint32_t offset) const {
    std::uint8_t b[2];
    UDRV_TRY(read_config(offset, b));
    return static_cast<std::uint16_t>(b[0] | b[1] << 8);
}

Result<void> PciFunction::write_config16(std::uint32_t offset, std::uint16_t v) const {
    const std::uint8_t b[2] = {static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8)};
    return write_config(offset, b);
}

Result<void> PciFunction::enable_bus_master() const {
    std::uint16_t cmd = UDRV_TRY(read_config16(0x04));
    if (cmd & 0x4) return {};
    return write_config16(0x04, static_cast<std::uint16_t>(cmd | 0x4 | 0x2));  // bus master + memory space
}

}  // namespace udrv::hw
