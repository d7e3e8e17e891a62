//! What each language's toolchain costs, for the example router built in
//! Rust, JavaScript (componentize-js), Python (componentize-py), C and C++
//! (clang for wasm32-wasi, crates/guest-build), Zig and Go (their own
//! compilers, the C and Go bindings of crates/guest-build): component
//! size, compile and cached load, a fresh instance, per-call time and fuel
//! per state. Medians of repeated runs; one process, one run.
//!
//! `cargo bench -p presence-router-benches --bench languages`

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_router_runtime::{
    CacheSetting, CallStats, Limits, LoadOptions, LoggingModuleApi, RouterSet, UserPresenceState,
};
use presence_router_testkit::{generated_batch, single_router};
use presence_router_tests::guests;
use presence_router_tests::{Language, example_router};

const CONFIG: &str = r#"{"always_send_to_users": ["@alice:example.com", "@bob:example.com"], "blacklisted_users": ["@mallory:example.com"]}"#;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn load(component: &str, cache: CacheSetting) -> (RouterSet, Duration) {
    let config = single_router(Path::new(component), CONFIG, Limits::DEFAULT);
    let started = Instant::now();
    let routers = RouterSet::load_with(
        &config,
        Arc::new(LoggingModuleApi),
        &LoadOptions {
            cache,
            ..LoadOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{component} loads: {e}"));
    (routers, started.elapsed())
}

/// Median time of one call on `batch` over `runs` calls, and what the last
/// one used.
async fn call(
    routers: &RouterSet,
    batch: &[UserPresenceState],
    runs: usize,
) -> (Duration, CallStats) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let routed = routers.get_users_for_states(batch).await;
        times.push(started.elapsed());
        assert!(routed.failures.is_empty(), "{:?}", routed.failures);
        last = routed.stats.into_iter().next();
    }
    (median(times), last.expect("one router answered"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cache_dir = tempfile::tempdir().expect("a temporary cache");
    println!(
        "| language | component | compile | load from cache | fresh instance | batch 1 | batch 100, per state | batch 1,000, per state | fuel per state | linear memory |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (language, component, runs) in [
        ("Rust", guests::EXAMPLE_ROUTER, 2_000),
        ("JavaScript", example_router!(Language::Js), 40),
        ("Python", example_router!(Language::Python), 40),
        ("C", example_router!(Language::C), 2_000),
        ("C++", example_router!(Language::Cpp), 2_000),
        ("Zig", example_router!(Language::Zig), 2_000),
        ("Go", example_router!(Language::Go), 2_000),
    ] {
        let size = std::fs::metadata(component).expect("built").len();
        let cache = CacheSetting::Dir(cache_dir.path().to_owned());
        let (_, compile) = load(component, cache.clone()).await;
        let loads: Vec<Duration> = {
            let mut loads = Vec::new();
            for _ in 0..5 {
                loads.push(load(component, cache.clone()).await.1);
            }
            loads
        };
        let (routers, _) = load(component, cache.clone()).await;
        let mut fresh = Vec::new();
        for _ in 0..runs.min(200) {
            let started = Instant::now();
            assert!(routers.make_fresh_instance(0).await);
            fresh.push(started.elapsed());
        }
        let (one, _) = call(&routers, &generated_batch(1), runs).await;
        let (hundred, _) = call(&routers, &generated_batch(100), runs / 4).await;
        let (thousand, at_1000) = call(&routers, &generated_batch(1_000), runs / 20).await;
        let (_, at_0) = call(&routers, &[], 5).await;
        println!(
            "| {language} | {} | {:.1?} | {:.1?} | {:.1?} | {:.1?} | {:.0?} | {:.0?} | {} | {:.1} MiB |",
            // Kilobytes for the small ones: "0.1 MB" would hide a 2x.
            if size < 1_000_000 {
                format!("{} KB", size / 1_000)
            } else {
                format!("{:.1} MB", size as f64 / 1e6)
            },
            compile,
            median(loads),
            median(fresh),
            one,
            hundred / 100,
            thousand / 1_000,
            (at_1000.fuel_used - at_0.fuel_used) / 1_000,
            at_1000.memory_bytes as f64 / f64::from(1 << 20),
        );
    }
}
