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
    /// Answer entries (routes, state indices, users) a router may answer:
    /// lifting an answer and, in an embedder, converting it are host work
    /// that fuel doesn't see. wasmtime lifts at most 48 bytes per entry
    /// (so at most this many routes, or 12 times as many 4-byte indices,
    /// are copied), and the entries are counted exactly before the answer
    /// is believed or handed on: an answer with more uses the slice up.
    pub answer_entries: usize,
}

impl Slice {
    /// What the Synapse module gives a call on the reactor: 0.2 to 0.4 ms
    /// of wasm at most, far more than a batch of 200 states needs with a
    /// compiled router (the example router uses 700 fuel per state), far
    /// less than anything a user would notice.
    pub const REACTOR: Slice = Slice {
        fuel: 200_000,
        time: Duration::from_millis(5),
        // Ten users routed a 200-state batch fit; turning 2,048 entries
        // into Synapse's Python sets takes a few hundred microseconds.
        answer_entries: 2048,
    };
}

/// One router's part of a call.
pub(crate) enum Part<T> {
    /// Still to be run, with the router's full limits.
    Pending,
    /// Not to be run: a router before it answered "all users".
    NotCalled,
    /// Answered or failed.
    Done(Result<RouterAnswer<T>, RouterFailure>),
}

/// A router's part of a call made on its own (for an embedder that runs
/// the pending routers of an [`Unfinished`] call side by side): its answer
/// or failure, to be handed to [`Unfinished::complete`].
pub struct RouterPart<T>(pub(crate) Result<RouterAnswer<T>, RouterFailure>);

impl<T> RouterPart<T> {
    /// Whether the router answered (rather than failed or was skipped).
    pub fn answered(&self) -> bool {
        self.0.is_ok()
    }
}

/// A call whose slice ran out for some routers: what every other router
/// answered (each was tried in its slice whatever the routers before it
/// did, so that one slow router delays no other), and the routers still
/// to be run, to be finished by `RouterSet::finish_*`, or router by
/// router (`RouterSet::call_router_for_*`, [`Unfinished::complete`]).
pub struct Unfinished<T> {
    /// One per router, in order; missing ones are pending.
    pub(crate) parts: Vec<Part<T>>,
    /// The routers that ran and used their slice up.
    pub(crate) used_up: Vec<usize>,
}

impl<T> Unfinished<T> {
    pub(crate) fn new(routers: usize) -> Self {
        Unfinished {
            parts: Vec::with_capacity(routers),
            used_up: Vec::new(),
        }
    }

    /// A call not tried at all: finishing it makes the whole call.
    pub fn not_started() -> Self {
        Unfinished::new(0)
    }

    /// Whether a router used its slice up. If not, the call was left
    /// unfinished only because a router had no warm instance (one is never
    /// made in a slice: that is a fresh instance's cost, after a trap) or
    /// was not to be tried in a slice at all.
    pub fn slice_used_up(&self) -> bool {
        !self.used_up.is_empty()
    }

    /// The routers (by position in the set) that ran and used their slice
    /// up.
    pub fn used_up(&self) -> &[usize] {
        &self.used_up
    }

    /// How many routers answered (or failed) in their slice.
    pub fn routers_done(&self) -> usize {
        self.parts
            .iter()
            .filter(|part| matches!(part, Part::Done(_)))
            .count()
    }

    /// The routers (by position in a set of `routers`) still to be run.
    pub fn pending(&self, routers: usize) -> Vec<usize> {
        (0..routers).filter(|&i| self.is_pending(i)).collect()
    }

    /// Whether router `router` is still to be run.
    pub fn is_pending(&self, router: usize) -> bool {
        matches!(self.parts.get(router), None | Some(Part::Pending))
    }

    /// Whether any router of a set of `routers` is still to be run.
    pub fn has_pending(&self, routers: usize) -> bool {
        (0..routers).any(|i| self.is_pending(i))
    }

    /// Hands in the part of router `router`, made on its own. A part for a
    /// router that is no longer pending is ignored.
    pub fn complete(&mut self, router: usize, part: RouterPart<T>) {
        while self.parts.len() <= router {
            self.parts.push(Part::Pending);
        }
        if matches!(self.parts[router], Part::Pending) {
            self.parts[router] = Part::Done(part.0);
        }
    }

    /// Router `router` is not to be run after all (its part is no longer
    /// wanted: a router before it answered "all users").
    pub(crate) fn not_called(&mut self, router: usize) {
        if let Some(part @ Part::Pending) = self.parts.get_mut(router) {
            *part = Part::NotCalled;
        }
    }
}

impl<T> std::fmt::Debug for Unfinished<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unfinished")
            .field("routers_done", &self.routers_done())
            .field("used_up", &self.used_up)
            .finish()
    }
}
