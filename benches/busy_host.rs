//! A healthy router beside a saturated host: the time budget must charge a
//! call its own CPU time, never the time it waited for a core, so a router
//! whose calls use a tenth of their budget is never reported as `timeout`
//! (and never suspended) however busy the machine is.
//!
//! Starts `BUSY_PER_CORE` threads per core that only spin, then routes
//! `CALLS` batches of 1,000 states through the example router with a budget
//! ten times what one such call costs on an idle core, from two tasks. It
//! prints the failures by kind, the suspensions, and how many calls took
//! longer than their budget by the wall clock (each of which a wall-clock
//! deadline would have failed). It exits 1 if any call failed.
//!
//! `cargo bench -p presence-router-benches --bench busy_host [-- CALLS BUSY_PER_CORE]`
//! (defaults: 100000 calls, 4 busy threads per core).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use presence_router_runtime::{Presence, UserPresenceState};
use presence_router_tests::load_forgetful;

const BATCH_LEN: usize = 1000;
const TASKS: usize = 2;

fn batch() -> Vec<UserPresenceState> {
    (0..BATCH_LEN)
        .map(|i| UserPresenceState::new(format!("@u{i}:x"), Presence::Online))
        .collect()
}

fn main() -> ExitCode {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let calls = args.first().copied().unwrap_or(100_000).max(TASKS);
    let busy_per_core = args.get(1).copied().unwrap_or(4);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(TASKS)
        .enable_all()
        .build()
        .expect("a tokio runtime");

    // What one call costs on this machine while it is still idle.
    let probe = runtime.block_on(load_forgetful(
        "routers: [{name: example, component: $EXAMPLE_ROUTER, config: {always_send_to_users: [\"@w:x\"]}}]",
    ));
    let states = batch();
    let mut idle_costs: Vec<Duration> = (0..200)
        .map(|_| {
            let started = Instant::now();
            let routed = runtime.block_on(probe.get_users_for_states(&states));
            assert!(routed.failures.is_empty(), "{:?}", routed.failures);
            started.elapsed()
        })
        .collect();
    idle_costs.sort();
    let idle_cost = idle_costs[idle_costs.len() / 2];
    // A tenth of the budget per call; the budget is whole milliseconds.
    let budget_ms = (idle_cost.as_micros() * 10).div_ceil(1000).max(1) as u64;
    let budget = Duration::from_millis(budget_ms);
    let routers = Arc::new(runtime.block_on(load_forgetful(&format!(
        r#"
routers:
  - name: example
    component: $EXAMPLE_ROUTER
    config: {{always_send_to_users: ["@w:x"]}}
    limits: {{timeout: {budget_ms}ms}}
"#
    ))));

    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..cores * busy_per_core)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        })
        .collect();

    let started = Instant::now();
    let per_task = calls / TASKS;
    let outcomes: Vec<_> = runtime.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let routers = routers.clone();
                tokio::spawn(async move {
                    let states = batch();
                    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
                    let mut suspensions = 0usize;
                    let mut over_budget_by_wall = 0usize;
                    let mut slowest = Duration::ZERO;
                    for _ in 0..per_task {
                        let call_started = Instant::now();
                        let routed = routers.get_users_for_states(&states).await;
                        let took = call_started.elapsed();
                        slowest = slowest.max(took);
                        if took > budget {
                            over_budget_by_wall += 1;
                        }
                        for failure in &routed.failures {
                            *failures.entry(failure.kind.to_string()).or_default() += 1;
                            if failure.suspension.is_some() {
                                suspensions += 1;
                            }
                        }
                        assert!(
                            routed.failures.len() == 1 || routed.answer["@w:x"].len() == BATCH_LEN,
                            "a successful call answers the whole batch"
                        );
                    }
                    (failures, suspensions, over_budget_by_wall, slowest)
                })
            })
            .collect();
        futures_join(tasks).await
    });
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for thread in busy {
        let _ = thread.join();
    }

    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let (mut suspensions, mut over_budget, mut slowest) = (0, 0, Duration::ZERO);
    for (task_failures, task_suspensions, task_over, task_slowest) in outcomes {
        for (kind, count) in task_failures {
            *failures.entry(kind).or_default() += count;
        }
        suspensions += task_suspensions;
        over_budget += task_over;
        slowest = slowest.max(task_slowest);
    }
    let total_failures: usize = failures.values().sum();
    println!(
        "busy host: {} calls of {BATCH_LEN} states from {TASKS} tasks beside {} spinning threads \
         ({busy_per_core} per core, {cores} cores), in {:.1} s",
        per_task * TASKS,
        cores * busy_per_core,
        elapsed.as_secs_f64()
    );
    println!(
        "  one call on an idle core: {:.0} µs; budget (limits.timeout): {budget_ms} ms, {:.1}× that",
        idle_cost.as_secs_f64() * 1e6,
        budget.as_secs_f64() / idle_cost.as_secs_f64()
    );
    println!("  failures: {total_failures} {failures:?}; suspensions: {suspensions}");
    println!(
        "  calls longer than their budget by the wall clock (a wall-clock deadline would have \
         failed each): {over_budget}; slowest call {:.1} ms",
        slowest.as_secs_f64() * 1e3
    );
    if total_failures == 0 && suspensions == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("a soak task panicked"));
    }
    out
}
