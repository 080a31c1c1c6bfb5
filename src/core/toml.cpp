// The TOML subset parser (see udrv/toml.hpp for why it is not a library). Recursive descent over the
// bytes; every read is bounds-checked through peek(); nesting is limited so that no input can exhaust
// the stack, and tables and arrays are limited in size so that no input makes parsing quadratic.
#include "udrv/toml.hpp"

#include <cctype>
#include <charconv>
#include <cmath>

namespace udrv::toml {
namespace {

constexpr unsigned kMaxDepth = 32;           // arrays and inline tables within each other
constexpr std::size_t kMaxEntries = 4096;    // keys in one table
constexpr std::size_t kMaxElements = 65536;  // elements of one array

bool is_bare_key_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }

void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xc0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xe0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
        out += static_cast<char>(0xf0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    }
}

}  // namespace

// Per-value bookkeeping the TOML rules need while parsing (which tables may still be extended).
enum Flags : std::uint8_t {
    kHeader = 1,         // a table defined by its [header]: it cannot be defined again
    kDotted = 2,         // a table made by dotted keys (a.b = 1): more dotted keys may add to it, a [header] may not define it
    kClosed = 4,         // an inline table or a static array: nothing may be added later
    kTableArray = 8,     // an array made by [[header]]: more [[header]]s append to it
};

class Parser {
public:
    Parser(std::string_view text, std::string_view source) : s_(text), source_(source) {}

    Result<Value> run() {
        Value root(Table{}, {1, 1});
        Value* current = &root;
        for (;;) {
            skip_ws();
            if (at_end()) break;
            const char c = peek();
            if (c == '#') {
                UDRV_TRY(skip_comment());
                continue;
            }
            if (c == '\n' || c == '\r') {
                UDRV_TRY(newline());
                continue;
            }
            if (c == '[') current = UDRV_TRY(header(root));
            else UDRV_TRY(key_value(*current, 0));
            UDRV_TRY(end_of_line());
        }
        return root;
    }

private:
    // ---- position and errors ----
    bool at_end() const noexcept { return i_ >= s_.size(); }
    char peek(std::size_t ahead = 0) const noexcept { return i_ + ahead < s_.size() ? s_[i_ + ahead] : '\0'; }
    bool starts_with(std::string_view w) const noexcept { return s_.substr(std::min(i_, s_.size())).starts_with(w); }
    Position here() const noexcept { return {line_, static_cast<unsigned>(i_ - line_start_ + 1)}; }

    template <typename... Args>
    std::unexpected<Error> error(Position p, fmt::format_string<Args...> f, Args&&... args) const {
        return std::unexpected(Error(EINVAL, fmt::format("{}:{}:{}: {}", source_, p.line, p.column,
                                                         fmt::format(f, std::forward<Args>(args)...))));
    }
    std::string describe_here() const {
        if (at_end()) return "the end of the file";
        const auto c = static_cast<unsigned char>(peek());
        if (c == '\n' || c == '\r') return "the end of the line";
        if (c >= 0x20 && c < 0x7f) return fmt::format("'{}'", static_cast<char>(c));
        return fmt::format("byte {:#04x}", c);
    }

    // ---- whitespace, comments, line ends ----
    void skip_ws() noexcept {
        while (!at_end() && (peek() == ' ' || peek() == '\t')) ++i_;
    }
    Result<void> newline() {
        if (peek() == '\r') {
            if (peek(1) != '\n') return error(here(), "a carriage return must be followed by a line feed");
            ++i_;
        }
        ++i_;
        ++line_;
        line_start_ = i_;
        return {};
    }
    Result<void> skip_comment() {
        ++i_;  // '#'
        while (!at_end() && peek() != '\n') {
            if (peek() == '\r' && peek(1) == '\n') break;
            UDRV_TRY(text_char(false, "comments"));
        }
        return {};
    }
    // After a key/value pair or header: only whitespace and a comment may follow on the line.
    Result<void> end_of_line() {
        skip_ws();
        if (peek() == '#') UDRV_TRY(skip_comment());
        if (at_end()) return {};
        if (peek() == '\n' || peek() == '\r') return newline();
        return error(here(), "expected the end of the line, found {}", describe_here());
    }
    // Whitespace, newlines and comments (inside arrays).
    Result<void> skip_ws_lines() {
        for (;;) {
            skip_ws();
            if (peek() == '#') UDRV_TRY(skip_comment());
            else if (peek() == '\n' || peek() == '\r') UDRV_TRY(newline());
            else return {};
        }
    }

    // One character of string or comment text (UTF-8 checked, control characters refused), appended to
    // `out` when given.
    Result<void> text_char(bool allow_newline, std::string_view where, std::string* out = nullptr) {
        const Position p = here();
        const auto c = static_cast<unsigned char>(peek());
        if (c == '\n' && allow_newline) {
            if (out) *out += '\n';
            return newline();
        }
        if (c == '\r' && allow_newline && peek(1) == '\n') {
            if (out) *out += '\n';
            return newline();
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return error(p, "control character {:#04x} is not allowed in {}", c, where);
        if (c < 0x80) {
            if (out) *out += static_cast<char>(c);
            ++i_;
            return {};
        }
        // UTF-8: the lead byte says how many continuation bytes follow; overlong forms, surrogates and
        // code points above U+10FFFF are invalid.
        std::size_t n;
        std::uint32_t cp;
        if ((c & 0xe0) == 0xc0) n = 1, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0) n = 2, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0) n = 3, cp = c & 0x07;
        else return error(p, "invalid UTF-8 (byte {:#04x}) in {}", c, where);
        for (std::size_t k = 1; k <= n; ++k) {
            const auto b = static_cast<unsigned char>(peek(k));
            if (i_ + k >= s_.size() || (b & 0xc0) != 0x80) return error(p, "invalid UTF-8 (truncated sequence) in {}", where);
            cp = cp << 6 | (b & 0x3f);
        }
        static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
        if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return error(p, "invalid UTF-8 (code point {:#x}) in {}", cp, where);
        if (out) out->append(s_.substr(i_, n + 1));
        i_ += n + 1;
        return {};
    }

    // ---- keys ----
    struct KeyPart {
        std::string name;
        Position pos;
    };
    Result<std::vector<KeyPart>> key() {
        std::vector<KeyPart> parts;
        for (;;) {
            skip_ws();
            const Position p = here();
            std::string name;
            if (peek() == '"' || peek() == '\'') {
                if (starts_with("\"\"\"") || starts_with("'''")) return error(p, "a key cannot be a multi-line string");
                name = UDRV_TRY(peek() == '"' ? basic_string() : literal_string());
            } else {
                while (is_bare_key_char(peek())) name += s_[i_++];
                if (name.empty()) return error(p, "expected a key, found {}", describe_here());
            }
            parts.push_back({std::move(name), p});
            if (parts.size() > kMaxDepth) return error(p, "key has more than {} dotted parts", kMaxDepth);
            skip_ws();
            if (peek() != '.') return parts;
            ++i_;
        }
    }
    static std::string dotted(const std::vector<KeyPart>& parts, std::size_t n) {
        std::string s;
        for (std::size_t k = 0; k < n; ++k) s += (k ? "." : "") + parts[k].name;
        return s;
    }

    Entry* find(Table& t, std::string_view k) {
        for (Entry& e : t.entries)
            if (e.key == k) return &e;
        return nullptr;
    }
    Result<Value*> insert(Table& t, const KeyPart& k, Value v) {
        if (t.entries.size() >= kMaxEntries) return error(k.pos, "more than {} keys in one table", kMaxEntries);
        t.entries.push_back({k.name, k.pos, std::make_unique<Value>(std::move(v))});
        return t.entries.back().value.get();
    }

    // Walks (creating tables) to where `parts[0..n)` leads from `t`, for dotted keys and headers.
    Result<Value*> descend(Value& from, const std::vector<KeyPart>& parts, std::size_t n, bool header) {
        Value* v = &from;
        for (std::size_t k = 0; k < n; ++k) {
            Table& t = std::get<Table>(v->v_);
            Entry* e = find(t, parts[k].name);
            if (!e) {
                v = UDRV_TRY(insert(t, parts[k], Value(Table{}, parts[k].pos)));
                if (!header) v->flags_ |= kDotted;
                continue;
            }
            Value* next = e->value.get();
            if ((next->flags_ & kTableArray) && header) next = &std::get<Array>(next->v_).back();
            if (next->kind() != Value::Kind::table)
                return error(parts[k].pos, "'{}' is already a {} (line {}), not a table", dotted(parts, k + 1), next->kind_name(),
                             e->key_position.line);
            if (next->flags_ & kClosed)
                return error(parts[k].pos, "'{}' is an inline table (line {}): it cannot be extended", dotted(parts, k + 1),
                             e->key_position.line);
            if (!header && !(next->flags_ & kDotted))
                return error(parts[k].pos, "'{}' is a table of its own (line {}): add keys to it under its [header]", dotted(parts, k + 1),
                             e->key_position.line);
            v = next;
        }
        return v;
    }

    // [table] or [[array of tables]]; returns the table that the following keys go into.
    Result<Value*> header(Value& root) {
        const Position p = here();
        const bool array = starts_with("[[");
        i_ += array ? 2 : 1;
        auto parts = UDRV_TRY(key());
        if (array ? !starts_with("]]") : peek() != ']')
            return error(here(), "expected '{}' to close the header, found {}", array ? "]]" : "]", describe_here());
        i_ += array ? 2 : 1;
        Value* parent = UDRV_TRY(descend(root, parts, parts.size() - 1, true));
        Table& t = std::get<Table>(parent->v_);
        const KeyPart& last = parts.back();
        Entry* e = find(t, last.name);
        if (array) {
            if (!e) {
                Value* a = UDRV_TRY(insert(t, last, Value(Array{}, last.pos)));
                a->flags_ |= kTableArray;
                e = &t.entries.back();
            }
            Value& a = *e->value;
            if (!(a.flags_ & kTableArray))
                return error(p, "'{}' is already a {} (line {}), not an array of tables", dotted(parts, parts.size()), a.kind_name(),
                             e->key_position.line);
            Array& arr = std::get<Array>(a.v_);
            if (arr.size() >= kMaxElements) return error(p, "more than {} [[{}]] tables", kMaxElements, dotted(parts, parts.size()));
            arr.emplace_back(Table{}, p);
            arr.back().flags_ |= kHeader;
            return &arr.back();
        }
        if (!e) {
            Value* v = UDRV_TRY(insert(t, last, Value(Table{}, last.pos)));
            v->flags_ |= kHeader;
            return v;
        }
        Value& v = *e->value;
        if (v.kind() != Value::Kind::table || (v.flags_ & (kHeader | kDotted | kClosed)))
            return error(p, "'{}' is defined twice (first on line {})", dotted(parts, parts.size()), e->key_position.line);
        v.flags_ |= kHeader;
        return &v;
    }

    Result<void> key_value(Value& table, unsigned depth) {
        auto parts = UDRV_TRY(key());
        if (peek() != '=') return error(here(), "expected '=' after the key '{}', found {}", dotted(parts, parts.size()), describe_here());
        ++i_;
        skip_ws();
        Value* parent = UDRV_TRY(descend(table, parts, parts.size() - 1, false));
        Table& t = std::get<Table>(parent->v_);
        if (Entry* e = find(t, parts.back().name))
            return error(parts.back().pos, "'{}' is defined twice (first on line {})", dotted(parts, parts.size()), e->key_position.line);
        Value v = UDRV_TRY(value(depth));
        UDRV_TRY(insert(t, parts.back(), std::move(v)));
        return {};
    }

    // ---- values ----
    Result<Value> value(unsigned depth) {
        const Position p = here();
        if (depth > kMaxDepth) return error(p, "arrays and inline tables nested more than {} deep", kMaxDepth);
        const char c = peek();
        if (c == '"') {
            auto s = UDRV_TRY(starts_with("\"\"\"") ? multiline_basic() : basic_string());
            return Value(std::move(s), p);
        }
        if (c == '\'') {
            auto s = UDRV_TRY(starts_with("'''") ? multiline_literal() : literal_string());
            return Value(std::move(s), p);
        }
        if (c == '[') return array(depth);
        if (c == '{') return inline_table(depth);
        if (starts_with("true") && !is_bare_key_char(peek(4))) {
            i_ += 4;
            return Value(true, p);
        }
        if (starts_with("false") && !is_bare_key_char(peek(5))) {
            i_ += 5;
            return Value(false, p);
        }
        if (is_digit(c) || c == '+' || c == '-' || c == 'i' || c == 'n') return number(p);
        return error(p, "expected a value (a string, number, true/false, [array] or {{table}}), found {}", describe_here());
    }

    Result<std::uint32_t> hex_escape(std::size_t digits, Position p) {
        std::uint32_t cp = 0;
        for (std::size_t k = 0; k < digits; ++k) {
            const char h = peek();
            int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
            if (d < 0) return error(p, "\\{} needs {} hex digits", digits == 4 ? 'u' : 'U', digits);
            cp = cp << 4 | static_cast<std::uint32_t>(d);
            ++i_;
        }
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return error(p, "\\u escape {:#x} is not a Unicode scalar value", cp);
        return cp;
    }
    // One escape sequence after a backslash; in multi-line strings a backslash at the end of a line trims
    // the line break and the whitespace that follows.
    Result<void> escape(std::string& out, bool multiline) {
        const Position p = here();
        ++i_;  // '\'
        const char e = peek();
        if (multiline) {
            std::size_t j = i_;
            while (j < s_.size() && (s_[j] == ' ' || s_[j] == '\t')) ++j;
            if (j < s_.size() && (s_[j] == '\n' || s_[j] == '\r')) {
                i_ = j;
                for (;;) {
                    skip_ws();
                    if (peek() == '\n' || peek() == '\r') {
                        if (peek() == '\r' && peek(1) != '\n') return error(here(), "a carriage return must be followed by a line feed");
                        UDRV_TRY(newline());
                    } else {
                        return {};
                    }
                }
            }
        }
        ++i_;
        switch (e) {
            case 'b': out += '\b'; return {};
            case 't': out += '\t'; return {};
            case 'n': out += '\n'; return {};
            case 'f': out += '\f'; return {};
            case 'r': out += '\r'; return {};
            case '"': out += '"'; return {};
            case '\\': out += '\\'; return {};
            case 'u': append_utf8(out, UDRV_TRY(hex_escape(4, p))); return {};
            case 'U': append_utf8(out, UDRV_TRY(hex_escape(8, p))); return {};
            default: return error(p, "unknown escape sequence '\\{}'", e >= 0x20 && e < 0x7f ? std::string(1, e) : std::string("?"));
        }
    }
    Result<std::string> basic_string() {
        const Position p = here();
        ++i_;
        std::string out;
        for (;;) {
            if (at_end() || peek() == '\n' || peek() == '\r') return error(p, "string is not closed on its line (a '\"' is missing)");
            if (peek() == '"') {
                ++i_;
                return out;
            }
            if (peek() == '\\') UDRV_TRY(escape(out, false));
            else UDRV_TRY(text_char(false, "strings", &out));
        }
    }
    Result<std::string> literal_string() {
        const Position p = here();
        ++i_;
        std::string out;
        for (;;) {
            if (at_end() || peek() == '\n' || peek() == '\r') return error(p, "string is not closed on its line (a \"'\" is missing)");
            if (peek() == '\'') {
                ++i_;
                return out;
            }
            UDRV_TRY(text_char(false, "strings", &out));
        }
    }
    // """...""" and '''...''': a newline right after the opening quotes is dropped; up to two quotes may
    // stand right before the closing three.
    Result<std::string> multiline(char quote) {
        const Position p = here();
        i_ += 3;
        if (peek() == '\n' || peek() == '\r') UDRV_TRY(newline());
        std::string out;
        const std::string close(3, quote);
        for (;;) {
            if (at_end()) return error(p, "multi-line string is not closed (missing {})", close);
            if (starts_with(close)) {
                std::size_t extra = 0;
                while (extra < 2 && peek(3 + extra) == quote) ++extra;
                out.append(extra, quote);
                i_ += 3 + extra;
                return out;
            }
            if (quote == '"' && peek() == '\\') UDRV_TRY(escape(out, true));
            else UDRV_TRY(text_char(true, "strings", &out));
        }
    }
    Result<std::string> multiline_basic() { return multiline('"'); }
    Result<std::string> multiline_literal() { return multiline('\''); }

    Result<Value> array(unsigned depth) {
        const Position p = here();
        ++i_;
        Array out;
        for (;;) {
            UDRV_TRY(skip_ws_lines());
            if (peek() == ']') {
                ++i_;
                break;
            }
            if (out.size() >= kMaxElements) return error(p, "array has more than {} elements", kMaxElements);
            out.push_back(UDRV_TRY(value(depth + 1)));
            UDRV_TRY(skip_ws_lines());
            if (peek() == ',') {
                ++i_;
                continue;
            }
            if (peek() == ']') {
                ++i_;
                break;
            }
            return error(here(), "expected ',' or ']' in the array that starts at line {}, found {}", p.line, describe_here());
        }
        Value v(std::move(out), p);
        v.flags_ |= kClosed;
        return v;
    }

    Result<Value> inline_table(unsigned depth) {
        const Position p = here();
        ++i_;
        Value v(Table{}, p);
        skip_ws();
        if (peek() == '}') {
            ++i_;
        } else {
            for (;;) {
                UDRV_TRY(key_value(v, depth + 1));
                skip_ws();
                if (peek() == ',') {
                    ++i_;
                    continue;
                }
                if (peek() == '}') {
                    ++i_;
                    break;
                }
                return error(here(), "expected ',' or '}}' in the inline table that starts at line {} (inline tables are on one line), "
                             "found {}", p.line, describe_here());
            }
        }
        v.flags_ |= kClosed;
        return v;
    }

    // Integers and floats. The token is what a number could be made of; it is then checked as a whole.
    Result<Value> number(Position p) {
        const std::size_t start = i_;
        while (!at_end()) {
            const char c = peek();
            if (is_bare_key_char(c) || c == '+' || c == '.' || c == ':') ++i_;
            else break;
        }
        std::string_view tok = s_.substr(start, i_ - start);
        if (tok.find(':') != std::string_view::npos ||
            (tok.size() >= 5 && is_digit(tok[0]) && is_digit(tok[3]) && tok[4] == '-'))
            return error(p, "dates and times are not supported: write them as strings");
        auto bad = [&] { return error(p, "'{}' is not a valid number", tok); };
        std::string_view body = tok;
        bool negative = false;
        if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
            negative = body[0] == '-';
            body.remove_prefix(1);
        }
        if (body == "inf") return Value(negative ? -HUGE_VAL : HUGE_VAL, p);
        if (body == "nan") return Value(std::nan(""), p);
        int base = 10;
        if (body.size() > 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'o' || body[1] == 'b')) {
            if (body.size() != tok.size()) return error(p, "'{}': a sign is not allowed before 0x, 0o or 0b", tok);
            base = body[1] == 'x' ? 16 : body[1] == 'o' ? 8 : 2;
            body.remove_prefix(2);
        }
        // Underscores only between two digits.
        std::string digits;
        bool is_float = false;
        for (std::size_t k = 0; k < body.size(); ++k) {
            const char c = body[k];
            if (c == '_') {
                auto digit_at = [&](std::size_t j) {
                    return j < body.size() && (base == 16 ? std::isxdigit(static_cast<unsigned char>(body[j])) != 0 : is_digit(body[j]));
                };
                if (k == 0 || !digit_at(k - 1) || !digit_at(k + 1)) return bad();
                continue;
            }
            if (base == 10 && (c == '.' || c == 'e' || c == 'E')) is_float = true;
            digits += c;
        }
        if (digits.empty()) return bad();
        if (is_float) {
            // A digit on both sides of the point; an exponent needs digits.
            const auto dot = digits.find('.');
            if (dot != std::string::npos && (dot == 0 || !is_digit(digits[dot - 1]) || dot + 1 >= digits.size() || !is_digit(digits[dot + 1])))
                return bad();
            if (digits.size() > 1 && digits[0] == '0' && is_digit(digits[1])) return bad();
            double d = 0;
            auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), d);
            if (ec != std::errc() || ptr != digits.data() + digits.size()) return bad();
            return Value(negative ? -d : d, p);
        }
        if (base == 10 && digits.size() > 1 && digits[0] == '0') return error(p, "'{}': leading zeros are not allowed", tok);
        std::uint64_t u = 0;
        auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), u, base);
        if (ec == std::errc::result_out_of_range) return error(p, "'{}' does not fit in 64 bits", tok);
        if (ec != std::errc() || ptr != digits.data() + digits.size()) return bad();
        if (negative ? u > std::uint64_t{INT64_MAX} + 1 : u > std::uint64_t{INT64_MAX})
            return error(p, "'{}' does not fit in a signed 64-bit integer", tok);
        const std::int64_t v = negative ? static_cast<std::int64_t>(0 - u) : static_cast<std::int64_t>(u);
        return Value(v, p);
    }

    std::string_view s_, source_;
    std::size_t i_ = 0, line_start_ = 0;
    unsigned line_ = 1;
};

std::string_view Value::kind_name() const noexcept {
    switch (kind()) {
        case Kind::string: return "string";
        case Kind::integer: return "integer";
        case Kind::floating: return "float";
        case Kind::boolean: return "boolean";
        case Kind::array: return "array";
        case Kind::table: return "table";
    }
    return "?";
}

const Value* Table::get(std::string_view key) const noexcept {
    for (const Entry& e : entries)
        if (e.key == key) return e.value.get();
    return nullptr;
}

const Value* Value::get(std::string_view key) const noexcept {
    const Table* t = as_table();
    return t ? t->get(key) : nullptr;
}

Result<Value> parse(std::string_view text, std::string_view source) { return Parser(text, source).run(); }

}  // namespace udrv::toml
