// A small JSON reader for exactly one shape: an object whose keys are
// `always_send_to_users` and `blacklisted_users`, each a list of strings.
//
// It reads the text once, front to back, and never recurses: anything that
// is not that shape is refused at its first byte, so there is no general
// value to skip and no nesting to bound. Errors say what the Rust example
// router's serde_json says, with the same key path and position ("at line
// 1 column 26", counted in bytes), so the routers of every language refuse
// a configuration with the same words. As there, text after the closing
// `}` is not looked at (the homeserver hands over one serialized object).
// Known differences, on input no homeserver sends: a top-level list is
// refused (serde takes one as the struct's fields in order), and a
// non-integer number in a message is rounded correctly where serde_json's
// fast parser may be off in its last digit.
//
// Built without exceptions (wasi's libc++ has none): every step returns a
// std::expected, and running out of memory aborts, which is a trap.
#include "config.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>

namespace example_router {
namespace {

constexpr std::array<std::string_view, 2> kKeys = {"always_send_to_users",
                                                   "blacklisted_users"};

using Error = std::unexpected<std::string>;

bool is_digit(int c) { return c >= '0' && c <= '9'; }
bool is_whitespace(int c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

// Whether Rust's `{:?}` escapes this non-ASCII character: it escapes what
// Unicode deems unprintable or combining. Its tables are large; these are
// the ranges a configuration might plausibly hold (C1 controls, soft
// hyphen, combining diacritics, zero-width and direction marks, BOM).
bool escaped_by_rust(char32_t c) {
    return (c >= 0x80 && c <= 0x9f) || c == 0xad || (c >= 0x300 && c <= 0x36f) ||
           (c >= 0x200b && c <= 0x200f) || (c >= 0x2028 && c <= 0x202e) ||
           (c >= 0x2060 && c <= 0x2064) || c == 0xfeff;
}

std::string hex(unsigned value) {
    std::array<char, 8> digits;
    auto [end, _] = std::to_chars(digits.data(), digits.data() + digits.size(), value, 16);
    return std::string(digits.data(), end);
}

// Rust's `{:?}` of a string, as serde quotes one in a message: quotes and
// backslashes escaped, \t \r \n and \0 by name, other control (and some
// invisible) characters as \u{hex}. `s` is valid UTF-8.
std::string debug_quoted(std::string_view s) {
    std::string out = "\"";
    for (std::size_t i = 0; i < s.size();) {
        auto byte = [&](std::size_t k) { return char32_t{static_cast<unsigned char>(s[i + k])}; };
        // The character at i and its length in bytes.
        char32_t code = byte(0);
        std::size_t n = 1;
        if (code >= 0xf0) {
            n = 4;
        } else if (code >= 0xe0 && s.size() - i >= 3) {
            code = (code & 0x0f) << 12 | (byte(1) & 0x3f) << 6 | (byte(2) & 0x3f);
            n = 3;
        } else if (code >= 0xc0 && s.size() - i >= 2) {
            code = (code & 0x1f) << 6 | (byte(1) & 0x3f);
            n = 2;
        }
        n = std::min(n, s.size() - i);
        switch (code) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\t': out += "\\t"; break;
            case '\r': out += "\\r"; break;
            case '\n': out += "\\n"; break;
            case '\0': out += "\\0"; break;
            default:
                if (code < 0x20 || code == 0x7f || (n > 1 && n < 4 && escaped_by_rust(code))) {
                    out += "\\u{" + hex(code) + "}";
                } else {
                    out += s.substr(i, n);
                }
        }
        i += n;
    }
    return out + "\"";
}

// A floating point number as serde_json writes one in a message: the
// shortest digits that read back as the same number; in plain notation
// with at least one decimal ("100.0", "0.00001") when its decimal exponent
// is within -5..=15, else as "1.5e+20", "1e-7".
std::string float_text(double value) {
    // The fewest digits that read back as `value`: "-1.2345e+20". (Not
    // std::to_chars, the obvious choice: libc++ links its 120 KB of tables
    // for printing large integers exactly along with it.)
    std::array<char, 32> buffer;
    int length = 0;
    for (int precision = 0; precision < 17; ++precision) {
        length = std::snprintf(buffer.data(), buffer.size(), "%.*e", precision, value);
        if (std::strtod(buffer.data(), nullptr) == value) break;
    }
    std::string_view scientific(buffer.data(), static_cast<std::size_t>(length));
    std::string out;
    if (scientific.starts_with('-')) {
        out += '-';
        scientific.remove_prefix(1);
    }
    auto e = scientific.find('e');
    std::string digits(scientific.substr(0, e));
    std::erase(digits, '.');
    int exponent = 0;
    std::from_chars(scientific.data() + e + (scientific[e + 1] == '+' ? 2 : 1),
                    scientific.data() + scientific.size(), exponent);
    if (exponent < -5 || exponent > 15) {
        out += digits.substr(0, 1);
        if (digits.size() > 1) {
            out += "." + digits.substr(1);
        }
        return out + (exponent < 0 ? "e-" : "e+") + std::to_string(std::abs(exponent));
    }
    if (exponent < 0) {
        return out + "0." + std::string(static_cast<std::size_t>(-exponent - 1), '0') + digits;
    }
    auto integer_digits = static_cast<std::size_t>(exponent) + 1;
    if (digits.size() <= integer_digits) {
        digits.resize(integer_digits, '0');
        return out + digits + ".0";
    }
    return out + digits.substr(0, integer_digits) + "." + digits.substr(integer_digits);
}

void push_utf8(std::string& out, char32_t c) {
    if (c < 0x80) {
        out += static_cast<char>(c);
    } else if (c < 0x800) {
        out += static_cast<char>(0xc0 | c >> 6);
        out += static_cast<char>(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
        out += static_cast<char>(0xe0 | c >> 12);
        out += static_cast<char>(0x80 | (c >> 6 & 0x3f));
        out += static_cast<char>(0x80 | (c & 0x3f));
    } else {
        out += static_cast<char>(0xf0 | c >> 18);
        out += static_cast<char>(0x80 | (c >> 12 & 0x3f));
        out += static_cast<char>(0x80 | (c >> 6 & 0x3f));
        out += static_cast<char>(0x80 | (c & 0x3f));
    }
}

class Reader {
public:
    explicit Reader(std::string_view text) : text_(text) {}

    std::expected<RouterConfig, std::string> read_config();

private:
    static constexpr int kEnd = -1;

    int peek() const { return pos_ < text_.size() ? static_cast<unsigned char>(text_[pos_]) : kEnd; }
    int next() { return pos_ < text_.size() ? static_cast<unsigned char>(text_[pos_++]) : kEnd; }
    void skip_whitespace() {
        while (is_whitespace(peek())) ++pos_;
    }

    // serde_json's two positions: after what was consumed, and after the
    // byte looked at but not consumed.
    std::size_t here() const { return pos_; }
    std::size_t peeked() const { return std::min(pos_ + 1, text_.size()); }

    // "PATH: MESSAGE at line L column C", the position `at` being a count
    // of bytes consumed, as serde_json counts.
    Error fail(std::size_t at, std::string_view message) const;

    std::expected<char32_t, std::string> read_hex4();
    std::expected<void, std::string> read_unicode_escape(std::string& out);
    std::expected<std::string, std::string> read_string();
    std::expected<std::string, std::string> read_number(std::size_t start, bool negative);
    std::expected<void, std::string> read_literal(std::string_view rest);
    Error refuse_value(std::string_view expected);
    std::expected<std::vector<std::string>, std::string> read_string_list();
    std::size_t position_after_object() const;

    std::string_view text_;
    std::size_t pos_ = 0;
    // Where in the document the reader is, for messages: nowhere (the
    // top), a key's value, or an element of its list.
    std::optional<std::string> key_;
    std::optional<std::size_t> index_;
};

Error Reader::fail(std::size_t at, std::string_view message) const {
    std::size_t line = 1, line_start = 0;
    for (std::size_t i = 0; i < at; ++i) {
        if (text_[i] == '\n') {
            ++line;
            line_start = i + 1;
        }
    }
    std::string out;
    if (key_) {
        out = *key_;
        if (index_) out += "[" + std::to_string(*index_) + "]";
        out += ": ";
    }
    out += message;
    out += " at line " + std::to_string(line) + " column " + std::to_string(at - line_start);
    return Error(std::move(out));
}

// The four hex digits of a `\u` escape.
std::expected<char32_t, std::string> Reader::read_hex4() {
    if (text_.size() - pos_ < 4) {
        pos_ = text_.size();
        return fail(here(), "EOF while parsing a string");
    }
    unsigned value = 0;
    auto digits = text_.substr(pos_, 4);
    pos_ += 4;
    // Unsigned: from_chars takes no sign, only the four hex digits.
    auto [end, error] = std::from_chars(digits.data(), digits.data() + 4, value, 16);
    if (error != std::errc() || end != digits.data() + 4) {
        return fail(here(), "invalid escape");
    }
    return char32_t{value};
}

// A `\u` escape (the `\u` consumed): one UTF-16 unit, or a surrogate pair.
std::expected<void, std::string> Reader::read_unicode_escape(std::string& out) {
    auto unit = read_hex4();
    if (!unit) return Error(unit.error());
    if (*unit >= 0xdc00 && *unit <= 0xdfff) {
        return fail(here(), "lone leading surrogate in hex escape");
    }
    if (*unit < 0xd800 || *unit > 0xdbff) {
        push_utf8(out, *unit);
        return {};
    }
    // A leading surrogate: `\u` and a trailing one must follow.
    for (char expected : {'\\', 'u'}) {
        int c = next();
        if (c == kEnd) return fail(here(), "EOF while parsing a string");
        if (c != expected) return fail(here(), "unexpected end of hex escape");
    }
    auto trailing = read_hex4();
    if (!trailing) return Error(trailing.error());
    if (*trailing < 0xdc00 || *trailing > 0xdfff) {
        return fail(here(), "lone leading surrogate in hex escape");
    }
    push_utf8(out, 0x10000 + ((*unit - 0xd800) << 10 | (*trailing - 0xdc00)));
    return {};
}

// A string, its opening quote consumed. The text is valid UTF-8 (the
// component model guarantees it of a `string`), so bytes other than
// quotes, backslashes and control characters are copied as they are.
std::expected<std::string, std::string> Reader::read_string() {
    std::string out;
    for (;;) {
        auto stop = std::find_if(text_.begin() + static_cast<std::ptrdiff_t>(pos_), text_.end(),
                                 [](char c) {
                                     return c == '"' || c == '\\' ||
                                            static_cast<unsigned char>(c) < 0x20;
                                 });
        auto run = static_cast<std::size_t>(stop - text_.begin()) - pos_;
        out += text_.substr(pos_, run);
        pos_ += run;
        switch (next()) {
            case kEnd: return fail(here(), "EOF while parsing a string");
            case '"': return out;
            case '\\': break;
            default:
                return fail(here(), "control character (\\u0000-\\u001F) found while parsing a string");
        }
        switch (next()) {
            case kEnd: return fail(here(), "EOF while parsing a string");
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u':
                if (auto escaped = read_unicode_escape(out); !escaped) return Error(escaped.error());
                break;
            default: return fail(here(), "invalid escape");
        }
    }
}

// A number (its sign consumed), described as serde names it: "integer
// `-3`" for what fits an i64 or u64, "floating point `1.5`" for the rest.
std::expected<std::string, std::string> Reader::read_number(std::size_t start, bool negative) {
    int first = next();
    if (first == kEnd) return fail(here(), "EOF while parsing a value");
    if (!is_digit(first)) return fail(here(), "invalid number");
    if (first == '0' && is_digit(peek())) return fail(peeked(), "invalid number");
    std::uint64_t integer = static_cast<std::uint64_t>(first - '0');
    bool fits = true;
    while (is_digit(peek())) {
        auto digit = static_cast<std::uint64_t>(next() - '0');
        fits = fits && integer <= (UINT64_MAX - digit) / 10;
        integer = integer * 10 + digit;
    }
    bool fraction = peek() == '.';
    if (fraction) {
        ++pos_;
        if (!is_digit(peek())) {
            return fail(peeked(), peek() == kEnd ? "EOF while parsing a value" : "invalid number");
        }
        while (is_digit(peek())) ++pos_;
    }
    bool exponent = peek() == 'e' || peek() == 'E';
    if (exponent) {
        ++pos_;
        if (peek() == '+' || peek() == '-') ++pos_;
        int c = next();
        if (c == kEnd) return fail(here(), "EOF while parsing a value");
        if (!is_digit(c)) return fail(here(), "invalid number");
        while (is_digit(peek())) ++pos_;
    }
    if (fits && !fraction && !exponent) {
        if (!negative) return "integer `" + std::to_string(integer) + "`";
        // -0, and what is below i64's range, are floating point.
        if (integer != 0 && integer <= std::uint64_t{INT64_MAX} + 1) {
            return "integer `-" + std::to_string(integer) + "`";
        }
    }
    // strtod, not from_chars: wasi's libc++ 19 cannot read a double.
    std::string number(text_.substr(start, pos_ - start));
    errno = 0;
    double value = std::strtod(number.c_str(), nullptr);
    if (errno == ERANGE && value != 0) return fail(here(), "number out of range");
    return "floating point `" + float_text(value) + "`";
}

// Consumes the rest of a literal, its first letter consumed.
std::expected<void, std::string> Reader::read_literal(std::string_view rest) {
    for (char expected : rest) {
        int c = next();
        if (c == kEnd) return fail(here(), "EOF while parsing a value");
        if (c != expected) return fail(here(), "expected ident");
    }
    return {};
}

// The value at the reader is not what `expected` names: refuse it, saying
// what it is. Scalars are read whole first (serde quotes them, and its
// position is after them); a list or mapping is named by its bracket.
Error Reader::refuse_value(std::string_view expected) {
    std::size_t start = pos_;
    std::expected<std::string, std::string> what;
    auto literal = [&](std::string_view rest, std::string name) {
        ++pos_;
        auto read = read_literal(rest);
        return read ? std::expected<std::string, std::string>(std::move(name))
                    : std::expected<std::string, std::string>(std::unexpect, read.error());
    };
    switch (peek()) {
        case 'n': what = literal("ull", "null"); break;
        case 't': what = literal("rue", "boolean `true`"); break;
        case 'f': what = literal("alse", "boolean `false`"); break;
        case '-':
            ++pos_;
            what = read_number(start, true);
            break;
        case '"':
            ++pos_;
            what = read_string().transform([](const std::string& s) { return "string " + debug_quoted(s); });
            break;
        case '[': what = "sequence"; break;
        case '{': what = "map"; break;
        default:
            if (!is_digit(peek())) return fail(peeked(), "expected value");
            what = read_number(start, false);
    }
    if (!what) return Error(what.error());
    return fail(here(), "invalid type: " + *what + ", expected " + std::string(expected));
}

// A key's value: a list of strings.
std::expected<std::vector<std::string>, std::string> Reader::read_string_list() {
    skip_whitespace();
    if (peek() == kEnd) return fail(peeked(), "EOF while parsing a value");
    if (peek() != '[') return refuse_value("a sequence");
    ++pos_;
    std::vector<std::string> list;
    for (;;) {
        skip_whitespace();
        if (peek() == kEnd) return fail(peeked(), "EOF while parsing a list");
        if (peek() == ']') {
            ++pos_;
            return list;
        }
        if (!list.empty()) {
            if (peek() != ',') return fail(peeked(), "expected `,` or `]`");
            ++pos_;
            skip_whitespace();
            if (peek() == ']') return fail(peeked(), "trailing comma");
            if (peek() == kEnd) return fail(peeked(), "EOF while parsing a value");
        }
        index_ = list.size();
        if (peek() != '"') return refuse_value("a string");
        ++pos_;
        auto id = read_string();
        if (!id) return Error(id.error());
        index_.reset();
        list.push_back(std::move(*id));
    }
}

// Where serde_json places an error about a key (unknown, or repeated): it
// learns of it only when the object's reading ends, having skipped the
// whitespace after the key and, if there, a closing `}`.
std::size_t Reader::position_after_object() const {
    std::size_t pos = pos_;
    while (pos < text_.size() && is_whitespace(text_[pos])) ++pos;
    return pos < text_.size() && text_[pos] == '}' ? pos + 1 : pos;
}

std::expected<RouterConfig, std::string> Reader::read_config() {
    skip_whitespace();
    if (peek() == kEnd) return fail(peeked(), "EOF while parsing a value");
    if (peek() != '{') return refuse_value("struct RouterConfig");
    ++pos_;
    RouterConfig config;
    std::array<std::vector<std::string>*, 2> lists = {&config.always_send_to_users,
                                                      &config.blacklisted_users};
    std::array<bool, 2> seen = {false, false};
    for (bool first = true;; first = false) {
        // Until a key is read, serde_path_to_error names the place `?`.
        key_ = "?";
        skip_whitespace();
        if (peek() == kEnd) return fail(peeked(), "EOF while parsing an object");
        if (peek() == '}') return config;
        if (!first) {
            if (peek() != ',') return fail(peeked(), "expected `,` or `}`");
            ++pos_;
            skip_whitespace();
        }
        if (peek() == '}') return fail(peeked(), "trailing comma");
        if (peek() == kEnd) return fail(peeked(), "EOF while parsing a value");
        if (peek() != '"') return fail(peeked(), "key must be a string");
        ++pos_;
        auto key = read_string();
        if (!key) return Error(key.error());
        key_.reset();
        auto field = std::ranges::find(kKeys, *key);
        if (field == kKeys.end()) {
            // The path of the message is the unknown key itself.
            key_ = *key;
            return fail(position_after_object(), "unknown field `" + *key + "`, expected `" +
                                                     std::string(kKeys[0]) + "` or `" +
                                                     std::string(kKeys[1]) + "`");
        }
        auto which = static_cast<std::size_t>(field - kKeys.begin());
        if (seen[which]) {
            return fail(position_after_object(), "duplicate field `" + *key + "`");
        }
        seen[which] = true;
        skip_whitespace();
        if (peek() != ':') {
            return fail(peeked(), peek() == kEnd ? "EOF while parsing an object" : "expected `:`");
        }
        ++pos_;
        key_ = *key;
        auto list = read_string_list();
        if (!list) return Error(list.error());
        *lists[which] = std::move(*list);
    }
}

// The first ID in `ids` that is not a Matrix user ID, refused.
std::expected<void, std::string> check_user_ids(std::string_view key,
                                                const std::vector<std::string>& ids) {
    for (const auto& id : ids) {
        if (!is_matrix_user_id(id)) {
            return Error(std::string(key) + ": `" + id + "` is not a Matrix user ID (@localpart:server)");
        }
    }
    return {};
}

}  // namespace

bool is_matrix_user_id(std::string_view id) {
    if (!id.starts_with('@')) return false;
    // The first `:` after the `@`: a non-empty localpart before it, a
    // non-empty server name after it.
    auto colon = id.find(':', 1);
    return colon != std::string_view::npos && colon > 1 && colon < id.size() - 1;
}

std::expected<RouterConfig, std::string> parse_config(std::string_view json) {
    return Reader(json).read_config().and_then(
        [](RouterConfig config) -> std::expected<RouterConfig, std::string> {
            return check_user_ids(kKeys[0], config.always_send_to_users)
                .and_then([&] { return check_user_ids(kKeys[1], config.blacklisted_users); })
                .transform([&] { return std::move(config); });
        });
}

}  // namespace example_router
