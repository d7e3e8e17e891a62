//! The failure policy of one router ([`FailurePolicy`]) as a circuit
//! breaker, safe under concurrent calls.
//!
//! Closed: every call is admitted; failures in a row are counted, and the
//! `suspend_after`th opens the circuit for a back-off. Open: every call is
//! skipped until the back-off ends. Half-open: when it ends, exactly one
//! call is admitted as the trial and every other is still skipped; the
//! trial's success closes the circuit (everyone is admitted again), its
//! failure opens it again for twice as long. A trial that never reports (its
//! call was cancelled) gives its place to the next caller, so a dropped
//! request can't leave the router suspended for ever.
//!
//! Without the single trial, every call waiting on a suspended router would
//! pass at once when its back-off ended, and each failing one would double
//! the back-off again.
//!
//! Time is a parameter (`now`), never read here, so the tests decide it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use presence_router_model::{FailureKind, FailurePolicy, RouterFailure, Suspension};

/// How one router has been doing lately.
pub(crate) struct Health {
    policy: FailurePolicy,
    state: Mutex<State>,
    /// No failure since the last success, and not suspended: the state is
    /// the default, and a call is admitted (and its success counted)
    /// without taking the lock. Only changed with the lock held.
    clean: AtomicBool,
}

#[derive(Default)]
struct State {
    consecutive_failures: u32,
    /// Suspensions since the last success: the next back-off doubles with
    /// each.
    suspensions: u32,
    /// Set while the circuit is open or half-open.
    suspended: Option<Suspended>,
    /// Changes whenever a suspension starts or ends, so that a report can
    /// tell whether it belongs to the current one.
    generation: u64,
    /// What made the router fail last, for the reports while suspended.
    last_failure: Option<(FailureKind, String)>,
}

struct Suspended {
    until: Instant,
    /// Whether the trial call of this suspension has been admitted and not
    /// reported yet.
    trial_out: bool,
}

/// Leave to make one call. Hand it back to [`Health::failed`] or
/// [`Health::succeeded`]; dropped without either (the call was cancelled),
/// it gives up the trial it may hold, and counts as nothing.
#[must_use = "an admission must be reported to `Health::failed` or `Health::succeeded`"]
pub(crate) struct Admission<'a> {
    health: &'a Health,
    /// The state's generation when admitted.
    generation: u64,
    /// Whether this is the one trial call after a back-off.
    trial: bool,
    /// Reported: nothing is left for `Drop` to do.
    reported: bool,
}

impl Admission<'_> {
    /// Whether this call is the trial after a back-off.
    #[cfg(test)]
    pub(crate) fn is_trial(&self) -> bool {
        self.trial
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if self.reported || !self.trial {
            return;
        }
        let mut state = self.health.lock();
        if state.generation != self.generation {
            // The suspension this trial was for is over.
            return;
        }
        if let Some(suspended) = &mut state.suspended {
            suspended.trial_out = false;
        }
    }
}

/// Why a call was not admitted: the router is suspended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Skip {
    /// The kind and message of the failure that suspended the router.
    pub kind: FailureKind,
    pub last_message: String,
    pub consecutive_failures: u32,
    /// Until the back-off ends; zero once it has ended and the trial call
    /// is running (the next calls are admitted as soon as it succeeds).
    pub retry_in: Duration,
}

impl Skip {
    /// The report of the skipped call.
    pub(crate) fn into_failure(self, router: &str) -> RouterFailure {
        RouterFailure {
            router: router.to_owned(),
            kind: self.kind,
            message: format!(
                "suspended after {} failures in a row (the last: {})",
                self.consecutive_failures, self.last_message
            ),
            suspension: Some(suspension_for(self.consecutive_failures, self.retry_in)),
        }
    }
}

impl Health {
    pub(crate) fn new(policy: FailurePolicy) -> Self {
        Health {
            policy,
            state: Mutex::new(State::default()),
            clean: AtomicBool::new(true),
        }
    }

    /// [`Health::admit`] now; without a lock or a clock read while the
    /// router is healthy (almost every call).
    pub(crate) fn admit_now(&self) -> Result<Admission<'_>, Skip> {
        if self.clean.load(Ordering::Acquire) {
            return Ok(Admission {
                health: self,
                generation: 0,
                trial: false,
                reported: false,
            });
        }
        self.admit(Instant::now())
    }

    /// Whether a call now would be skipped (suspended, its trial not due
    /// or already out). Takes no admission.
    pub(crate) fn suspended_now(&self) -> bool {
        if self.clean.load(Ordering::Acquire) {
            return false;
        }
        let state = self.lock();
        match &state.suspended {
            None => false,
            Some(suspended) => Instant::now() < suspended.until || suspended.trial_out,
        }
    }

    /// Admits a call at `now`, or says why not.
    pub(crate) fn admit(&self, now: Instant) -> Result<Admission<'_>, Skip> {
        let mut state = self.lock();
        let generation = state.generation;
        let admitted = |trial| Admission {
            health: self,
            generation,
            trial,
            reported: false,
        };
        let retry_in = match &mut state.suspended {
            None => return Ok(admitted(false)),
            Some(suspended) if now < suspended.until => suspended.until - now,
            Some(suspended) if !suspended.trial_out => {
                suspended.trial_out = true;
                return Ok(admitted(true));
            }
            Some(_) => Duration::ZERO,
        };
        let (kind, last_message) = state
            .last_failure
            .clone()
            .unwrap_or((FailureKind::Trap, String::new()));
        Err(Skip {
            kind,
            last_message,
            consecutive_failures: state.consecutive_failures,
            retry_in,
        })
    }

    /// Counts the failure of an admitted call that ended at `now`. Returns
    /// the suspension it started, if it started one: the trial's failure
    /// always does; any other call's failure does once `suspend_after`
    /// failures are in a row, unless the router is suspended already (a
    /// call admitted before the suspension, ending after it started, adds
    /// to the count but not to the back-off).
    pub(crate) fn failed(
        &self,
        mut admission: Admission<'_>,
        kind: FailureKind,
        message: &str,
        now: Instant,
    ) -> Option<Suspension> {
        debug_assert!(std::ptr::eq(admission.health, self), "admitted elsewhere");
        admission.reported = true;
        let mut state = self.lock();
        self.clean.store(false, Ordering::Release);
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        state.last_failure = Some((kind, message.to_owned()));
        let is_current_trial = admission.trial
            && admission.generation == state.generation
            && state.suspended.as_ref().is_some_and(|s| s.trial_out);
        let suspends = if state.suspended.is_some() {
            is_current_trial
        } else {
            self.policy.suspend_after > 0 && state.consecutive_failures >= self.policy.suspend_after
        };
        if !suspends {
            return None;
        }
        state.suspensions = state.suspensions.saturating_add(1);
        // Capped, so that the end of the suspension is a time the clock can
        // hold whatever the policy (the configuration caps it already).
        let backoff = self
            .policy
            .backoff_for(state.suspensions)
            .min(FailurePolicy::LONGEST_BACKOFF);
        state.suspended = Some(Suspended {
            until: now.checked_add(backoff).unwrap_or(now),
            trial_out: false,
        });
        state.generation = state.generation.wrapping_add(1);
        Some(suspension_for(state.consecutive_failures, backoff))
    }

    /// Counts the success of an admitted call: the failures in a row are
    /// forgiven and a suspension ends. Returns whether the router was
    /// suspended, so that its resumption is reported once.
    pub(crate) fn succeeded(&self, mut admission: Admission<'_>) -> bool {
        debug_assert!(std::ptr::eq(admission.health, self), "admitted elsewhere");
        admission.reported = true;
        if !admission.trial && self.clean.load(Ordering::Acquire) {
            // Nothing to forgive.
            return false;
        }
        let mut state = self.lock();
        let was_suspended = state.suspended.is_some();
        *state = State {
            generation: state.generation.wrapping_add(u64::from(was_suspended)),
            ..State::default()
        };
        self.clean.store(true, Ordering::Release);
        was_suspended
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so one interrupted by a
        // panic elsewhere is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The suspension part of a report.
pub(crate) fn suspension_for(consecutive_failures: u32, retry_in: Duration) -> Suspension {
    Suspension {
        consecutive_failures,
        retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn policy(suspend_after: u32) -> FailurePolicy {
        FailurePolicy {
            suspend_after,
            backoff: SECOND,
            max_backoff: 8 * SECOND,
        }
    }

    /// Fails `n` calls in a row at `now`; returns the last one's suspension.
    fn fail(health: &Health, n: u32, now: Instant) -> Option<Suspension> {
        let mut suspension = None;
        for _ in 0..n {
            let admission = health.admit(now).expect("admitted");
            suspension = health.failed(admission, FailureKind::Trap, "boom", now);
        }
        suspension
    }

    fn suspended(consecutive_failures: u32, retry_in: Duration) -> Option<Suspension> {
        Some(suspension_for(consecutive_failures, retry_in))
    }

    #[test]
    fn failures_in_a_row_suspend_and_the_skips_say_why_and_for_how_long() {
        let health = Health::new(policy(3));
        let t0 = Instant::now();
        assert_eq!(fail(&health, 2, t0), None);
        let admission = health.admit(t0).expect("admitted");
        assert!(!admission.is_trial());
        assert_eq!(
            health.failed(admission, FailureKind::Timeout, "too slow", t0),
            suspended(3, SECOND)
        );

        let skip = health.admit(t0 + SECOND / 4).err().expect("skipped");
        assert_eq!(skip.retry_in, SECOND * 3 / 4);
        assert_eq!(
            skip.into_failure("flaky"),
            RouterFailure {
                router: "flaky".into(),
                kind: FailureKind::Timeout,
                message: "suspended after 3 failures in a row (the last: too slow)".into(),
                suspension: suspended(3, SECOND * 3 / 4),
            }
        );
    }

    #[test]
    fn when_the_backoff_ends_one_trial_is_admitted_and_the_others_wait_for_it() {
        let health = Health::new(policy(1));
        let t0 = Instant::now();
        assert_eq!(fail(&health, 1, t0), suspended(1, SECOND));
        let t1 = t0 + SECOND;
        let trial = health.admit(t1).expect("the trial");
        assert!(trial.is_trial());
        let skip = health
            .admit(t1)
            .err()
            .expect("skipped while the trial runs");
        assert_eq!(
            (skip.retry_in, skip.consecutive_failures),
            (Duration::ZERO, 1)
        );
        assert!(health.admit(t1 + 10 * SECOND).is_err(), "however late");

        assert!(health.succeeded(trial), "a resumption to report");
        let everyone: Vec<_> = (0..4).map(|_| health.admit(t1)).collect();
        assert!(
            everyone
                .iter()
                .all(|a| a.as_ref().is_ok_and(|a| !a.is_trial()))
        );
        for admission in everyone.into_iter().flatten() {
            assert!(!health.succeeded(admission), "reported once only");
        }
    }

    #[test]
    fn a_failing_trial_suspends_again_for_twice_as_long_up_to_the_cap() {
        let health = Health::new(policy(2));
        let mut now = Instant::now();
        assert_eq!(fail(&health, 2, now), suspended(2, SECOND));
        for (n, backoff) in [(3, 2), (4, 4), (5, 8), (6, 8)] {
            now += 10 * SECOND;
            let trial = health.admit(now).expect("the trial");
            assert!(trial.is_trial());
            assert_eq!(
                health.failed(trial, FailureKind::Trap, "boom", now),
                suspended(n, backoff * SECOND)
            );
            assert!(
                health
                    .admit(now + backoff * SECOND - Duration::from_nanos(1))
                    .is_err()
            );
        }
    }

    #[test]
    fn a_cancelled_trial_gives_its_place_to_the_next_caller() {
        let health = Health::new(policy(1));
        let t0 = Instant::now();
        fail(&health, 1, t0);
        let t1 = t0 + SECOND;
        let trial = health.admit(t1).expect("the trial");
        assert!(health.admit(t1).is_err());
        drop(trial);
        let next = health.admit(t1).expect("the next trial");
        assert!(next.is_trial());
        // Dropping counted as nothing: still one failure, first back-off.
        assert_eq!(
            health.failed(next, FailureKind::Trap, "boom", t1),
            suspended(2, 2 * SECOND)
        );
    }

    #[test]
    fn a_call_admitted_before_the_suspension_adds_to_the_count_not_to_the_backoff() {
        let health = Health::new(policy(2));
        let t0 = Instant::now();
        let straggler = health.admit(t0).expect("admitted");
        assert_eq!(fail(&health, 2, t0), suspended(2, SECOND));
        assert_eq!(
            health.failed(straggler, FailureKind::Memory, "big", t0),
            None
        );
        let skip = health.admit(t0).err().expect("still suspended");
        assert_eq!(
            (skip.consecutive_failures, skip.kind, skip.retry_in),
            (3, FailureKind::Memory, SECOND)
        );
        // The trial's failure doubles the back-off once.
        let trial = health.admit(t0 + SECOND).expect("the trial");
        assert_eq!(
            health.failed(trial, FailureKind::Trap, "boom", t0 + SECOND),
            suspended(4, 2 * SECOND)
        );
    }

    #[test]
    fn a_success_of_any_call_ends_the_suspension_and_a_stale_trial_then_changes_nothing() {
        let health = Health::new(policy(1));
        let t0 = Instant::now();
        let straggler = health.admit(t0).expect("admitted");
        fail(&health, 1, t0);
        let trial = health.admit(t0 + SECOND).expect("the trial");
        assert!(health.succeeded(straggler), "the router answered: resumed");
        // The trial of the suspension that ended: dropping it frees no slot
        // of a later suspension, and its failure is an ordinary one.
        fail(&health, 1, t0 + SECOND);
        let later_trial = health.admit(t0 + 3 * SECOND).expect("the later trial");
        drop(trial);
        assert!(
            health.admit(t0 + 3 * SECOND).is_err(),
            "the later trial holds"
        );
        assert!(health.succeeded(later_trial));
    }

    #[test]
    fn suspend_after_zero_never_suspends() {
        let health = Health::new(policy(0));
        let t0 = Instant::now();
        assert_eq!(fail(&health, 1000, t0), None);
        assert!(health.admit(t0).is_ok());
    }

    #[test]
    fn a_policy_built_in_code_beyond_the_caps_does_not_overflow_the_clock() {
        let health = Health::new(FailurePolicy {
            suspend_after: 1,
            backoff: Duration::MAX,
            max_backoff: Duration::MAX,
        });
        let t0 = Instant::now();
        assert_eq!(
            fail(&health, 1, t0),
            suspended(1, FailurePolicy::LONGEST_BACKOFF)
        );
    }

    /// `threads` callers admitted at the same `now`, all at once; once all
    /// have been answered, each admitted one runs `report`. Returns how many
    /// were admitted as the trial and how many as ordinary calls.
    fn hammer(
        health: &Arc<Health>,
        threads: usize,
        now: Instant,
        report: fn(&Health, Admission<'_>, Instant),
    ) -> (usize, usize) {
        let start = Arc::new(Barrier::new(threads));
        let all_answered = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (health, start, all_answered) =
                    (health.clone(), start.clone(), all_answered.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let admitted = health.admit(now);
                    all_answered.wait();
                    let admitted = admitted.ok()?;
                    let trial = admitted.is_trial();
                    report(&health, admitted, now);
                    Some(trial)
                })
            })
            .collect();
        let admitted: Vec<bool> = handles
            .into_iter()
            .filter_map(|h| h.join().expect("no panic"))
            .collect();
        let trials = admitted.iter().filter(|&&trial| trial).count();
        (trials, admitted.len() - trials)
    }

    fn fails(health: &Health, admission: Admission<'_>, now: Instant) {
        health.failed(admission, FailureKind::Trap, "boom", now);
    }

    fn succeeds(health: &Health, admission: Admission<'_>, _: Instant) {
        health.succeeded(admission);
    }

    fn is_cancelled(_: &Health, admission: Admission<'_>, _: Instant) {
        drop(admission);
    }

    #[test]
    fn many_callers_at_the_end_of_a_backoff_get_one_trial_whose_failure_suspends_once() {
        let health = Arc::new(Health::new(policy(1)));
        let t0 = Instant::now();
        fail(&health, 1, t0);
        let t1 = t0 + SECOND;
        assert_eq!(hammer(&health, 32, t1, fails), (1, 0));
        // One more suspension, twice as long, counted once.
        let skip = health.admit(t1).err().expect("suspended again");
        assert_eq!((skip.consecutive_failures, skip.retry_in), (2, 2 * SECOND));
        assert!(
            health
                .admit(t1 + 2 * SECOND - Duration::from_nanos(1))
                .is_err()
        );

        let t2 = t1 + 2 * SECOND;
        assert_eq!(hammer(&health, 32, t2, succeeds), (1, 0));
        // Closed again: every caller is admitted, none as a trial.
        assert_eq!(hammer(&health, 32, t2, succeeds), (0, 32));
    }

    #[test]
    fn many_callers_whose_trial_is_cancelled_get_one_trial_each_round() {
        let health = Arc::new(Health::new(policy(1)));
        let t0 = Instant::now();
        fail(&health, 1, t0);
        let t1 = t0 + SECOND;
        for _ in 0..3 {
            assert_eq!(hammer(&health, 32, t1, is_cancelled), (1, 0));
        }
        // Still the first suspension: cancelled trials counted nothing.
        let trial = health.admit(t1).expect("the trial");
        assert_eq!(
            health.failed(trial, FailureKind::Trap, "boom", t1),
            suspended(2, 2 * SECOND)
        );
    }
}
