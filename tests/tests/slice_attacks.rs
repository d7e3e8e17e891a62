//! Review of the slice change: a call tried in a `Slice` (Synapse's
//! reactor, GIL held) is bounded by fuel alone, so host work that costs the
//! guest no fuel is unbounded by the slice, and a call that does not run
//! out of its slice's fuel is never "used up" (the InlinePolicy is never
//! lowered). Each test here states what the slice should guarantee and
//! fails while it doesn't.
//!
//! The guest, `tests/guests/hostile-slicer`, is its own workspace, built by
//! hand: `cargo build --offline --release --target wasm32-wasip2
//! --manifest-path tests/guests/hostile-slicer/Cargo.toml --target-dir
//! target/guests`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use presence_router_runtime::{Presence, Slice};
use presence_router_tests::{batch, guests, load_ok, proc_status_bytes};

/// What one call on the reactor may cost: many slices (`Slice::REACTOR`
/// is 1 ms), far less than anything the attacks below get.
const REACTOR_BOUND: Duration = Duration::from_millis(20);

fn slicer() -> PathBuf {
    PathBuf::from(guests::HOSTILE_ALIASER).with_file_name("hostile_slicer.wasm")
}

fn yaml(config: &str) -> String {
    format!(
        r#"
routers:
  - name: slicer
    component: {}
    config: {config}
    failure_policy: {{suspend_after: 0}}
"#,
        slicer().display()
    )
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

#[tokio::test]
async fn an_aliased_interest_answer_holds_the_reactor() {
    let n: usize = std::env::var("SLICER_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let (set, _api) = load_ok(&yaml(&format!("{{mode: interest, n: {n}}}"))).await;
    for call in 0..3 {
        let started = Instant::now();
        let tried = set.get_interested_users_in_slice("@q:x", &Slice::REACTOR);
        let elapsed = started.elapsed();
        let answered = tried.as_ref().map(|r| r.failures.len());
        eprintln!("interest call {call}: {elapsed:?} in the slice, answered: {answered:?}");
        assert!(
            elapsed < REACTOR_BOUND,
            "call {call} held the calling thread {elapsed:?} within one Slice::REACTOR \
             (answered in the slice: {answered:?})"
        );
    }
}

#[tokio::test]
async fn an_aliased_route_answer_holds_the_reactor() {
    let (set, _api) = load_ok(&yaml("{mode: routes, n: 500000}")).await;
    let states = batch(&[("@a:x", Presence::Online)]);
    for call in 0..3 {
        let started = Instant::now();
        let tried = set.get_users_for_states_in_slice(&states, &Slice::REACTOR);
        let elapsed = started.elapsed();
        let answered = tried.as_ref().map(|r| (r.failures.len(), r.answer.len()));
        eprintln!("routes call {call}: {elapsed:?} in the slice, answered: {answered:?}");
        assert!(
            elapsed < REACTOR_BOUND,
            "call {call} held the calling thread {elapsed:?} within one Slice::REACTOR \
             (answered in the slice: {answered:?})"
        );
    }
}

#[tokio::test]
async fn an_aliased_send_holds_the_reactor_and_host_memory() {
    let (set, api) = load_ok(&yaml("{mode: send, n: 1000000}")).await;
    let states = batch(&[("@a:x", Presence::Online)]);
    let peak_before = proc_status_bytes("VmHWM:");
    let started = Instant::now();
    let tried = set.get_users_for_states_in_slice(&states, &Slice::REACTOR);
    let elapsed = started.elapsed();
    let peak_growth = proc_status_bytes("VmHWM:").saturating_sub(peak_before);
    let sent: usize = api.sends.lock().unwrap().iter().map(|(_, u)| u.len()).sum();
    eprintln!(
        "send call: {elapsed:?} in the slice, answered: {:?}, {sent} user IDs handed to the \
         embedder, host peak +{} MiB",
        tried.as_ref().map(|r| r.failures.len()),
        peak_growth >> 20
    );
    assert!(
        elapsed < REACTOR_BOUND,
        "held the calling thread {elapsed:?} within one Slice::REACTOR"
    );
    assert!(
        peak_growth < 80 << 20,
        "the host's peak grew by {} MiB for one call (limit 64 MiB + 16 MiB)",
        peak_growth >> 20
    );
}

#[tokio::test]
async fn host_calls_cost_no_fuel_in_a_slice() {
    for (mode, k) in [("random", 4000), ("write", 8000)] {
        let (set, _api) = load_ok(&yaml(&format!("{{mode: {mode}, k: {k}}}"))).await;
        let states = batch(&[("@a:x", Presence::Online)]);
        let started = Instant::now();
        let tried = set.get_users_for_states_in_slice(&states, &Slice::REACTOR);
        let elapsed = started.elapsed();
        eprintln!(
            "{mode} x{k}: {elapsed:?}, answered in the slice: {:?}",
            tried.as_ref().map(|r| r.failures.clone())
        );
        assert!(
            tried.is_err() || elapsed < REACTOR_BOUND,
            "{mode}: held the calling thread {elapsed:?} within one Slice::REACTOR and was \
             not abandoned"
        );
    }
}

/// Run alone (`-- --test-threads=1 a_refused_name_lookup`): counts the
/// process's threads.
#[test]
fn a_refused_name_lookup_starts_wasmtime_wasis_runtime_threads() {
    let loading = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (set, _api) = loading.block_on(load_ok(&yaml("{mode: lookup}")));
    drop(loading);
    let states = batch(&[("@a:x", Presence::Online)]);
    let before = threads();
    // Outside any Tokio runtime, as the Synapse module calls.
    let tried = set.get_users_for_states_in_slice(&states, &Slice::REACTOR);
    let after = threads();
    eprintln!(
        "threads before {before}, after {after}; answered: {:?}",
        tried.as_ref().map(|r| r.failures.clone())
    );
    assert_eq!(before, after, "a router's call started threads in the host");
}

#[tokio::test]
async fn zz_debug_fuel() {
    let n: usize = std::env::var("SLICER_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let (set, _api) = load_ok(&yaml(&format!("{{mode: interest, n: {n}}}"))).await;
    for _ in 0..2 {
        let started = Instant::now();
        let routed = set.get_interested_users_blocking("@q:x");
        eprintln!(
            "full call: {:?} stats {:?} failures {:?}",
            started.elapsed(),
            routed.stats,
            routed.failures
        );
    }
}

#[tokio::test]
async fn zz_debug_which_cut() {
    let n: usize = std::env::var("SLICER_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let (set, _api) = load_ok(&yaml(&format!("{{mode: interest, n: {n}}}"))).await;
    for slice in [
        Slice {
            fuel: 200_000,
            time: Duration::from_secs(10),
        },
        Slice {
            fuel: 100_000_000,
            time: Duration::from_millis(1),
        },
        Slice {
            fuel: 100_000_000,
            time: Duration::from_secs(10),
        },
    ] {
        let started = Instant::now();
        let tried = set.get_interested_users_in_slice("@q:x", &slice);
        eprintln!(
            "{slice:?}: {:?} {:?}",
            started.elapsed(),
            tried.as_ref().map(|r| r.failures.len())
        );
        let _ = set.warm_up_blocking();
    }
}
