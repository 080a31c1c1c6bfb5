// TOML for udrv's own files (platform descriptions, udrvd's configuration): a parser of the TOML 1.0
// subset those files use, written for hostile input.
//
// Why not a library: Debian 12's C++ TOML parsers both reach undefined behaviour or abort on malformed
// input (toml++ 3.3.0: __builtin_unreachable in its unicode tables on some non-ASCII bytes and a failed
// precondition on headers like `[[[`, upstream #190/#295/#301; toml11 3.7.1: a failed assertion in
// region.hpp, found by AFL++). Descriptions come from users and from other programs, so the parser must
// answer every input with a value or an error that names the line and column. It is fuzzed
// (tests/fuzz/toml_fuzz.cpp) and bounded: nesting depth, string length and entry counts.
//
// Supported: comments, bare/quoted/dotted keys, [tables], [[arrays of tables]], basic and literal strings
// (single-line, and multi-line with """ / '''), integers (decimal, 0x, 0o, 0b, underscores), floats,
// booleans, arrays, inline tables. Not supported (refused with a message): dates and times.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "udrv/result.hpp"

namespace udrv::toml {

/// 1-based line and column of a key or value in the source text.
struct Position {
    unsigned line = 0, column = 0;
};

class Value;

/// A key and its value, with where the key was written.
struct Entry {
    std::string key;
    Position key_position;
    std::unique_ptr<Value> value;
};

/// A table keeps its entries in the order they were written.
struct Table {
    std::vector<Entry> entries;
    /// The value of `key`, or nullptr.
    const Value* get(std::string_view key) const noexcept;
};

using Array = std::vector<Value>;

class Value {
public:
    enum class Kind { string, integer, floating, boolean, array, table };
    using Storage = std::variant<std::string, std::int64_t, double, bool, Array, Table>;

    Value(Storage v, Position p) : v_(std::move(v)), pos_(p) {}

    Kind kind() const noexcept { return static_cast<Kind>(v_.index()); }
    /// "string", "integer", "float", "boolean", "array", "table": for messages.
    std::string_view kind_name() const noexcept;
    Position position() const noexcept { return pos_; }

    const std::string* as_string() const noexcept { return std::get_if<std::string>(&v_); }
    const std::int64_t* as_integer() const noexcept { return std::get_if<std::int64_t>(&v_); }
    const double* as_float() const noexcept { return std::get_if<double>(&v_); }
    const bool* as_bool() const noexcept { return std::get_if<bool>(&v_); }
    const Array* as_array() const noexcept { return std::get_if<Array>(&v_); }
    const Table* as_table() const noexcept { return std::get_if<Table>(&v_); }
    Array* as_array() noexcept { return std::get_if<Array>(&v_); }
    Table* as_table() noexcept { return std::get_if<Table>(&v_); }
    /// For tables: the value of `key`, or nullptr (also for non-tables).
    const Value* get(std::string_view key) const noexcept;

private:
    friend class Parser;
    Storage v_;
    Position pos_;
    std::uint8_t flags_ = 0;  // parser bookkeeping (which tables may still be extended)
};

/// Parses a whole document; returns its root table. Errors read "SOURCE:LINE:COLUMN: what is wrong".
Result<Value> parse(std::string_view text, std::string_view source);

/// Parses a JSON document (nlohmann-json's parser) into the same tree, each value with the line and
/// column where it ends, so that a file may be written in either language and checked by one schema.
/// The root must be an object; null values are refused (TOML has none).
Result<Value> parse_json(std::string_view text, std::string_view source);

// ---- checking a document against a schema, each error naming SOURCE:LINE ----

std::string where(std::string_view source, Position p);
std::string where(std::string_view source, const Value& v);
/// Rejects keys outside `allowed`, naming the offending key's line and the keys allowed.
Result<void> only_keys(const Table& t, std::initializer_list<std::string_view> allowed, std::string_view source, std::string_view what);
/// The string at `key` of table value `t`; "" when absent and not `required`.
Result<std::string> get_string(const Value& t, std::string_view key, std::string_view source, std::string_view what, bool required);
/// A non-negative integer at `key` (required).
Result<std::uint64_t> get_u64(const Value& t, std::string_view key, std::string_view source, std::string_view what);
/// A non-negative integer at `key`, or `fallback` when absent.
Result<std::uint64_t> get_u64_or(const Value& t, std::string_view key, std::uint64_t fallback, std::string_view source,
                                 std::string_view what);
/// A boolean at `key`, or `fallback` when absent.
Result<bool> get_bool_or(const Value& t, std::string_view key, bool fallback, std::string_view source, std::string_view what);

/// Calls `f` for `key = { ... }` (one table) or each table of `key = [{ ... }, ...]` / `[[key]]`.
template <typename F>
Result<void> each_table(const Value& parent, std::string_view key, std::string_view source, F&& f) {
    const Value* n = parent.get(key);
    if (!n) return {};
    if (n->as_table()) return f(*n);
    const Array* arr = n->as_array();
    if (!arr) return fail(EINVAL, "{}: '{}' must be a table or an array of tables", where(source, *n), key);
    for (const Value& e : *arr) {
        if (!e.as_table()) return fail(EINVAL, "{}: each '{}' entry must be a table ({{ name = ..., ... }})", where(source, e), key);
        UDRV_TRY(f(e));
    }
    return {};
}

}  // namespace udrv::toml
