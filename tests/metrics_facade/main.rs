//! The runtime's figures through the `metrics` facade: an embedder that
//! installs a recorder (any exporter) sees the same counts as
//! `RouterSet::stats`. One test in its own binary: the recorder is global.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use presence_router_runtime::{FailureKind, Presence};
use presence_router_tests::{batch, beside_example};

/// Keeps every counter and histogram by name and labels.
#[derive(Default)]
struct Kept {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Values>>>,
}

#[derive(Default)]
struct Values(Mutex<Vec<f64>>);

impl HistogramFn for Values {
    fn record(&self, value: f64) {
        self.0.lock().expect("not poisoned").push(value);
    }
}

fn key_text(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

struct KeepingRecorder(Arc<Kept>);

impl Recorder for KeepingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let counter = self
            .0
            .counters
            .lock()
            .expect("not poisoned")
            .entry(key_text(key))
            .or_default()
            .clone();
        Counter::from_arc(counter)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let values = self
            .0
            .histograms
            .lock()
            .expect("not poisoned")
            .entry(key_text(key))
            .or_default()
            .clone();
        Histogram::from_arc(values)
    }
}

#[tokio::test]
async fn an_installed_recorder_sees_the_same_figures_as_stats() {
    let kept = Arc::new(Kept::default());
    metrics::set_global_recorder(KeepingRecorder(kept.clone()))
        .expect("no other recorder in this test binary");
    // Handles are registered when routers load: after the recorder.
    let (routers, _) = beside_example(
        "spinner",
        "HOSTILE_SPIN",
        "{}",
        "{fuel: 1000000, fuel_per_state: 0, timeout: 10s}",
    )
    .await;
    let states = batch(&[("@a:x", Presence::Online)]);
    for _ in 0..3 {
        routers.get_users_for_states(&states).await;
    }
    let counter = |key: &str| {
        kept.counters
            .lock()
            .expect("not poisoned")
            .get(key)
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or_else(|| panic!("no counter {key}"))
    };
    assert_eq!(
        counter("wasm_presence_router_calls_total{callback=get_users_for_states,router=spinner}"),
        3
    );
    assert_eq!(
        counter(
            "wasm_presence_router_failures_total{callback=get_users_for_states,kind=out_of_fuel,router=spinner}"
        ),
        3
    );
    assert_eq!(
        counter("wasm_presence_router_calls_total{callback=get_users_for_states,router=example}"),
        3
    );
    let stats = routers.stats();
    assert_eq!(
        stats[0]
            .get_users_for_states
            .failures_of(FailureKind::OutOfFuel),
        3
    );
    let durations = kept
        .histograms
        .lock()
        .expect("not poisoned")
        .get(
            "wasm_presence_router_call_duration_seconds{callback=get_users_for_states,router=example}",
        )
        .map(|v| v.0.lock().expect("not poisoned").len());
    assert_eq!(durations, Some(3));
}
