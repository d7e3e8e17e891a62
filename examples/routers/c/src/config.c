/*
 * A small JSON reader for exactly one shape: an object whose keys are
 * `always_send_to_users` and `blacklisted_users`, each a list of strings.
 *
 * It reads the text once, front to back, and never recurses: anything that
 * is not that shape is refused at its first byte, so there is no general
 * value to skip and no nesting to bound. Errors say what the Rust example
 * router's serde_json says, with the same key path and position ("at line
 * 1 column 26", counted in bytes), so the routers of every language refuse
 * a configuration with the same words. As there, text after the closing
 * `}` is not looked at (the homeserver hands over one serialized object).
 * Known differences, on input no homeserver sends: a top-level list is
 * refused (serde takes one as the struct's fields in order), and a
 * non-integer number in a message is rounded correctly where serde_json's
 * fast parser may be off in its last digit.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- memory: running out is a trap, which the host reports ---- */

static void *xrealloc(void *ptr, size_t size) {
    void *grown = realloc(ptr, size ? size : 1);
    if (!grown) {
        abort();
    }
    return grown;
}

/* A growable byte buffer: messages and string contents. */
struct buf {
    char *ptr;
    size_t len, cap;
};

static void buf_push(struct buf *b, const void *bytes, size_t n) {
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 32;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                abort();
            }
            cap *= 2;
        }
        b->ptr = xrealloc(b->ptr, cap);
        b->cap = cap;
    }
    memcpy(b->ptr + b->len, bytes, n);
    b->len += n;
}

static void buf_puts(struct buf *b, const char *s) { buf_push(b, s, strlen(s)); }

static void buf_vprintf(struct buf *b, const char *format, va_list args) {
    char small[128];
    va_list again;
    va_copy(again, args);
    int n = vsnprintf(small, sizeof small, format, args);
    if (n < 0) {
        abort();
    }
    if ((size_t)n < sizeof small) {
        buf_push(b, small, (size_t)n);
    } else {
        char *large = xrealloc(NULL, (size_t)n + 1);
        vsnprintf(large, (size_t)n + 1, format, again);
        buf_push(b, large, (size_t)n);
        free(large);
    }
    va_end(again);
}

static void buf_printf(struct buf *b, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
static void buf_printf(struct buf *b, const char *format, ...) {
    va_list args;
    va_start(args, format);
    buf_vprintf(b, format, args);
    va_end(args);
}

/* ---- the reader ---- */

/* Where in the document the reader is, for messages: at the top, at a
 * key's value, or at an element of its list. */
struct path {
    const char *key; /* NULL at the top */
    size_t key_len;
    size_t index;
    bool in_list;
};

struct reader {
    const unsigned char *text;
    size_t len;
    size_t pos; /* bytes consumed */
    struct path path;
    struct buf error;
};

enum { END = -1 };

static int peek(const struct reader *r) { return r->pos < r->len ? r->text[r->pos] : END; }

static void skip_whitespace(struct reader *r) {
    while (r->pos < r->len) {
        unsigned char c = r->text[r->pos];
        if (c != ' ' && c != '\n' && c != '\t' && c != '\r') {
            break;
        }
        r->pos++;
    }
}

/* Records the error: "PATH: MESSAGE at line L column C", the position
 * `at` being a count of bytes consumed, as serde_json counts. Returns
 * false, for `return fail(...)`. Keys and strings may hold any character,
 * NUL included: they are copied by length, never through printf's %s. */
static bool fail_with(struct reader *r, size_t at, const char *message, size_t len) {
    size_t line = 1, line_start = 0;
    for (size_t i = 0; i < at; i++) {
        if (r->text[i] == '\n') {
            line++;
            line_start = i + 1;
        }
    }
    if (r->path.key) {
        buf_push(&r->error, r->path.key, r->path.key_len);
        if (r->path.in_list) {
            buf_printf(&r->error, "[%zu]", r->path.index);
        }
        buf_puts(&r->error, ": ");
    }
    buf_push(&r->error, message, len);
    buf_printf(&r->error, " at line %zu column %zu", line, at - line_start);
    return false;
}

static bool fail_at(struct reader *r, size_t at, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail_at(struct reader *r, size_t at, const char *format, ...) {
    struct buf message = {0};
    va_list args;
    va_start(args, format);
    buf_vprintf(&message, format, args);
    va_end(args);
    fail_with(r, at, message.ptr, message.len);
    free(message.ptr);
    return false;
}

/* serde_json's two positions: after what was consumed, and after the byte
 * looked at but not consumed. */
#define FAIL(r, ...) fail_at((r), (r)->pos, __VA_ARGS__)
#define FAIL_PEEKED(r, ...) \
    fail_at((r), (r)->pos < (r)->len ? (r)->pos + 1 : (r)->len, __VA_ARGS__)

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The four hex digits of a `\u` escape. */
static bool read_hex4(struct reader *r, unsigned *out) {
    if (r->len - r->pos < 4) {
        r->pos = r->len;
        return FAIL(r, "EOF while parsing a string");
    }
    unsigned value = 0;
    bool valid = true;
    for (int i = 0; i < 4; i++) {
        int digit = hex_value(r->text[r->pos + (size_t)i]);
        valid = valid && digit >= 0;
        value = value << 4 | (unsigned)(digit & 0xf);
    }
    r->pos += 4;
    if (!valid) {
        return FAIL(r, "invalid escape");
    }
    *out = value;
    return true;
}

static void push_utf8(struct buf *out, uint32_t c) {
    unsigned char bytes[4];
    size_t n;
    if (c < 0x80) {
        bytes[0] = (unsigned char)c;
        n = 1;
    } else if (c < 0x800) {
        bytes[0] = (unsigned char)(0xc0 | c >> 6);
        bytes[1] = (unsigned char)(0x80 | (c & 0x3f));
        n = 2;
    } else if (c < 0x10000) {
        bytes[0] = (unsigned char)(0xe0 | c >> 12);
        bytes[1] = (unsigned char)(0x80 | (c >> 6 & 0x3f));
        bytes[2] = (unsigned char)(0x80 | (c & 0x3f));
        n = 3;
    } else {
        bytes[0] = (unsigned char)(0xf0 | c >> 18);
        bytes[1] = (unsigned char)(0x80 | (c >> 12 & 0x3f));
        bytes[2] = (unsigned char)(0x80 | (c >> 6 & 0x3f));
        bytes[3] = (unsigned char)(0x80 | (c & 0x3f));
        n = 4;
    }
    buf_push(out, bytes, n);
}

/* A `\u` escape (the `\u` consumed): one UTF-16 unit, or a surrogate pair. */
static bool read_unicode_escape(struct reader *r, struct buf *out) {
    unsigned unit;
    if (!read_hex4(r, &unit)) {
        return false;
    }
    if (unit >= 0xdc00 && unit <= 0xdfff) {
        return FAIL(r, "lone leading surrogate in hex escape");
    }
    if (unit < 0xd800 || unit > 0xdbff) {
        push_utf8(out, unit);
        return true;
    }
    /* A leading surrogate: `\u` and a trailing one must follow. */
    for (const char *expected = "\\u"; *expected; expected++) {
        if (peek(r) == END) {
            return FAIL(r, "EOF while parsing a string");
        }
        if (r->text[r->pos++] != (unsigned char)*expected) {
            return FAIL(r, "unexpected end of hex escape");
        }
    }
    unsigned trailing;
    if (!read_hex4(r, &trailing)) {
        return false;
    }
    if (trailing < 0xdc00 || trailing > 0xdfff) {
        return FAIL(r, "lone leading surrogate in hex escape");
    }
    push_utf8(out, 0x10000 + ((unit - 0xd800) << 10 | (trailing - 0xdc00)));
    return true;
}

/* A string's contents, its opening quote consumed, into `out`. The text is
 * valid UTF-8 (the component model guarantees it of a `string`), so bytes
 * other than quotes, backslashes and control characters are copied as
 * they are. */
static bool read_string(struct reader *r, struct buf *out) {
    for (;;) {
        size_t start = r->pos;
        while (r->pos < r->len && r->text[r->pos] != '"' && r->text[r->pos] != '\\' &&
               r->text[r->pos] >= 0x20) {
            r->pos++;
        }
        buf_push(out, r->text + start, r->pos - start);
        if (r->pos == r->len) {
            return FAIL(r, "EOF while parsing a string");
        }
        unsigned char c = r->text[r->pos++];
        if (c == '"') {
            return true;
        }
        if (c != '\\') {
            return FAIL(r, "control character (\\u0000-\\u001F) found while parsing a string");
        }
        if (r->pos == r->len) {
            return FAIL(r, "EOF while parsing a string");
        }
        char plain;
        switch (r->text[r->pos++]) {
        case '"': plain = '"'; break;
        case '\\': plain = '\\'; break;
        case '/': plain = '/'; break;
        case 'b': plain = '\b'; break;
        case 'f': plain = '\f'; break;
        case 'n': plain = '\n'; break;
        case 'r': plain = '\r'; break;
        case 't': plain = '\t'; break;
        case 'u':
            if (!read_unicode_escape(r, out)) {
                return false;
            }
            continue;
        default:
            return FAIL(r, "invalid escape");
        }
        buf_push(out, &plain, 1);
    }
}

/* Whether Rust's `{:?}` escapes this non-ASCII character: it escapes
 * what Unicode deems unprintable or combining. Its tables are large; these
 * are the ranges a configuration might plausibly hold (C1 controls, soft
 * hyphen, combining diacritics, zero-width and direction marks, BOM). */
static bool escaped_by_rust(uint32_t c) {
    return (c >= 0x80 && c <= 0x9f) || c == 0xad || (c >= 0x300 && c <= 0x36f) ||
           (c >= 0x200b && c <= 0x200f) || (c >= 0x2028 && c <= 0x202e) ||
           (c >= 0x2060 && c <= 0x2064) || c == 0xfeff;
}

/* Rust's `{:?}` of a string, as serde quotes one in a message: quotes and
 * backslashes escaped, \t \r \n and \0 by name, other control (and some
 * invisible) characters as \u{hex}. `s` is valid UTF-8. */
static void push_debug_quoted(struct buf *out, const char *s, size_t len) {
    buf_puts(out, "\"");
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        /* The character at i and its length in bytes. */
        uint32_t code = c;
        size_t n = 1;
        if (c >= 0xf0) {
            n = 4;
        } else if (c >= 0xe0 && len - i >= 3) {
            code = (uint32_t)(c & 0x0f) << 12 | (uint32_t)(s[i + 1] & 0x3f) << 6 |
                   (uint32_t)(s[i + 2] & 0x3f);
            n = 3;
        } else if (c >= 0xc0 && len - i >= 2) {
            code = (uint32_t)(c & 0x1f) << 6 | (uint32_t)(s[i + 1] & 0x3f);
            n = 2;
        }
        switch (code) {
        case '"': buf_puts(out, "\\\""); break;
        case '\\': buf_puts(out, "\\\\"); break;
        case '\t': buf_puts(out, "\\t"); break;
        case '\r': buf_puts(out, "\\r"); break;
        case '\n': buf_puts(out, "\\n"); break;
        case '\0': buf_puts(out, "\\0"); break;
        default:
            if (code < 0x20 || code == 0x7f || (n > 1 && n < 4 && escaped_by_rust(code))) {
                buf_printf(out, "\\u{%x}", (unsigned)code);
            } else {
                buf_push(out, s + i, n);
            }
        }
        i += n < len - i ? n : len - i;
    }
    buf_puts(out, "\"");
}

/* A floating point number as serde_json writes one in a message: the
 * shortest digits that read back as the same number; in plain notation
 * with at least one decimal ("100.0", "0.00001") when its decimal exponent
 * is within -5..=15, else as "1.5e+20", "1e-7". */
static void push_float(struct buf *out, double value) {
    char scientific[40];
    for (int precision = 0; precision < 17; precision++) {
        snprintf(scientific, sizeof scientific, "%.*e", precision, value);
        if (strtod(scientific, NULL) == value) {
            break;
        }
    }
    /* "-d.ddde+XX": the sign, the digits without the point, the exponent. */
    const char *p = scientific;
    if (*p == '-') {
        buf_puts(out, "-");
        p++;
    }
    char digits[20];
    size_t n = 0;
    for (; *p && *p != 'e'; p++) {
        if (*p != '.' && n < sizeof digits) {
            digits[n++] = *p;
        }
    }
    long exponent = *p == 'e' ? strtol(p + 1, NULL, 10) : 0;
    while (n > 1 && digits[n - 1] == '0') {
        n--;
    }
    if (exponent < -5 || exponent > 15) {
        buf_push(out, digits, 1);
        if (n > 1) {
            buf_puts(out, ".");
            buf_push(out, digits + 1, n - 1);
        }
        buf_printf(out, "e%c%ld", exponent < 0 ? '-' : '+', exponent < 0 ? -exponent : exponent);
    } else if (exponent < 0) {
        buf_puts(out, "0.");
        for (long i = -1; i > exponent; i--) {
            buf_puts(out, "0");
        }
        buf_push(out, digits, n);
    } else if (n <= (size_t)exponent + 1) {
        buf_push(out, digits, n);
        for (size_t i = n; i < (size_t)exponent + 1; i++) {
            buf_puts(out, "0");
        }
        buf_puts(out, ".0");
    } else {
        buf_push(out, digits, (size_t)exponent + 1);
        buf_puts(out, ".");
        buf_push(out, digits + exponent + 1, n - (size_t)exponent - 1);
    }
}

static bool is_digit(int c) { return c >= '0' && c <= '9'; }

/* A number (its sign consumed), described into `what` as serde names it:
 * "integer `-3`" for what fits an i64 or u64, "floating point `1.5`" for
 * the rest. */
static bool read_number(struct reader *r, size_t start, bool negative, struct buf *what) {
    if (peek(r) == END) {
        return FAIL(r, "EOF while parsing a value");
    }
    int first = r->text[r->pos++];
    if (!is_digit(first)) {
        return FAIL(r, "invalid number");
    }
    if (first == '0' && is_digit(peek(r))) {
        return FAIL_PEEKED(r, "invalid number");
    }
    uint64_t integer = (uint64_t)(first - '0');
    bool fits = true;
    while (is_digit(peek(r))) {
        unsigned digit = (unsigned)(r->text[r->pos++] - '0');
        fits = fits && integer <= (UINT64_MAX - digit) / 10;
        integer = integer * 10 + digit;
    }
    bool fraction = peek(r) == '.';
    if (fraction) {
        r->pos++;
        if (!is_digit(peek(r))) {
            return peek(r) == END ? FAIL_PEEKED(r, "EOF while parsing a value")
                                  : FAIL_PEEKED(r, "invalid number");
        }
        while (is_digit(peek(r))) {
            r->pos++;
        }
    }
    bool exponent = peek(r) == 'e' || peek(r) == 'E';
    if (exponent) {
        r->pos++;
        if (peek(r) == '+' || peek(r) == '-') {
            r->pos++;
        }
        if (peek(r) == END) {
            return FAIL(r, "EOF while parsing a value");
        }
        if (!is_digit(r->text[r->pos++])) {
            return FAIL(r, "invalid number");
        }
        while (is_digit(peek(r))) {
            r->pos++;
        }
    }
    if (fits && !fraction && !exponent) {
        if (!negative) {
            buf_printf(what, "integer `%llu`", (unsigned long long)integer);
            return true;
        }
        if (integer != 0 && integer <= (uint64_t)INT64_MAX + 1) {
            buf_printf(what, "integer `-%llu`", (unsigned long long)integer);
            return true;
        }
        /* -0, and what is below i64's range, are floating point. */
    }
    /* The validated text (sign included) for strtod, which needs a NUL. */
    size_t len = r->pos - start;
    char *text = xrealloc(NULL, len + 1);
    memcpy(text, r->text + start, len);
    text[len] = '\0';
    errno = 0;
    double value = strtod(text, NULL);
    bool out_of_range = errno == ERANGE && value != 0;
    free(text);
    if (out_of_range) {
        return FAIL(r, "number out of range");
    }
    buf_puts(what, "floating point `");
    push_float(what, value);
    buf_puts(what, "`");
    return true;
}

/* Consumes `word` (its first letter already consumed). */
static bool read_literal(struct reader *r, const char *rest) {
    for (; *rest; rest++) {
        if (peek(r) == END) {
            return FAIL(r, "EOF while parsing a value");
        }
        if (r->text[r->pos++] != (unsigned char)*rest) {
            return FAIL(r, "expected ident");
        }
    }
    return true;
}

/* The value at the reader is not what `expected` names: refuse it, saying
 * what it is. Scalars are read whole first (serde quotes them, and its
 * position is after them); a list or mapping is named by its bracket. */
static bool refuse_value(struct reader *r, const char *expected) {
    struct buf what = {0};
    size_t start = r->pos;
    bool ok = true;
    switch (peek(r)) {
    case 'n':
        r->pos++;
        ok = read_literal(r, "ull");
        buf_puts(&what, "null");
        break;
    case 't':
        r->pos++;
        ok = read_literal(r, "rue");
        buf_puts(&what, "boolean `true`");
        break;
    case 'f':
        r->pos++;
        ok = read_literal(r, "alse");
        buf_puts(&what, "boolean `false`");
        break;
    case '-':
        r->pos++;
        ok = read_number(r, start, true, &what);
        break;
    case '"': {
        struct buf contents = {0};
        r->pos++;
        ok = read_string(r, &contents);
        if (ok) {
            buf_puts(&what, "string ");
            push_debug_quoted(&what, contents.ptr, contents.len);
        }
        free(contents.ptr);
        break;
    }
    case '[':
        buf_puts(&what, "sequence");
        break;
    case '{':
        buf_puts(&what, "map");
        break;
    default:
        if (is_digit(peek(r))) {
            ok = read_number(r, start, false, &what);
        } else {
            ok = FAIL_PEEKED(r, "expected value");
        }
    }
    if (ok) {
        struct buf message = {0};
        buf_puts(&message, "invalid type: ");
        buf_push(&message, what.ptr, what.len);
        buf_printf(&message, ", expected %s", expected);
        fail_with(r, r->pos, message.ptr, message.len);
        free(message.ptr);
    }
    free(what.ptr);
    return false;
}

static void list_free(struct str_list *list) {
    for (size_t i = 0; i < list->len; i++) {
        free(list->items[i].ptr);
    }
    free(list->items);
    list->items = NULL;
    list->len = 0;
}

/* The value of `key`: a list of strings, into `*list`. */
static bool read_string_list(struct reader *r, struct str_list *list) {
    skip_whitespace(r);
    if (peek(r) == END) {
        return FAIL_PEEKED(r, "EOF while parsing a value");
    }
    if (peek(r) != '[') {
        return refuse_value(r, "a sequence");
    }
    r->pos++;
    size_t capacity = 0;
    for (;;) {
        skip_whitespace(r);
        if (peek(r) == END) {
            return FAIL_PEEKED(r, "EOF while parsing a list");
        }
        if (peek(r) == ']') {
            r->pos++;
            return true;
        }
        if (list->len > 0) {
            if (peek(r) != ',') {
                return FAIL_PEEKED(r, "expected `,` or `]`");
            }
            r->pos++;
            skip_whitespace(r);
            if (peek(r) == ']') {
                return FAIL_PEEKED(r, "trailing comma");
            }
            if (peek(r) == END) {
                return FAIL_PEEKED(r, "EOF while parsing a value");
            }
        }
        r->path.in_list = true;
        r->path.index = list->len;
        if (peek(r) != '"') {
            return refuse_value(r, "a string");
        }
        r->pos++;
        struct buf id = {0};
        if (!read_string(r, &id)) {
            free(id.ptr);
            return false;
        }
        r->path.in_list = false;
        if (list->len == capacity) {
            capacity = capacity ? capacity * 2 : 4;
            list->items = xrealloc(list->items, capacity * sizeof *list->items);
        }
        list->items[list->len++] = (struct str){id.ptr, id.len};
    }
}

/* Where serde_json places an error about a key (unknown, or repeated): it
 * learns of it only when the object's reading ends, having skipped the
 * whitespace after the key and, if there, a closing `}`. */
static size_t position_after_object(const struct reader *r) {
    size_t pos = r->pos;
    while (pos < r->len && (r->text[pos] == ' ' || r->text[pos] == '\n' ||
                            r->text[pos] == '\t' || r->text[pos] == '\r')) {
        pos++;
    }
    return pos < r->len && r->text[pos] == '}' ? pos + 1 : pos;
}

static const char *const KEYS[] = {"always_send_to_users", "blacklisted_users"};

/* The configuration object. */
static bool read_config(struct reader *r, struct router_config *config) {
    skip_whitespace(r);
    if (peek(r) == END) {
        return FAIL_PEEKED(r, "EOF while parsing a value");
    }
    if (peek(r) != '{') {
        return refuse_value(r, "struct RouterConfig");
    }
    r->pos++;
    bool seen[2] = {false, false};
    struct str_list *lists[2] = {&config->always_send_to_users, &config->blacklisted_users};
    for (bool first = true;; first = false) {
        /* Until a key is read, serde_path_to_error names the place `?`. */
        r->path = (struct path){.key = "?", .key_len = 1};
        skip_whitespace(r);
        if (peek(r) == END) {
            return FAIL_PEEKED(r, "EOF while parsing an object");
        }
        if (peek(r) == '}') {
            return true;
        }
        if (!first) {
            if (peek(r) != ',') {
                return FAIL_PEEKED(r, "expected `,` or `}`");
            }
            r->pos++;
            skip_whitespace(r);
        }
        if (peek(r) == '}') {
            return FAIL_PEEKED(r, "trailing comma");
        }
        if (peek(r) == END) {
            return FAIL_PEEKED(r, "EOF while parsing a value");
        }
        if (peek(r) != '"') {
            return FAIL_PEEKED(r, "key must be a string");
        }
        r->pos++;
        struct buf key = {0};
        if (!read_string(r, &key)) {
            free(key.ptr);
            return false;
        }
        r->path = (struct path){0};
        size_t field = 0;
        while (field < 2 && !(strlen(KEYS[field]) == key.len &&
                              memcmp(KEYS[field], key.ptr, key.len) == 0)) {
            field++;
        }
        if (field == 2) {
            /* The path of the message is the unknown key itself. */
            struct buf message = {0};
            buf_puts(&message, "unknown field `");
            buf_push(&message, key.ptr, key.len);
            buf_printf(&message, "`, expected `%s` or `%s`", KEYS[0], KEYS[1]);
            r->path = (struct path){.key = key.ptr ? key.ptr : "", .key_len = key.len};
            fail_with(r, position_after_object(r), message.ptr, message.len);
            free(message.ptr);
            free(key.ptr);
            return false;
        }
        free(key.ptr);
        if (seen[field]) {
            return fail_at(r, position_after_object(r), "duplicate field `%s`", KEYS[field]);
        }
        seen[field] = true;
        skip_whitespace(r);
        if (peek(r) != ':') {
            return peek(r) == END ? FAIL_PEEKED(r, "EOF while parsing an object")
                                  : FAIL_PEEKED(r, "expected `:`");
        }
        r->pos++;
        r->path = (struct path){.key = KEYS[field], .key_len = strlen(KEYS[field])};
        if (!read_string_list(r, lists[field])) {
            return false;
        }
        r->path = (struct path){0};
    }
}

bool is_matrix_user_id(struct str id) {
    if (id.len < 4 || id.ptr[0] != '@') {
        return false;
    }
    /* The first `:` after the `@`: a non-empty localpart before it, a
     * non-empty server name after it. */
    const char *colon = memchr(id.ptr + 1, ':', id.len - 1);
    return colon && colon > id.ptr + 1 && colon < id.ptr + id.len - 1;
}

/* The first ID in `list` that is not a Matrix user ID, refused. */
static bool check_user_ids(const char *key, const struct str_list *list, struct buf *error) {
    for (size_t i = 0; i < list->len; i++) {
        if (!is_matrix_user_id(list->items[i])) {
            buf_printf(error, "%s: `", key);
            buf_push(error, list->items[i].ptr, list->items[i].len);
            buf_puts(error, "` is not a Matrix user ID (@localpart:server)");
            return false;
        }
    }
    return true;
}

bool config_parse(const char *json, size_t len, struct router_config *config,
                  struct str *error) {
    struct reader r = {.text = (const unsigned char *)json, .len = len};
    memset(config, 0, sizeof *config);
    bool ok = read_config(&r, config) &&
              check_user_ids(KEYS[0], &config->always_send_to_users, &r.error) &&
              check_user_ids(KEYS[1], &config->blacklisted_users, &r.error);
    if (!ok) {
        config_free(config);
        *error = (struct str){r.error.ptr, r.error.len};
    }
    return ok;
}

void config_free(struct router_config *config) {
    list_free(&config->always_send_to_users);
    list_free(&config->blacklisted_users);
}
