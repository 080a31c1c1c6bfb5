// Modules: the unit a driver ships in (the kernel's module! / MODULE_*()). A module is a type with
//
//     static udrv::Result<T> init(const udrv::ThisModule&);   // module_init; the returned value lives while loaded
//     ~T();                                                    // module_exit
//
// declared with UDRV_MODULE(T, .name = "...", .authors = {"..."}, .description = "...", .license = "GPL").
// (init may also return Result<std::unique_ptr<T>>; see detail::init_module for how T is constructed.)
// The declaration is encoded at compile time as `key=value\0` strings into the ELF section `udrv_modinfo`
// (like the kernel's .modinfo), so `udrv modinfo` and the loader read it without running any module code.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "udrv/result.hpp"

namespace udrv {

/// Version of the module ABI (the ModuleEntry layout and the core's C++ ABI). Bump on incompatible change.
inline constexpr unsigned kModuleAbi = 1;
/// Name of the ELF section holding module metadata.
inline constexpr std::string_view kModinfoSection = "udrv_modinfo";

/// Types a module parameter can have (the kernel's module_param types).
enum class ParamType { boolean, i32, u32, i64, u64, string };

/// Name used in metadata and messages: "bool", "int32", "uint32", "int64", "uint64", "string".
constexpr std::string_view param_type_name(ParamType t) {
    switch (t) {
        case ParamType::boolean: return "bool";
        case ParamType::i32: return "int32";
        case ParamType::u32: return "uint32";
        case ParamType::i64: return "int64";
        case ParamType::u64: return "uint64";
        case ParamType::string: return "string";
    }
    return "?";
}

/// A parameter as stored in the declaration (type-erased; see Param<T>).
struct ParamSpec {
    std::string_view name;
    ParamType type = ParamType::i64;
    std::string_view description;
    std::int64_t int_default = 0;   // bool, int32, int64
    std::uint64_t uint_default = 0; // uint32, uint64
    std::string_view str_default;   // string
};

namespace detail {
template <typename T> struct ParamTraits;
template <> struct ParamTraits<bool> { static constexpr ParamType type = ParamType::boolean; };
template <> struct ParamTraits<std::int32_t> { static constexpr ParamType type = ParamType::i32; };
template <> struct ParamTraits<std::uint32_t> { static constexpr ParamType type = ParamType::u32; };
template <> struct ParamTraits<std::int64_t> { static constexpr ParamType type = ParamType::i64; };
template <> struct ParamTraits<std::uint64_t> { static constexpr ParamType type = ParamType::u64; };
template <> struct ParamTraits<std::string_view> { static constexpr ParamType type = ParamType::string; };
}  // namespace detail

/// A typed module parameter: declare it as a static constexpr member, list it in the module's
/// `.params`, read it in init with `m.param(count)`. Set at load time as `count=8`.
///     static constexpr udrv::Param<std::int64_t> count{"count", 4, "How many greetings"};
template <typename T>
struct Param {
    std::string_view name;
    T default_value;
    std::string_view description;

    constexpr operator ParamSpec() const {  // NOLINT: implicit, so `.params = {a, b}` reads naturally
        ParamSpec s;
        s.name = name;
        s.type = detail::ParamTraits<T>::type;
        s.description = description;
        if constexpr (std::is_same_v<T, std::string_view>) s.str_default = default_value;
        else if constexpr (std::is_same_v<T, bool> || std::is_signed_v<T>) s.int_default = default_value;
        else s.uint_default = default_value;
        return s;
    }
};

/// A list of up to N items, usable in a constexpr declaration (`.authors = {"a", "b"}`).
template <typename T, std::size_t N>
struct FixedList {
    std::array<T, N> items{};
    std::size_t count = 0;

    constexpr FixedList() = default;
    constexpr FixedList(std::initializer_list<T> l) {
        if (l.size() > N) throw "udrv: too many entries in a module declaration list";
        for (const T& x : l) items[count++] = x;
    }
    constexpr const T* begin() const { return items.data(); }
    constexpr const T* end() const { return items.data() + count; }
    constexpr std::size_t size() const { return count; }
};

/// What UDRV_MODULE declares. Fields must be given in this order (C++ designated initializers).
struct ModuleDecl {
    std::string_view name;                       ///< required: [A-Za-z0-9_]+, unique among loaded modules
    FixedList<std::string_view, 8> authors;
    std::string_view description;
    std::string_view license;                    ///< required: "GPL", "MIT", ...; others taint the process
    std::string_view version;
    FixedList<std::string_view, 8> aliases;      ///< extra aliases; bus helpers add their ID tables'
    FixedList<std::string_view, 8> depends;      ///< modules that must be loaded first (by name)
    FixedList<ParamSpec, 16> params;
};

/// A parameter value as given at load time (int32/uint32 are held widened).
using ParamValue = std::variant<bool, std::int64_t, std::uint64_t, std::string>;

/// Parses `text` as a value of `type`: "bad value" errors say what was expected.
Result<ParamValue> parse_param_value(ParamType type, std::string_view text);
/// Parses a type name from metadata ("int64").
Result<ParamType> parse_param_type(std::string_view name);

/// What a module's init sees of itself: its name and its parameters' values.
class ThisModule {
public:
    ThisModule(std::string name, std::vector<std::pair<std::string, ParamValue>> values)
        : name_(std::move(name)), values_(std::move(values)) {}

    const std::string& name() const noexcept { return name_; }

    /// The value given at load time, or the declared default.
    template <typename T>
    T param(const Param<T>& p) const {
        for (const auto& [n, v] : values_) {
            if (n != p.name) continue;
            if constexpr (std::is_same_v<T, std::string_view>) {
                if (auto* s = std::get_if<std::string>(&v)) return *s;
            } else if constexpr (std::is_same_v<T, bool>) {
                if (auto* b = std::get_if<bool>(&v)) return *b;
            } else if constexpr (std::is_signed_v<T>) {
                if (auto* i = std::get_if<std::int64_t>(&v)) return static_cast<T>(*i);
            } else {
                if (auto* u = std::get_if<std::uint64_t>(&v)) return static_cast<T>(*u);
            }
        }
        return p.default_value;
    }

private:
    std::string name_;
    std::vector<std::pair<std::string, ParamValue>> values_;
};

namespace detail {

/// The loaded module's value; destroying it runs the module's exit.
using ModuleInstance = std::unique_ptr<void, void (*)(void*)>;

/// What a module registers at static-initialisation time (also for modules linked in statically).
struct ModuleEntry {
    unsigned abi;
    const ModuleDecl* decl;
    std::string_view modinfo;  ///< the encoded metadata, as in the ELF section
    Result<ModuleInstance> (*init)(const ThisModule&);
};

void register_module(const ModuleEntry* e);
void unregister_module(const ModuleEntry* e) noexcept;


/// Runs T::init. The returned Result is constructed in place on the heap and kept as the module's
/// value, so udrv never moves T: `return {};` in init builds T exactly once, and ~T runs exactly once
/// at unload. (A `return T{...}` moves once inside init; T's destructor must then be harmless on a
/// moved-from T, which it is when T holds its resources in owning members.) init may instead return
/// Result<std::unique_ptr<T>>.
template <typename T>
Result<ModuleInstance> init_module(const ThisModule& m) {
    using R = decltype(T::init(m));
    R* holder = new R(T::init(m));  // prvalue: guaranteed elision, no move of T
    if (!*holder) {
        Error e = std::move(*holder).error();
        delete holder;
        return std::unexpected(std::move(e));
    }
    return ModuleInstance(holder, [](void* p) { delete static_cast<R*>(p); });
}

template <typename T>
class ModuleRegistration {
public:
    ModuleRegistration(const ModuleDecl& decl, std::string_view modinfo)
        : entry_{kModuleAbi, &decl, modinfo, &init_module<T>} {
        register_module(&entry_);
    }
    ~ModuleRegistration() { unregister_module(&entry_); }
    ModuleRegistration(const ModuleRegistration&) = delete;
    ModuleRegistration& operator=(const ModuleRegistration&) = delete;

private:
    ModuleEntry entry_;
};

// ---- compile-time encoding of the declaration into `key=value\0` strings ----

/// A string built at compile time (ID-table aliases such as "pci:v00008086d*sv*sd*bc*sc*i*").
struct FixedString {
    std::array<char, 96> chars{};
    std::size_t len = 0;
    constexpr void push(char c) {
        if (len >= chars.size()) throw "udrv: alias too long";
        chars[len++] = c;
    }
    constexpr void append(std::string_view s) {
        for (char c : s) push(c);
    }
    constexpr void append_hex(std::uint32_t v, int digits) {
        for (int i = digits - 1; i >= 0; --i) push("0123456789ABCDEF"[(v >> (4 * i)) & 0xF]);
    }
    constexpr std::string_view view() const { return {chars.data(), len}; }
};

template <std::size_t N>
struct ModinfoBlob {
    char bytes[N];
};

/// Fails compilation (by calling a non-constexpr function) with the reason in the name.
void module_declaration_needs_a_name();
void module_declaration_needs_a_license();
void module_name_must_be_letters_digits_underscores();
void module_parameter_names_must_be_unique_identifiers();
void module_metadata_must_not_contain_nul_bytes();

constexpr bool is_identifier(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
    return true;
}

constexpr bool check_decl(const ModuleDecl& d) {
    if (d.name.empty()) module_declaration_needs_a_name();
    if (d.license.empty()) module_declaration_needs_a_license();
    if (!is_identifier(d.name)) module_name_must_be_letters_digits_underscores();
    for (std::size_t i = 0; i < d.params.size(); ++i) {
        if (!is_identifier(d.params.items[i].name)) module_parameter_names_must_be_unique_identifiers();
        for (std::size_t j = 0; j < i; ++j)
            if (d.params.items[i].name == d.params.items[j].name) module_parameter_names_must_be_unique_identifiers();
    }
    return true;
}

/// Writes (or, with out == nullptr, only counts) the encoded metadata.
class ModinfoWriter {
public:
    constexpr explicit ModinfoWriter(char* out) : out_(out) {}
    constexpr void put(char c) {
        if (out_) out_[n_] = c;
        ++n_;
    }
    constexpr void text(std::string_view s) {
        for (char c : s) {
            if (c == '\0') module_metadata_must_not_contain_nul_bytes();
            put(c);
        }
    }
    constexpr void number(std::uint64_t v, bool negative) {
        if (negative) put('-');
        char buf[24]{};
        int i = 0;
        do { buf[i++] = static_cast<char>('0' + v % 10); v /= 10; } while (v);
        while (i) put(buf[--i]);
    }
    constexpr void begin(std::string_view key) { text(key); put('='); }
    constexpr void end() { put('\0'); }
    constexpr void field(std::string_view key, std::string_view value) { begin(key); text(value); end(); }
    constexpr std::size_t size() const { return n_; }

private:
    char* out_;
    std::size_t n_ = 0;
};

constexpr void write_modinfo(ModinfoWriter& w, const ModuleDecl& d, std::span<const FixedString> extra_aliases) {
    w.field("name", d.name);
    if (!d.version.empty()) w.field("version", d.version);
    if (!d.description.empty()) w.field("description", d.description);
    for (auto a : d.authors) w.field("author", a);
    w.field("license", d.license);
    for (auto a : d.aliases) w.field("alias", a);
    for (const auto& a : extra_aliases) w.field("alias", a.view());
    w.begin("depends");
    for (std::size_t i = 0; i < d.depends.size(); ++i) {
        if (i) w.put(',');
        w.text(d.depends.items[i]);
    }
    w.end();
    for (const ParamSpec& p : d.params) {
        w.begin("parm"); w.text(p.name); w.put(':'); w.text(p.description); w.end();
        w.begin("parmtype"); w.text(p.name); w.put(':'); w.text(param_type_name(p.type)); w.end();
        w.begin("parmdefault"); w.text(p.name); w.put(':');
        switch (p.type) {
            case ParamType::boolean: w.put(p.int_default ? 'y' : 'n'); break;
            case ParamType::i32:
            case ParamType::i64:
                w.number(p.int_default < 0 ? 0 - static_cast<std::uint64_t>(p.int_default) : static_cast<std::uint64_t>(p.int_default),
                         p.int_default < 0);
                break;
            case ParamType::u32:
            case ParamType::u64: w.number(p.uint_default, false); break;
            case ParamType::string: w.text(p.str_default); break;
        }
        w.end();
    }
    w.begin("abi"); w.number(kModuleAbi, false); w.end();
}

constexpr std::size_t modinfo_size(const ModuleDecl& d, std::span<const FixedString> extra) {
    ModinfoWriter w(nullptr);
    write_modinfo(w, d, extra);
    return w.size();
}

template <std::size_t N>
constexpr ModinfoBlob<N> encode_modinfo(const ModuleDecl& d, std::span<const FixedString> extra) {
    ModinfoBlob<N> blob{};
    ModinfoWriter w(blob.bytes);
    write_modinfo(w, d, extra);
    return blob;
}

}  // namespace detail
}  // namespace udrv

/// Declares module type T. One per translation unit; see the top of this header.
#define UDRV_MODULE(T, ...) UDRV_MODULE_WITH_ALIASES(T, (std::array<::udrv::detail::FixedString, 0>{}), __VA_ARGS__)

/// UDRV_MODULE plus aliases computed at compile time (used by the bus helpers for their ID tables).
#define UDRV_MODULE_WITH_ALIASES(T, ALIASES, ...)                                                          \
    namespace {                                                                                            \
    /* fields left out of the designated initializer take their defaults (g++ 12 warns regardless) */     \
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wmissing-field-initializers\"")     \
    constexpr ::udrv::ModuleDecl udrv_module_decl_{__VA_ARGS__};                                            \
    _Pragma("GCC diagnostic pop")                                                                          \
    static_assert(::udrv::detail::check_decl(udrv_module_decl_));                                          \
    constexpr auto udrv_module_aliases_ = ALIASES;                                                         \
    constexpr std::size_t udrv_modinfo_size_ =                                                             \
        ::udrv::detail::modinfo_size(udrv_module_decl_, udrv_module_aliases_);                             \
    /* SAFETY: plain bytes in a named section; read by modinfo/loader, never executed */                   \
    [[gnu::used, gnu::section("udrv_modinfo")]] constexpr ::udrv::detail::ModinfoBlob<udrv_modinfo_size_>  \
        udrv_modinfo_ = ::udrv::detail::encode_modinfo<udrv_modinfo_size_>(udrv_module_decl_,              \
                                                                           udrv_module_aliases_);          \
    const ::udrv::detail::ModuleRegistration<T> udrv_module_registration_{                                \
        udrv_module_decl_, std::string_view(udrv_modinfo_.bytes, udrv_modinfo_size_)};                     \
    }
