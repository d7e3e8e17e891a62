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

use presence_router_model::RouterFailure;

use crate::call::{CheckedAnswer, RouterAnswer, RouterOutcome};
use crate::guest::CheckedInterest;

/// The sandbox applies it (it is plain data, defined where it is used).
pub use crate::guest::Slice;

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
pub struct RouterPart<T>(pub(crate) RouterOutcome<T>);

impl<T> RouterPart<T> {
    /// Whether the router answered (rather than failed or was skipped).
    pub fn answered(&self) -> bool {
        matches!(self.0, RouterOutcome::Answered(_))
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
    /// A call about to be tried in a slice, router by router, in a set of
    /// `routers`.
    pub(crate) fn in_slice(routers: usize) -> Self {
        Unfinished {
            parts: Vec::with_capacity(routers),
            used_up: Vec::new(),
        }
    }

    /// A call not tried at all: finishing it makes the whole call.
    pub fn not_started() -> Self {
        Unfinished {
            parts: Vec::new(),
            used_up: Vec::new(),
        }
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
        self.record(router, part.0);
    }

    /// What router `router`'s call came to, if it is still pending:
    /// answered or failed, it is done; having used a slice up, it stays
    /// pending (and counts as used up if it ran).
    pub(crate) fn record(&mut self, router: usize, outcome: RouterOutcome<T>) {
        while self.parts.len() <= router {
            self.parts.push(Part::Pending);
        }
        if !matches!(self.parts[router], Part::Pending) {
            return;
        }
        self.parts[router] = match outcome {
            RouterOutcome::Answered(answer) => Part::Done(Ok(answer)),
            RouterOutcome::Failed(failure) => Part::Done(Err(failure)),
            RouterOutcome::SliceUsedUp { ran } => {
                if ran {
                    self.used_up.push(router);
                }
                Part::Pending
            }
        };
    }

    /// Router `router` is not to be run after all (its part is no longer
    /// wanted: a router before it answered "all users").
    pub(crate) fn not_called(&mut self, router: usize) {
        while self.parts.len() <= router {
            self.parts.push(Part::Pending);
        }
        if matches!(self.parts[router], Part::Pending) {
            self.parts[router] = Part::NotCalled;
        }
    }
}

// The bound is on each method: a crate-private trait can't bound an impl
// of a public type.
impl<T> Unfinished<T> {
    /// Whether the routers before `router` decide the call: one of them
    /// answered "all users", and every router before that one is done.
    pub(crate) fn decided_before(&self, router: usize) -> bool
    where
        T: CheckedAnswer,
    {
        for part in &self.parts[..router.min(self.parts.len())] {
            match part {
                Part::Pending => return false,
                Part::Done(Ok(answer)) if answer.answer.decides_call() => return true,
                _ => {}
            }
        }
        false
    }

    /// Marks the pending routers after the router whose answer decided the
    /// call as not to be called.
    fn drop_after_decision(&mut self)
    where
        T: CheckedAnswer,
    {
        let Some(deciding) = self.parts.iter().position(
            |part| matches!(part, Part::Done(Ok(answer)) if answer.answer.decides_call()),
        ) else {
            return;
        };
        // Only once every router before it is done: one of them may still
        // decide the call itself, or be needed for its answer.
        if self.parts[..deciding]
            .iter()
            .any(|part| matches!(part, Part::Pending))
        {
            return;
        }
        for i in deciding + 1..self.parts.len() {
            self.not_called(i);
        }
    }
}

impl Unfinished<CheckedInterest> {
    /// Marks the pending routers after a router that answered "all users"
    /// as not to be called: their part no longer matters. An embedder
    /// running parts side by side calls it after each
    /// [`Unfinished::complete`].
    pub fn drop_unneeded(&mut self) {
        self.drop_after_decision();
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
