// depmod / modprobe (include/udrv/modprobe.hpp). The index files and modprobe.d are text a user or a
// package writes: parsed line by line, each problem with its file and line.
#include "udrv/modprobe.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <set>

#include <fmt/ranges.h>

#include "udrv/fileio.hpp"
#include "udrv/modinfo.hpp"

namespace udrv::modprobe {
namespace {

constexpr std::size_t kMaxIndex = 16u << 20;

std::vector<std::string_view> words(std::string_view line) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
        std::size_t j = i;
        while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
        if (j > i) out.push_back(line.substr(i, j - i));
        i = j;
    }
    return out;
}

// Lines with their numbers, continuations (a trailing backslash) joined, comments and blanks dropped.
std::vector<std::pair<int, std::string>> logical_lines(std::string_view text) {
    std::vector<std::pair<int, std::string>> out;
    std::string pending;
    int first = 0, n = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(pos, end - pos);
        ++n;
        pos = end + 1;
        if (pending.empty()) first = n;
        if (!line.empty() && line.back() == '\\') {
            pending.append(line.substr(0, line.size() - 1)).push_back(' ');
            continue;
        }
        pending.append(line);
        if (auto hash = pending.find('#'); hash != std::string::npos) pending.resize(hash);
        if (!words(pending).empty()) out.emplace_back(first, pending);
        pending.clear();
        if (end == text.size()) break;
    }
    return out;
}

bool is_name(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// The kernel treats '-' and '_' in module names alike; udrv's names are identifiers, so '-' becomes '_'.
std::string normalize(std::string_view name) {
    std::string s(name);
    std::replace(s.begin(), s.end(), '-', '_');
    return s;
}

Result<void> write_atomically(const std::filesystem::path& file, const std::string& text) {
    const std::filesystem::path tmp = file.string() + fmt::format(".tmp-{}", ::getpid());
    if (auto w = write_file(tmp, std::as_bytes(std::span(text))); !w) return std::unexpected(w.error());
    std::error_code ec;
    std::filesystem::rename(tmp, file, ec);
    if (ec) {
        std::filesystem::remove(tmp, ec);
        return fail(EIO, "{}: cannot write it: {}", file.string(), ec.message());
    }
    return {};
}

}  // namespace

std::string_view version() noexcept { return UDRV_VERSION; }

std::vector<std::filesystem::path> default_module_dirs() {
    std::error_code ec;
    const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (ec) return {};
    const auto root = exe.parent_path().parent_path();
    std::vector<std::filesystem::path> out;
    for (auto d : {root / "modules", root / "lib/udrv/modules" / std::string(version())})
        if (std::filesystem::is_directory(d, ec)) out.push_back(d);
    return out;
}

bool is_modalias(std::string_view text) noexcept {
    const auto colon = text.find(':');
    return colon != std::string_view::npos && colon > 0 && is_name(text.substr(0, colon));
}

const Entry* Index::find(std::string_view name) const {
    const std::string n = normalize(name);
    for (const auto& e : modules)
        if (e.name == n) return &e;
    return nullptr;
}

Result<std::vector<const Entry*>> Index::load_order(std::string_view name) const {
    std::vector<const Entry*> out;
    std::vector<std::string> chain;
    auto visit = [&](auto& self, std::string_view n) -> Result<void> {
        const Entry* e = find(n);
        if (!e) {
            if (chain.empty()) return fail(ENOENT, "module {} is not in {}'s index (udrv depmod indexes it)", n, dir.string());
            return fail(ENOENT, "{} depends on {}, which is not in {}'s index", chain.back(), n, dir.string());
        }
        if (std::find(out.begin(), out.end(), e) != out.end()) return {};
        if (std::find(chain.begin(), chain.end(), e->name) != chain.end())
            return fail(ELOOP, "dependency cycle: {} -> {}", fmt::join(chain, " -> "), e->name);
        chain.push_back(e->name);
        for (const auto& d : e->depends) UDRV_TRY(self(self, d));
        chain.pop_back();
        out.push_back(e);
        return {};
    };
    UDRV_TRY(visit(visit, name));
    return out;
}

Result<Index> scan(const std::filesystem::path& dir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) return fail(ENOENT, "{} is not a module directory", dir.string());
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
        if (e.path().extension() == ".so" && e.is_regular_file(ec)) files.push_back(e.path());
    if (ec) return fail(ec.value(), "{}: {}", dir.string(), ec.message());
    std::sort(files.begin(), files.end());
    Index idx;
    idx.dir = dir;
    for (const auto& f : files) {
        auto infos = read_modinfo(f);
        if (!infos) {
            idx.warnings.push_back(infos.error().message());
            continue;
        }
        if (infos->size() != 1) {
            idx.warnings.push_back(fmt::format("{}: holds {} modules; a loadable module file declares exactly one", f.string(), infos->size()));
            continue;
        }
        const Modinfo& m = infos->front();
        if (!is_name(m.name())) {
            idx.warnings.push_back(fmt::format("{}: metadata has no valid name", f.string()));
            continue;
        }
        if (const Entry* other = idx.find(m.name()))
            return fail(EEXIST, "{} and {} both declare module {}: remove one", other->file.string(), f.string(), m.name());
        Entry e{std::string(m.name()), f, {}, m.depends()};
        for (auto a : m.get_all("alias")) e.aliases.emplace_back(a);
        idx.modules.push_back(std::move(e));
    }
    return idx;
}

Result<void> write(const Index& index) {
    std::string alias = "# Aliases extracted from modules themselves (udrv depmod).\n";
    std::string dep;
    for (const auto& e : index.modules) {
        for (const auto& a : e.aliases) alias += fmt::format("alias {} {}\n", a, e.name);
        auto order = index.load_order(e.name);
        if (!order) return std::unexpected(std::move(order).error().context(fmt::format("{}", e.file.string())));
        // kmod's layout: the module, then its dependencies with the one to load first last.
        std::vector<std::string> deps;
        for (auto it = order->rbegin(); it != order->rend(); ++it)
            if ((*it)->name != e.name) deps.push_back((*it)->file.filename().string());
        dep += fmt::format("{}:{}{}\n", e.file.filename().string(), deps.empty() ? "" : " ", fmt::join(deps, " "));
    }
    UDRV_TRY(write_atomically(index.dir / "modules.alias", alias));
    UDRV_TRY(write_atomically(index.dir / "modules.dep", dep));
    return {};
}

Result<Index> read(const std::filesystem::path& dir) {
    const auto dep_file = dir / "modules.dep", alias_file = dir / "modules.alias";
    std::error_code ec;
    if (!std::filesystem::exists(dep_file, ec))
        return fail(ENOENT, "{} has no modules.dep: run udrv depmod {}", dir.string(), dir.string());
    Index idx;
    idx.dir = dir;
    const std::string deps = UDRV_TRY(read_text_file(dep_file, kMaxIndex, "modules.dep"));
    for (const auto& [n, line] : logical_lines(deps)) {
        auto w = words(line);
        if (w.empty() || !w[0].ends_with(".so:"))
            return fail(EINVAL, "{}:{}: expected 'NAME.so: DEPENDENCY.so ...': run udrv depmod {}", dep_file.string(), n, dir.string());
        Entry e;
        e.name = std::string(w[0].substr(0, w[0].size() - 4));
        if (!is_name(e.name)) return fail(EINVAL, "{}:{}: '{}' is not a module name", dep_file.string(), n, e.name);
        e.file = dir / (e.name + ".so");
        for (std::size_t i = w.size(); i-- > 1;) {  // listed with the first to load last
            if (!w[i].ends_with(".so") || !is_name(w[i].substr(0, w[i].size() - 3)))
                return fail(EINVAL, "{}:{}: '{}' is not a module file name", dep_file.string(), n, w[i]);
            e.depends.emplace_back(w[i].substr(0, w[i].size() - 3));
        }
        idx.modules.push_back(std::move(e));
    }
    const std::string aliases = UDRV_TRY(read_text_file(alias_file, kMaxIndex, "modules.alias"));
    for (const auto& [n, line] : logical_lines(aliases)) {
        auto w = words(line);
        if (w.size() != 3 || w[0] != "alias") return fail(EINVAL, "{}:{}: expected 'alias PATTERN NAME'", alias_file.string(), n);
        auto it = std::find_if(idx.modules.begin(), idx.modules.end(), [&](const Entry& e) { return e.name == w[2]; });
        if (it == idx.modules.end())
            return fail(EINVAL, "{}:{}: module {} is not in modules.dep: run udrv depmod {}", alias_file.string(), n, w[2], dir.string());
        it->aliases.emplace_back(w[1]);
    }
    return idx;
}

Result<void> parse_config(std::string_view text, std::string_view file, Config& into) {
    for (const auto& [n, line] : logical_lines(text)) {
        auto w = words(line);
        const std::string where = fmt::format("{}:{}", file, n);
        if (w[0] == "blacklist") {
            if (w.size() != 2 || !is_name(normalize(w[1]))) return fail(EINVAL, "{}: expected 'blacklist NAME'", where);
            into.blacklist.emplace(normalize(w[1]), where);
        } else if (w[0] == "options") {
            if (w.size() < 3 || !is_name(normalize(w[1]))) return fail(EINVAL, "{}: expected 'options NAME key=value ...'", where);
            auto& opts = into.options[normalize(w[1])];
            for (std::size_t i = 2; i < w.size(); ++i) opts.emplace_back(w[i]);
        } else if (w[0] == "alias") {
            if (w.size() != 3 || !is_name(normalize(w[2]))) return fail(EINVAL, "{}: expected 'alias PATTERN NAME'", where);
            into.aliases.emplace_back(std::string(w[1]), normalize(w[2]));
        } else {
            into.warnings.push_back(fmt::format("{}: '{}' is not supported by udrv (blacklist, options, alias): line ignored", where, w[0]));
        }
    }
    return {};
}

Result<Config> read_config(const std::optional<std::filesystem::path>& dir_opt) {
    std::filesystem::path dir = "/etc/udrv/modprobe.d";
    if (dir_opt) dir = *dir_opt;
    else if (const char* env = std::getenv("UDRV_MODPROBE_D"); env && *env) dir = env;
    Config c;
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) return c;
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
        if (e.path().extension() == ".conf") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        const std::string text = UDRV_TRY(read_text_file(f, 1u << 20, "modprobe configuration"));
        UDRV_TRY(parse_config(text, f.string(), c));
    }
    return c;
}

std::vector<std::string> match(const Index& index, const Config& config, std::string_view modalias,
                               std::vector<std::pair<std::string, std::string>>* blacklisted) {
    std::vector<std::string> out;
    auto consider = [&](const std::string& name) {
        if (std::find(out.begin(), out.end(), name) != out.end()) return;
        if (auto b = config.blacklist.find(name); b != config.blacklist.end()) {
            if (blacklisted && std::none_of(blacklisted->begin(), blacklisted->end(), [&](auto& p) { return p.first == name; }))
                blacklisted->emplace_back(name, b->second);
            return;
        }
        out.push_back(name);
    };
    for (const auto& [pattern, name] : config.aliases)
        if (alias_matches(pattern, modalias)) consider(name);
    for (const auto& e : index.modules)
        for (const auto& a : e.aliases)
            if (alias_matches(a, modalias)) consider(e.name);
    return out;
}

}  // namespace udrv::modprobe
