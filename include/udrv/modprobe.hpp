// depmod and modprobe for udrv modules, as kmod does them for the kernel's:
// - modules are installed under a versioned directory (PREFIX/lib/udrv/modules/VERSION, like
//   /lib/modules/$(uname -r)); `udrv depmod` indexes it from each file's modinfo, never loading one:
//   modules.alias ("alias PATTERN NAME", the kernel's format) and modules.dep ("NAME.so: DEP.so ...",
//   each module's dependencies, transitively, in load order reversed as the kernel writes them);
// - configuration like /etc/modprobe.d: `blacklist NAME` (not loaded for an alias; by name it still
//   is), `options NAME key=value...`, `alias PATTERN NAME`;
// - resolution: a name or a device's modalias to the modules to load, dependencies first, each with
//   its options.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "udrv/result.hpp"

namespace udrv::modprobe {

/// The version directories are named after (UDRV_VERSION, e.g. "0.1.0").
std::string_view version() noexcept;

/// Where this installation's tools look for modules: BIN/../modules (a build tree), then
/// BIN/../lib/udrv/modules/VERSION (an installed tree), those that exist.
std::vector<std::filesystem::path> default_module_dirs();

/// One module in the index.
struct Entry {
    std::string name;
    std::filesystem::path file;
    std::vector<std::string> aliases;
    std::vector<std::string> depends;  ///< direct, by name, as the module declares them
};

/// The index of a module directory.
struct Index {
    std::filesystem::path dir;
    std::vector<Entry> modules;
    /// Problems with single files (not a module, bad metadata): depmod says them and goes on.
    std::vector<std::string> warnings;
    const Entry* find(std::string_view name) const;
    /// `name` and what it needs, dependencies first (ENOENT for a dependency not in the index, ELOOP
    /// for a cycle).
    Result<std::vector<const Entry*>> load_order(std::string_view name) const;
};

/// Reads every *.so in `dir` (metadata only) into an index. EEXIST if two files declare one name.
Result<Index> scan(const std::filesystem::path& dir);
/// Writes `dir/modules.alias` and `dir/modules.dep` (each replaced atomically).
Result<void> write(const Index& index);
/// Reads the index depmod wrote (ENOENT, saying to run udrv depmod, when there is none). Module files
/// are not opened.
Result<Index> read(const std::filesystem::path& dir);

/// modprobe.d: blacklists, options and extra aliases, with where each came from.
struct Config {
    std::map<std::string, std::string> blacklist;                ///< name -> "FILE:LINE"
    std::map<std::string, std::vector<std::string>> options;      ///< name -> key=value..., in file order
    std::vector<std::pair<std::string, std::string>> aliases;     ///< pattern, name
    std::vector<std::string> warnings;                            ///< lines not understood (ignored, as kmod does)
};
/// Parses one file's text. Lines: `blacklist NAME`, `options NAME k=v...`, `alias PATTERN NAME`,
/// comments (#) and blank lines; a trailing backslash continues a line.
Result<void> parse_config(std::string_view text, std::string_view file, Config& into);
/// Reads every *.conf in `dir`, in name order (no directory: an empty configuration). Default:
/// $UDRV_MODPROBE_D, else /etc/udrv/modprobe.d.
Result<Config> read_config(const std::optional<std::filesystem::path>& dir = std::nullopt);

/// Modules whose alias patterns (the index's and the configuration's) match a device's `modalias`,
/// blacklisted ones apart. `blacklisted` receives those left out, with the configuration line.
std::vector<std::string> match(const Index& index, const Config& config, std::string_view modalias,
                               std::vector<std::pair<std::string, std::string>>* blacklisted = nullptr);

/// Does `text` look like a modalias ("pci:...", "of:...", "platform:...") rather than a module name?
bool is_modalias(std::string_view text) noexcept;

}  // namespace udrv::modprobe
