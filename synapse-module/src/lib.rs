//! The native half of the `wasm_presence_router` Synapse module: a
//! [`presence_router_runtime::RouterSet`] behind a small Python API.
//!
//! The Python half (`python/wasm_presence_router/__init__.py`) is the Synapse
//! module proper: it reads the module's config and registers the callbacks.
//! This side converts Synapse's `UserPresenceState` objects to the runtime's
//! records and back (the answer is built from the very objects of the
//! batch), and decides where a call runs:
//!
//! - first on the calling thread (Synapse's reactor), GIL held, within a
//!   [`Slice`] per router: a one-state call costs about what the Python
//!   router it replaces costs, with no thread hop;
//! - the routers that need more than their slice (or that their own
//!   [`inline::InlinePolicy`] no longer tries on the reactor) make the rest
//!   of the call a job: each such router's part is finished by the module's
//!   own worker threads, in that router's own queue, never taking the GIL
//!   ([`jobs`]), or on Synapse's thread pool with the GIL released where
//!   the reactor can't watch a socket (Synapse's unit-test harness).
//!
//! | file | job |
//! | --- | --- |
//! | `batch.rs` | Synapse's state objects to records |
//! | `answer.rs` | answers as typed Python objects, built from the batch's own objects |
//! | `inline.rs` | which routers are tried on the reactor, per router and callback |
//! | `jobs.rs` | the whole life of a call finished off the reactor |
//! | `events.rs` | what the runtime reports, as lines for Python's `logging` |
//! | `load.rs` | load options, and load errors as Synapse's `ConfigError` paths |
//! | `python_canary.rs` | a Python router's wasm port tried in shadow beside it |

mod answer;
mod batch;
mod events;
mod inline;
mod jobs;
mod load;
mod python_canary;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use presence_router_runtime::recording;
use presence_router_runtime::{
    CallStats, Callback, CheckedInterest, CheckedRoutes, InterestedUsers, LiveRouterSet, LoadError,
    LoadOptions, Routed, RouterSet, RouterSetConfig, Slice, Unfinished, UsersForStates,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::prelude::*;

use answer::{Answered, Done, InterestAnswer, Pending, StatesAnswer};
use batch::Batch;
use events::{
    Event, EventQueue, QueueingModuleApi, RUNTIME_EVENTS, RuntimeWarnings, collecting_events,
};
use inline::{InlinePolicies, InlinePolicy, RouterPolicies};
use jobs::{Call, JobTable, Work};
use load::{NO_PATH, block_on, block_on_load, load_error, load_options};
use python_canary::PyPythonCanary;

create_exception!(
    _native,
    RouterLoadError,
    PyException,
    "The routers can't be loaded. `args` is `(message, path)`: `path` is the \
     tuple of config keys at fault, in Synapse's `ConfigError` style \
     (`(\"routers\", \"<item 0>\", \"config\")`), empty when no key is."
);

/// How often calls ran where, for tests and operators.
#[derive(Default)]
struct Counters {
    /// Calls answered on the calling thread within their slice.
    in_slice: AtomicU64,
    /// Calls whose slice was used up by a router.
    slice_used_up: AtomicU64,
    /// Calls finished off the calling thread.
    handed_off: AtomicU64,
}

/// What `RouterSet.reload` returns to Python: the routers reloaded, those
/// kept, those taken out for their signature (with why), and those whose
/// new canary could not be loaded (with why).
type ReloadOutcome = (
    Vec<String>,
    Vec<String>,
    Vec<(String, String)>,
    Vec<(String, String)>,
);

/// Loaded routers and what their calls run on.
// `weakref`: the recording's flush at exit (`_record.py`) must not keep a
// replaced router set alive.
#[pyclass(
    frozen,
    weakref,
    name = "RouterSet",
    module = "wasm_presence_router._native"
)]
struct PyRouterSet {
    /// The running version; `reload` swaps in the next. A call holds the
    /// version it started on until it ends (a job carries it).
    routers: LiveRouterSet,
    /// What `reload` loads again: the configuration is Synapse's and fixed
    /// for the life of the process; the component files are not.
    /// Grows by a Python router's port when it is promoted.
    config: std::sync::Mutex<RouterSetConfig>,
    options: LoadOptions,
    events: Arc<EventQueue>,
    /// Which routers are tried on the reactor.
    inline: InlinePolicies,
    /// The calls finished off the reactor.
    jobs: JobTable,
    counters: Counters,
    /// Records sampled calls, once `set_recorder` has set it (the
    /// runtime's `recording`).
    recorder: recording::Slot,
}

#[pymethods]
impl PyRouterSet {
    /// Loads the routers of `config_json` (the runtime's configuration:
    /// `{"routers": [...]}`), compiling each component, checking it is a
    /// presence router and running its `parse-config`. Relative component
    /// paths are resolved against `base_dir`; `source` names the
    /// configuration in messages.
    #[staticmethod]
    #[pyo3(signature = (config_json, *, source, base_dir, cache_dir=None, cache=true, compile_on_calling_thread=false))]
    fn load(
        py: Python<'_>,
        config_json: &str,
        source: &str,
        base_dir: PathBuf,
        cache_dir: Option<PathBuf>,
        cache: bool,
        compile_on_calling_thread: bool,
    ) -> PyResult<Self> {
        let value: serde_json::Value = serde_json::from_str(config_json)
            .map_err(|e| RouterLoadError::new_err((format!("not JSON: {e}"), NO_PATH)))?;
        let config = RouterSetConfig::from_json_value(value, Path::new(source), &base_dir)
            .map_err(|e| load_error(LoadError::Config(e)))?;
        let options = load_options(cache, cache_dir, compile_on_calling_thread);
        let events = Arc::new(EventQueue::new());
        let module_api = Arc::new(QueueingModuleApi(events.clone()));
        let routers =
            py.detach(|| block_on_load(RouterSet::load_with(&config, module_api, &options)))?;
        Ok(PyRouterSet {
            routers: LiveRouterSet::new(routers),
            config: std::sync::Mutex::new(config),
            options,
            events,
            inline: InlinePolicies::default(),
            jobs: JobTable::new(),
            counters: Counters::default(),
            recorder: recording::Slot::default(),
        })
    }

    /// `(name, component, how it was loaded, milliseconds it took)` per
    /// router, in order.
    fn routers(&self) -> Vec<(String, PathBuf, String, f64)> {
        self.routers
            .current()
            .routers()
            .map(|r| {
                (
                    r.name.clone(),
                    r.component.clone(),
                    format!("{:?}", r.compiled_from).to_lowercase(),
                    r.load_time.as_secs_f64() * 1000.0,
                )
            })
            .collect()
    }

    /// Routes a batch of Synapse `UserPresenceState`s, first on this thread
    /// (GIL held), each router within its slice. Returns a `Done` holding
    /// the routes `dict` when that is the whole answer (the callback's
    /// answer to Synapse as it is), a `StatesAnswer` when the call also sent
    /// or reported something, or a `Pending` job for the routers that need
    /// more: pass its number to `submit` (then `take_finished`) or to
    /// `run_job`.
    ///
    /// A state whose fields are not what Synapse writes is left out of the
    /// call, with a warning, and the rest is routed.
    fn route_states<'py>(
        &self,
        py: Python<'py>,
        states: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.route(py, |recorder| {
            let read = Batch::read(py, &states, &self.events);
            recorder.states(&read.states);
            StatesCall { states, read }
        })
    }

    /// Whose presence `user_id` should additionally receive, first on this
    /// thread, each router within its slice. Returns a `Done` holding the
    /// users `set` when that is the whole answer, an `InterestAnswer` when
    /// it is all users or the call also sent or reported something, or a
    /// `Pending` job (as `route_states`).
    fn route_interest<'py>(&self, py: Python<'py>, user_id: &str) -> PyResult<Bound<'py, PyAny>> {
        self.route(py, |recorder| {
            recorder.interest(user_id);
            InterestCall { user_id }
        })
    }

    /// Hands a job's parts to the module's worker threads, each in its
    /// router's queue; `take_finished` returns its answer once the
    /// descriptor of `offload_fileno` is readable.
    fn submit(&self, job: u64) -> PyResult<()> {
        self.jobs.submit(job)
    }

    /// Gives up on a job: its parts not yet running are dropped, and its
    /// answer is never built.
    fn cancel_job(&self, job: u64) {
        self.jobs.cancel(job);
    }

    /// The descriptor that becomes readable when a submitted job is done
    /// (the workers start now if they haven't).
    fn offload_fileno(&self) -> PyResult<i32> {
        self.jobs.fileno()
    }

    /// The jobs finished since the last call: `[(job, answer)]`, each answer
    /// a `StatesAnswer` or `InterestAnswer`, or the exception that building
    /// it raised (that job's alone).
    fn take_finished<'py>(&self, py: Python<'py>) -> Vec<(u64, Bound<'py, PyAny>)> {
        self.jobs
            .take_finished(py, |events| self.queued_events_into(events))
    }

    /// Forgets a job that will not be run (its caller failed before handing
    /// it on).
    fn drop_job(&self, job: u64) {
        self.jobs.drop_job(job);
    }

    /// How many jobs are waiting to be finished or answered.
    fn pending_jobs(&self) -> usize {
        self.jobs.pending()
    }

    /// Finishes a job on this thread with the GIL released (for Synapse's
    /// thread pool, where the reactor can't watch the workers' socket).
    fn run_job<'py>(&self, py: Python<'py>, job: u64) -> PyResult<Bound<'py, PyAny>> {
        self.jobs
            .run(py, job, |events| self.queued_events_into(events))
    }

    /// `(in_slice, slice_used_up, handed_off)`: calls answered within their
    /// slice on the calling thread, calls whose slice a router used up, and
    /// calls finished elsewhere (`submit` or `run_job`).
    fn counters(&self) -> (u64, u64, u64) {
        (
            self.counters.in_slice.load(Ordering::Relaxed),
            self.counters.slice_used_up.load(Ordering::Relaxed),
            self.counters.handed_off.load(Ordering::Relaxed),
        )
    }

    /// Records sampled calls of `route_states` and `route_interest` to
    /// `path`, one request per line in the CLI's JSON Lines format, in
    /// bounded, rotated files (the runtime's `recording`). Raises `ValueError((message,
    /// key))`, `key` being the `record:` key at fault, if the settings or
    /// the file can't be used; `RuntimeError` if a recorder is set already.
    #[pyo3(signature = (path, *, sample, max_bytes, keep))]
    fn set_recorder(&self, path: PathBuf, sample: f64, max_bytes: u64, keep: u32) -> PyResult<()> {
        let recorder = recording::Recorder::new(path, sample, max_bytes, keep)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err((e.to_string(), e.key())))?;
        self.recorder
            .set(recorder)
            .map_err(|_| PyRuntimeError::new_err("a recorder is set already"))
    }

    /// Waits, with the GIL released, at most `timeout` seconds for the
    /// recorder's writer thread to write every call recorded so far;
    /// whether it has (true without a recorder).
    fn flush_recording(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = std::time::Duration::try_from_secs_f64(timeout).map_err(|e| {
            pyo3::exceptions::PyValueError::new_err(format!("timeout {timeout}: {e}"))
        })?;
        Ok(py.detach(|| self.recorder.flush(timeout)))
    }

    /// `(written, too_big, behind)`: lines recorded, calls left out as
    /// longer than `max_bytes`, calls left out because the writer thread
    /// was behind; `None` without a recorder.
    fn recording_counts(&self) -> Option<(u64, u64, u64)> {
        self.recorder
            .counts()
            .map(|counts| (counts.written, counts.too_big, counts.behind))
    }

    /// Routes a batch entirely on this thread, with the GIL released, and
    /// no slice: a `StatesAnswer`.
    fn get_users_for_states<'py>(
        &self,
        py: Python<'py>,
        states: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ((read, routed), events) = collecting_events(|| {
            let read = Batch::read(py, &states, &self.events);
            let routers = self.routers.current();
            let routed = py.detach(|| routers.get_users_for_states_blocking(&read.states));
            (read, routed)
        });
        let answer = StatesAnswer::build(
            py,
            routed.answer,
            routed.sent_presence_to,
            &states,
            &read.from_batch,
            events,
        )?;
        Ok(Bound::new(py, answer)?.into_any())
    }

    /// Asks every router about `user_id` on this thread, with the GIL
    /// released, and no slice: an `InterestAnswer`.
    fn get_interested_users<'py>(
        &self,
        py: Python<'py>,
        user_id: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let routers = self.routers.current();
        let (routed, events) =
            collecting_events(|| py.detach(|| routers.get_interested_users_blocking(user_id)));
        let answer = InterestAnswer::build(py, routed.answer, routed.sent_presence_to, events)?;
        Ok(Bound::new(py, answer)?.into_any())
    }

    /// Fills every router's pool of warm instances; returns a line per
    /// router that failed to start an instance.
    fn warm_up(&self, py: Python<'_>) -> Vec<String> {
        let routers = self.routers.current();
        py.detach(|| routers.warm_up_blocking())
            .into_iter()
            .map(|f| format!("router `{}` ({}): {}", f.router, f.kind, f.message))
            .collect()
    }

    /// Loads the routers again from their component files (the
    /// configuration is the one loaded first), with the GIL released:
    /// routers whose file holds the same bytes are kept as they are; the
    /// others are compiled, checked and configured, and the new version
    /// is swapped in atomically (calls running finish on the old one).
    /// Returns `(reloaded, kept, revoked, canaries_refused)`: router names,
    /// the routers taken out because their signature no longer verifies (a
    /// trusted key file replaced), and those whose new canary could not be
    /// loaded (the router itself goes on, with no canary), each with why;
    /// raises `RouterLoadError` like `load` (the running version goes on
    /// serving).
    fn reload(&self, py: Python<'_>) -> PyResult<ReloadOutcome> {
        let report =
            py.detach(|| block_on_load(self.routers.reload(&self.config(), &self.options)))?;
        Ok((
            report.reloaded,
            report.kept,
            report.revoked,
            report.canaries_refused,
        ))
    }

    /// Makes a Python router's promoted port (`PythonCanary`) a router of
    /// this set: loaded again from its file, added last, and part of the
    /// configuration later reloads load. Raises `RouterLoadError` if it
    /// can't load; nothing changes then.
    fn promote_python_canary(
        &self,
        py: Python<'_>,
        canary: &Bound<'_, PyPythonCanary>,
    ) -> PyResult<()> {
        let canary = canary.get();
        // Held across the promotion: a reload that starts meanwhile reads
        // the configuration with the port in it, and so keeps it.
        let mut config = self.lock_config();
        py.detach(|| block_on_load(self.routers.promote_external(&canary.canary, &self.options)))?;
        config.routers.push(canary.canary.router_config().clone());
        Ok(())
    }

    /// Whether a router's canary was decided, and waits for
    /// `apply_canary_decisions`: one look at each canary.
    fn canary_decided(&self) -> bool {
        self.routers.current().canary_decided()
    }

    /// Applies the canaries' decisions (a promoted canary loaded again as
    /// its router's live version, a rejected one dropped), with the GIL
    /// released, and swaps the new version in. Each decision is reported
    /// once, as an event (`take_events`). Returns `(router, decision)` per
    /// canary decided, `decision` being `promoted` or `rejected`.
    fn apply_canary_decisions(&self, py: Python<'_>) -> PyResult<Vec<(String, String)>> {
        let applied = py.detach(|| block_on(self.routers.apply_canary_decisions(&self.options)))?;
        Ok(applied
            .into_iter()
            .filter_map(|canary| {
                let (decision, _) = canary.decision?;
                Some((canary.router, decision.as_str().to_owned()))
            })
            .collect())
    }

    /// The operator's decision on router `router`'s canary: `promote` or
    /// `reject`, applied by the next `apply_canary_decisions`. False if the
    /// router has no canary on trial.
    fn decide_canary(&self, router: &str, decision: &str) -> PyResult<bool> {
        let decision = python_canary::operator_decision(decision)?;
        Ok(self.routers.current().decide_canary(router, decision))
    }

    /// Each canary, on trial or decided (`python_canary::CanaryRow`).
    fn canaries(&self) -> Vec<python_canary::CanaryRow> {
        self.routers
            .current()
            .canary_stats()
            .into_iter()
            .map(python_canary::canary_row)
            .collect()
    }

    /// The canaries' component files, for the file watch: a canary
    /// replaced starts a new trial.
    fn canary_files(&self) -> Vec<PathBuf> {
        self.lock_config()
            .routers
            .iter()
            .filter_map(|router| router.canary.as_ref())
            .map(|canary| canary.router.component.clone())
            .collect()
    }

    /// The trusted key files of the configuration, for the file watch: a
    /// key replaced is a key revoked.
    fn trusted_key_files(&self) -> Vec<PathBuf> {
        self.lock_config()
            .trusted_keys
            .iter()
            .map(|key| key.file.clone())
            .collect()
    }

    /// Every figure of the routers, as JSON: `{"routers": [RouterStats,
    /// ...], "slices": {...}, "set_reloads": {"ok", "failed"}}` (see the
    /// runtime's `stats` module), for the Prometheus export.
    fn stats_json(&self) -> PyResult<String> {
        let (ok, failed) = self.routers.reload_counts();
        let (in_slice, slice_used_up, handed_off) = self.counters();
        let current = self.routers.current();
        let mut routers = current.stats();
        // A canary's own figures, as a router's: `<router>.canary`.
        routers.extend(current.canary_router_stats());
        let canaries: Vec<serde_json::Value> = current
            .canary_stats()
            .iter()
            .map(|canary| {
                serde_json::json!({
                    "router": canary.router,
                    "agreed": canary.agreed,
                    "diverged": canary.diverged,
                    "failed": canary.failed,
                    "skipped": canary.skipped,
                    "fuel_ratio": canary.fuel_ratio,
                    "decision": canary.decision.as_ref().map(|(d, _)| d.as_str()),
                })
            })
            .collect();
        serde_json::to_string(&serde_json::json!({
            "routers": routers,
            "canaries": canaries,
            "slices": {
                "in_slice": in_slice,
                "slice_used_up": slice_used_up,
                "handed_off": handed_off,
            },
            "set_reloads": {"ok": ok, "failed": failed},
        }))
        .map_err(|e| PyRuntimeError::new_err(format!("cannot write the figures: {e}")))
    }

    /// The events queued since the last drain: `(level, message)`, `level`
    /// being a Python `logging` level.
    fn take_events(&self) -> Vec<Event> {
        let mut events = RUNTIME_EVENTS.drain();
        events.extend(self.events.drain());
        events
    }
}

impl PyRouterSet {
    fn lock_config(&self) -> std::sync::MutexGuard<'_, RouterSetConfig> {
        self.config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy of the configuration as it is now.
    fn config(&self) -> RouterSetConfig {
        self.lock_config().clone()
    }

    /// Makes a call on this thread, each router within its slice: its
    /// answer, or a `Pending` job for the routers that need more. `make`
    /// reads the call's arguments and records it (what it reports belongs
    /// to the call).
    fn route<'py, C: ReactorCall<'py>>(
        &self,
        py: Python<'py>,
        make: impl FnOnce(&recording::Slot) -> C,
    ) -> PyResult<Bound<'py, PyAny>> {
        let routers = self.routers.current();
        let policies = self.inline.for_set(&routers);
        let ((call, tried), mut events) = collecting_events(|| {
            let call = make(&self.recorder);
            let size = call.size();
            let tried = call.try_in_slice(&routers, |i| {
                policies
                    .get(i)
                    .is_some_and(|p| p.of(C::CALLBACK).allows(size))
            });
            (call, tried)
        });
        let size = call.size();
        match tried {
            Ok(mut routed) => {
                self.queued_events_into(&mut events);
                let stats = std::mem::take(&mut routed.stats);
                let converting = Instant::now();
                let answer = call.answer(py, routed, events)?;
                self.answered_in_slice(
                    &routers,
                    &policies,
                    C::CALLBACK,
                    size,
                    &stats,
                    converting.elapsed(),
                );
                answer.into_py_any(py)
            }
            Err(unfinished) => {
                self.left_unfinished(&policies, C::CALLBACK, size, &unfinished);
                let (work, objects, from_batch) = call.job(routers, unfinished);
                let job = self.jobs.add(work, objects, from_batch, events);
                Ok(Bound::new(py, Pending::new(job))?.into_any())
            }
        }
    }

    /// A call answered in every router's slice: counted, and each router's
    /// policy told what it cost the reactor (its own time, and its share of
    /// building the answer, by answer entries).
    fn answered_in_slice(
        &self,
        routers: &RouterSet,
        policies: &[Arc<RouterPolicies>],
        callback: Callback,
        size: usize,
        stats: &[CallStats],
        converting: Duration,
    ) {
        self.counters.in_slice.fetch_add(1, Ordering::Relaxed);
        // A router's cost is its own time and at most all of the answer's
        // building: below the policy's threshold for every router, none
        // was slow (the common call ends here).
        let slowest = stats.iter().map(|s| s.elapsed).max().unwrap_or_default();
        if slowest + converting <= InlinePolicy::SLOW {
            return;
        }
        let entries: usize = stats.iter().map(|s| s.answer_entries).sum();
        for (info, policy) in routers.routers().zip(policies) {
            let Some(call) = stats.iter().find(|s| *s.router == *info.name) else {
                continue;
            };
            let share = if entries == 0 {
                Duration::ZERO
            } else {
                converting.mul_f64(call.answer_entries as f64 / entries as f64)
            };
            policy.of(callback).answered(size, call.elapsed + share);
        }
    }

    /// A call some routers left unfinished: counted, and the routers that
    /// used their slice up are not tried on the reactor at this size for a
    /// while.
    fn left_unfinished<T>(
        &self,
        policies: &[Arc<RouterPolicies>],
        callback: Callback,
        size: usize,
        unfinished: &Unfinished<T>,
    ) {
        if unfinished.slice_used_up() {
            self.counters.slice_used_up.fetch_add(1, Ordering::Relaxed);
        }
        for &router in unfinished.used_up() {
            if let Some(policy) = policies.get(router) {
                policy.of(callback).used_up(size);
            }
        }
        self.counters.handed_off.fetch_add(1, Ordering::Relaxed);
    }

    /// What the runtime reported outside any call since the last call: it
    /// goes back with this call's lines (it belongs to no request).
    fn queued_events_into(&self, events: &mut Vec<Event>) {
        RUNTIME_EVENTS.drain_into(events);
        self.events.drain_into(events);
    }
}

/// One of the two callbacks as the reactor makes it (`route_states`,
/// `route_interest`): how it is tried in slices, the answer it builds, the
/// job it leaves for the routers that need more.
trait ReactorCall<'py> {
    const CALLBACK: Callback;
    type Merged;
    type Checked;

    /// How many states it routes (1 for an interest call): whether a
    /// router is tried on the reactor depends on it.
    fn size(&self) -> usize;

    fn try_in_slice(
        &self,
        routers: &RouterSet,
        try_router: impl Fn(usize) -> bool,
    ) -> Result<Routed<Self::Merged>, Unfinished<Self::Checked>>;

    /// The answer, built from the batch's own objects: handed over `Done`
    /// when it is only routes or users ([`Answered::states`]).
    fn answer(
        self,
        py: Python<'py>,
        routed: Routed<Self::Merged>,
        events: Vec<Event>,
    ) -> PyResult<Answered<'py>>;

    /// The job, and what its answer will be built from.
    fn job(
        self,
        routers: Arc<RouterSet>,
        done: Unfinished<Self::Checked>,
    ) -> (Work, Vec<Py<PyAny>>, Vec<usize>);
}

/// `route_states`: Synapse's batch, and the states read from it.
struct StatesCall<'py> {
    states: Vec<Bound<'py, PyAny>>,
    read: Batch,
}

impl<'py> ReactorCall<'py> for StatesCall<'py> {
    const CALLBACK: Callback = Callback::GetUsersForStates;
    type Merged = UsersForStates;
    type Checked = CheckedRoutes;

    fn size(&self) -> usize {
        self.read.states.len().max(1)
    }

    fn try_in_slice(
        &self,
        routers: &RouterSet,
        try_router: impl Fn(usize) -> bool,
    ) -> Result<Routed<UsersForStates>, Unfinished<CheckedRoutes>> {
        routers.get_users_for_states_in_slice_where(&self.read.states, &Slice::REACTOR, try_router)
    }

    fn answer(
        self,
        py: Python<'py>,
        routed: Routed<UsersForStates>,
        events: Vec<Event>,
    ) -> PyResult<Answered<'py>> {
        Answered::states(
            py,
            routed.answer,
            routed.sent_presence_to,
            &self.states,
            &self.read.from_batch,
            events,
        )
    }

    fn job(
        self,
        routers: Arc<RouterSet>,
        done: Unfinished<CheckedRoutes>,
    ) -> (Work, Vec<Py<PyAny>>, Vec<usize>) {
        let work = Work::States(Call::new(routers, self.read.states.into(), done));
        let objects = self.states.into_iter().map(Bound::unbind).collect();
        (work, objects, self.read.from_batch)
    }
}

/// `route_interest`: the user asked about (Synapse's own `str`, borrowed).
struct InterestCall<'a> {
    user_id: &'a str,
}

impl<'py> ReactorCall<'py> for InterestCall<'_> {
    const CALLBACK: Callback = Callback::GetInterestedUsers;
    type Merged = InterestedUsers;
    type Checked = CheckedInterest;

    fn size(&self) -> usize {
        1
    }

    fn try_in_slice(
        &self,
        routers: &RouterSet,
        try_router: impl Fn(usize) -> bool,
    ) -> Result<Routed<InterestedUsers>, Unfinished<CheckedInterest>> {
        routers.get_interested_users_in_slice_where(self.user_id, &Slice::REACTOR, try_router)
    }

    fn answer(
        self,
        py: Python<'py>,
        routed: Routed<InterestedUsers>,
        events: Vec<Event>,
    ) -> PyResult<Answered<'py>> {
        Answered::interest(py, routed.answer, routed.sent_presence_to, events)
    }

    fn job(
        self,
        routers: Arc<RouterSet>,
        done: Unfinished<CheckedInterest>,
    ) -> (Work, Vec<Py<PyAny>>, Vec<usize>) {
        let work = Work::Interest(Call::new(routers, self.user_id.into(), done));
        (work, Vec::new(), Vec::new())
    }
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    // Only the first global subscriber of a process counts; if another
    // extension set one, the runtime's warnings go there instead.
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(RuntimeWarnings.with_filter(tracing_subscriber::filter::LevelFilter::WARN)),
    );
    module.add_class::<PyRouterSet>()?;
    module.add_class::<PyPythonCanary>()?;
    module.add_class::<StatesAnswer>()?;
    module.add_class::<InterestAnswer>()?;
    module.add_class::<Pending>()?;
    module.add_class::<Done>()?;
    module.add("RouterLoadError", module.py().get_type::<RouterLoadError>())?;
    // The release's one version (the workspace's), so that a wheel, the
    // CLI and the crates of one release say the same.
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
