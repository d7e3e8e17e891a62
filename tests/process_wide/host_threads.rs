//! The host's threads. An idle runtime costs nothing: the watchdog thread
//! that enforces time budgets ticks only while a call runs, and parks when
//! none does (this finds it by name, which every router set's watchdog
//! has). A router's call starts no thread of the host's.

use std::time::Duration;

use presence_router_runtime::{Presence, Slice};
use presence_router_tests::slicer::{load_slicer, one_state};
use presence_router_tests::{batch, load_ok};

use crate::TURN;

/// Context switches of this process's thread named `name`, from /proc.
fn context_switches(name: &str) -> Option<u64> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let status = std::fs::read_to_string(task.path().join("status")).ok()?;
            return status
                .lines()
                .filter(|line| line.contains("ctxt_switches:"))
                .filter_map(|line| line.split_whitespace().last()?.parse::<u64>().ok())
                .reduce(|a, b| a + b);
        }
    }
    None
}

#[tokio::test]
async fn the_watchdog_sleeps_while_no_call_runs() {
    let _turn = TURN.lock().await;
    let (routers, _) = load_ok(
        "routers: [{component: $EXAMPLE_ROUTER, config: {always_send_to_users: [\"@w:x\"]}}]",
    )
    .await;
    for _ in 0..100 {
        let routed = routers
            .get_users_for_states(&batch(&[("@a:x", Presence::Online)]))
            .await;
        assert!(routed.failures.is_empty());
    }
    // Once parked, the thread is not woken at all; while ticking, it is
    // woken every millisecond. Wait (boundedly) for it to park, then
    // check it stays parked. Nothing here depends on how fast the machine
    // is: a ticking watchdog never shows the same count twice 100 ms apart.
    // A thread names itself once it first runs: on a busy machine the
    // watchdog may not have yet. Wait for it (boundedly).
    let mut found = None;
    for _ in 0..600 {
        found = context_switches("pr-watchdog");
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(mut before) = found else {
        panic!("no watchdog thread found in /proc/self/task after a minute");
    };
    let mut parked = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = context_switches("pr-watchdog").expect("the watchdog thread");
        if now == before {
            parked = true;
            break;
        }
        before = now;
    }
    assert!(parked, "the watchdog kept waking up with no call running");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        context_switches("pr-watchdog"),
        Some(before),
        "the parked watchdog woke up with no call running"
    );
    // And a call after the idle spell still gets its budget enforced.
    let routed = routers
        .get_users_for_states(&batch(&[("@a:x", Presence::Online)]))
        .await;
    assert!(routed.failures.is_empty());
}

/// `instance-network` then `resolve-addresses`: refused (name lookup is
/// off) before wasmtime-wasi starts its own multi-threaded Tokio runtime,
/// a thread per core for the life of the process.
#[test]
fn a_refused_name_lookup_starts_no_threads() {
    let _turn = TURN.blocking_lock();
    let loading = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (set, _api) = loading.block_on(load_slicer("{mode: lookup}"));
    // Dropping a runtime joins its blocking threads.
    drop(loading);
    let threads = || std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
    let before = threads();
    let tried = set.get_users_for_states_in_slice(
        &one_state(),
        &Slice {
            time: Duration::from_secs(3600),
            ..Slice::REACTOR
        },
    );
    let after = threads();
    assert!(tried.is_ok());
    // Another test's runtime may be ending meanwhile: fewer is fine.
    assert!(
        after <= before,
        "a router's call started threads: {before} → {after}"
    );
}
