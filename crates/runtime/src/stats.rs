//! What each router's calls came to, counted as they happen: calls and
//! failures per callback, suspensions, call duration, fuel used against the
//! budget, answer entries, instances, reloads.
//!
//! Two ways out, the same numbers:
//!
//! - [`RouterSet::stats`](crate::RouterSet::stats) is a snapshot, for an
//!   embedder that exports it its own way (the Synapse module hands it to
//!   `prometheus_client` at scrape time, the CLI prints it on exit);
//! - every figure is also emitted through the [`metrics`] facade, the Rust
//!   ecosystem's convention for library metrics (as `log`/`tracing` are for
//!   logs): the library records, the application picks the exporter
//!   (Prometheus, StatsD, OpenTelemetry...) by installing a recorder, and
//!   without one every record is a no-op. Handles are registered when a
//!   router is loaded: install the recorder before loading.
//!
//! Counting costs a few relaxed atomic additions per call: no lock, no
//! allocation, no clock read beyond the one the call already makes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use presence_router_model::FailureKind;

use crate::signature::SignatureRefusal;
use serde::Serialize;

/// The metric names, shared by the facade, the Synapse module's Prometheus
/// export and the Grafana dashboard (`docs/grafana-dashboard.json`).
pub mod names {
    pub const CALLS: &str = "wasm_presence_router_calls_total";
    pub const FAILURES: &str = "wasm_presence_router_failures_total";
    pub const SKIPPED_SUSPENDED: &str = "wasm_presence_router_skipped_suspended_total";
    pub const SUSPENSIONS: &str = "wasm_presence_router_suspensions_total";
    pub const SUSPENDED: &str = "wasm_presence_router_suspended";
    pub const CALL_DURATION: &str = "wasm_presence_router_call_duration_seconds";
    pub const FUEL_USED_RATIO: &str = "wasm_presence_router_fuel_used_ratio";
    pub const ANSWER_ENTRIES: &str = "wasm_presence_router_answer_entries_total";
    pub const INSTANCES: &str = "wasm_presence_router_instances";
    pub const RELOADS: &str = "wasm_presence_router_reloads_total";
    pub const DROPPED: &str = "wasm_presence_router_dropped_total";
    pub const LOG_BYTES: &str = "wasm_presence_router_log_bytes_total";
    pub const SIGNATURE_REFUSALS: &str = "wasm_presence_router_signature_refusals_total";
}

/// What a router's calls asked of the host beyond their answers (log
/// lines, sends) that a limit dropped: `what` was dropped, over which
/// `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dropped {
    /// Log lines over `max_log_lines` in one call.
    LogLinesPerCall,
    /// Log lines over `log_bytes_per_second`.
    LogLinesPerSecond,
    /// `send-local-online-presence-to` calls over `max_send_calls`.
    SendCallsPerCall,
    /// Users over `max_send_users` in one call.
    SendUsersPerCall,
    /// Users over `send_users_per_second`.
    SendUsersPerSecond,
}

impl Dropped {
    pub const ALL: [Dropped; 5] = [
        Dropped::LogLinesPerCall,
        Dropped::LogLinesPerSecond,
        Dropped::SendCallsPerCall,
        Dropped::SendUsersPerCall,
        Dropped::SendUsersPerSecond,
    ];

    /// The metric's labels: what, and the limit.
    pub fn labels(self) -> (&'static str, &'static str) {
        match self {
            Dropped::LogLinesPerCall => ("log_lines", "max_log_lines"),
            Dropped::LogLinesPerSecond => ("log_lines", "log_bytes_per_second"),
            Dropped::SendCallsPerCall => ("send_calls", "max_send_calls"),
            Dropped::SendUsersPerCall => ("send_users", "max_send_users"),
            Dropped::SendUsersPerSecond => ("send_users", "send_users_per_second"),
        }
    }
}

/// One of the two callbacks a router exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Callback {
    GetUsersForStates,
    GetInterestedUsers,
}

impl Callback {
    pub const ALL: [Callback; 2] = [Callback::GetUsersForStates, Callback::GetInterestedUsers];

    pub fn as_str(self) -> &'static str {
        match self {
            Callback::GetUsersForStates => "get_users_for_states",
            Callback::GetInterestedUsers => "get_interested_users",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds of the call duration buckets, in seconds: a one-state call
/// is microseconds, a router's default `timeout` is 100 ms.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Upper bounds of the fuel buckets, as the fraction of the call's budget
/// used: headroom is what an operator sets limits by.
pub const FUEL_BUCKETS: [f64; 10] = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0];

/// A histogram with fixed buckets, updated with relaxed atomics.
struct Histogram {
    bounds: &'static [f64],
    /// Per bucket, not cumulative; the last is above every bound.
    counts: Box<[AtomicU64]>,
    /// The sum of the values, in millionths.
    sum_millionths: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_millionths: AtomicU64::new(0),
        }
    }

    fn record(&self, value: f64) {
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        // Saturating `as`: a NaN counts 0, a huge value the maximum.
        self.sum_millionths
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        HistogramSnapshot {
            bounds: self.bounds.to_vec(),
            count: counts.iter().sum(),
            counts,
            sum: self.sum_millionths.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A histogram's state at one moment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistogramSnapshot {
    /// Upper bounds of the buckets (inclusive), ascending.
    pub bounds: Vec<f64>,
    /// Values per bucket (not cumulative): `counts[i]` fell in
    /// `(bounds[i-1], bounds[i]]`, the last above every bound.
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl HistogramSnapshot {
    /// The upper bound of the bucket holding the `q` quantile (`None` when
    /// empty; infinity when it is above the last bound).
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(self.bounds.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }
}

/// What one callback of one router came to.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallbackStats {
    /// Calls the router ran, answered or failed (a call abandoned in a
    /// slice and finished later counts once; a skipped one not at all).
    pub calls: u64,
    /// Failed calls per kind, in [`FailureKind::ALL`] order.
    pub failures: Vec<(FailureKind, u64)>,
    /// Calls that skipped the router because it was suspended.
    pub skipped_suspended: u64,
    /// Entries of the answers (one per route or named user, one per index).
    pub answer_entries: u64,
    /// Duration of each call the router ran, from the moment it had its
    /// instance slot, in seconds.
    pub duration_seconds: HistogramSnapshot,
    /// Fuel used by each call, as a fraction of its budget (a call that ran
    /// out of fuel counts 1).
    pub fuel_used_ratio: HistogramSnapshot,
}

impl CallbackStats {
    pub fn failures_total(&self) -> u64 {
        self.failures.iter().map(|(_, n)| n).sum()
    }

    pub fn failures_of(&self, kind: FailureKind) -> u64 {
        self.failures
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}

/// What one router's calls came to since it was first loaded (a reloaded
/// router goes on counting where its earlier version stopped).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouterStats {
    pub router: String,
    pub get_users_for_states: CallbackStats,
    pub get_interested_users: CallbackStats,
    /// Whether it is suspended now (from its suspension until a trial call
    /// succeeds).
    pub suspended: bool,
    pub suspensions: u64,
    /// Warm instances waiting in its pool, and every instance alive (warm or
    /// out on a call).
    pub warm_instances: usize,
    pub live_instances: usize,
    /// Times a new version of it (component or configuration) replaced the
    /// running one.
    pub reloads: u64,
    /// Times loading a new version of it failed, leaving the running one.
    pub failed_reloads: u64,
    /// Of those, the ones refused for their signature, per reason
    /// ([`crate::SignatureRefusal::reason`]), in
    /// [`crate::SignatureRefusal::REASONS`] order.
    pub signature_refusals: Vec<(&'static str, u64)>,
    /// Bytes of log lines passed on (escaped, as logged).
    pub log_bytes: u64,
    /// What its limits dropped, per [`Dropped`], in [`Dropped::ALL`] order.
    pub dropped: Vec<(Dropped, u64)>,
}

impl RouterStats {
    pub fn callback(&self, callback: Callback) -> &CallbackStats {
        match callback {
            Callback::GetUsersForStates => &self.get_users_for_states,
            Callback::GetInterestedUsers => &self.get_interested_users,
        }
    }

    pub fn dropped_of(&self, what: Dropped) -> u64 {
        self.dropped
            .iter()
            .find(|(d, _)| *d == what)
            .map_or(0, |(_, n)| *n)
    }
}

struct CallbackMetrics {
    calls: AtomicU64,
    failures: [AtomicU64; FailureKind::ALL.len()],
    skipped_suspended: AtomicU64,
    answer_entries: AtomicU64,
    duration: Histogram,
    fuel: Histogram,
    facade: CallbackHandles,
}

/// The facade's handles for one callback, registered once.
struct CallbackHandles {
    calls: metrics::Counter,
    failures: [metrics::Counter; FailureKind::ALL.len()],
    skipped_suspended: metrics::Counter,
    answer_entries: metrics::Counter,
    duration: metrics::Histogram,
    fuel: metrics::Histogram,
}

impl CallbackMetrics {
    fn new(router: &str, callback: Callback) -> Self {
        let labels = |extra: Option<(&'static str, &'static str)>| {
            let mut labels = vec![
                metrics::Label::new("router", router.to_owned()),
                metrics::Label::new("callback", callback.as_str()),
            ];
            labels.extend(extra.map(|(k, v)| metrics::Label::new(k, v)));
            labels
        };
        CallbackMetrics {
            calls: AtomicU64::new(0),
            failures: Default::default(),
            skipped_suspended: AtomicU64::new(0),
            answer_entries: AtomicU64::new(0),
            duration: Histogram::new(&DURATION_BUCKETS),
            fuel: Histogram::new(&FUEL_BUCKETS),
            facade: CallbackHandles {
                calls: metrics::counter!(names::CALLS, labels(None)),
                failures: FailureKind::ALL.map(|kind| {
                    metrics::counter!(names::FAILURES, labels(Some(("kind", kind.as_str()))))
                }),
                skipped_suspended: metrics::counter!(names::SKIPPED_SUSPENDED, labels(None)),
                answer_entries: metrics::counter!(names::ANSWER_ENTRIES, labels(None)),
                duration: metrics::histogram!(names::CALL_DURATION, labels(None)),
                fuel: metrics::histogram!(names::FUEL_USED_RATIO, labels(None)),
            },
        }
    }

    fn snapshot(&self) -> CallbackStats {
        CallbackStats {
            calls: self.calls.load(Ordering::Relaxed),
            failures: FailureKind::ALL
                .iter()
                .zip(&self.failures)
                .map(|(kind, n)| (*kind, n.load(Ordering::Relaxed)))
                .collect(),
            skipped_suspended: self.skipped_suspended.load(Ordering::Relaxed),
            answer_entries: self.answer_entries.load(Ordering::Relaxed),
            duration_seconds: self.duration.snapshot(),
            fuel_used_ratio: self.fuel.snapshot(),
        }
    }
}

/// A router's counters. Shared by the versions of a router across reloads
/// (`Arc`), so its figures go on where they were.
pub(crate) struct RouterMetrics {
    callbacks: [CallbackMetrics; 2],
    suspensions: AtomicU64,
    suspended: AtomicBool,
    reloads: AtomicU64,
    failed_reloads: AtomicU64,
    signature_refusals: [AtomicU64; SignatureRefusal::REASONS.len()],
    log_bytes: AtomicU64,
    dropped: [AtomicU64; Dropped::ALL.len()],
    facade: RouterHandles,
}

struct RouterHandles {
    log_bytes: metrics::Counter,
    dropped: [metrics::Counter; Dropped::ALL.len()],
    suspensions: metrics::Counter,
    suspended: metrics::Gauge,
    warm: metrics::Gauge,
    live: metrics::Gauge,
    reloads: metrics::Counter,
    failed_reloads: metrics::Counter,
    signature_refusals: [metrics::Counter; SignatureRefusal::REASONS.len()],
}

/// How a call that ran ended, for its metrics.
pub(crate) enum CallOutcome {
    Answered {
        fuel_used: u64,
        fuel_budget: u64,
        answer_entries: usize,
    },
    Failed(FailureKind),
}

impl RouterMetrics {
    pub(crate) fn new(router: &str) -> Self {
        let labelled = |extra: &[(&'static str, &'static str)]| {
            let mut labels = vec![metrics::Label::new("router", router.to_owned())];
            labels.extend(extra.iter().map(|(k, v)| metrics::Label::new(*k, *v)));
            labels
        };
        RouterMetrics {
            callbacks: Callback::ALL.map(|callback| CallbackMetrics::new(router, callback)),
            suspensions: AtomicU64::new(0),
            suspended: AtomicBool::new(false),
            reloads: AtomicU64::new(0),
            failed_reloads: AtomicU64::new(0),
            signature_refusals: Default::default(),
            log_bytes: AtomicU64::new(0),
            dropped: Default::default(),
            facade: RouterHandles {
                log_bytes: metrics::counter!(names::LOG_BYTES, labelled(&[])),
                dropped: Dropped::ALL.map(|d| {
                    let (what, limit) = d.labels();
                    metrics::counter!(
                        names::DROPPED,
                        labelled(&[("what", what), ("limit", limit)])
                    )
                }),
                suspensions: metrics::counter!(names::SUSPENSIONS, labelled(&[])),
                suspended: metrics::gauge!(names::SUSPENDED, labelled(&[])),
                warm: metrics::gauge!(names::INSTANCES, labelled(&[("state", "warm")])),
                live: metrics::gauge!(names::INSTANCES, labelled(&[("state", "live")])),
                reloads: metrics::counter!(names::RELOADS, labelled(&[("outcome", "ok")])),
                failed_reloads: metrics::counter!(
                    names::RELOADS,
                    labelled(&[("outcome", "failed")])
                ),
                signature_refusals: SignatureRefusal::REASONS.map(|reason| {
                    metrics::counter!(names::SIGNATURE_REFUSALS, labelled(&[("reason", reason)]))
                }),
            },
        }
    }

    /// A call the router ran, answered or failed.
    pub(crate) fn call(&self, callback: Callback, elapsed: Duration, outcome: CallOutcome) {
        let m = &self.callbacks[callback.index()];
        m.calls.fetch_add(1, Ordering::Relaxed);
        m.facade.calls.increment(1);
        let seconds = elapsed.as_secs_f64();
        m.duration.record(seconds);
        m.facade.duration.record(seconds);
        match outcome {
            CallOutcome::Answered {
                fuel_used,
                fuel_budget,
                answer_entries,
            } => {
                let ratio = if fuel_budget == 0 {
                    1.0
                } else {
                    fuel_used as f64 / fuel_budget as f64
                };
                m.fuel.record(ratio);
                m.facade.fuel.record(ratio);
                m.answer_entries
                    .fetch_add(answer_entries as u64, Ordering::Relaxed);
                m.facade.answer_entries.increment(answer_entries as u64);
            }
            CallOutcome::Failed(kind) => {
                let i = FailureKind::ALL
                    .iter()
                    .position(|k| *k == kind)
                    .unwrap_or_default();
                m.failures[i].fetch_add(1, Ordering::Relaxed);
                m.facade.failures[i].increment(1);
                if kind == FailureKind::OutOfFuel {
                    m.fuel.record(1.0);
                    m.facade.fuel.record(1.0);
                }
            }
        }
    }

    /// A call that skipped the router: it is suspended.
    pub(crate) fn skipped(&self, callback: Callback) {
        let m = &self.callbacks[callback.index()];
        m.skipped_suspended.fetch_add(1, Ordering::Relaxed);
        m.facade.skipped_suspended.increment(1);
    }

    pub(crate) fn suspended(&self) {
        self.suspensions.fetch_add(1, Ordering::Relaxed);
        self.facade.suspensions.increment(1);
        self.suspended.store(true, Ordering::Relaxed);
        self.facade.suspended.set(1.0);
    }

    pub(crate) fn resumed(&self) {
        self.suspended.store(false, Ordering::Relaxed);
        self.facade.suspended.set(0.0);
    }

    /// The pool's size changed (instances are counted when asked for
    /// [`RouterMetrics::snapshot`]; the facade's gauges follow here).
    pub(crate) fn instances(&self, warm: usize, live: usize) {
        self.facade.warm.set(warm as f64);
        self.facade.live.set(live as f64);
    }

    /// Log bytes passed on for the router.
    pub(crate) fn logged(&self, bytes: u64) {
        self.log_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.facade.log_bytes.increment(bytes);
    }

    /// `count` of `what` dropped by a limit.
    pub(crate) fn dropped(&self, what: Dropped, count: u64) {
        if count == 0 {
            return;
        }
        let i = Dropped::ALL
            .iter()
            .position(|d| *d == what)
            .unwrap_or_default();
        self.dropped[i].fetch_add(count, Ordering::Relaxed);
        self.facade.dropped[i].increment(count);
    }

    pub(crate) fn reloaded(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        self.facade.reloads.increment(1);
    }

    pub(crate) fn reload_failed(&self) {
        self.failed_reloads.fetch_add(1, Ordering::Relaxed);
        self.facade.failed_reloads.increment(1);
    }

    /// A new version refused for its signature, for `reason` (one of
    /// [`SignatureRefusal::REASONS`]).
    pub(crate) fn signature_refused(&self, reason: &'static str) {
        if let Some(i) = SignatureRefusal::REASONS.iter().position(|r| *r == reason) {
            self.signature_refusals[i].fetch_add(1, Ordering::Relaxed);
            self.facade.signature_refusals[i].increment(1);
        }
    }

    pub(crate) fn snapshot(&self, router: &str, warm: usize, live: usize) -> RouterStats {
        let [states, interest] = &self.callbacks;
        RouterStats {
            router: router.to_owned(),
            get_users_for_states: states.snapshot(),
            get_interested_users: interest.snapshot(),
            suspended: self.suspended.load(Ordering::Relaxed),
            suspensions: self.suspensions.load(Ordering::Relaxed),
            warm_instances: warm,
            live_instances: live,
            reloads: self.reloads.load(Ordering::Relaxed),
            failed_reloads: self.failed_reloads.load(Ordering::Relaxed),
            signature_refusals: SignatureRefusal::REASONS
                .iter()
                .zip(&self.signature_refusals)
                .map(|(reason, n)| (*reason, n.load(Ordering::Relaxed)))
                .collect(),
            log_bytes: self.log_bytes.load(Ordering::Relaxed),
            dropped: Dropped::ALL
                .iter()
                .zip(&self.dropped)
                .map(|(d, n)| (*d, n.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_values_in_their_buckets_bounds_inclusive() {
        let h = Histogram::new(&[1.0, 2.0]);
        for value in [0.5, 1.0, 1.5, 2.0, 3.0] {
            h.record(value);
        }
        let s = h.snapshot();
        assert_eq!(s.counts, vec![2, 2, 1]);
        assert_eq!(s.count, 5);
        assert!((s.sum - 8.0).abs() < 1e-9);
        assert_eq!(s.quantile_bound(0.5), Some(2.0));
        assert_eq!(s.quantile_bound(0.2), Some(1.0));
        assert_eq!(s.quantile_bound(1.0), Some(f64::INFINITY));
    }

    #[test]
    fn failures_fuel_and_answers_are_counted_per_callback() {
        let m = RouterMetrics::new("r");
        m.call(
            Callback::GetUsersForStates,
            Duration::from_micros(30),
            CallOutcome::Answered {
                fuel_used: 50,
                fuel_budget: 100,
                answer_entries: 3,
            },
        );
        m.call(
            Callback::GetUsersForStates,
            Duration::from_millis(200),
            CallOutcome::Failed(FailureKind::OutOfFuel),
        );
        m.call(
            Callback::GetInterestedUsers,
            Duration::from_millis(1),
            CallOutcome::Failed(FailureKind::Timeout),
        );
        m.skipped(Callback::GetInterestedUsers);
        let s = m.snapshot("r", 1, 2);
        let states = &s.get_users_for_states;
        assert_eq!(states.calls, 2);
        assert_eq!(states.failures_of(FailureKind::OutOfFuel), 1);
        assert_eq!(states.failures_total(), 1);
        assert_eq!(states.answer_entries, 3);
        assert_eq!(states.fuel_used_ratio.count, 2);
        assert_eq!(states.fuel_used_ratio.quantile_bound(0.5), Some(0.5));
        assert_eq!(states.duration_seconds.quantile_bound(1.0), Some(0.25));
        let interest = &s.get_interested_users;
        assert_eq!(interest.calls, 1);
        assert_eq!(interest.failures_of(FailureKind::Timeout), 1);
        assert_eq!(interest.skipped_suspended, 1);
        assert_eq!(interest.fuel_used_ratio.count, 0);
        assert_eq!((s.warm_instances, s.live_instances), (1, 2));
    }
}
