//! What the runtime reports, as lines for Python's `logging`: guest log
//! lines, skipped routers, suspensions, and the runtime's own `tracing`
//! warnings. A call's lines go back with its answer, into the log context
//! of the request that made it; the rest wait in a queue for the next
//! drain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use presence_router_runtime::{LogLevel, ModuleApi, RouterFailure};

// Python's `logging` levels. Trace has none, so it goes one step below
// `DEBUG`, where Synapse's own logging config drops it by default.
pub(crate) const TRACE: u8 = 5;
pub(crate) const DEBUG: u8 = 10;
pub(crate) const INFO: u8 = 20;
pub(crate) const WARNING: u8 = 30;
pub(crate) const ERROR: u8 = 40;

/// One line for Python's `logging`: a level and the text (which names the
/// router it is about).
pub(crate) type Event = (u8, String);

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
pub(crate) struct EventQueue {
    events: Mutex<BoundedEvents>,
    /// Whether anything is queued: every call looks, few find something.
    pending: AtomicBool,
}

impl EventQueue {
    pub(crate) const fn new() -> Self {
        EventQueue {
            events: Mutex::new(BoundedEvents::new()),
            pending: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BoundedEvents> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn push(&self, level: u8, message: String) {
        let mut events = self.lock();
        events.push((level, message));
        self.pending.store(true, Ordering::Release);
    }

    /// Everything queued, plus a line saying how much was dropped.
    pub(crate) fn drain(&self) -> Vec<Event> {
        let mut events = self.lock();
        self.pending.store(false, Ordering::Release);
        events.take("arrived between two calls")
    }

    /// Moves what is queued to the end of `events`.
    pub(crate) fn drain_into(&self, events: &mut Vec<Event>) {
        if self.pending.load(Ordering::Acquire) {
            events.extend(self.drain());
        }
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
pub(crate) fn collecting_events<T>(call: impl FnOnce() -> T) -> (T, Vec<Event>) {
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
pub(crate) fn report(queue: &EventQueue, level: u8, message: String) {
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
pub(crate) static RUNTIME_EVENTS: EventQueue = EventQueue::new();

/// A `tracing` layer that queues the runtime's events for Python, which has
/// no other way to see them: `compiled-component cache ... unusable`,
/// `cannot start the watchdog thread, time budgets are off`, and the like.
pub(crate) struct RuntimeWarnings;

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
pub(crate) struct QueueingModuleApi(pub(crate) Arc<EventQueue>);

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

    fn canary_decided(&self, canary: &presence_router_runtime::CanaryStats) {
        if let Some(line) = canary.decision_line() {
            let level = match canary.decision {
                Some((presence_router_runtime::CanaryDecision::Promoted, _)) => INFO,
                _ => WARNING,
            };
            report(&self.0, level, line);
        }
    }
}
