//! Why a router was skipped for one call.

use std::fmt;

use serde::Serialize;

/// The limit a router ran into, or what else went wrong. The names (in
/// `snake_case`) are part of the CLI's JSON Lines contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The call used up its fuel (`limits.fuel` + `limits.fuel_per_state`
    /// per state).
    OutOfFuel,
    /// The call ran past `limits.timeout`.
    Timeout,
    /// The instance wanted more than `limits.memory`.
    Memory,
    /// The guest trapped: a panic, `unreachable`, a stack overflow, or a
    /// fresh instance that could not be configured.
    Trap,
    /// The answer was malformed: an index outside the batch, an invalid user
    /// ID, or more entries than `limits.max_answer_entries`.
    InvalidAnswer,
}

impl FailureKind {
    /// Every kind, in the order above.
    pub const ALL: [FailureKind; 5] = [
        FailureKind::OutOfFuel,
        FailureKind::Timeout,
        FailureKind::Memory,
        FailureKind::Trap,
        FailureKind::InvalidAnswer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::OutOfFuel => "out_of_fuel",
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::Trap => "trap",
            FailureKind::InvalidAnswer => "invalid_answer",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A router that was skipped for one call: its answer (and anything it asked
/// the homeserver to do during the call) was dropped, the others' stood.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("router `{router}` skipped ({kind}): {message}")]
pub struct RouterFailure {
    pub router: String,
    pub kind: FailureKind,
    pub message: String,
    /// Set when the router is suspended (see [`FailurePolicy`]): on the
    /// failure that suspended it, and on every call skipped meanwhile.
    ///
    /// [`FailurePolicy`]: crate::FailurePolicy
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspension: Option<Suspension>,
}

/// A router not called for a while, because it kept failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Suspension {
    /// Failures in a row that led to the suspension.
    pub consecutive_failures: u32,
    /// How long until the router is called again, in milliseconds.
    pub retry_in_ms: u64,
}
