#include "lspci_select.hpp"

#include <charconv>
#include <vector>

namespace udrv::tools {
namespace {

// One field: empty or "*" is any; else hex no larger than `max`.
Result<std::optional<std::uint32_t>> field(std::string_view whole, std::string_view f, std::string_view what, std::uint32_t max) {
    if (f.empty() || f == "*") return std::optional<std::uint32_t>{};
    std::uint32_t v = 0;
    auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), v, 16);
    if (ec == std::errc::result_out_of_range || (ec == std::errc{} && end == f.data() + f.size() && v > max))
        return fail(EINVAL, "'{}': {} {} is too large (at most {:x})", whole, what, f, max);
    if (ec != std::errc{} || end != f.data() + f.size())
        return fail(EINVAL, "'{}': {} '{}' is not hexadecimal (lspci's form: [[[[<domain>]:]<bus>]:][<device>][.[<func>]] or "
                    "[<vendor>]:[<device>][:<class>[:<prog-if>]])", whole, what, f);
    return std::optional<std::uint32_t>{v};
}

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> parts;
    for (std::size_t start = 0;;) {
        const std::size_t at = s.find(sep, start);
        parts.push_back(s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
        if (at == std::string_view::npos) return parts;
        start = at + 1;
    }
}

template <typename T>
std::optional<T> narrow(std::optional<std::uint32_t> v) {
    return v ? std::optional<T>(static_cast<T>(*v)) : std::nullopt;
}

}  // namespace

bool SlotFilter::matches(const pci::Address& a) const noexcept {
    return (!domain || *domain == a.domain) && (!bus || *bus == a.bus) && (!device || *device == a.device) &&
           (!function || *function == a.function);
}

Result<SlotFilter> parse_slot_filter(std::string_view s) {
    const auto colons = split(s, ':');
    if (colons.size() > 3) return fail(EINVAL, "'{}': too many ':' for a slot ([[[[<domain>]:]<bus>]:][<device>][.[<func>]])", s);
    SlotFilter f;
    std::string_view devfn = colons.back();
    if (colons.size() == 3) f.domain = UDRV_TRY(field(s, colons[0], "domain", 0xffffffff));
    if (colons.size() >= 2) f.bus = narrow<std::uint8_t>(UDRV_TRY(field(s, colons[colons.size() - 2], "bus", 0xff)));
    const std::size_t dot = devfn.find('.');
    f.device = narrow<std::uint8_t>(UDRV_TRY(field(s, devfn.substr(0, dot), "device", 0x1f)));
    if (dot != std::string_view::npos) f.function = narrow<std::uint8_t>(UDRV_TRY(field(s, devfn.substr(dot + 1), "function", 7)));
    return f;
}

bool IdFilter::matches(const pci::DeviceInfo& d) const noexcept {
    return (!vendor || *vendor == d.vendor_id) && (!device || *device == d.device_id) &&
           (!class_id || *class_id == static_cast<std::uint16_t>(d.class_code >> 8)) && (!prog_if || *prog_if == d.prog_if());
}

Result<IdFilter> parse_id_filter(std::string_view s) {
    const auto parts = split(s, ':');
    if (parts.size() < 2 || parts.size() > 4)
        return fail(EINVAL, "'{}' is not a device ID selector ([<vendor>]:[<device>][:<class>[:<prog-if>]], e.g. 1af4: or 8086:10d3)", s);
    IdFilter f;
    f.vendor = narrow<std::uint16_t>(UDRV_TRY(field(s, parts[0], "vendor", 0xffff)));
    f.device = narrow<std::uint16_t>(UDRV_TRY(field(s, parts[1], "device", 0xffff)));
    if (parts.size() >= 3) f.class_id = narrow<std::uint16_t>(UDRV_TRY(field(s, parts[2], "class", 0xffff)));
    if (parts.size() == 4) f.prog_if = narrow<std::uint8_t>(UDRV_TRY(field(s, parts[3], "prog-if", 0xff)));
    return f;
}

}  // namespace udrv::tools
