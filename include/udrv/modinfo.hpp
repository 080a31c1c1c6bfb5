// Reading module metadata straight from an ELF file: never loads or runs it, and treats the file as
// hostile (every offset, size and string is checked against the file before use).
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "udrv/result.hpp"

namespace udrv {

/// One module's metadata: the `key=value` fields in file order.
class Modinfo {
public:
    std::vector<std::pair<std::string, std::string>> fields;

    /// First value of `key`, if present.
    std::optional<std::string_view> get(std::string_view key) const;
    /// Every value of `key`, in order (author, alias, parm, ...).
    std::vector<std::string_view> get_all(std::string_view key) const;

    std::string_view name() const { return get("name").value_or(""); }
    /// Names from the comma-separated `depends` field (empty entries dropped).
    std::vector<std::string> depends() const;

    struct Param {
        std::string name, type, description, default_value;
    };
    /// Parameters assembled from parm / parmtype / parmdefault.
    std::vector<Param> params() const;
    /// Does one of the module's `alias` patterns match `modalias` (a device's "pci:v...", "of:N*T*C...")?
    bool matches(std::string_view modalias) const;
};

/// A module alias pattern against a device's modalias, as the kernel's modprobe matches them: shell
/// wildcards (`*`, `?`, `[...]`), the whole string.
bool alias_matches(std::string_view pattern, std::string_view modalias);

/// Parses the modinfo section(s) of an ELF image already in memory. `what` names it in errors.
/// Several modules linked into one file yield several entries (each starts with `name=`).
Result<std::vector<Modinfo>> parse_modinfo_elf(std::span<const char> image, std::string_view what);
/// Parses the `key=value\0...` bytes of a modinfo section.
Result<std::vector<Modinfo>> parse_modinfo_strings(std::span<const char> section, std::string_view what);
/// A module file's bytes (up to 512 MiB), read once: its metadata, its signature and, in the loader,
/// its code all come from them. EISDIR for a directory; ENOENT etc.
Result<std::string> read_module_file(const std::filesystem::path& file);
/// Reads `file` (read_module_file) and parses its modinfo. ENOEXEC: not ELF / no metadata; ENOENT etc.
Result<std::vector<Modinfo>> read_modinfo(const std::filesystem::path& file);

}  // namespace udrv
