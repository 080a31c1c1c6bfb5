// pci.ids parsing and lspci-compatible naming (pciutils lib/names.c behaviour with -nn).
#include <cstdlib>
#include <unordered_map>

#include "udrv/fileio.hpp"
#include "udrv/pci.hpp"

namespace udrv::pci {

struct IdDatabase::Tables {
    std::unordered_map<std::uint32_t, std::string> vendors;     // v
    std::unordered_map<std::uint32_t, std::string> devices;     // v<<16 | d
    std::unordered_map<std::uint64_t, std::string> subsystems;  // v<<48 | d<<32 | sv<<16 | sd
    std::unordered_map<std::uint32_t, std::string> classes;     // c
    std::unordered_map<std::uint32_t, std::string> subclasses;  // c<<8 | s
    std::unordered_map<std::uint32_t, std::string> prog_ifs;    // c<<16 | s<<8 | p
};

namespace {
bool hex(std::string_view s, std::size_t n, std::uint32_t& out) {
    if (s.size() < n) return false;
    out = 0;
    for (std::size_t i = 0; i < n; ++i) {
        char c = s[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (v < 0) return false;
        out = out << 4 | static_cast<std::uint32_t>(v);
    }
    return true;
}
std::string trim_name(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\r')) s.remove_suffix(1);
    return std::string(s);
}
}  // namespace

std::vector<std::filesystem::path> IdDatabase::default_paths() {
    std::vector<std::filesystem::path> p;
    if (const char* env = std::getenv("UDRV_PCI_IDS")) p.emplace_back(env);
    for (auto s : {"/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids"}) p.emplace_back(s);
    return p;
}

Result<IdDatabase> IdDatabase::load(const std::filesystem::path& file) {
    // pci.ids is about 1.4 MB; 64 MiB leaves room for growth and keeps /dev/zero from filling memory.
    const std::string text = UDRV_TRY(read_text_file(file, 64u << 20, "pci.ids"));
    return parse(text);
}

IdDatabase IdDatabase::parse(std::string_view text) {
    auto t = std::make_shared<Tables>();
    // Sections: vendors ("vvvv  name", "\tdddd  name", "\t\tssss ssss  name") and classes
    // ("C cc  name", "\tss  name", "\t\tpp  name"). Unparseable lines are skipped, as pciutils does.
    std::uint32_t vendor = 0, device = 0, cls = 0, sub = 0;
    bool in_class = false, have_vendor = false, have_device = false, have_sub = false;
    std::string_view rest = text;
    while (!rest.empty()) {
        const auto nl = rest.find('\n');
        std::string_view l = rest.substr(0, nl);
        rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
        if (l.empty() || l[0] == '#') continue;
        std::uint32_t a = 0, b = 0;
        if (l.starts_with("C ")) {
            in_class = hex(l.substr(2), 2, cls);
            have_sub = false;
            if (in_class) t->classes[cls] = trim_name(l.substr(4));
            continue;
        }
        if (l[0] != '\t') {
            in_class = false;
            have_device = false;
            have_vendor = hex(l, 4, vendor) && l.size() > 4 && l[4] == ' ';
            if (have_vendor) t->vendors[vendor] = trim_name(l.substr(4));
            continue;
        }
        if (l.starts_with("\t\t")) {
            std::string_view r = l.substr(2);
            if (in_class && have_sub && hex(r, 2, a)) t->prog_ifs[cls << 16 | sub << 8 | a] = trim_name(r.substr(2));
            else if (have_device && hex(r, 4, a) && r.size() > 9 && hex(r.substr(5), 4, b))
                t->subsystems[static_cast<std::uint64_t>(vendor) << 48 | static_cast<std::uint64_t>(device) << 32 | a << 16 | b] =
                    trim_name(r.substr(9));
            continue;
        }
        std::string_view r = l.substr(1);
        if (in_class) {
            have_sub = hex(r, 2, sub);
            if (have_sub) t->subclasses[cls << 8 | sub] = trim_name(r.substr(2));
        } else if (have_vendor) {
            have_device = hex(r, 4, device);
            if (have_device) t->devices[vendor << 16 | device] = trim_name(r.substr(4));
        }
    }
    IdDatabase db;
    db.t_ = std::move(t);
    return db;
}

IdDatabase IdDatabase::load_default() {
    std::error_code ec;
    for (auto& p : default_paths())
        if (std::filesystem::is_regular_file(p, ec))
            if (auto db = load(p)) return std::move(*db);
    IdDatabase db;
    db.t_ = std::make_shared<Tables>();
    return db;
}

bool IdDatabase::empty() const noexcept { return !t_ || (t_->vendors.empty() && t_->classes.empty()); }

namespace {
template <typename M, typename K>
const std::string* lookup(const M& m, K k) {
    auto it = m.find(k);
    return it == m.end() || it->second.empty() ? nullptr : &it->second;
}
}  // namespace

const std::string* IdDatabase::vendor(std::uint16_t v) const { return lookup(t_->vendors, v); }
const std::string* IdDatabase::device(std::uint16_t v, std::uint16_t d) const { return lookup(t_->devices, std::uint32_t(v) << 16 | d); }
const std::string* IdDatabase::subsystem(std::uint16_t v, std::uint16_t d, std::uint16_t sv, std::uint16_t sd) const {
    return lookup(t_->subsystems, std::uint64_t(v) << 48 | std::uint64_t(d) << 32 | std::uint32_t(sv) << 16 | sd);
}
const std::string* IdDatabase::class_name(std::uint8_t c) const { return lookup(t_->classes, c); }
const std::string* IdDatabase::subclass_name(std::uint8_t c, std::uint8_t s) const {
    return lookup(t_->subclasses, std::uint32_t(c) << 8 | s);
}
const std::string* IdDatabase::prog_if_name(std::uint8_t c, std::uint8_t s, std::uint8_t p) const {
    return lookup(t_->prog_ifs, std::uint32_t(c) << 16 | std::uint32_t(s) << 8 | p);
}

std::string IdDatabase::describe_class(std::uint16_t cls) const {
    auto c = static_cast<std::uint8_t>(cls >> 8), s = static_cast<std::uint8_t>(cls);
    if (auto* n = subclass_name(c, s)) return fmt::format("{} [{:04x}]", *n, cls);
    if (auto* n = class_name(c)) return fmt::format("{} [{:04x}]", *n, cls);
    return fmt::format("Class [{:04x}]", cls);
}

namespace {
std::string name_pair(const std::string* v, const std::string* d, std::uint16_t a, std::uint16_t b) {
    if (v && d) return fmt::format("{} {} [{:04x}:{:04x}]", *v, *d, a, b);
    if (!v) return fmt::format("Device [{:04x}:{:04x}]", a, b);
    return fmt::format("{} Device [{:04x}:{:04x}]", *v, a, b);
}
}  // namespace

std::string IdDatabase::describe_device(std::uint16_t v, std::uint16_t d) const { return name_pair(vendor(v), device(v, d), v, d); }

std::string IdDatabase::describe_subsystem(std::uint16_t v, std::uint16_t d, std::uint16_t sv, std::uint16_t sd) const {
    // As pciutils: the per-device subsystem entry, else the device's own name when subsystem == device.
    const std::string* name = subsystem(v, d, sv, sd);
    if (!name && v == sv && d == sd) name = device(v, d);
    return name_pair(vendor(sv), name, sv, sd);
}

}  // namespace udrv::pci
