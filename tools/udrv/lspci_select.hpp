// lspci's device selectors, with lspci's meaning (pciutils' lspci(8)): -s by address, -d by IDs and
// class. Every part is hexadecimal and may be empty or `*` (any).
#pragma once

#include <optional>
#include <string_view>

#include "udrv/pci.hpp"
#include "udrv/result.hpp"

namespace udrv::tools {

/// -s [[[[<domain>]:]<bus>]:][<device>][.[<func>]]: "00:03" is bus 0 device 3, "3" device 3 on any
/// bus, ".1" function 1 of every device.
struct SlotFilter {
    std::optional<std::uint32_t> domain;
    std::optional<std::uint8_t> bus, device, function;
    bool matches(const pci::Address& a) const noexcept;
};
Result<SlotFilter> parse_slot_filter(std::string_view s);

/// -d [<vendor>]:[<device>][:<class>[:<prog-if>]]: "1af4:" every Red Hat device, "::0200" every
/// Ethernet controller (class is base and sub-class, 16 bits).
struct IdFilter {
    std::optional<std::uint16_t> vendor, device, class_id;
    std::optional<std::uint8_t> prog_if;
    bool matches(const pci::DeviceInfo& d) const noexcept;
};
Result<IdFilter> parse_id_filter(std::string_view s);

}  // namespace udrv::tools
