// JSON documents into the TOML value tree, with positions: nlohmann-json parses (SAX), an input
// iterator of our own tells where in the text each value ended.
#include <algorithm>
#include <iterator>
#include <vector>

#include <nlohmann/json.hpp>

#include "udrv/toml.hpp"

namespace udrv::toml {
namespace {

// A char iterator that records how far the parser has read, so that each SAX event knows its place.
class TrackingIterator {
public:
    using iterator_category = std::input_iterator_tag;
    using value_type = char;
    using difference_type = std::ptrdiff_t;
    using pointer = const char*;
    using reference = const char&;

    TrackingIterator(const char* p, const char** furthest) : p_(p), furthest_(furthest) {}
    reference operator*() const { return *p_; }
    TrackingIterator& operator++() {
        ++p_;
        if (p_ > *furthest_) *furthest_ = p_;
        return *this;
    }
    TrackingIterator operator++(int) {
        auto old = *this;
        ++*this;
        return old;
    }
    bool operator==(const TrackingIterator& o) const { return p_ == o.p_; }
    bool operator!=(const TrackingIterator& o) const { return p_ != o.p_; }

private:
    const char* p_;
    const char** furthest_;
};

// Builds the tree. Limits as the TOML parser's: depth, and a value per event.
class Builder final : public nlohmann::json_sax<nlohmann::json> {
public:
    Builder(std::string_view text, std::string_view source, const char** cursor) : text_(text), source_(source), cursor_(cursor) {
        for (std::size_t i = 0; i < text.size(); ++i)
            if (text[i] == '\n') line_starts_.push_back(i + 1);
    }

    bool null() override { return refuse("null is not allowed (leave the key out instead)"); }
    bool boolean(bool v) override { return put(Value(v, here())); }
    bool number_integer(number_integer_t v) override { return put(Value(static_cast<std::int64_t>(v), here())); }
    bool number_unsigned(number_unsigned_t v) override {
        if (v > static_cast<number_unsigned_t>(INT64_MAX)) return refuse("integer above 2^63-1");
        return put(Value(static_cast<std::int64_t>(v), here()));
    }
    bool number_float(number_float_t v, const string_t&) override { return put(Value(static_cast<double>(v), here())); }
    bool string(string_t& v) override { return put(Value(std::move(v), here())); }
    bool binary(binary_t&) override { return refuse("binary values are not JSON"); }
    bool start_object(std::size_t) override { return open(Value(Table{}, here())); }
    bool end_object() override { return close(); }
    bool start_array(std::size_t) override { return open(Value(Array{}, here())); }
    bool end_array() override { return close(); }
    bool key(string_t& k) override {
        Table& t = *stack_.back().as_table_mut();
        for (const Entry& e : t.entries)
            if (e.key == k) return refuse(fmt::format("key \"{}\" is given twice in one object (line {})", k, e.key_position.line));
        key_ = std::move(k);
        key_pos_ = here();
        return true;
    }
    bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) override {
        // nlohmann's message names the byte; ours names line and column.
        std::string what = ex.what();
        if (auto at = what.find("syntax error while parsing value - "); at != std::string::npos) what = what.substr(at + 35);
        else if (auto at2 = what.find("] "); at2 != std::string::npos) what = what.substr(at2 + 2);
        error_ = fmt::format("{}:{}:{}: {}", source_, pos(position > 0 ? position - 1 : 0).line, pos(position > 0 ? position - 1 : 0).column,
                             what);
        return false;
    }

    Result<Value> result() {
        if (!error_.empty()) return fail(EINVAL, "{}", error_);
        if (!root_) return fail(EINVAL, "{}: empty document", source_);
        if (!root_->as_table()) return fail(EINVAL, "{}:1:1: the document must be a JSON object ({{ ... }})", source_);
        return std::move(*root_);
    }

private:
    // The parse stack holds open containers; Value's storage is reached through these helpers.
    struct Open {
        Value v;
        std::string key;  // the key this container will be stored under in its parent (objects)
        Position key_pos;
        Table* as_table_mut() { return v.as_table(); }
        Array* as_array_mut() { return v.as_array(); }
    };

    Position pos(std::size_t offset) const {
        offset = std::min(offset, text_.size());
        auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
        const std::size_t line_start = it == line_starts_.begin() ? 0 : *(it - 1);
        return Position{static_cast<unsigned>(it - line_starts_.begin()) + 1, static_cast<unsigned>(offset - line_start) + 1};
    }
    Position here() const { return pos(static_cast<std::size_t>(*cursor_ - text_.data())); }

    bool refuse(std::string why) {
        const Position p = here();
        error_ = fmt::format("{}:{}:{}: {}", source_, p.line, p.column, why);
        return false;
    }
    bool put(Value v) {
        if (stack_.empty()) {
            root_ = std::move(v);
            return true;
        }
        Open& top = stack_.back();
        if (Array* a = top.as_array_mut()) {
            if (a->size() >= 1u << 20) return refuse("array longer than 1048576 entries");
            a->push_back(std::move(v));
        } else {
            top.as_table_mut()->entries.push_back(Entry{std::move(key_), key_pos_, std::make_unique<Value>(std::move(v))});
        }
        return true;
    }
    bool open(Value v) {
        if (stack_.size() >= 64) return refuse("nested deeper than 64 levels");
        stack_.push_back(Open{std::move(v), std::move(key_), key_pos_});
        return true;
    }
    bool close() {
        Open done = std::move(stack_.back());
        stack_.pop_back();
        key_ = std::move(done.key);
        key_pos_ = done.key_pos;
        return put(std::move(done.v));
    }

    std::string_view text_, source_;
    const char** cursor_;
    std::vector<std::size_t> line_starts_;
    std::vector<Open> stack_;
    std::optional<Value> root_;
    std::string key_;
    Position key_pos_;
    std::string error_;
};

}  // namespace

Result<Value> parse_json(std::string_view text, std::string_view source) {
    const char* cursor = text.data();
    Builder b(text, source, &cursor);
    TrackingIterator first(text.data(), &cursor), last(text.data() + text.size(), &cursor);
    nlohmann::json::sax_parse(first, last, &b, nlohmann::json::input_format_t::json, true);
    return b.result();
}

}  // namespace udrv::toml
