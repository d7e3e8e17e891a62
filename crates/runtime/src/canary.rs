//! A router's canary: a new version run in shadow beside the live one on a
//! sample of live calls, its answers compared with the live version's,
//! until the operator's criteria promote or reject it.
//!
//! A shadow call is made after the live call is over, from a copy of its
//! input and of the live router's answer, on the canary's own thread (or,
//! for offline tools, on the calling thread: [`ShadowMode`]). Nothing it
//! does reaches the embedder: its answers are only compared, its sends and
//! log lines are dropped, its figures are its own (`<router>.canary`). It
//! runs under its own limits, at a lower scheduling priority than the
//! thread that made the live call, and at most [`QUEUE_CALLS`] calls wait
//! for it: a sampled call that finds the queue full is skipped, not
//! waited for, so a slow canary delays no live call. Handing a call over
//! is a copy and a push onto that queue: the canary's thread looks for
//! work itself, so a live call never wakes it with a system call.
//!
//! A decision is only recorded here; [`crate::LiveRouterSet`] applies it
//! (a promoted canary is loaded again as the live version, as a reload
//! loads a router) and reports it once through [`ModuleApi`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use presence_router_model::{
    CanaryConfig, CanaryDecision, CanaryStats, FailureKind, RouterFailure, TrustedKey,
};

use crate::call::{
    GetInterestedUsers, GetUsersForStates, LiveAnswer, RouterCall, RouterOutcome, ShadowInput,
};
use crate::guest::{CheckedInterest, CheckedRoutes};
use crate::module_api::{LogLevel, ModuleApi};
use crate::recording::Recorder;
use crate::router::Router;
use crate::stats::Callback;

/// Drawn calls waiting for a canary's thread; more are skipped.
pub const QUEUE_CALLS: usize = 64;
/// States and answer entries of the drawn calls waiting for a canary's
/// thread, all together; a call that would pass it is skipped (before
/// anything is copied for it).
pub const QUEUE_ENTRIES: usize = 1 << 18;

/// Where shadow calls run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShadowMode {
    /// On the canary's own thread, at a lower priority, never waited for.
    #[default]
    Thread,
    /// On the calling thread, once the live call's answer is merged: for
    /// offline tools that replay recorded calls and want every sampled
    /// call compared, in order.
    Inline,
}

/// One sampled call.
pub(crate) struct ShadowJob {
    pub input: ShadowInput,
    pub live: LiveAnswer,
    pub live_fuel: u64,
    /// Its states (or user) and the live answer's entries, against
    /// [`QUEUE_ENTRIES`].
    pub size: usize,
}

/// A canary on trial.
pub(crate) struct Canary {
    router: Arc<Router>,
    config: CanaryConfig,
    /// The configuration it came from, and the keys its promotion checks
    /// its signature against again.
    source: PathBuf,
    /// Those of the configuration a reload kept it for last.
    trusted_keys: Mutex<Vec<TrustedKey>>,
    mode: ShadowMode,
    /// Live calls seen per callback, for the even draw: one count per
    /// callback, so that the two kinds alternating don't alias.
    seen: [AtomicU64; 2],
    trial: Mutex<Trial>,
    decided: AtomicBool,
    /// Shared with the canary before it that recorded to the same file
    /// (one file, one lock), and with its decided self.
    recorder: Option<Arc<Recorder>>,
    /// Lines in the recording before this trial began.
    recorded_before: u64,
    /// The drawn calls waiting for the canary's thread. The thread looks
    /// for them itself (every [`IDLE_POLL`] at first when idle, less often
    /// the longer it stays idle): a live call only pushes its copy, and
    /// never pays a system call to wake a thread.
    queue: Mutex<VecDeque<ShadowJob>>,
    /// The jobs in the queue, and their sizes all together, read by
    /// [`Canary::draw`] without the lock.
    queued_jobs: AtomicUsize,
    queued_entries: AtomicUsize,
    /// Whether the thread runs: started at the first drawn call (in the
    /// process that serves: a daemonizing homeserver forks after loading,
    /// and threads don't follow a fork); false if it could not start.
    thread: OnceLock<bool>,
}

#[derive(Default)]
struct Trial {
    agreed: u64,
    diverged: u64,
    failed: u64,
    skipped: u64,
    canary_fuel: u128,
    live_fuel: u128,
    last_failure: Option<String>,
    decision: Option<(CanaryDecision, String)>,
}

impl Trial {
    fn fuel_ratio(&self) -> Option<f64> {
        (self.live_fuel > 0 && self.agreed + self.diverged > 0)
            .then(|| self.canary_fuel as f64 / self.live_fuel as f64)
    }
}

impl Canary {
    pub(crate) fn new(
        router: Router,
        config: CanaryConfig,
        source: &Path,
        trusted_keys: &[TrustedKey],
        mode: ShadowMode,
        recorder: Option<Arc<Recorder>>,
    ) -> Canary {
        let canary = Canary {
            router: Arc::new(router),
            source: source.to_owned(),
            trusted_keys: Mutex::new(trusted_keys.to_vec()),
            mode,
            seen: Default::default(),
            trial: Mutex::new(Trial::default()),
            decided: AtomicBool::new(false),
            recorded_before: recorder.as_ref().map_or(0, |r| r.handed_to_writer()),
            recorder,
            queue: Mutex::new(VecDeque::new()),
            queued_jobs: AtomicUsize::new(0),
            queued_entries: AtomicUsize::new(0),
            thread: OnceLock::new(),
            config,
        };
        if let Some(decision) = canary.config.decision {
            canary.decide_now(decision, "the operator's decision (`decision:`)".to_owned());
        }
        canary
    }

    pub(crate) fn config(&self) -> &CanaryConfig {
        &self.config
    }

    pub(crate) fn router(&self) -> &Arc<Router> {
        &self.router
    }

    pub(crate) fn source(&self) -> &Path {
        &self.source
    }

    /// The trusted keys of the configuration it was last loaded or kept
    /// with: its promotion checks its signature against them.
    pub(crate) fn trusted_keys(&self) -> Vec<TrustedKey> {
        self.trusted_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A reload kept it: its promotion goes by the keys of that
    /// configuration.
    pub(crate) fn set_trusted_keys(&self, keys: &[TrustedKey]) {
        *self
            .trusted_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = keys.to_vec();
    }

    pub(crate) fn recorder(&self) -> Option<&Arc<Recorder>> {
        self.recorder.as_ref()
    }

    /// Whether a reload to `config` would make this very canary again: the
    /// same version, sample, criteria and recording (not the decision: an
    /// operator's decision is taken on the running trial).
    pub(crate) fn is_same(&self, config: &CanaryConfig, digest: &[u8; 32]) -> bool {
        self.router.is_same(&config.router, digest)
            && self.config.sample == config.sample
            && self.config.criteria == config.criteria
            && self.config.record_divergent == config.record_divergent
    }

    /// Whether it is decided (and waits for the set to apply it).
    pub(crate) fn is_decided(&self) -> bool {
        self.decided.load(Ordering::Acquire)
    }

    /// The operator decides, whatever the trial says so far; a canary
    /// decided already stays as it was.
    pub(crate) fn decide_now(&self, decision: CanaryDecision, why: String) {
        let mut trial = self.lock_trial();
        if trial.decision.is_none() {
            trial.decision = Some((decision, why));
            self.decided.store(true, Ordering::Release);
        }
    }

    /// Whether the live call of `callback` that just ended, of `size`
    /// states (or one user) and answer entries, is to be repeated on the
    /// canary: `sample` of them, evenly (for 0.25, every fourth), counted
    /// per callback. A drawn call that would not fit in the queue is
    /// skipped here, before anything is copied for it.
    pub(crate) fn draw(&self, callback: Callback, size: usize) -> bool {
        if self.is_decided() {
            return false;
        }
        let n = self.seen[callback.index()].fetch_add(1, Ordering::Relaxed) as f64;
        let sample = self.config.sample;
        if ((n + 1.0) * sample).floor() <= (n * sample).floor() {
            return false;
        }
        if self.mode == ShadowMode::Thread && !self.has_room(size) {
            self.skip();
            return false;
        }
        true
    }

    fn has_room(&self, size: usize) -> bool {
        self.queued_jobs.load(Ordering::Relaxed) < QUEUE_CALLS
            && self
                .queued_entries
                .load(Ordering::Relaxed)
                .saturating_add(size)
                <= QUEUE_ENTRIES
    }

    /// Runs `job` where the canary's [`ShadowMode`] says.
    pub(crate) fn submit(self: &Arc<Self>, job: ShadowJob) {
        match self.mode {
            ShadowMode::Inline => self.run(job),
            ShadowMode::Thread => {
                let started = *self.thread.get_or_init(|| self.start_thread());
                let sent = started && {
                    let mut queue = self.lock_queue();
                    // Checked again under the lock: another call may have
                    // filled it since this one was drawn.
                    if self.has_room(job.size) {
                        self.queued_jobs.fetch_add(1, Ordering::Relaxed);
                        self.queued_entries.fetch_add(job.size, Ordering::Relaxed);
                        queue.push_back(job);
                        true
                    } else {
                        false
                    }
                };
                if !sent {
                    self.skip();
                }
            }
        }
    }

    /// The next drawn call for the canary's thread.
    fn next_job(&self) -> Option<ShadowJob> {
        let job = self.lock_queue().pop_front()?;
        self.queued_jobs.fetch_sub(1, Ordering::Relaxed);
        self.queued_entries.fetch_sub(job.size, Ordering::Relaxed);
        Some(job)
    }

    /// A live call that failed: nothing to compare the canary with.
    pub(crate) fn skip(&self) {
        self.lock_trial().skipped += 1;
    }

    fn start_thread(self: &Arc<Self>) -> bool {
        let canary = Arc::downgrade(self);
        match std::thread::Builder::new()
            .name(format!("canary-{}", self.config.router.name))
            .spawn(move || shadow_thread(&canary))
        {
            Ok(_) => true,
            Err(e) => {
                // Said once: the thread is started once, at the first
                // drawn call; every drawn call after it is skipped.
                tracing::warn!(
                    router = self.config.router.name,
                    "the canary of router `{}` can't start its thread ({e}): its drawn calls \
                     are skipped",
                    self.config.router.name
                );
                false
            }
        }
    }

    fn lock_queue(&self) -> MutexGuard<'_, VecDeque<ShadowJob>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes one shadow call, compares, and decides if the criteria say so.
    fn run(&self, job: ShadowJob) {
        if self.is_decided() {
            return;
        }
        let (outcome, canary_fuel) = match (&job.input, &job.live) {
            (ShadowInput::States(states), LiveAnswer::Routes(live)) => self
                .shadow_call(&GetUsersForStates(states), |answer| {
                    same_routes(live, answer)
                }),
            (ShadowInput::Interest(user_id), LiveAnswer::Interest(live)) => self
                .shadow_call(&GetInterestedUsers(user_id), |answer| {
                    same_interest(live, answer)
                }),
            // A job is copied from one call: its input and answer are of
            // one callback.
            _ => (Err(not_run()), 0),
        };
        if matches!(outcome, Ok(false))
            && let Some(recorder) = &self.recorder
        {
            match &job.input {
                ShadowInput::States(states) => recorder.states(states),
                ShadowInput::Interest(user_id) => recorder.interest(user_id),
            }
        }
        let mut trial = self.lock_trial();
        match outcome {
            Ok(agreed) => {
                if agreed {
                    trial.agreed += 1;
                } else {
                    trial.diverged += 1;
                }
                trial.canary_fuel += u128::from(canary_fuel);
                trial.live_fuel += u128::from(job.live_fuel);
            }
            Err(failure) => {
                trial.failed += 1;
                trial.last_failure = Some(format!("{}: {}", failure.kind, failure.message));
            }
        }
        if trial.decision.is_none()
            && let Some(decision) = self.judge(&trial)
        {
            trial.decision = Some(decision);
            self.decided.store(true, Ordering::Release);
        }
    }

    /// Makes `call` on the canary: whether its answer `agrees` with the
    /// live one, or its failure; and the fuel it used.
    fn shadow_call<C: RouterCall>(
        &self,
        call: &C,
        agrees: impl FnOnce(&C::Answer) -> bool,
    ) -> (Result<bool, RouterFailure>, u64) {
        match self.router.call(call, None) {
            RouterOutcome::Answered(answer) => (Ok(agrees(&answer.answer)), answer.stats.fuel_used),
            RouterOutcome::Failed(failure) => (Err(failure), 0),
            RouterOutcome::SliceUsedUp { .. } => (Err(not_run()), 0),
        }
    }

    /// The decision the criteria make on `trial`, if any.
    fn judge(&self, trial: &Trial) -> Option<(CanaryDecision, String)> {
        let criteria = &self.config.criteria;
        let tally = format!(
            "{} agreeing, {} divergent, {} failed",
            trial.agreed, trial.diverged, trial.failed
        );
        if trial.failed > criteria.max_failures {
            return Some((
                CanaryDecision::Rejected,
                format!(
                    "{} failed call(s), more than the {} allowed ({tally}); the last: {}",
                    trial.failed,
                    criteria.max_failures,
                    trial.last_failure.as_deref().unwrap_or("?")
                ),
            ));
        }
        if trial.diverged > criteria.max_divergent {
            return Some((
                CanaryDecision::Rejected,
                format!(
                    "{} divergent answer(s), more than the {} allowed ({tally})",
                    trial.diverged, criteria.max_divergent
                ),
            ));
        }
        if trial.agreed < criteria.promote_after {
            return None;
        }
        let ratio = trial.fuel_ratio();
        if let (Some(max), Some(ratio)) = (criteria.max_fuel_ratio, ratio)
            && ratio > max
        {
            return Some((
                CanaryDecision::Rejected,
                format!(
                    "its fuel per call is {ratio:.2}× the live version's, more than the {max}× \
                     allowed ({tally})"
                ),
            ));
        }
        Some((
            CanaryDecision::Promoted,
            match ratio {
                Some(ratio) => {
                    format!("{tally}; its fuel per call {ratio:.2}× the live version's")
                }
                None => tally,
            },
        ))
    }

    /// Its trial so far.
    pub(crate) fn stats(&self) -> CanaryStats {
        let trial = self.lock_trial();
        CanaryStats {
            router: self.config.router.name.clone(),
            component: self.config.router.component.clone(),
            calls: trial.agreed + trial.diverged + trial.failed,
            agreed: trial.agreed,
            diverged: trial.diverged,
            failed: trial.failed,
            skipped: trial.skipped,
            fuel_ratio: trial.fuel_ratio(),
            recorded: self.recorder.as_ref().map_or(0, |r| {
                r.handed_to_writer().saturating_sub(self.recorded_before)
            }),
            record_path: self
                .config
                .record_divergent
                .as_ref()
                .map(|record| record.path.clone()),
            decision: trial.decision.clone(),
        }
    }

    /// Waits, at most `timeout`, for the divergent requests recorded so far
    /// to be written.
    pub(crate) fn flush_recording(&self, timeout: std::time::Duration) -> bool {
        self.recorder
            .as_ref()
            .is_none_or(|recorder| recorder.flush(timeout))
    }

    fn lock_trial(&self) -> MutexGuard<'_, Trial> {
        self.trial.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How long an idle canary's thread first sleeps before it looks for drawn
/// calls again; each idle look doubles it, up to [`IDLE_POLL_MAX`].
const IDLE_POLL: Duration = Duration::from_millis(1);
const IDLE_POLL_MAX: Duration = Duration::from_millis(64);

/// A canary's thread: its drawn calls, one at a time, until the canary is
/// dropped (it holds the canary weakly, and looks at every round).
fn shadow_thread(canary: &Weak<Canary>) {
    lower_priority();
    let mut idle = IDLE_POLL;
    loop {
        let Some(canary) = canary.upgrade() else {
            return;
        };
        let job = canary.next_job();
        match job {
            Some(job) => {
                canary.run(job);
                idle = IDLE_POLL;
            }
            None => {
                drop(canary);
                std::thread::sleep(idle);
                idle = (idle * 2).min(IDLE_POLL_MAX);
            }
        }
    }
}

/// Lets the scheduler run the threads that serve live calls first.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // On Linux a priority is a thread's; 10 of 19 steps down.
        let thread = rustix::thread::gettid();
        let _ = rustix::process::setpriority_process(Some(thread), 10);
    }
}

fn not_run() -> RouterFailure {
    RouterFailure {
        router: String::new(),
        kind: FailureKind::Trap,
        message: "the shadow call was not made".to_owned(),
        suspension: None,
    }
}

/// Whether two routers' answers route the same states to the same users
/// (each user's indices as a set; a user routed nothing is no user).
fn same_routes(live: &CheckedRoutes, canary: &CheckedRoutes) -> bool {
    normalized_routes(live) == normalized_routes(canary)
}

fn normalized_routes(routes: &CheckedRoutes) -> std::collections::BTreeMap<&str, Vec<u32>> {
    let mut users: std::collections::BTreeMap<&str, Vec<u32>> = std::collections::BTreeMap::new();
    for (user, indices) in routes {
        users.entry(user.as_str()).or_default().extend(indices);
    }
    users.retain(|_, indices| {
        indices.sort_unstable();
        indices.dedup();
        !indices.is_empty()
    });
    users
}

/// Whether two interest answers name the same users ("all users" alike).
fn same_interest(live: &CheckedInterest, canary: &CheckedInterest) -> bool {
    normalized_interest(live) == normalized_interest(canary)
}

fn normalized_interest(answer: &CheckedInterest) -> Option<std::collections::BTreeSet<&str>> {
    answer
        .as_ref()
        .map(|users| users.iter().map(String::as_str).collect())
}

/// A [`ModuleApi`] that drops everything: a canary's sends and log lines
/// never reach the embedder.
pub(crate) struct ShadowModuleApi;

impl ModuleApi for ShadowModuleApi {
    fn send_local_online_presence_to(&self, _router: &str, _users: &[String]) {}
    fn guest_log(&self, _router: &str, _level: LogLevel, _message: &str) {}
    fn router_skipped(&self, _failure: &RouterFailure) {}
    fn router_resumed(&self, _router: &str) {}
    fn router_warning(&self, _router: &str, _message: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(list: &[(&str, &[u32])]) -> CheckedRoutes {
        list.iter()
            .map(|(user, indices)| (user.to_string(), indices.to_vec()))
            .collect()
    }

    #[test]
    fn answers_are_compared_as_what_each_user_receives() {
        // Order, repeats and a user's split routes don't matter.
        assert!(same_routes(
            &routes(&[("@a:x", &[0, 1]), ("@b:x", &[2])]),
            &routes(&[("@b:x", &[2, 2]), ("@a:x", &[1]), ("@a:x", &[0])]),
        ));
        // A user routed nothing is no user.
        assert!(same_routes(
            &routes(&[("@a:x", &[0])]),
            &routes(&[("@a:x", &[0]), ("@b:x", &[])]),
        ));
        assert!(!same_routes(
            &routes(&[("@a:x", &[0, 1])]),
            &routes(&[("@a:x", &[0])]),
        ));
        let users = |names: &[&str]| Some(names.iter().map(|n| n.to_string()).collect());
        assert!(same_interest(
            &users(&["@a:x", "@b:x"]),
            &users(&["@b:x", "@a:x"])
        ));
        assert!(same_interest(&None, &None));
        assert!(!same_interest(&None, &users(&[])));
        assert!(!same_interest(&users(&["@a:x"]), &users(&["@b:x"])));
    }
}
