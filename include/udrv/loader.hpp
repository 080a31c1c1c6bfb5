// The module loader (insmod/modprobe/rmmod inside a udrv process): loads module shared objects, checks
// their metadata before running any of their code, resolves dependencies, parses parameters, runs
// init/exit, counts references and tracks taint.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "udrv/modinfo.hpp"
#include "udrv/modsig.hpp"
#include "udrv/module.hpp"
#include "udrv/result.hpp"

namespace udrv {

/// A loaded module as `lsmod` shows it.
struct LoadedModule {
    std::string name;
    std::filesystem::path path;      ///< empty for modules linked into the program
    Modinfo info;
    bool builtin = false;
    std::uintmax_t size = 0;         ///< file size in bytes (0 for built-in modules)
    unsigned refcount = 0;           ///< dependents plus holders of a ModuleRef
    std::vector<std::string> used_by;
    std::optional<modsig::Info> signature;  ///< the verified signature (none: policy off, or loaded unsigned)
};

class Loader;

/// Checks the metadata every module must have (name, license, ABI) and parses `params` ("key=value",
/// or "key" for a boolean) against the parameters it declares: the values in declaration order, each
/// a default unless given. What the loader does before running any of a module's code; the metadata
/// and the parameters are untrusted (a file, a command line).
Result<std::vector<std::pair<std::string, ParamValue>>> parse_module_params(const Modinfo& info, std::string_view what,
                                                                           const std::vector<std::string>& params);

/// Keeps a module loaded while held (try_module_get / module_put). Movable, not copyable.
class ModuleRef {
public:
    ModuleRef() = default;
    ModuleRef(ModuleRef&& o) noexcept : loader_(o.loader_), name_(std::move(o.name_)) { o.loader_ = nullptr; }
    ModuleRef& operator=(ModuleRef&& o) noexcept;
    ~ModuleRef();

private:
    friend class Loader;
    ModuleRef(Loader* l, std::string n) : loader_(l), name_(std::move(n)) {}
    Loader* loader_ = nullptr;
    std::string name_;
};

/// Loads and unloads modules. One per process is typical; not thread-safe (use from one thread).
class Loader {
public:
    /// `search_path`: directories where modules are looked up by name (NAME.so), after $UDRV_MODULE_PATH
    /// (colon-separated). A dependency is looked up beside the module that needs it first. The signature
    /// policy and keyring come from the environment (modsig::settings_from_environment) until
    /// set_signature_policy says otherwise.
    explicit Loader(std::vector<std::filesystem::path> search_path = {});
    /// Unloads everything still loaded, dependents before their dependencies.
    ~Loader();
    Loader(const Loader&) = delete;
    Loader& operator=(const Loader&) = delete;

    /// Loads a module by path (anything containing '/' or ending in ".so") or by name (a built-in
    /// module of that name first, else NAME.so from the search path), with
    /// parameters given as "name=value". Dependencies are loaded first (without parameters).
    /// Errors: ENOEXEC (not a module / bad metadata), EINVAL (bad parameter), ENOENT (not found),
    /// ELOOP (dependency cycle), EEXIST (already loaded), or the error init returned.
    Result<const LoadedModule*> load(std::string_view path_or_name, const std::vector<std::string>& params = {});
    /// Initialises a module linked into the program (registered by its UDRV_MODULE at start-up).
    Result<const LoadedModule*> load_builtin(std::string_view name, const std::vector<std::string>& params = {});
    /// Initialises every built-in module not yet loaded, in link order (the kernel's initcalls at boot).
    Result<void> load_builtins();
    /// Runs the module's exit and unloads it. EBUSY while it is in use (dependents or references),
    /// unless `force` (which taints the process). ENOENT if not loaded.
    Result<void> unload(std::string_view name, bool force = false);

    /// Takes a reference that keeps `name` loaded (ENOENT if it is not).
    Result<ModuleRef> get(std::string_view name);

    const LoadedModule* find(std::string_view name) const noexcept;
    /// Loaded modules, most recently loaded first (like lsmod).
    std::vector<const LoadedModule*> list() const;
    /// Names of modules linked into the program that can be passed to load_builtin().
    static std::vector<std::string> builtin_modules();
    /// Metadata of the modules linked into the program, read without initialising them (the kernel's
    /// modules.builtin.modinfo).
    static std::vector<Modinfo> builtin_modinfo();

    /// How module files' signatures are checked from now on, against the certificates in `keyring_dir`
    /// (read at the next load). A module file is read once: the bytes verified are the bytes loaded
    /// (from a sealed memfd), whatever happens to the file meanwhile.
    void set_signature_policy(modsig::Policy policy, std::filesystem::path keyring_dir);
    modsig::Policy signature_policy() const noexcept { return sig_.policy; }
    /// Called after a file was read and its signature checked, before its code is loaded. For tests
    /// that change the file at that moment.
    void set_after_verify(std::function<void(const std::filesystem::path&)> hook) { after_verify_ = std::move(hook); }

    /// Taint flags like the kernel's: "P" (a module with a non-open-source license was loaded),
    /// "R" (a module was force-unloaded), "E" (an unsigned or unverified module was loaded under the
    /// permissive signature policy). Empty when clean.
    std::string taint() const;
    /// Is `license` one udrv treats as open source (GPL-compatible or permissive)?
    static bool license_is_open_source(std::string_view license) noexcept;

    /// `lsmod`-style table.
    std::string format_lsmod() const;

private:
    friend class ModuleRef;
    struct Record;

    Result<const LoadedModule*> load_file(const std::filesystem::path& file, const std::vector<std::string>& params,
                                          std::vector<std::string>& chain);
    Result<std::filesystem::path> locate(std::string_view name, const std::filesystem::path& near) const;
    Result<const LoadedModule*> start(std::unique_ptr<Record> rec, const detail::ModuleEntry& entry,
                                      std::vector<std::pair<std::string, ParamValue>> values);
    void drop_dependencies(Record& rec) noexcept;
    void put(std::string_view name) noexcept;
    void finish_unload(std::size_t index) noexcept;
    static void release_code(Record& rec) noexcept;
    Result<const modsig::Keyring*> keyring();

    std::vector<std::filesystem::path> search_path_;
    modsig::Settings sig_;
    std::optional<Error> sig_error_;                 // a bad $UDRV_MODULE_SIG: every file load says so
    std::optional<modsig::Keyring> keyring_;         // read at the first load that needs it
    std::function<void(const std::filesystem::path&)> after_verify_;
    std::vector<std::unique_ptr<Record>> modules_;  // load order
    bool tainted_proprietary_ = false;
    bool tainted_forced_ = false;
    bool tainted_unsigned_ = false;
};

}  // namespace udrv
