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
//! - if a router needs more than its slice (or the batch is larger than the
//!   [`offload::InlinePolicy`] tries on the reactor), the rest of the call
//!   becomes a job, finished by the module's own worker threads, which never
//!   take the GIL ([`offload`]), or on Synapse's thread pool with the GIL
//!   released where the reactor can't watch a socket (Synapse's unit-test
//!   harness).
//!
//! | file | job |
//! | --- | --- |
//! | `batch.rs` | Synapse's state objects to records, answers back to Python |
//! | `offload.rs` | jobs finished off the reactor; which calls are tried on it |
//! | `events.rs` | what the runtime reports, as lines for Python's `logging` |
//! | `load.rs` | load errors as Synapse's `ConfigError` paths |
//! | `record.rs` | sampled calls recorded for `presence-router diff` |

mod batch;
mod events;
mod load;
mod offload;
mod record;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use presence_router_runtime::{
    CacheSetting, LiveRouterSet, LoadError, LoadOptions, Routed, RouterSet, RouterSetConfig, Slice,
    Unfinished,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PySet, PyTuple};

use batch::{Batch, interest_to_py, routes_to_py};
use events::{
    Event, EventQueue, QueueingModuleApi, RUNTIME_EVENTS, RuntimeWarnings, collecting_events,
};
use load::{NO_PATH, load_error, no_tokio};
use offload::{Answer, InlinePolicy, Offload, Work};

create_exception!(
    _native,
    RouterLoadError,
    PyException,
    "The routers can't be loaded. `args` is `(message, path)`: `path` is the \
     tuple of config keys at fault, in Synapse's `ConfigError` style \
     (`(\"routers\", \"<item 0>\", \"config\")`), empty when no key is."
);

/// A call handed off the reactor, waiting to be finished: the rest of the
/// work (until a worker takes it), what answering needs from Python, and
/// the lines the part on the reactor reported.
struct Job {
    work: Option<Work>,
    /// Set when its caller gives up (`cancel_job`): a worker that has not
    /// started it skips it.
    cancelled: Arc<AtomicBool>,
    /// The batch's state objects, for the answer (none for an interest
    /// query).
    objects: Vec<Py<PyAny>>,
    from_batch: Vec<usize>,
    events: Vec<Event>,
}

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
    config: RouterSetConfig,
    options: LoadOptions,
    events: Arc<EventQueue>,
    inline: InlinePolicy,
    jobs: Mutex<HashMap<u64, Job>>,
    next_job: AtomicU64,
    /// Started on first use, in the process that uses it.
    offload: Mutex<Option<Offload>>,
    counters: Counters,
    /// Records sampled calls, once `set_recorder` has set it (`record.rs`).
    recorder: record::Slot,
}

/// A call's outcome for Python: its answer tuple, or the number of the job
/// that finishes it.
enum Started<'py> {
    Answered(Bound<'py, PyTuple>),
    Job(u64),
}

impl<'py> IntoPyObject<'py> for Started<'py> {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        match self {
            Started::Answered(answer) => Ok(answer.into_any()),
            Started::Job(job) => Ok(job.into_pyobject(py)?.into_any()),
        }
    }
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
        let options = LoadOptions {
            cache: match (cache, cache_dir) {
                (false, _) => CacheSetting::Disabled,
                (true, Some(dir)) => CacheSetting::Dir(dir),
                (true, None) => CacheSetting::UserCacheDir,
            },
            compile_on_calling_thread,
        };
        let events = Arc::new(EventQueue::new());
        let module_api = Arc::new(QueueingModuleApi(events.clone()));
        let routers =
            py.detach(|| block_on_load(RouterSet::load_with(&config, module_api, &options)))?;
        Ok(PyRouterSet {
            routers: LiveRouterSet::new(routers),
            config,
            options,
            events,
            inline: InlinePolicy::new(),
            jobs: Mutex::new(HashMap::new()),
            next_job: AtomicU64::new(1),
            offload: Mutex::new(None),
            counters: Counters::default(),
            recorder: record::Slot::default(),
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
    /// (GIL held) within a slice. Returns the answer, `(routes, sends,
    /// events)`, or the number of the job that finishes the call: pass it
    /// to `submit` (then `take_finished`) or to `run_job`.
    ///
    /// `routes` maps each user to the `set` of the batch's own state objects
    /// they should receive; `sends` lists who the routers asked
    /// `send_local_online_presence_to` for; `events` is what this call
    /// reported, `(level, message)`. A state whose fields are not what
    /// Synapse writes is left out of the call, with a warning, and the rest
    /// is routed.
    fn route_states<'py>(
        &self,
        py: Python<'py>,
        states: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Started<'py>> {
        let routers = self.routers.current();
        let ((read, tried), mut events) = collecting_events(|| {
            let read = Batch::read(py, &states, &self.events);
            self.recorder.states(&read.states);
            let tried = self.try_in_slice(read.states.len(), || {
                routers.get_users_for_states_in_slice(&read.states, &Slice::REACTOR)
            });
            (read, tried)
        });
        let done = match tried {
            Ok(routed) => {
                self.queued_events_into(&mut events);
                let routes = routes_to_py(py, routed.answer, &states, &read.from_batch)?;
                return Ok(Started::Answered(answer_tuple(
                    py,
                    (routes, routed.sent_presence_to, events),
                )?));
            }
            Err(unfinished) => unfinished,
        };
        if let Some(full) = self.overloaded() {
            let routes = PyDict::new(py);
            events.push(full);
            return Ok(Started::Answered(answer_tuple(
                py,
                (routes, Vec::<String>::new(), events),
            )?));
        }
        let job = Job {
            cancelled: Arc::default(),
            work: Some(Work::States {
                routers,
                states: read.states,
                done,
            }),
            objects: states.into_iter().map(Bound::unbind).collect(),
            from_batch: read.from_batch,
            events,
        };
        Ok(Started::Job(self.add_job(job)))
    }

    /// Whose presence `user_id` should additionally receive, first on this
    /// thread within a slice. Returns `(all_users, users, sends, events)`, or
    /// the number of the job that finishes the call (as `route_states`).
    fn route_interest<'py>(&self, py: Python<'py>, user_id: String) -> PyResult<Started<'py>> {
        let routers = self.routers.current();
        let (tried, mut events) = collecting_events(|| {
            self.recorder.interest(&user_id);
            self.try_in_slice(1, || {
                routers.get_interested_users_in_slice(&user_id, &Slice::REACTOR)
            })
        });
        let done = match tried {
            Ok(routed) => {
                self.queued_events_into(&mut events);
                let (all, users) = interest_to_py(py, routed.answer)?;
                return Ok(Started::Answered(answer_tuple(
                    py,
                    (all, users, routed.sent_presence_to, events),
                )?));
            }
            Err(unfinished) => unfinished,
        };
        if let Some(full) = self.overloaded() {
            events.push(full);
            return Ok(Started::Answered(answer_tuple(
                py,
                (false, PySet::empty(py)?, Vec::<String>::new(), events),
            )?));
        }
        let job = Job {
            cancelled: Arc::default(),
            work: Some(Work::Interest {
                routers,
                user_id,
                done,
            }),
            objects: Vec::new(),
            from_batch: Vec::new(),
            events,
        };
        Ok(Started::Job(self.add_job(job)))
    }

    /// Hands a job to the module's worker threads; `take_finished` returns
    /// its answer once the descriptor of `offload_fileno` is readable.
    fn submit(&self, job: u64) -> PyResult<()> {
        let (work, cancelled) = {
            let mut jobs = self.lock_jobs();
            let waiting = jobs.get_mut(&job).ok_or_else(|| no_job(job))?;
            let work = waiting.work.take().ok_or_else(|| no_job(job))?;
            (work, waiting.cancelled.clone())
        };
        let mut slot = self.lock_offload();
        let Err(work) = self
            .started_offload(&mut slot)?
            .submit(job, work, cancelled.clone())
        else {
            return Ok(());
        };
        // The workers are gone (they never exit while the set lives): start
        // them again, once.
        *slot = None;
        self.started_offload(&mut slot)?
            .submit(job, work, cancelled)
            .map_err(|_| PyRuntimeError::new_err("the worker threads are gone"))
    }

    /// Gives up on a job: a worker that has not started it skips it, and
    /// its answer is never built.
    fn cancel_job(&self, job: u64) {
        if let Some(waiting) = self.lock_jobs().get(&job) {
            waiting.cancelled.store(true, Ordering::Release);
        }
    }

    /// The descriptor that becomes readable when a submitted job is done
    /// (the workers start now if they haven't).
    fn offload_fileno(&self) -> PyResult<i32> {
        let mut offload = self.lock_offload();
        Ok(self.started_offload(&mut offload)?.fileno())
    }

    /// The jobs finished since the last call: `[(job, answer)]`, each answer
    /// as `route_states` or `route_interest` would have returned it, or the
    /// exception that building it raised (that job's alone).
    fn take_finished<'py>(&self, py: Python<'py>) -> Vec<(u64, Bound<'py, PyAny>)> {
        let finished = match self.lock_offload().as_ref() {
            Some(offload) => offload.take_finished(),
            None => Vec::new(),
        };
        finished
            .into_iter()
            .filter_map(|f| {
                let answer = match self.answer(py, f.job, f.answer, f.events) {
                    Ok(Some(answer)) => answer.into_any(),
                    Ok(None) => return None,
                    Err(e) => e.into_value(py).into_bound(py).into_any(),
                };
                Some((f.job, answer))
            })
            .collect()
    }

    /// Forgets a job that will not be run (its caller failed before handing
    /// it on).
    fn drop_job(&self, job: u64) {
        self.lock_jobs().remove(&job);
    }

    /// How many jobs are waiting to be run or answered.
    fn pending_jobs(&self) -> usize {
        self.lock_jobs().len()
    }

    /// Finishes a job on this thread with the GIL released (for Synapse's
    /// thread pool, where the reactor can't watch the workers' socket).
    fn run_job<'py>(&self, py: Python<'py>, job: u64) -> PyResult<Bound<'py, PyTuple>> {
        let work = self.take_work(job)?;
        let (answer, events) = py.detach(|| work.run());
        self.answer(py, job, answer, events)?
            .ok_or_else(|| PyRuntimeError::new_err(format!("job {job} was cancelled")))
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
    /// bounded, rotated files (`record.rs`). Raises `ValueError((message,
    /// key))`, `key` being the `record:` key at fault, if the settings or
    /// the file can't be used; `RuntimeError` if a recorder is set already.
    #[pyo3(signature = (path, *, sample, max_bytes, keep))]
    fn set_recorder(&self, path: PathBuf, sample: f64, max_bytes: u64, keep: u32) -> PyResult<()> {
        let recorder = record::Recorder::new(path, sample, max_bytes, keep)
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
    /// no slice: `(routes, sends, events)`.
    #[allow(clippy::type_complexity)]
    fn get_users_for_states<'py>(
        &self,
        py: Python<'py>,
        states: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyDict>, Vec<String>, Vec<Event>)> {
        let ((read, routed), events) = collecting_events(|| {
            let read = Batch::read(py, &states, &self.events);
            let routers = self.routers.current();
            let routed = py.detach(|| routers.get_users_for_states_blocking(&read.states));
            (read, routed)
        });
        let routes = routes_to_py(py, routed.answer, &states, &read.from_batch)?;
        Ok((routes, routed.sent_presence_to, events))
    }

    /// Asks every router about `user_id` on this thread, with the GIL
    /// released, and no slice: `(all_users, users, sends, events)`.
    #[allow(clippy::type_complexity)]
    fn get_interested_users<'py>(
        &self,
        py: Python<'py>,
        user_id: &str,
    ) -> PyResult<(bool, Bound<'py, PySet>, Vec<String>, Vec<Event>)> {
        let routers = self.routers.current();
        let (routed, events) =
            collecting_events(|| py.detach(|| routers.get_interested_users_blocking(user_id)));
        let (all, users) = interest_to_py(py, routed.answer)?;
        Ok((all, users, routed.sent_presence_to, events))
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
    /// Returns `(reloaded, kept)` router names; raises `RouterLoadError`
    /// like `load` (the running version goes on serving).
    fn reload(&self, py: Python<'_>) -> PyResult<(Vec<String>, Vec<String>)> {
        let report =
            py.detach(|| block_on_load(self.routers.reload(&self.config, &self.options)))?;
        Ok((report.reloaded, report.kept))
    }

    /// Every figure of the routers, as JSON: `{"routers": [RouterStats,
    /// ...], "slices": {...}, "set_reloads": {"ok", "failed"}}` (see the
    /// runtime's `stats` module), for the Prometheus export.
    fn stats_json(&self) -> PyResult<String> {
        let (ok, failed) = self.routers.reload_counts();
        let (in_slice, slice_used_up, handed_off) = self.counters();
        serde_json::to_string(&serde_json::json!({
            "routers": self.routers.current().stats(),
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
    /// Tries a call on `size` states (1 for an interest query) on this
    /// thread, within the reactor's slice, if the inline policy lets it;
    /// and tells the policy and the counters how it went. Not tried, it
    /// comes back unfinished with nothing done.
    fn try_in_slice<A, T>(
        &self,
        size: usize,
        call: impl FnOnce() -> Result<Routed<A>, Unfinished<T>>,
    ) -> Result<Routed<A>, Unfinished<T>> {
        let size = size.max(1);
        if !self.inline.allows(size) {
            return Err(Unfinished::not_started());
        }
        let started = Instant::now();
        let tried = call();
        match &tried {
            Ok(_) => {
                self.inline.answered(size, started.elapsed());
                self.counters.in_slice.fetch_add(1, Ordering::Relaxed);
            }
            Err(unfinished) if unfinished.slice_used_up() => {
                self.counters.slice_used_up.fetch_add(1, Ordering::Relaxed);
                self.inline.used_up(size);
            }
            Err(_) => {}
        }
        tried
    }

    /// What the runtime reported outside any call since the last call: it
    /// goes back with this call's lines (it belongs to no request).
    fn queued_events_into(&self, events: &mut Vec<Event>) {
        RUNTIME_EVENTS.drain_into(events);
        self.events.drain_into(events);
    }

    fn add_job(&self, job: Job) -> u64 {
        let number = self.next_job.fetch_add(1, Ordering::Relaxed);
        self.lock_jobs().insert(number, job);
        self.counters.handed_off.fetch_add(1, Ordering::Relaxed);
        number
    }

    fn take_work(&self, job: u64) -> PyResult<Work> {
        self.lock_jobs()
            .get_mut(&job)
            .and_then(|job| job.work.take())
            .ok_or_else(|| no_job(job))
    }

    /// A warning, when too many jobs are waiting to take another: the
    /// call is answered at once with no router's answer. A router that is
    /// slow but never fails (never suspended) could otherwise grow the
    /// queue, and every request behind it, without end.
    fn overloaded(&self) -> Option<Event> {
        let waiting = self.lock_jobs().len();
        (waiting >= MAX_WAITING_JOBS).then(|| {
            (
                events::WARNING,
                format!(
                    "{waiting} router calls are waiting to be finished off the reactor, the most \
                     allowed: this call is answered without the routers"
                ),
            )
        })
    }

    /// A finished job's answer tuple (none if it was cancelled); the job is
    /// forgotten.
    fn answer<'py>(
        &self,
        py: Python<'py>,
        job: u64,
        answer: Answer,
        events: Vec<Event>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some(job) = self.lock_jobs().remove(&job) else {
            return Err(no_job(job));
        };
        let mut all_events = job.events;
        all_events.extend(events);
        self.queued_events_into(&mut all_events);
        match answer {
            Answer::States(routed) => {
                let objects: Vec<Bound<'py, PyAny>> =
                    job.objects.into_iter().map(|o| o.into_bound(py)).collect();
                let routes = routes_to_py(py, routed.answer, &objects, &job.from_batch)?;
                answer_tuple(py, (routes, routed.sent_presence_to, all_events)).map(Some)
            }
            Answer::Interest(routed) => {
                let (all, users) = interest_to_py(py, routed.answer)?;
                answer_tuple(py, (all, users, routed.sent_presence_to, all_events)).map(Some)
            }
            Answer::Cancelled => Ok(None),
            Answer::Panicked(why) => Err(PyRuntimeError::new_err(format!(
                "finishing a router call failed: {why}"
            ))),
        }
    }

    fn started_offload<'a>(&self, offload: &'a mut Option<Offload>) -> PyResult<&'a Offload> {
        if !offload.as_ref().is_some_and(Offload::is_ours) {
            *offload = Some(Offload::start().map_err(|e| {
                PyRuntimeError::new_err(format!("cannot start the worker threads: {e}"))
            })?);
        }
        offload
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("no worker threads"))
    }

    fn lock_offload(&self) -> MutexGuard<'_, Option<Offload>> {
        self.offload.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_jobs(&self) -> MutexGuard<'_, HashMap<u64, Job>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs a load on a runtime of its own: loading reads files on tokio's
/// blocking threads, and this runtime, with those threads, ends with it.
fn block_on_load<T>(load: impl std::future::Future<Output = Result<T, LoadError>>) -> PyResult<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(no_tokio)?
        .block_on(load)
        .map_err(load_error)
}

/// The most calls that may wait to be finished off the reactor at once.
const MAX_WAITING_JOBS: usize = 1024;

fn no_job(job: u64) -> PyErr {
    PyRuntimeError::new_err(format!("no job {job} waiting"))
}

fn answer_tuple<'py>(
    py: Python<'py>,
    answer: impl IntoPyObject<'py, Target = PyTuple, Output = Bound<'py, PyTuple>, Error = PyErr>,
) -> PyResult<Bound<'py, PyTuple>> {
    answer.into_pyobject(py)
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
    module.add("RouterLoadError", module.py().get_type::<RouterLoadError>())?;
    Ok(())
}
