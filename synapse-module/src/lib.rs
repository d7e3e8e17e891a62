//! The native half of the `wasm_presence_router` Synapse module: a
//! [`presence_router_runtime::RouterSet`] behind a small Python API.
//!
//! The Python half (`python/wasm_presence_router/__init__.py`) is the Synapse
//! module proper: it reads the module's config, registers the callbacks, and
//! runs every call here on Synapse's thread pool. This side converts
//! Synapse's `UserPresenceState` objects to the runtime's records and back
//! (the answer is built from the very objects of the batch), and runs wasm
//! with the GIL released, so Synapse's reactor thread is never held by a
//! guest.
//!
//! What the runtime reports (guest log lines, skipped routers, suspensions,
//! and its own `tracing` warnings, such as a cache it can't use) is queued
//! as [`Event`]s and handed to Python's `logging` by the Python half, on the
//! reactor thread, after each call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use presence_router_runtime::{
    CacheSetting, InterestedUsers, LoadError, LoadOptions, LogLevel, ModuleApi, Presence,
    RouterFailure, RouterSetConfig, UserPresenceState,
};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PySet, PyString};
use pyo3::{create_exception, intern};

create_exception!(
    _native,
    RouterLoadError,
    PyException,
    "The routers can't be loaded. `args` is `(message, path)`: `path` is the \
     tuple of config keys at fault, in Synapse's `ConfigError` style \
     (`(\"routers\", \"<item 0>\", \"config\")`), empty when no key is."
);

// Python's `logging` levels. Trace has none, so it goes one step below
// `DEBUG`, where Synapse's own logging config drops it by default.
const TRACE: u8 = 5;
const DEBUG: u8 = 10;
const INFO: u8 = 20;
const WARNING: u8 = 30;
const ERROR: u8 = 40;

/// One line for Python's `logging`: a level and the text (which names the
/// router it is about).
type Event = (u8, String);

/// Events kept up to a cap, the rest counted: a flood from a router must
/// not grow the homeserver's memory.
struct BoundedEvents {
    events: Vec<Event>,
    dropped: u64,
}

impl BoundedEvents {
    const CAPACITY: usize = 4096;

    const fn new() -> Self {
        BoundedEvents {
            events: Vec::new(),
            dropped: 0,
        }
    }

    fn push(&mut self, event: Event) {
        if self.events.len() < Self::CAPACITY {
            self.events.push(event);
        } else {
            self.dropped += 1;
        }
    }

    /// Everything kept, plus a line saying how much was dropped `when`.
    fn take(&mut self, when: &str) -> Vec<Event> {
        let mut events = std::mem::take(&mut self.events);
        if self.dropped > 0 {
            events.push((
                WARNING,
                format!(
                    "{} router log lines were dropped: more than {} {when}",
                    self.dropped,
                    Self::CAPACITY
                ),
            ));
            self.dropped = 0;
        }
        events
    }
}

/// What the runtime reports outside any call, between two drains by Python.
struct EventQueue {
    events: Mutex<BoundedEvents>,
}

impl EventQueue {
    const fn new() -> Self {
        EventQueue {
            events: Mutex::new(BoundedEvents::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BoundedEvents> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, level: u8, message: String) {
        self.lock().push((level, message));
    }

    /// Everything queued, plus a line saying how much was dropped.
    fn drain(&self) -> Vec<Event> {
        self.lock().take("arrived between two calls")
    }
}

thread_local! {
    /// The events of the call running on this thread, if one is: a call
    /// runs to its end on the thread that called it, so what the runtime
    /// reports during it is that call's, and goes back with its answer (and
    /// into the log context of its request), never into another's.
    static CALL_EVENTS: std::cell::RefCell<Option<BoundedEvents>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `call` with the events reported on this thread meanwhile kept for
/// it, and returns them with its result.
fn collecting_events<T>(call: impl FnOnce() -> T) -> (T, Vec<Event>) {
    CALL_EVENTS.with(|events| *events.borrow_mut() = Some(BoundedEvents::new()));
    let out = call();
    let events = CALL_EVENTS
        .with(|events| events.borrow_mut().take())
        .map(|mut events| events.take("in one call"))
        .unwrap_or_default();
    (out, events)
}

/// Queues an event for the call running on this thread, or, outside a
/// call (loading, warming up), on `queue`.
fn report(queue: &EventQueue, level: u8, message: String) {
    let outside_a_call = CALL_EVENTS.with(|events| match events.borrow_mut().as_mut() {
        Some(events) => {
            events.push((level, message));
            None
        }
        None => Some(message),
    });
    if let Some(message) = outside_a_call {
        queue.push(level, message);
    }
}

/// The runtime's own warnings and errors, from `tracing` (see
/// [`RuntimeWarnings`]): they concern no one router set, and some happen
/// before Synapse has set up logging, so they wait here for the next drain.
static RUNTIME_EVENTS: EventQueue = EventQueue::new();

/// A `tracing` layer that queues the runtime's events for Python, which has
/// no other way to see them: `compiled-component cache ... unusable`,
/// `cannot start the watchdog thread, time budgets are off`, and the like.
struct RuntimeWarnings;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RuntimeWarnings {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _context: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => ERROR,
            tracing::Level::WARN => WARNING,
            tracing::Level::INFO => INFO,
            tracing::Level::DEBUG => DEBUG,
            tracing::Level::TRACE => TRACE,
        };
        let mut text = EventText::default();
        event.record(&mut text);
        RUNTIME_EVENTS.push(level, text.0);
    }
}

/// An event's message, with its other fields after it.
#[derive(Default)]
struct EventText(String);

impl tracing::field::Visit for EventText {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        // Writing to a String can't fail.
        let _ = match field.name() {
            "message" => write!(self.0, "{value:?}"),
            name => write!(self.0, " ({name}: {value:?})"),
        };
    }
}

/// The runtime's host side: everything becomes an [`Event`]. Sends are not
/// acted on here: each call's `Routed::sent_presence_to` carries them back
/// to Python, which schedules them on Synapse's reactor.
struct QueueingModuleApi(Arc<EventQueue>);

impl ModuleApi for QueueingModuleApi {
    fn send_local_online_presence_to(&self, _router: &str, _users: &[String]) {}

    fn guest_log(&self, router: &str, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Trace => TRACE,
            LogLevel::Debug => DEBUG,
            LogLevel::Info => INFO,
            LogLevel::Warn => WARNING,
            LogLevel::Error => ERROR,
        };
        report(&self.0, level, format!("router `{router}`: {message}"));
    }

    fn router_skipped(&self, failure: &RouterFailure) {
        let mut message = format!(
            "router `{}` skipped for this call ({}): {}",
            failure.router, failure.kind, failure.message
        );
        if let Some(suspension) = &failure.suspension {
            message.push_str(&format!(
                "; suspended after {} failures in a row, next try in {} ms",
                suspension.consecutive_failures, suspension.retry_in_ms
            ));
        }
        report(&self.0, WARNING, message);
    }

    fn router_resumed(&self, router: &str) {
        report(
            &self.0,
            INFO,
            format!("router `{router}` answered again: no longer suspended"),
        );
    }

    fn router_warning(&self, router: &str, message: &str) {
        report(&self.0, WARNING, format!("router `{router}`: {message}"));
    }
}

/// Loaded routers and what their calls run on.
#[pyclass(frozen, name = "RouterSet", module = "wasm_presence_router._native")]
struct PyRouterSet {
    routers: presence_router_runtime::RouterSet,
    /// Drives calls. A current-thread runtime starts no threads, so a
    /// process that forks keeps no reference to a thread that didn't follow
    /// it; `block_on` from several Synapse threads at once is allowed, each
    /// thread polling its own call.
    calls: tokio::runtime::Runtime,
    events: Arc<EventQueue>,
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
        let routers = py.detach(|| {
            // Loading reads files on tokio's blocking threads; this runtime,
            // and with it those threads, ends with the load.
            let loading = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(no_tokio)?;
            loading
                .block_on(presence_router_runtime::RouterSet::load_with(
                    &config, module_api, &options,
                ))
                .map_err(load_error)
        })?;
        let calls = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(no_tokio)?;
        Ok(PyRouterSet {
            routers,
            calls,
            events,
        })
    }

    /// `(name, component, how it was loaded, milliseconds it took)` per
    /// router, in order.
    fn routers(&self) -> Vec<(String, PathBuf, String, f64)> {
        self.routers
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

    /// Routes a batch of Synapse `UserPresenceState`s. Returns
    /// `(routes, sends, events)`: `routes` maps each user to the `set` of the
    /// batch's own state objects they should receive; `sends` lists who the
    /// routers asked `send_local_online_presence_to` for; `events` is what
    /// this call reported, `(level, message)`. A state whose fields are not
    /// what Synapse writes is left out of the call, with a warning, and the
    /// rest is routed.
    #[allow(clippy::type_complexity)]
    fn get_users_for_states<'py>(
        &self,
        py: Python<'py>,
        states: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyDict>, Vec<String>, Vec<Event>)> {
        let ((batch, from_batch, routed), events) = collecting_events(|| {
            let (batch, from_batch) = self.read_batch(py, &states);
            let routed = py.detach(|| {
                self.calls
                    .block_on(self.routers.get_users_for_states(&batch))
            });
            (batch, from_batch, routed)
        });
        drop(batch);
        let routes = PyDict::new(py);
        for (user_id, indices) in routed.answer {
            let set = PySet::empty(py)?;
            for index in indices {
                // The runtime has checked every index against the batch.
                if let Some(state) = usize::try_from(index)
                    .ok()
                    .and_then(|i| from_batch.get(i))
                    .and_then(|&position| states.get(position))
                {
                    set.add(state)?;
                }
            }
            routes.set_item(user_id, set)?;
        }
        Ok((routes, routed.sent_presence_to, events))
    }

    /// Whose presence `user_id` should additionally receive. Returns
    /// `(all_users, users, sends, events)`.
    #[allow(clippy::type_complexity)]
    fn get_interested_users<'py>(
        &self,
        py: Python<'py>,
        user_id: &str,
    ) -> PyResult<(bool, Bound<'py, PySet>, Vec<String>, Vec<Event>)> {
        let (routed, events) = collecting_events(|| {
            py.detach(|| {
                self.calls
                    .block_on(self.routers.get_interested_users(user_id))
            })
        });
        let users = PySet::empty(py)?;
        let all = match routed.answer {
            InterestedUsers::All => true,
            InterestedUsers::Users(named) => {
                for user in named {
                    users.add(user)?;
                }
                false
            }
        };
        Ok((all, users, routed.sent_presence_to, events))
    }

    /// Fills every router's pool of warm instances; returns a line per
    /// router that failed to start an instance.
    fn warm_up(&self, py: Python<'_>) -> Vec<String> {
        py.detach(|| self.calls.block_on(self.routers.warm_up()))
            .into_iter()
            .map(|f| format!("router `{}` ({}): {}", f.router, f.kind, f.message))
            .collect()
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
    /// The runtime's records of a batch's states, and for each the position
    /// in `states` it came from; a state that can't be read is reported and
    /// left out.
    fn read_batch(
        &self,
        py: Python<'_>,
        states: &[Bound<'_, PyAny>],
    ) -> (Vec<UserPresenceState>, Vec<usize>) {
        let mut batch = Vec::with_capacity(states.len());
        let mut from_batch = Vec::with_capacity(states.len());
        for (position, state) in states.iter().enumerate() {
            match read_state(py, state) {
                Ok(record) => {
                    batch.push(record);
                    from_batch.push(position);
                }
                Err(why) => report(
                    &self.events,
                    WARNING,
                    format!("presence state {position} of the batch was not routed: {why}"),
                ),
            }
        }
        (batch, from_batch)
    }
}

/// Reads one `UserPresenceState`. Timestamps Synapse never writes negative
/// are read as 0 if they are; anything that isn't the right type names the
/// field.
fn read_state(py: Python<'_>, state: &Bound<'_, PyAny>) -> Result<UserPresenceState, String> {
    let user_id: String = field(state, intern!(py, "user_id"), "a string")?;
    let in_state = |e: String| format!("{e} (user {user_id})");
    let presence: String = field(state, intern!(py, "state"), "a string").map_err(in_state)?;
    let timestamp = |name| -> Result<u64, String> {
        let value: i64 = field(state, name, "an integer").map_err(in_state)?;
        Ok(u64::try_from(value).unwrap_or(0))
    };
    Ok(UserPresenceState {
        last_active_ts: timestamp(intern!(py, "last_active_ts"))?,
        last_federation_update_ts: timestamp(intern!(py, "last_federation_update_ts"))?,
        last_user_sync_ts: timestamp(intern!(py, "last_user_sync_ts"))?,
        status_msg: field(state, intern!(py, "status_msg"), "a string or None")
            .map_err(in_state)?,
        currently_active: field(state, intern!(py, "currently_active"), "a bool")
            .map_err(in_state)?,
        state: Presence::from(presence),
        user_id,
    })
}

/// One attribute of a state, as a `T`, or why not.
fn field<'py, T: FromPyObjectOwned<'py>>(
    state: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
    expected: &str,
) -> Result<T, String> {
    let value = state
        .getattr(name)
        .map_err(|_| format!("it has no `{name}`"))?;
    value.extract().map_err(|_| {
        format!(
            "`{name}` is {}, not {expected}",
            value
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        )
    })
}

/// The path of an error no config key is at fault for.
const NO_PATH: [&str; 0] = [];

fn no_tokio(e: std::io::Error) -> PyErr {
    RouterLoadError::new_err((format!("cannot start tokio: {e}"), NO_PATH))
}

/// A load error as `RouterLoadError((message, path))`.
fn load_error(error: LoadError) -> PyErr {
    let (key, message) = match &error {
        LoadError::Config(e) => (
            e.key.as_str(),
            match &e.router {
                Some(router) => format!("router `{router}`: {}", e.message),
                None => e.message.clone(),
            },
        ),
        LoadError::Component { at, path, message } => (
            at.key.as_str(),
            format!(
                "router `{}`: cannot load {}: {message}",
                at.router,
                path.display()
            ),
        ),
        LoadError::ConfigRefused { at, message } => (
            at.key.as_str(),
            format!(
                "router `{}` refused its configuration: {message}",
                at.router
            ),
        ),
        LoadError::Failed { at, kind, message } => (
            at.key.as_str(),
            format!(
                "router `{}` failed while starting ({kind}): {message}",
                at.router
            ),
        ),
        LoadError::Engine(message) => (".", message.clone()),
    };
    RouterLoadError::new_err((message, synapse_config_path(key)))
}

/// `routers[1].limits.memory` as Synapse writes config paths:
/// `("routers", "<item 1>", "limits", "memory")`.
fn synapse_config_path(key: &str) -> Vec<String> {
    let mut path = Vec::new();
    for part in key.split('.').filter(|part| !part.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            path.push(rest[..open].to_owned());
            rest = &rest[open..];
            while let Some(index) = rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
                path.push(format!("<item {}>", index.0));
                rest = index.1;
            }
        } else {
            path.push(rest.to_owned());
        }
    }
    path.retain(|part| !part.is_empty());
    path
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
