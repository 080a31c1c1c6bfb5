#include "udrv/loader.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "module_registry.hpp"
#include "udrv/log.hpp"

namespace udrv {

struct Loader::Record {
    LoadedModule pub;
    void* handle = nullptr;  // dlopen handle; nullptr for built-in modules
    int memfd = -1;          // the sealed copy the code was loaded from (its name is the handle's)
    detail::ModuleInstance instance{nullptr, [](void*) {}};
    std::vector<std::string> deps;  // modules this one holds a reference on
};

namespace {

bool path_like(std::string_view s) { return s.find('/') != std::string_view::npos || s.ends_with(".so"); }

std::string join(const std::vector<std::string>& v, std::string_view sep) {
    std::string out;
    for (const auto& s : v) {
        if (!out.empty()) out += sep;
        out += s;
    }
    return out;
}

// A sealed memfd holding `bytes`: nothing can change them once sealed, so what dlopen maps is what
// was verified.
Result<int> sealed_copy(std::span<const char> bytes, const std::string& name) {
    const int fd = memfd_create(("udrv:" + name).c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return fail(errno, "{}: memfd_create failed: {}", name, std::strerror(errno));
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            const int e = n < 0 ? errno : EIO;
            ::close(fd);
            return fail(e, "{}: writing its copy to memory failed: {}", name, std::strerror(e));
        }
        done += static_cast<std::size_t>(n);
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        const int e = errno;
        ::close(fd);
        return fail(e, "{}: sealing its copy failed: {}", name, std::strerror(e));
    }
    return fd;
}

std::string fd_path(int fd) { return fmt::format("/proc/self/fd/{}", fd); }

}  // namespace

Result<std::vector<std::pair<std::string, ParamValue>>> parse_module_params(const Modinfo& info, std::string_view what,
                                                                           const std::vector<std::string>& params) {
    auto name = info.get("name");
    if (!name || !detail::is_identifier(*name))
        return fail(ENOEXEC, "{}: metadata has no valid name= field (letters, digits, underscores)", what);
    if (!info.get("license") || info.get("license")->empty())
        return fail(ENOEXEC, "{}: module {} declares no license= (required, e.g. \"GPL\" or \"MIT\")", what, *name);
    auto abi = info.get("abi");
    if (!abi) return fail(ENOEXEC, "{}: module {} has no abi= field: it was not built with UDRV_MODULE", what, *name);
    if (*abi != std::to_string(kModuleAbi))
        return fail(ENOEXEC, "{}: module {} was built for udrv module ABI {}, this loader speaks ABI {}: rebuild the module "
                    "against this udrv", what, *name, *abi, kModuleAbi);

    auto declared = info.params();
    std::vector<std::pair<std::string, ParamValue>> values;
    for (const auto& p : declared) {  // defaults first, so ThisModule::param sees every declared one
        auto type = parse_param_type(p.type);
        if (!type) return fail(ENOEXEC, "{}: parameter {}: {}", what, p.name, type.error().message());
        auto v = parse_param_value(*type, p.default_value);
        if (!v) return fail(ENOEXEC, "{}: default of parameter {} {}", what, p.name, v.error().message());
        values.emplace_back(p.name, std::move(*v));
    }
    for (const std::string& arg : params) {
        auto eq = arg.find('=');
        std::string key = arg.substr(0, eq);
        auto it = std::find_if(declared.begin(), declared.end(), [&](auto& p) { return p.name == key; });
        if (it == declared.end()) {
            std::vector<std::string> known;
            for (auto& p : declared) known.push_back(p.name + " (" + p.type + ")");
            return fail(EINVAL, "module {}: unknown parameter '{}'; it has {}", *name, key,
                        known.empty() ? std::string("no parameters") : join(known, ", "));
        }
        ParamType type = *parse_param_type(it->type);
        if (eq == std::string::npos && type != ParamType::boolean)
            return fail(EINVAL, "module {}: parameter '{}' needs a value ({}=...)", *name, key, key);
        auto v = parse_param_value(type, eq == std::string::npos ? "y" : std::string_view(arg).substr(eq + 1));
        if (!v) return fail(EINVAL, "module {}: parameter '{}' {}", *name, key, v.error().message());
        for (auto& [n, val] : values)
            if (n == key) val = std::move(*v);  // the last assignment wins, as on the kernel command line
    }
    return values;
}

ModuleRef& ModuleRef::operator=(ModuleRef&& o) noexcept {
    if (this != &o) {
        if (loader_) loader_->put(name_);
        loader_ = o.loader_;
        name_ = std::move(o.name_);
        o.loader_ = nullptr;
    }
    return *this;
}

ModuleRef::~ModuleRef() {
    if (loader_) loader_->put(name_);
}

Loader::Loader(std::vector<std::filesystem::path> search_path) {
    if (const char* env = std::getenv("UDRV_MODULE_PATH")) {
        std::string_view s = env;
        while (!s.empty()) {
            auto colon = s.find(':');
            if (colon != 0) search_path_.emplace_back(s.substr(0, colon));
            if (colon == std::string_view::npos) break;
            s.remove_prefix(colon + 1);
        }
    }
    for (auto& p : search_path) search_path_.push_back(std::move(p));
    if (auto settings = modsig::settings_from_environment()) sig_ = std::move(*settings);
    else sig_error_ = settings.error();
}

void Loader::set_signature_policy(modsig::Policy policy, std::filesystem::path keyring_dir) {
    sig_.policy = policy;
    sig_.keyring_dir = std::move(keyring_dir);
    sig_error_.reset();
    keyring_.reset();
}

Result<const modsig::Keyring*> Loader::keyring() {
    if (!keyring_) keyring_.emplace(UDRV_TRY(modsig::Keyring::load(sig_.keyring_dir)));
    return &*keyring_;
}

Loader::~Loader() {
    // Dependents were loaded after their dependencies, so reverse load order is safe.
    while (!modules_.empty()) finish_unload(modules_.size() - 1);
}

const LoadedModule* Loader::find(std::string_view name) const noexcept {
    for (auto& r : modules_)
        if (r->pub.name == name) return &r->pub;
    return nullptr;
}

std::vector<const LoadedModule*> Loader::list() const {
    std::vector<const LoadedModule*> out;
    for (auto it = modules_.rbegin(); it != modules_.rend(); ++it) out.push_back(&(*it)->pub);
    return out;
}

std::vector<std::string> Loader::builtin_modules() {
    std::vector<std::string> out;
    for (auto& r : detail::registered_modules())
        if (r.builtin) out.emplace_back(r.entry->decl->name);
    return out;
}

std::vector<Modinfo> Loader::builtin_modinfo() {
    std::vector<Modinfo> out;
    for (auto& r : detail::registered_modules())
        if (r.builtin)
            if (auto infos = parse_modinfo_strings({r.entry->modinfo.data(), r.entry->modinfo.size()}, r.entry->decl->name))
                for (auto& m : *infos) out.push_back(std::move(m));
    return out;
}

Result<std::filesystem::path> Loader::locate(std::string_view name, const std::filesystem::path& near) const {
    std::vector<std::filesystem::path> dirs;
    if (!near.empty()) dirs.push_back(near);
    dirs.insert(dirs.end(), search_path_.begin(), search_path_.end());
    std::error_code ec;
    for (auto& d : dirs) {
        auto p = d / (std::string(name) + ".so");
        if (std::filesystem::is_regular_file(p, ec)) return p;
    }
    std::vector<std::string> shown;
    for (auto& d : dirs) shown.push_back(d.string());
    return fail(ENOENT, "module {} not found (looked for {}.so in: {}); set UDRV_MODULE_PATH or give a path", name, name,
                shown.empty() ? std::string("no directories") : join(shown, ", "));
}

Result<const LoadedModule*> Loader::load(std::string_view path_or_name, const std::vector<std::string>& params) {
    std::vector<std::string> chain;
    if (path_like(path_or_name)) return load_file(std::filesystem::path(path_or_name), params, chain);
    if (find(path_or_name)) return fail(EEXIST, "module {} is already loaded", path_or_name);
    auto builtins = builtin_modules();
    if (std::find(builtins.begin(), builtins.end(), path_or_name) != builtins.end()) return load_builtin(path_or_name, params);
    auto file = UDRV_TRY(locate(path_or_name, {}));
    return load_file(file, params, chain);
}

Result<const LoadedModule*> Loader::load_file(const std::filesystem::path& file, const std::vector<std::string>& params,
                                              std::vector<std::string>& chain) {
    const std::string what = file.string();
    if (sig_error_) return std::unexpected(*sig_error_);
    // Read once: the metadata, the signature and the code all come from these bytes.
    const std::string image = UDRV_TRY(read_module_file(file));
    auto infos = UDRV_TRY(parse_modinfo_elf(image, what));
    if (infos.size() != 1)
        return fail(ENOEXEC, "{}: holds {} modules; a loadable module file declares exactly one", what, infos.size());
    Modinfo& info = infos.front();
    auto values = UDRV_TRY(parse_module_params(info, what, params));
    std::string name(info.name());
    if (find(name)) return fail(EEXIST, "module {} is already loaded", name);
    if (std::find(chain.begin(), chain.end(), name) != chain.end()) {
        chain.push_back(name);
        return fail(ELOOP, "dependency cycle: {}", join(chain, " -> "));
    }

    // The signature, under the policy, before anything of this module or its dependencies runs; a
    // keyring that cannot be read is an error unless the policy is off.
    std::optional<modsig::Info> signature;
    bool unverified = false;  // loaded under the permissive policy without a good signature: taints
    if (sig_.policy != modsig::Policy::off) {
        auto verdict = UDRV_TRY(modsig::check(std::as_bytes(std::span(image)), sig_.policy, keyring(), what));
        if (!verdict.warning.empty()) {
            pr_warn("udrv: {}; loading it anyway (signature policy permissive): process tainted (E)", verdict.warning);
            unverified = true;
        }
        signature = std::move(verdict.info);
    }

    // Dependencies first. If anything below fails, what this call loaded is unloaded again.
    auto before = modules_.size();
    auto undo = [&] {
        while (modules_.size() > before) finish_unload(modules_.size() - 1);
    };
    chain.push_back(name);
    for (const std::string& dep : info.depends()) {
        if (find(dep)) continue;
        auto dep_file = locate(dep, file.parent_path());
        Result<const LoadedModule*> r = dep_file ? load_file(*dep_file, {}, chain)
                                                 : Result<const LoadedModule*>(std::unexpected(dep_file.error()));
        if (!r) {
            undo();
            chain.pop_back();
            return std::unexpected(std::move(r).error().context(fmt::format("{} depends on {}", name, dep)));
        }
    }
    chain.pop_back();

    if (after_verify_) after_verify_(file);

    auto memfd = sealed_copy(image, name);
    if (!memfd) {
        undo();
        return std::unexpected(std::move(memfd).error());
    }
    // SAFETY: dlopen runs the file's static constructors; the metadata was checked above, and
    // UDRV_MODULE's constructors only register an entry. RTLD_LOCAL keeps its symbols private. The
    // code comes from the sealed copy of the bytes checked above, never from the file again.
    void* handle = nullptr;
    std::vector<detail::RegisteredModule> before_entries = detail::registered_modules();
    {
        detail::DlopenScope scope;
        handle = dlopen(fd_path(*memfd).c_str(), RTLD_NOW | RTLD_LOCAL);
    }
    if (!handle) {
        ::close(*memfd);
        undo();
        const char* e = dlerror();
        return fail(ENOEXEC, "{}: dlopen failed: {}", what, e ? e : "unknown error");
    }
    const detail::ModuleEntry* entry = nullptr;
    for (auto& r : detail::registered_modules()) {
        bool is_new = std::none_of(before_entries.begin(), before_entries.end(), [&](auto& b) { return b.entry == r.entry; });
        if (is_new && r.entry->decl->name == name) entry = r.entry;
    }
    if (!entry || entry->abi != kModuleAbi) {
        dlclose(handle);
        ::close(*memfd);
        undo();
        return fail(ENOEXEC, "{}: its code registered no module named {} with ABI {} (metadata and code disagree: rebuild it)",
                    what, name, kModuleAbi);
    }

    auto rec = std::make_unique<Record>();
    rec->pub.name = name;
    rec->pub.path = file;
    rec->pub.info = std::move(info);
    rec->pub.size = image.size();
    rec->pub.signature = std::move(signature);
    rec->handle = handle;
    rec->memfd = *memfd;
    auto loaded = start(std::move(rec), *entry, std::move(values));
    if (!loaded) undo();
    else if (unverified) tainted_unsigned_ = true;
    return loaded;
}

Result<const LoadedModule*> Loader::load_builtin(std::string_view name, const std::vector<std::string>& params) {
    if (find(name)) return fail(EEXIST, "module {} is already loaded", name);
    for (auto& r : detail::registered_modules()) {
        if (!r.builtin || r.entry->decl->name != name) continue;
        auto infos = UDRV_TRY(parse_modinfo_strings({r.entry->modinfo.data(), r.entry->modinfo.size()}, name));
        auto values = UDRV_TRY(parse_module_params(infos.front(), name, params));
        auto rec = std::make_unique<Record>();
        rec->pub.name = std::string(name);
        rec->pub.info = std::move(infos.front());
        rec->pub.builtin = true;
        for (const std::string& dep : rec->pub.info.depends())
            if (!find(dep)) UDRV_TRY_CTX(load_builtin(dep), "{} depends on {}", name, dep);
        return start(std::move(rec), *r.entry, std::move(values));
    }
    return fail(ENOENT, "no built-in module named {} (built in: {})", name, join(builtin_modules(), ", "));
}

Result<void> Loader::load_builtins() {
    for (const std::string& name : builtin_modules())
        if (!find(name)) UDRV_TRY(load_builtin(name));
    return {};
}

Result<const LoadedModule*> Loader::start(std::unique_ptr<Record> rec, const detail::ModuleEntry& entry,
                                          std::vector<std::pair<std::string, ParamValue>> values) {
    for (const std::string& dep : rec->pub.info.depends()) {
        for (auto& r : modules_) {
            if (r->pub.name != dep) continue;
            ++r->pub.refcount;
            r->pub.used_by.push_back(rec->pub.name);
            rec->deps.push_back(dep);
        }
    }
    ThisModule self(rec->pub.name, std::move(values));
    auto instance = entry.init(self);
    if (!instance) {
        drop_dependencies(*rec);
        release_code(*rec);
        return std::unexpected(std::move(instance).error().context(fmt::format("module {}: init failed", rec->pub.name)));
    }
    rec->instance = std::move(*instance);
    std::string_view license = rec->pub.info.get("license").value_or("");
    if (!license_is_open_source(license)) {
        pr_warn("udrv: module {} has license '{}', which is not open source: process tainted (P)", rec->pub.name, license);
        tainted_proprietary_ = true;
    }
    pr_debug("udrv: loaded module {}", rec->pub.name);
    modules_.push_back(std::move(rec));
    return &modules_.back()->pub;
}

void Loader::drop_dependencies(Record& rec) noexcept {
    for (const std::string& dep : rec.deps) {
        for (auto& r : modules_) {
            if (r->pub.name != dep) continue;
            if (r->pub.refcount) --r->pub.refcount;
            std::erase(r->pub.used_by, rec.pub.name);
        }
    }
    rec.deps.clear();
}

Result<ModuleRef> Loader::get(std::string_view name) {
    for (auto& r : modules_) {
        if (r->pub.name != name) continue;
        ++r->pub.refcount;
        return ModuleRef(this, r->pub.name);
    }
    return fail(ENOENT, "module {} is not loaded", name);
}

void Loader::put(std::string_view name) noexcept {
    for (auto& r : modules_)
        if (r->pub.name == name && r->pub.refcount > 0) --r->pub.refcount;
}

Result<void> Loader::unload(std::string_view name, bool force) {
    auto it = std::find_if(modules_.begin(), modules_.end(), [&](auto& r) { return r->pub.name == name; });
    if (it == modules_.end()) return fail(ENOENT, "module {} is not loaded", name);
    const LoadedModule& m = (*it)->pub;
    if (m.refcount > 0 && !force) {
        auto holders = m.refcount - m.used_by.size();
        std::string who = m.used_by.empty() ? std::string() : "used by " + join(m.used_by, ", ");
        if (holders) who += fmt::format("{}{} reference(s) held", who.empty() ? "" : "; ", holders);
        return fail(EBUSY, "module {} is in use ({}): unload its users first, or force", name, who);
    }
    if (m.refcount > 0) {
        pr_warn("udrv: forcing unload of {} while in use (refcount {}): taints the process", name, m.refcount);
        tainted_forced_ = true;
    }
    finish_unload(static_cast<std::size_t>(it - modules_.begin()));
    return {};
}

void Loader::finish_unload(std::size_t index) noexcept {
    std::unique_ptr<Record> rec = std::move(modules_[index]);
    modules_.erase(modules_.begin() + static_cast<std::ptrdiff_t>(index));
    rec->instance.reset();  // the module's exit (its destructor) runs here, before its code is unmapped
    pr_debug("udrv: unloaded module {}", rec->pub.name);
    release_code(*rec);
    drop_dependencies(*rec);
}

void Loader::release_code(Record& rec) noexcept {
    if (rec.handle) dlclose(rec.handle);
    rec.handle = nullptr;
    if (rec.memfd < 0) return;
    // The dynamic linker knows the module by its memfd's /proc path. A module it keeps mapped after
    // dlclose (C++ unique symbols make a library undeletable) keeps its descriptor, so that the number
    // is never reused for another module: dlopen would hand back the old one by name.
    const std::string path = fd_path(rec.memfd);
    if (void* still = dlopen(path.c_str(), RTLD_LAZY | RTLD_NOLOAD)) {
        dlclose(still);
        rec.memfd = -1;
        return;
    }
    ::close(rec.memfd);
    rec.memfd = -1;
}

bool Loader::license_is_open_source(std::string_view l) noexcept {
    // The kernel's GPL-compatible strings (license_is_gpl_compatible) plus common permissive SPDX ids.
    static constexpr std::string_view ok[] = {
        "GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL",
        "GPL-2.0", "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0", "GPL-3.0-only", "GPL-3.0-or-later",
        "LGPL-2.1", "LGPL-2.1-or-later", "LGPL-3.0", "MIT", "BSD", "BSD-2-Clause", "BSD-3-Clause",
        "Apache-2.0", "MPL-2.0", "ISC", "Zlib"};
    return std::find(std::begin(ok), std::end(ok), l) != std::end(ok);
}

std::string Loader::taint() const {
    std::string t;
    if (tainted_proprietary_) t += 'P';
    if (tainted_forced_) t += 'R';
    if (tainted_unsigned_) t += 'E';
    return t;
}

std::string Loader::format_lsmod() const {
    std::string out = fmt::format("{:<28} {:>8}  {}\n", "Module", "Size", "Used by");
    for (const LoadedModule* m : list())
        out += fmt::format("{:<28} {:>8}  {} {}{}\n", m->name, m->builtin ? std::string("builtin") : std::to_string(m->size),
                           m->refcount, join(m->used_by, ","), "");
    if (!taint().empty()) out += fmt::format("Tainted: {}\n", taint());
    return out;
}

}  // namespace udrv
