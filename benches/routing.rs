//! The figures of BENCHMARKS.md, in one process and one run:
//!
//! - `users_for_states/wasm/N`: the example router through a `RouterSet`
//!   (call, checks, merging), batches of N states;
//! - `users_for_states/native/N`: the same routing logic as plain Rust;
//! - `interested_users/wasm`;
//! - `fresh_instance`: instantiation and `parse-config`, what a call after a
//!   trap pays;
//! - `load/compile` and `load/cache`: loading a one-router set;
//! - `routers/K`: K example routers in one set, batches of 100;
//! - `concurrency/T`: 64 batches of 100 from T tasks.
//!
//! `cargo bench -p presence-router-benches --bench routing`; then
//! `python3 benches/synapse/python_router.py` adds CPython's figures and the ratios.

use std::collections::HashSet;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use presence_router_runtime::{
    CacheSetting, LoadOptions, LoggingModuleApi, RouterSet, RouterSetConfig, UserPresenceState,
};
// The example router's configuration in every benchmark, and batches of
// `n` states, one in ten from a blacklisted user.
use presence_router_tests::{
    BENCH_EXAMPLE_CONFIG as EXAMPLE_CONFIG, bench_batch as batch, guests, with_guest_paths,
};

const BATCH_SIZES: [usize; 5] = [1, 10, 100, 1_000, 10_000];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

async fn load(routers: usize, cache: CacheSetting) -> RouterSet {
    let entries: String = (0..routers)
        .map(|i| {
            format!("  - {{name: r{i}, component: $EXAMPLE_ROUTER, config: {EXAMPLE_CONFIG}}}\n")
        })
        .collect();
    let yaml = with_guest_paths(&format!("routers:\n{entries}"));
    let config = RouterSetConfig::from_yaml(&yaml, Path::new("bench.yaml"), Path::new("."))
        .expect("the benchmark configuration parses");
    RouterSet::load_with(
        &config,
        Arc::new(LoggingModuleApi),
        &LoadOptions {
            cache,
            ..LoadOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("the benchmark routers load: {e}"))
}

fn cache_dir() -> CacheSetting {
    CacheSetting::Dir(guests::COMPONENT_CACHE_DIR.into())
}

/// The example router's logic as plain Rust: what the sandbox costs is
/// measured against this.
struct NativeExampleRouter {
    always_send_to_users: Vec<String>,
    blacklisted_users: HashSet<String>,
}

impl NativeExampleRouter {
    fn get_users_for_states(&self, states: &[UserPresenceState]) -> Vec<(String, Vec<u32>)> {
        if self.always_send_to_users.is_empty() {
            return Vec::new();
        }
        let routed: Vec<u32> = states
            .iter()
            .zip(0u32..)
            .filter(|(state, _)| !self.blacklisted_users.contains(&state.user_id))
            .map(|(_, index)| index)
            .collect();
        self.always_send_to_users
            .iter()
            .map(|user| (user.clone(), routed.clone()))
            .collect()
    }
}

fn users_for_states(c: &mut Criterion) {
    let rt = runtime();
    let routers = rt.block_on(load(1, cache_dir()));
    let native = NativeExampleRouter {
        always_send_to_users: vec!["@alice:example.com".into(), "@bob:example.com".into()],
        blacklisted_users: ["@mallory:example.com", "@eve:example.org"]
            .into_iter()
            .map(String::from)
            .collect(),
    };
    let mut group = c.benchmark_group("users_for_states");
    for n in BATCH_SIZES {
        let states = batch(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("wasm", n), &states, |b, states| {
            b.to_async(&rt).iter(|| async {
                let routed = routers.get_users_for_states(black_box(states)).await;
                debug_assert!(routed.failures.is_empty());
                routed
            })
        });
        group.bench_with_input(BenchmarkId::new("native", n), &states, |b, states| {
            b.iter(|| native.get_users_for_states(black_box(states)))
        });
    }
    group.finish();
}

fn interested_users(c: &mut Criterion) {
    let rt = runtime();
    let routers = rt.block_on(load(1, cache_dir()));
    c.bench_function("interested_users/wasm", |b| {
        b.to_async(&rt)
            .iter(|| routers.get_interested_users(black_box("@user7:example.com")))
    });
}

fn fresh_instance(c: &mut Criterion) {
    let rt = runtime();
    let routers = rt.block_on(load(1, cache_dir()));
    c.bench_function("fresh_instance", |b| {
        b.to_async(&rt).iter(|| async {
            assert!(routers.make_fresh_instance(0).await);
        })
    });
}

fn loading(c: &mut Criterion) {
    let rt = runtime();
    // Fill the cache once, so that `load/cache` only ever reads it.
    rt.block_on(load(1, cache_dir()));
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("compile", |b| {
        b.to_async(&rt).iter(|| load(1, CacheSetting::Disabled))
    });
    group.bench_function("cache", |b| b.to_async(&rt).iter(|| load(1, cache_dir())));
    group.finish();
}

fn several_routers(c: &mut Criterion) {
    let rt = runtime();
    let states = batch(100);
    let mut group = c.benchmark_group("routers");
    group.throughput(Throughput::Elements(100));
    for count in [1, 2, 10] {
        let routers = rt.block_on(load(count, cache_dir()));
        group.bench_function(BenchmarkId::from_parameter(count), |b| {
            b.to_async(&rt)
                .iter(|| routers.get_users_for_states(black_box(&states)))
        });
    }
    group.finish();
}

fn concurrency(c: &mut Criterion) {
    const BATCHES: usize = 64;
    let rt = runtime();
    let routers = Arc::new(rt.block_on(load(1, cache_dir())));
    let states = Arc::new(batch(100));
    let mut group = c.benchmark_group("concurrency");
    group.throughput(Throughput::Elements((BATCHES * 100) as u64));
    for tasks in [1, 2] {
        group.bench_function(BenchmarkId::from_parameter(tasks), |b| {
            b.to_async(&rt).iter(|| {
                let routers = routers.clone();
                let states = states.clone();
                async move {
                    let handles: Vec<_> = (0..tasks)
                        .map(|_| {
                            let routers = routers.clone();
                            let states = states.clone();
                            tokio::spawn(async move {
                                for _ in 0..BATCHES / tasks {
                                    black_box(routers.get_users_for_states(&states).await);
                                }
                            })
                        })
                        .collect();
                    for handle in handles {
                        handle.await.expect("a benchmark task");
                    }
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = users_for_states, interested_users, fresh_instance, loading, several_routers, concurrency
}
criterion_main!(benches);
