//! What the authoring tools cost, for docs/writing-a-router.md:
//!
//! - `profile`: CPU time per call with the profiler on (a sample at every
//!   check, the CLI's default, and every 4 checks) against off, on the same
//!   instance kind and batches, in one run; and, for the routers whose fuel
//!   repeats, that the fuel of every call is the same either way.
//! - `test --against`: generated requests compared per second, for the Rust
//!   example router against each language's (and the documentation's
//!   Python router, run by `python3`).
//!
//! `cargo bench -p presence-router-benches --bench authoring_tools [-- CALLS REQUESTS]`
//! (defaults: 2000 calls, 2000 requests per pair).

use std::time::{Duration, Instant};

use presence_router_runtime::generate::{RequestGenerator, SeededRequests};
use presence_router_runtime::{FuelProfiler, Limits, RouterSet};
use presence_router_testkit::differential::{self, Contender, Generation, Pair};
use presence_router_tests::slicer::thread_cpu;
use presence_router_tests::{
    CONFORMANCE_CONFIG, Language, conformance_contender, docs_python_router, example_router, guests,
};

async fn load(component: &str, profiler: Option<FuelProfiler>) -> RouterSet {
    presence_router_tests::load_conformance(component, profiler, Limits::DEFAULT).await
}

/// CPU time per call and the fuel of each call, for `calls` generated
/// batches of 10 states.
async fn per_call(routers: &RouterSet, calls: usize) -> (Duration, Vec<u64>) {
    let generator =
        RequestGenerator::new(RequestGenerator::users_in_config(CONFORMANCE_CONFIG), 10);
    let mut batches = SeededRequests::new(generator, 1);
    let batches: Vec<_> = (0..calls).map(|_| batches.next_batch_of(10)).collect();
    // Warm: the first call makes the instance.
    routers.get_users_for_states(&batches[0]).await;
    let mut fuel = Vec::with_capacity(calls);
    let started = thread_cpu();
    for batch in &batches {
        let routed = routers.get_users_for_states(batch).await;
        fuel.extend(routed.stats.iter().map(|s| s.fuel_used));
    }
    ((thread_cpu() - started) / calls as u32, fuel)
}

/// `fuel_repeats`: the router uses the same fuel for the same call every
/// time (Go's and JavaScript's runtimes read the clock: theirs varies).
async fn profile_overhead(name: &str, component: &str, calls: usize, fuel_repeats: bool) {
    let (off, fuel_off) = per_call(&load(component, None).await, calls).await;
    let (every4, fuel_4) =
        per_call(&load(component, Some(FuelProfiler::new(4))).await, calls).await;
    let (every1, fuel_1) =
        per_call(&load(component, Some(FuelProfiler::new(1))).await, calls).await;
    if fuel_repeats {
        assert_eq!(
            fuel_off, fuel_4,
            "{name}: profiling changed the fuel of a call"
        );
        assert_eq!(
            fuel_off, fuel_1,
            "{name}: profiling changed the fuel of a call"
        );
    }
    println!(
        "{name:<8} off {:>8.1} µs · every 4 checks {:>8.1} µs ({:>5.1}×) · every check {:>8.1} µs ({:>5.1}×){}",
        off.as_secs_f64() * 1e6,
        every4.as_secs_f64() * 1e6,
        every4.as_secs_f64() / off.as_secs_f64(),
        every1.as_secs_f64() * 1e6,
        every1.as_secs_f64() / off.as_secs_f64(),
        if fuel_repeats {
            " · fuel of every call the same"
        } else {
            ""
        },
    );
}

async fn compared_per_second(name: &str, other: Contender, requests: usize) {
    let rust = conformance_contender(guests::EXAMPLE_ROUTER);
    let options = presence_router_tests::test_load_options();
    let generation = Generation {
        seed: 7,
        max_states: 16,
    };
    let mut generated = generation.requests(&rust, &other);
    let mut pair = Pair {
        a: rust.start(&options).await.expect("loads"),
        b: other.start(&options).await.expect("loads"),
    };
    let started = Instant::now();
    let run = differential::run(&mut pair, &[], &mut generated, requests)
        .await
        .expect("both answer");
    assert!(run.difference.is_none(), "{name}: {:?}", run.difference);
    println!(
        "Rust against {name:<22} {:>8.0} generated requests per second",
        requests as f64 / started.elapsed().as_secs_f64()
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let calls = args.first().copied().unwrap_or(2000);
    let requests = args.get(1).copied().unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        println!(
            "profile: CPU time per call of 10 states, profiler off and on ({calls} calls each)"
        );
        profile_overhead("Rust", guests::EXAMPLE_ROUTER, calls, true).await;
        profile_overhead("C", example_router!(Language::C), calls, true).await;
        profile_overhead("Go", example_router!(Language::Go), calls, false).await;
        profile_overhead("JS", example_router!(Language::Js), calls / 10, false).await;
        println!("\ntest --against: {requests} generated requests (at most 16 states) per pair");
        compared_per_second(
            "Rust",
            conformance_contender(guests::EXAMPLE_ROUTER),
            requests,
        )
        .await;
        for (name, language) in [
            ("C", Language::C),
            ("C++", Language::Cpp),
            ("Zig", Language::Zig),
            ("Go", Language::Go),
            ("JavaScript", Language::Js),
            ("Python (component)", Language::Python),
        ] {
            compared_per_second(
                name,
                conformance_contender(example_router!(language)),
                requests,
            )
            .await;
        }
        compared_per_second("the docs' Python router", docs_python_router(), requests).await;
    });
}
