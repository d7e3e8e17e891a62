//! A failed call of a guest, before it is attributed to a router, and
//! wasmtime's errors as the one line a failure message quotes.

use presence_router_model::FailureKind;

/// The most of a wasmtime error's text kept in a failure message.
const MAX_ERROR_TEXT_BYTES: usize = 2048;

/// A failure of one call, before it is attributed to a router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// The instance can't be used again: wasmtime's call failed (a trap, or
    /// an answer it refused to lift, whose post-return never ran). An answer
    /// that was lifted but failed our checks leaves the instance healthy.
    pub instance_lost: bool,
    /// Not a failure of the router's: the call needed more than the
    /// [`Slice`](super::Slice) it was tried in, and is to be made again
    /// with the router's full limits.
    pub slice_used_up: bool,
}

impl Failure {
    /// An answer that was received whole but is not acceptable.
    pub(crate) fn invalid_answer(message: String) -> Failure {
        Failure {
            kind: FailureKind::InvalidAnswer,
            message,
            instance_lost: false,
            slice_used_up: false,
        }
    }

    /// A call stopped at the end of its slice.
    pub(crate) fn slice_used_up(instance_lost: bool) -> Failure {
        Failure {
            kind: FailureKind::Timeout,
            message: "the call needed more than its slice".to_owned(),
            instance_lost,
            slice_used_up: true,
        }
    }
}

/// A wasmtime error as one line: the chain of causes, without the
/// multi-line wasm backtrace.
pub(crate) fn error_text(error: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let first = text.lines().next().unwrap_or("").trim().to_owned();
        if !first.is_empty()
            && !first.starts_with("error while executing at wasm backtrace")
            && !parts.contains(&first)
        {
            parts.push(first);
        }
    }
    if parts.is_empty() {
        "unknown error".to_owned()
    } else {
        // wasmtime's words, but they may quote what a guest named, at any
        // length.
        presence_router_model::text::escape_untrusted(&parts.join(": "), MAX_ERROR_TEXT_BYTES)
    }
}
