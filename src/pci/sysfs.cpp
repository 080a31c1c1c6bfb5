// PCI enumeration from sysfs (Documentation/ABI/testing/sysfs-bus-pci). Files may vanish mid-read
// (hot unplug) and fixture trees may be malformed: every read is checked.
#include <algorithm>
#include <charconv>
#include <sstream>

#include "udrv/fileio.hpp"
#include "udrv/pci.hpp"

namespace udrv::pci {
namespace fs = std::filesystem;

namespace {

bool parse_hex(std::string_view s, std::uint64_t& out) {
    if (s.starts_with("0x") || s.starts_with("0X")) s.remove_prefix(2);
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 16);
    return ec == std::errc() && p == s.data() + s.size();
}

// Attributes are a line or a few; the `resource` table is 17 lines. Anything larger is not sysfs (a
// fixture tree with a link to /dev/zero, say) and is refused by the bounded read.
constexpr std::size_t kMaxAttributeBytes = 64 * 1024;
constexpr std::size_t kMaxConfigBytes = 4096;  // PCIe extended configuration space

Result<std::string> read_text(const fs::path& p) {
    std::string s = UDRV_TRY(read_text_file(p, kMaxAttributeBytes));
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

Result<std::uint64_t> read_hex(const fs::path& p, std::uint64_t max) {
    auto text = UDRV_TRY(read_text(p));
    std::uint64_t v = 0;
    if (!parse_hex(text, v) || v > max) return fail(EBADMSG, "{}: expected a hex number up to {:#x}, got '{}'", p.string(), max, text);
    return v;
}

// sysfs `resource`: one "start end flags" line per resource; lines 0-5 are BARs, 6 the expansion ROM.
Result<std::vector<Bar>> read_bars(const fs::path& p) {
    auto text = UDRV_TRY(read_text(p));
    std::vector<Bar> bars;
    std::istringstream in(text);
    std::string line;
    for (unsigned i = 0; std::getline(in, line); ++i) {
        if (i > 6) break;  // bridge windows follow; not BARs
        std::istringstream ls(line);
        std::string a, b, c;
        std::uint64_t start = 0, end = 0, flags = 0;
        if (!(ls >> a >> b >> c) || !parse_hex(a, start) || !parse_hex(b, end) || !parse_hex(c, flags))
            return fail(EBADMSG, "{}: line {} is not 'start end flags' in hex: '{}'", p.string(), i + 1, line);
        if (start == 0 && end == 0) continue;
        if (end < start) return fail(EBADMSG, "{}: line {}: end {:#x} is below start {:#x}", p.string(), i + 1, end, start);
        if (end - start == UINT64_MAX)  // the size would wrap to 0
            return fail(EBADMSG, "{}: line {}: a resource from {:#x} to {:#x} spans the whole 64-bit address space", p.string(), i + 1,
                        start, end);
        Bar bar;
        bar.index = i;
        bar.start = start;
        bar.size = end - start + 1;
        bar.io = flags & 0x100;              // IORESOURCE_IO
        bar.prefetchable = flags & 0x2000;   // IORESOURCE_PREFETCH
        bar.is_64bit = flags & 0x100000;     // IORESOURCE_MEM_64
        bars.push_back(bar);
    }
    return bars;
}

Result<std::vector<std::uint8_t>> read_config(const fs::path& p) {
    std::string bytes = UDRV_TRY(read_text_file(p, kMaxConfigBytes, "config space"));
    return std::vector<std::uint8_t>(bytes.begin(), bytes.end());
}

}  // namespace

Result<Address> Address::parse(std::string_view s) {
    auto bad = [&] { return fail(EINVAL, "'{}' is not a PCI address (expected DDDD:BB:DD.F, e.g. 0000:00:03.0)", s); };
    Address a;
    std::string_view rest = s;
    auto colon1 = rest.find(':');
    auto colon2 = rest.find(':', colon1 == std::string_view::npos ? 0 : colon1 + 1);
    std::uint64_t v = 0;
    if (colon1 == std::string_view::npos) return bad();
    if (colon2 != std::string_view::npos) {
        if (colon1 == 0 || colon1 > 8 || !parse_hex(rest.substr(0, colon1), v) || v > 0xffffffff) return bad();
        a.domain = static_cast<std::uint32_t>(v);
        rest.remove_prefix(colon1 + 1);
    }
    auto c = rest.find(':');
    auto dot = rest.find('.');
    if (c != 2 || dot != 5 || rest.size() != 7) return bad();
    if (!parse_hex(rest.substr(0, 2), v)) return bad();
    a.bus = static_cast<std::uint8_t>(v);
    if (!parse_hex(rest.substr(3, 2), v) || v > 31) return bad();
    a.device = static_cast<std::uint8_t>(v);
    if (!parse_hex(rest.substr(6, 1), v) || v > 7) return bad();
    a.function = static_cast<std::uint8_t>(v);
    return a;
}

std::string Address::to_string() const { return fmt::format("{:04x}:{:02x}:{:02x}.{:x}", domain, bus, device, function); }

std::string modalias(const DeviceInfo& d) {
    return fmt::format("pci:v{:08X}d{:08X}sv{:08X}sd{:08X}bc{:02X}sc{:02X}i{:02X}", d.vendor_id, d.device_id, d.subsystem_vendor,
                       d.subsystem_device, d.base_class(), d.sub_class(), d.prog_if());
}

Result<DeviceInfo> read_device(const fs::path& dir) {
    DeviceInfo d;
    d.sysfs_path = dir;
    d.address = UDRV_TRY_CTX(Address::parse(dir.filename().string()), "{}", dir.string());
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return fail(ENODEV, "{}: no such device (removed?)", dir.string());

    auto bytes = UDRV_TRY(read_config(dir / "config"));
    d.config = UDRV_TRY_CTX(ConfigSpace::parse(std::move(bytes)), "{}/config", dir.string());

    // Identity: sysfs attributes where present (they reflect kernel quirks), config space otherwise.
    auto attr = [&](const char* name, std::uint64_t fallback, std::uint64_t max) -> Result<std::uint64_t> {
        if (!fs::exists(dir / name, ec)) return fallback;
        return read_hex(dir / name, max);
    };
    d.vendor_id = static_cast<std::uint16_t>(UDRV_TRY(attr("vendor", d.config.vendor_id, 0xffff)));
    d.device_id = static_cast<std::uint16_t>(UDRV_TRY(attr("device", d.config.device_id, 0xffff)));
    d.subsystem_vendor = static_cast<std::uint16_t>(UDRV_TRY(attr("subsystem_vendor", d.config.subsystem_vendor, 0xffff)));
    d.subsystem_device = static_cast<std::uint16_t>(UDRV_TRY(attr("subsystem_device", d.config.subsystem_device, 0xffff)));
    d.class_code = static_cast<std::uint32_t>(UDRV_TRY(attr("class", d.config.class_code, 0xffffff)));
    d.revision = static_cast<std::uint8_t>(UDRV_TRY(attr("revision", d.config.revision, 0xff)));

    if (fs::exists(dir / "resource", ec)) d.bars = UDRV_TRY(read_bars(dir / "resource"));
    if (auto link = fs::read_symlink(dir / "driver", ec); !ec) d.driver = link.filename().string();
    if (auto link = fs::read_symlink(dir / "iommu_group", ec); !ec) {
        unsigned g = 0;
        std::string name = link.filename().string();
        auto [p, e] = std::from_chars(name.data(), name.data() + name.size(), g);
        if (e != std::errc() || p != name.data() + name.size())
            return fail(EBADMSG, "{}/iommu_group: link target '{}' is not a group number", dir.string(), link.string());
        d.iommu_group = g;
    }
    if (fs::exists(dir / "numa_node", ec)) {
        auto text = UDRV_TRY(read_text(dir / "numa_node"));
        auto [p, e] = std::from_chars(text.data(), text.data() + text.size(), d.numa_node);
        if (e != std::errc() || p != text.data() + text.size())
            return fail(EBADMSG, "{}/numa_node: expected an integer, got '{}'", dir.string(), text);
    }
    if (fs::exists(dir / "irq", ec)) {
        auto text = UDRV_TRY(read_text(dir / "irq"));
        unsigned irq = 0;
        auto [p, e] = std::from_chars(text.data(), text.data() + text.size(), irq);
        if (e != std::errc() || p != text.data() + text.size())
            return fail(EBADMSG, "{}/irq: expected an interrupt number, got '{}'", dir.string(), text);
        d.irq = irq;
    }
    return d;
}

Result<std::vector<DeviceInfo>> scan(const fs::path& root, std::vector<Error>* problems) {
    std::error_code ec;
    fs::directory_iterator it(root, ec);
    if (ec) return fail(ec.value(), "{}: cannot list PCI devices: {}", root.string(), ec.message());
    std::vector<DeviceInfo> out;
    for (const auto& entry : it) {
        auto d = read_device(entry.path());
        if (d) out.push_back(std::move(*d));
        else if (problems) problems->push_back(std::move(d).error());
    }
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.address < b.address; });
    return out;
}

}  // namespace udrv::pci
