// ELF parsing for `udrv modinfo` and the loader. Supports ELF32/ELF64, little and big endian.
#include "udrv/modinfo.hpp"

#include <fnmatch.h>

#include <cstring>

#include "udrv/fileio.hpp"
#include "udrv/module.hpp"

namespace udrv {

std::optional<std::string_view> Modinfo::get(std::string_view key) const {
    for (const auto& [k, v] : fields)
        if (k == key) return std::string_view(v);
    return std::nullopt;
}

std::vector<std::string_view> Modinfo::get_all(std::string_view key) const {
    std::vector<std::string_view> out;
    for (const auto& [k, v] : fields)
        if (k == key) out.emplace_back(v);
    return out;
}

std::vector<std::string> Modinfo::depends() const {
    std::vector<std::string> out;
    std::string_view s = get("depends").value_or("");
    while (!s.empty()) {
        auto comma = s.find(',');
        std::string_view item = s.substr(0, comma);
        if (!item.empty()) out.emplace_back(item);
        if (comma == std::string_view::npos) break;
        s.remove_prefix(comma + 1);
    }
    return out;
}

bool alias_matches(std::string_view pattern, std::string_view modalias) {
    // fnmatch needs terminated strings; a NUL inside either (untrusted metadata) cannot match.
    if (pattern.find('\0') != std::string_view::npos || modalias.find('\0') != std::string_view::npos) return false;
    return ::fnmatch(std::string(pattern).c_str(), std::string(modalias).c_str(), 0) == 0;
}

bool Modinfo::matches(std::string_view modalias) const {
    for (auto a : get_all("alias"))
        if (alias_matches(a, modalias)) return true;
    return false;
}

std::vector<Modinfo::Param> Modinfo::params() const {
    std::vector<Param> out;
    auto entry = [&](std::string_view name) -> Param& {
        for (auto& p : out)
            if (p.name == name) return p;
        out.push_back(Param{std::string(name), {}, {}, {}});
        return out.back();
    };
    for (const auto& [k, v] : fields) {
        if (k != "parm" && k != "parmtype" && k != "parmdefault") continue;
        auto colon = v.find(':');
        std::string_view name = std::string_view(v).substr(0, colon);
        std::string_view rest = colon == std::string::npos ? std::string_view() : std::string_view(v).substr(colon + 1);
        Param& p = entry(name);
        if (k == "parm") p.description = rest;
        else if (k == "parmtype") p.type = rest;
        else p.default_value = rest;
    }
    return out;
}

Result<std::vector<Modinfo>> parse_modinfo_strings(std::span<const char> section, std::string_view what) {
    std::vector<Modinfo> mods;
    std::size_t pos = 0;
    while (pos < section.size()) {
        const char* start = section.data() + pos;
        const void* nul = std::memchr(start, '\0', section.size() - pos);
        if (!nul)
            return fail(EBADMSG, "{}: modinfo string at section offset {} is not NUL-terminated (truncated or corrupt file)",
                        what, pos);
        std::string_view s(start, static_cast<const char*>(nul) - start);
        pos += s.size() + 1;
        if (s.empty()) continue;  // alignment padding between modules
        auto eq = s.find('=');
        if (eq == std::string_view::npos || eq == 0)
            return fail(EBADMSG, "{}: modinfo entry '{}' is not of the form key=value", what, s);
        std::string_view key = s.substr(0, eq);
        if (key == "name" || mods.empty()) {
            if (key != "name") return fail(EBADMSG, "{}: modinfo does not start with name= (found '{}')", what, key);
            mods.emplace_back();
        }
        mods.back().fields.emplace_back(std::string(key), std::string(s.substr(eq + 1)));
    }
    if (mods.empty()) return fail(ENOEXEC, "{}: the {} section is empty", what, kModinfoSection);
    return mods;
}

namespace {

// Bounds-checked, endian-aware reads from the untrusted image.
class Reader {
public:
    Reader(std::span<const char> img, bool big_endian) : img_(img), be_(big_endian) {}

    bool in_bounds(std::uint64_t off, std::uint64_t len) const {
        return off <= img_.size() && len <= img_.size() - off;
    }
    std::uint64_t u(std::uint64_t off, unsigned width) const {
        std::uint64_t v = 0;
        for (unsigned i = 0; i < width; ++i) {
            std::uint64_t b = static_cast<unsigned char>(img_[off + i]);
            v |= be_ ? b << (8 * (width - 1 - i)) : b << (8 * i);
        }
        return v;
    }

private:
    std::span<const char> img_;
    bool be_;
};

struct Section {
    std::uint64_t name, type, offset, size, link;
};

}  // namespace

Result<std::vector<Modinfo>> parse_modinfo_elf(std::span<const char> img, std::string_view what) {
    constexpr unsigned char magic[4] = {0x7f, 'E', 'L', 'F'};
    if (img.size() < 16 || std::memcmp(img.data(), magic, 4) != 0)
        return fail(ENOEXEC, "{}: not an ELF file (bad magic): a udrv module is a shared object built with UDRV_MODULE", what);
    const int cls = static_cast<unsigned char>(img[4]);
    const int data = static_cast<unsigned char>(img[5]);
    if (cls != 1 && cls != 2) return fail(ENOEXEC, "{}: unknown ELF class {}", what, cls);
    if (data != 1 && data != 2) return fail(ENOEXEC, "{}: unknown ELF data encoding {}", what, data);
    const bool is64 = cls == 2;
    Reader r(img, data == 2);

    const std::uint64_t ehsize = is64 ? 64 : 52;
    if (!r.in_bounds(0, ehsize)) return fail(ENOEXEC, "{}: truncated ELF header ({} bytes)", what, img.size());
    const std::uint64_t shoff = is64 ? r.u(0x28, 8) : r.u(0x20, 4);
    const std::uint64_t shentsize = r.u(is64 ? 0x3A : 0x2E, 2);
    std::uint64_t shnum = r.u(is64 ? 0x3C : 0x30, 2);
    std::uint64_t shstrndx = r.u(is64 ? 0x3E : 0x32, 2);
    const std::uint64_t min_shent = is64 ? 64 : 40;
    if (shoff == 0) return fail(ENOEXEC, "{}: ELF file has no section headers (stripped of them?)", what);
    if (shentsize < min_shent)
        return fail(ENOEXEC, "{}: ELF section header size {} is smaller than {}", what, shentsize, min_shent);

    auto section = [&](std::uint64_t i) -> Result<Section> {
        // i < shnum and the table bounds were checked, so the multiplication cannot overflow the file size.
        std::uint64_t off = shoff + i * shentsize;
        if (is64)
            return Section{r.u(off, 4), r.u(off + 4, 4), r.u(off + 0x18, 8), r.u(off + 0x20, 8), r.u(off + 0x28, 4)};
        return Section{r.u(off, 4), r.u(off + 4, 4), r.u(off + 0x10, 4), r.u(off + 0x14, 4), r.u(off + 0x18, 4)};
    };

    if (!r.in_bounds(shoff, shentsize)) return fail(ENOEXEC, "{}: section header table at {} lies outside the file", what, shoff);
    // Large section counts live in section 0 (SHN_UNDEF) when e_shnum is 0 / e_shstrndx is SHN_XINDEX.
    Section s0 = UDRV_TRY(section(0));
    if (shnum == 0) shnum = s0.size;
    if (shstrndx == 0xffff) shstrndx = s0.link;
    if (shnum > img.size() / shentsize || !r.in_bounds(shoff, shnum * shentsize))
        return fail(ENOEXEC, "{}: section header table ({} entries at offset {}) runs past the end of the file", what, shnum, shoff);
    if (shstrndx == 0 || shstrndx >= shnum)
        return fail(ENOEXEC, "{}: section name table index {} is out of range ({} sections)", what, shstrndx, shnum);
    Section strtab = UDRV_TRY(section(shstrndx));
    if (!r.in_bounds(strtab.offset, strtab.size))
        return fail(ENOEXEC, "{}: section name table lies outside the file", what);

    constexpr std::uint64_t SHT_NOBITS = 8;
    for (std::uint64_t i = 1; i < shnum; ++i) {
        Section s = UDRV_TRY(section(i));
        if (s.name >= strtab.size) return fail(ENOEXEC, "{}: section {} has a name offset outside the name table", what, i);
        const char* name = img.data() + strtab.offset + s.name;
        std::size_t max = strtab.size - s.name;
        std::size_t len = strnlen(name, max);
        if (len == max) return fail(ENOEXEC, "{}: name of section {} is not NUL-terminated", what, i);
        if (std::string_view(name, len) != kModinfoSection) continue;
        if (s.type == SHT_NOBITS) return fail(ENOEXEC, "{}: the {} section has no contents", what, kModinfoSection);
        if (!r.in_bounds(s.offset, s.size))
            return fail(ENOEXEC, "{}: the {} section (offset {}, {} bytes) lies outside the file ({} bytes): truncated?",
                        what, kModinfoSection, s.offset, s.size, img.size());
        return parse_modinfo_strings(img.subspan(s.offset, s.size), what);
    }
    return fail(ENOEXEC, "{}: no {} section: not a udrv module (declare one with UDRV_MODULE)", what, kModinfoSection);
}

Result<std::string> read_module_file(const std::filesystem::path& file) {
    constexpr std::size_t kMaxSize = 512u << 20;
    std::error_code ec;
    if (std::filesystem::is_directory(file, ec)) return fail(EISDIR, "{}: is a directory, not a module file", file.string());
    return read_text_file(file, kMaxSize, "module");
}

Result<std::vector<Modinfo>> read_modinfo(const std::filesystem::path& file) {
    const std::string img = UDRV_TRY(read_module_file(file));
    return parse_modinfo_elf(img, file.string());
}

}  // namespace udrv
