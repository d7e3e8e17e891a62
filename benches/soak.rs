//! Soak: a router set with one hostile router, driven from many concurrent
//! tasks for a fixed number of batches. Reports batches per second, p50/p99
//! latency per batch, failures by kind and peak memory; fails (exit 1) if an
//! answer is lost, duplicated or wrong, or if memory grows after warm-up.
//!
//! `cargo bench -p presence-router-benches --bench soak [-- BATCHES TASKS]`
//! (defaults: 20000 batches, 16 tasks).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_router_runtime::{FailureKind, Presence, UserPresenceState};
use presence_router_tests::{load_forgetful, proc_status_bytes};

/// States per batch: a realistic burst of presence updates.
const BATCH_LEN: usize = 50;
/// Memory may move this much between the end of warm-up and the end.
const MAX_GROWTH_BYTES: u64 = 16 << 20;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

/// Batch `n` of task `t` has states from `@t{t}b{n}s{i}:x`,
/// so an answer can only be the answer to its own batch.
fn batch_for(task: usize, n: usize) -> Vec<UserPresenceState> {
    (0..BATCH_LEN)
        .map(|i| {
            UserPresenceState::new(
                format!("@t{task}b{n}s{i}:x"),
                if i % 3 == 0 {
                    Presence::Unavailable
                } else {
                    Presence::Online
                },
            )
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let batches = args.first().copied().unwrap_or(20_000);
    let tasks = args.get(1).copied().unwrap_or(16).max(1);
    let routers = Arc::new(
        load_forgetful(
            r#"
routers:
  - {name: example, component: $EXAMPLE_ROUTER, config: {always_send_to_users: ["@w:x"], blacklisted_users: ["@t0b0s0:x"]}}
  - {name: peer, component: $SYNAPSE_TEST_ROUTER, config: {users_who_should_receive_all_presence: ["@p:x"]}}
  - name: hostile
    component: $HOSTILE_SPIN
    limits: {fuel: 200000, fuel_per_state: 0}
    failure_policy: {suspend_after: 0}
"#,
        )
        .await,
    );

    // Warm-up: every instance pool filled, allocators settled.
    let warm_up = (batches / 10).max(tasks);
    run(
        &routers,
        warm_up,
        tasks,
        TaskLog::for_batches(warm_up, tasks),
        1 << 30,
    )
    .await;
    // The measured run's own records are allocated and touched before the
    // baseline, so that they don't count as growth.
    let logs = TaskLog::for_batches(batches, tasks);
    let resident_after_warm_up = proc_status_bytes("VmRSS:") / 1024;

    let started = Instant::now();
    let logs = run(&routers, batches, tasks, logs, 0).await;
    let elapsed = started.elapsed();
    let resident_at_end = proc_status_bytes("VmRSS:") / 1024;

    let mut latencies: Vec<Duration> = Vec::with_capacity(batches);
    let mut failures: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut received, mut wrong, mut duplicated, mut lost) = (0, 0, 0, 0);
    for log in &logs {
        for sample in &log.samples {
            match sample.answers {
                0 => lost += 1,
                1 => {}
                _ => duplicated += 1,
            }
            received += usize::from(sample.answers);
            wrong += usize::from(!sample.correct && sample.answers > 0);
            latencies.push(Duration::from_micros(u64::from(sample.latency_us)));
        }
        for (kind, count) in FailureKind::ALL.iter().zip(log.failures) {
            if count > 0 {
                *failures.entry(kind.as_str()).or_default() += count;
            }
        }
    }
    latencies.sort();
    let growth_kib = resident_at_end.saturating_sub(resident_after_warm_up);

    println!(
        "soak: {batches} batches of {BATCH_LEN} states, {tasks} tasks, 3 routers (1 hostile), 2 worker threads"
    );
    println!(
        "  throughput   {:.0} batches/s ({:.2?} in all)",
        batches as f64 / elapsed.as_secs_f64(),
        elapsed
    );
    println!(
        "  latency      p50 {:.2?}, p99 {:.2?}, max {:.2?} per batch",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    println!("  failures     {failures:?}");
    println!(
        "  answers      {received} received, {lost} lost, {duplicated} duplicated, {wrong} wrong"
    );
    println!(
        "  memory       peak {} MiB, {} MiB after warm-up, {} MiB at the end ({growth_kib} KiB growth)",
        proc_status_bytes("VmHWM:") / 1024 / 1024,
        resident_after_warm_up / 1024,
        resident_at_end / 1024
    );

    let leaked = growth_kib * 1024 > MAX_GROWTH_BYTES;
    if lost > 0 || duplicated > 0 || wrong > 0 || leaked {
        println!(
            "FAILED: every batch must get exactly one correct answer, and memory must stay flat"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// What one batch got.
#[derive(Clone, Copy, Default)]
struct Sample {
    latency_us: u32,
    /// How many answers came back: exactly 1 is right.
    answers: u8,
    correct: bool,
}

/// One task's record: a sample per batch it sends, and failures by kind.
struct TaskLog {
    samples: Vec<Sample>,
    failures: [u64; FailureKind::ALL.len()],
}

impl TaskLog {
    /// Task `t` sends batches `t`, `t + tasks`, ...: one zeroed sample each.
    fn for_batches(batches: usize, tasks: usize) -> Vec<TaskLog> {
        (0..tasks)
            .map(|task| TaskLog {
                samples: vec![Sample::default(); (batches + tasks - 1 - task) / tasks],
                failures: [0; FailureKind::ALL.len()],
            })
            .collect()
    }
}

/// Runs each task's batches; batch `n` of task `t` is made with `n + offset`.
async fn run(
    routers: &Arc<presence_router_runtime::RouterSet>,
    batches: usize,
    tasks: usize,
    logs: Vec<TaskLog>,
    offset: usize,
) -> Vec<TaskLog> {
    let handles: Vec<_> = logs
        .into_iter()
        .enumerate()
        .map(|(task, mut log)| {
            let routers = routers.clone();
            tokio::spawn(async move {
                for n in 0..log.samples.len() {
                    let states = batch_for(task, n + offset);
                    let started = Instant::now();
                    let routed = routers.get_users_for_states(&states).await;
                    let latency = started.elapsed();
                    // The example router routes every state but a blacklisted
                    // one to @w:x; the peer router every state to @p:x.
                    let expected_w = states.iter().filter(|s| s.user_id != "@t0b0s0:x").count();
                    let correct = routed.answer.get("@w:x").map(|s| s.len()) == Some(expected_w)
                        && routed.answer.get("@p:x").map(|s| s.len()) == Some(states.len())
                        && routed.failures.iter().all(|f| f.router == "hostile");
                    let sample = &mut log.samples[n];
                    sample.answers = sample.answers.saturating_add(1);
                    sample.correct = correct;
                    sample.latency_us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
                    for failure in &routed.failures {
                        if let Some(i) = FailureKind::ALL.iter().position(|k| *k == failure.kind) {
                            log.failures[i] += 1;
                        }
                    }
                }
                log
            })
        })
        .collect();
    let mut logs = Vec::with_capacity(tasks);
    for handle in handles {
        match handle.await {
            Ok(log) => logs.push(log),
            // A task that died lost its batches: they show as unanswered.
            Err(e) => eprintln!("a soak task failed: {e}"),
        }
    }
    debug_assert!(logs.iter().map(|l| l.samples.len()).sum::<usize>() <= batches);
    logs
}
