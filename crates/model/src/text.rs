//! Text that someone else controls (a guest's log line, panic message or
//! refusal; a router name or path from a configuration), made safe to show.
//!
//! Whatever reaches an operator's terminal, a log file or a JSON consumer
//! must not be able to forge a line (`\n`, `\r`), move the cursor or clear
//! the screen (ANSI escape sequences start with ESC, a C0 control, or CSI,
//! a C1 control), or flood the output. So every control character (C0,
//! DEL, C1) is written as a visible escape (`\n`, `\u{1b}`), backslashes are
//! doubled so that an escape can't be forged either, and the text is cut at
//! a byte budget with a note of how much was cut.

use std::fmt::Write;

/// The most bytes of a guest's text (a log line, a panic message, a
/// `parse-config` refusal) kept, once escaped: an escape is up to ten
/// bytes for one byte of input, so the cap applies to what is shown.
pub const MAX_GUEST_TEXT_BYTES: usize = 1024;

/// `text` with every control character escaped visibly, at most
/// `max_bytes` of it once escaped; a cut says how many bytes of `text`
/// were left out.
pub fn escape_untrusted(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes && is_plain(text) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len().min(max_bytes) + 16);
    let mut piece = String::with_capacity(12);
    for (at, c) in text.char_indices() {
        piece.clear();
        push_escaped(&mut piece, c);
        if out.len() + piece.len() > max_bytes {
            // Infallible: writing to a String.
            let _ = write!(out, "… [{} more bytes cut]", text.len() - at);
            return out;
        }
        out.push_str(&piece);
    }
    out
}

/// Whether `text` holds nothing [`escape_untrusted`] would change (no
/// control character and no backslash), so it can be shown as it is.
pub fn is_plain(text: &str) -> bool {
    !text.chars().any(|c| c == '\\' || c.is_control())
}

/// `text` escaped as [`escape_untrusted`] does, without a length cap: for
/// names and paths from a configuration, which the operator wrote.
pub fn escape_control(text: &str) -> String {
    if is_plain(text) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        // `char::is_control` is exactly C0, DEL and C1.
        c if c.is_control() => {
            // Infallible: writing to a String.
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_returns_cannot_forge_a_line() {
        assert_eq!(
            escape_untrusted("ok\n2026 WARN presence_router: FORGED\r", 1024),
            "ok\\n2026 WARN presence_router: FORGED\\r"
        );
    }

    #[test]
    fn terminal_controls_are_visible() {
        assert_eq!(escape_untrusted("\x1b[2J", 64), "\\u{1b}[2J");
        assert_eq!(
            escape_untrusted("a\u{9b}31mb\x7f", 64),
            "a\\u{9b}31mb\\u{7f}"
        );
        assert_eq!(escape_untrusted("\0\t", 64), "\\u{0}\\t");
    }

    #[test]
    fn escapes_cannot_be_forged() {
        assert_eq!(escape_untrusted("\\n", 64), "\\\\n");
    }

    #[test]
    fn long_text_is_cut_and_says_by_how_much() {
        let text = "é".repeat(10); // 20 bytes
        assert_eq!(escape_untrusted(&text, 5), "éé… [16 more bytes cut]");
    }

    #[test]
    fn the_cap_applies_to_the_escaped_text() {
        // 1 KiB of control characters is 5 KiB once escaped: the cap holds
        // for what is shown, not for what was given.
        let text = "\u{1}".repeat(1024);
        let shown = escape_untrusted(&text, 1024);
        let kept = shown.split('…').next().unwrap_or("");
        assert!(kept.len() <= 1024, "{}", kept.len());
        assert_eq!(kept, "\\u{1}".repeat(1024 / 5));
        assert!(
            shown.ends_with(&format!("[{} more bytes cut]", 1024 - 1024 / 5)),
            "{shown}"
        );
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(
            escape_untrusted("@alice:example.com ✓", 64),
            "@alice:example.com ✓"
        );
        assert_eq!(
            escape_control("routers/ex ample.wasm"),
            "routers/ex ample.wasm"
        );
        assert!(is_plain("routers/example.wasm"));
        assert!(!is_plain("a\nb"));
    }
}
