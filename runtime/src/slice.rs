//! Calls tried in a bounded slice first: for an embedder that wants small
//! calls answered on a thread it can't hold for long (Synapse's reactor),
//! and everything else finished elsewhere.
//!
//! [`RouterSet::get_users_for_states_in_slice`](crate::RouterSet::get_users_for_states_in_slice)
//! calls the routers in order, each under its own limits cut down to the
//! [`Slice`]. A router that needs more than the slice is stopped where it
//! is and its call is abandoned: not counted as a failure, its log lines
//! and sends dropped, its instance dropped (a stopped store can't be
//! entered again). The answers of the routers before it are kept in the
//! [`Unfinished`] call, which
//! [`RouterSet::finish_get_users_for_states`](crate::RouterSet::finish_get_users_for_states)
//! completes, on any thread, with full budgets from the abandoned router on.
//! A call finished that way answers exactly what a call made in one go
//! would have.

use std::time::Duration;

use crate::router::RouterAnswer;
use presence_router_model::RouterFailure;

/// How much a call may do before it is abandoned, per router: the smaller
/// of this and the router's own limits applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// Fuel (roughly, wasm instructions) a router may use.
    pub fuel: u64,
    /// Time a router's call may take, the clock waits it asked for
    /// included: waits are checked as they are made; should another call's
    /// watchdog tick while it runs, the wall time since it started is
    /// checked too (a call in a slice reads no CPU clock). Fuel, which host
    /// work is charged to as well, is what bounds a call in a slice; how
    /// long a call that answered took by the wall clock is the embedder's
    /// to weigh (`CallStats::elapsed`).
    pub time: Duration,
    /// Bytes of answer the host may lift from a router (as
    /// `max_answer_entries` × 128 bytes counts them): lifting is host work
    /// that fuel doesn't see.
    pub answer_bytes: usize,
}

impl Slice {
    /// What the Synapse module gives a call on the reactor: 0.2 to 0.4 ms
    /// of wasm at most, far more than a batch of 200 states needs with a
    /// compiled router (the example router uses 700 fuel per state), far
    /// less than anything a user would notice.
    pub const REACTOR: Slice = Slice {
        fuel: 200_000,
        time: Duration::from_millis(5),
        // 2,048 entries: ten users routed a 200-state batch fit.
        answer_bytes: 256 * 1024,
    };
}

/// A call whose slice ran out: what the routers before the abandoned one
/// answered, to be finished by `RouterSet::finish_*`.
pub struct Unfinished<T> {
    pub(crate) answers: Vec<Result<RouterAnswer<T>, RouterFailure>>,
    pub(crate) slice_used_up: bool,
}

impl<T> Unfinished<T> {
    pub(crate) fn new(routers: usize) -> Self {
        Unfinished {
            answers: Vec::with_capacity(routers),
            slice_used_up: false,
        }
    }

    /// A call not tried at all: finishing it makes the whole call.
    pub fn not_started() -> Self {
        Unfinished::new(0)
    }

    /// Whether a router used its slice up. If not, the call was abandoned
    /// only because a router had no warm instance (one is never made in a
    /// slice: that is a fresh instance's cost, after a trap).
    pub fn slice_used_up(&self) -> bool {
        self.slice_used_up
    }

    /// How many routers had answered (or failed) when the slice ran out.
    pub fn routers_done(&self) -> usize {
        self.answers.len()
    }
}

impl<T> std::fmt::Debug for Unfinished<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unfinished")
            .field("routers_done", &self.answers.len())
            .field("slice_used_up", &self.slice_used_up)
            .finish()
    }
}
