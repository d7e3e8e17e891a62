//! The standalone call costs of BENCHMARKS.md counted in instructions, for
//! comparisons that hold on a busy machine (wall-clock benchmarks don't):
//!
//! ```text
//! cargo bench -p presence-router-benches --bench instructions --no-run
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured*' \
//!     target/release/deps/instructions-* batch1
//! ```
//!
//! Each operation (`batch1`, `batch1000`, `interested`, `fresh`) runs once
//! unmeasured, then [`CALLS`] times inside `measured`, on the calling
//! thread (the blocking API: no executor in the count). Divide callgrind's
//! total by [`CALLS`].

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use presence_router_runtime::{
    CacheSetting, LoadOptions, LoggingModuleApi, RouterSet, RouterSetConfig,
};
use presence_router_tests::{BENCH_EXAMPLE_CONFIG, bench_batch, guests, with_guest_paths};

const CALLS: usize = 1000;

#[inline(never)]
fn measured(op: &dyn Fn()) {
    for _ in 0..CALLS {
        op();
    }
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "batch1".into());
    let yaml = with_guest_paths(&format!(
        "routers:\n  - {{name: r0, component: $EXAMPLE_ROUTER, config: {BENCH_EXAMPLE_CONFIG}}}\n"
    ));
    let config = RouterSetConfig::from_yaml(&yaml, Path::new("bench.yaml"), Path::new("."))
        .expect("the benchmark configuration parses");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let routers = rt
        .block_on(RouterSet::load_with(
            &config,
            Arc::new(LoggingModuleApi),
            &LoadOptions {
                cache: CacheSetting::Dir(guests::COMPONENT_CACHE_DIR.into()),
                ..LoadOptions::default()
            },
        ))
        .expect("the benchmark router loads");
    let one = bench_batch(1);
    let thousand = bench_batch(1000);
    let op: Box<dyn Fn()> = match which.as_str() {
        "batch1" => Box::new(|| {
            black_box(routers.get_users_for_states_blocking(black_box(&one)));
        }),
        "batch1000" => Box::new(|| {
            black_box(routers.get_users_for_states_blocking(black_box(&thousand)));
        }),
        "interested" => Box::new(|| {
            black_box(routers.get_interested_users_blocking(black_box("@user7:example.com")));
        }),
        "fresh" => Box::new(|| {
            assert!(routers.make_fresh_instance_blocking(0));
        }),
        other => panic!("unknown operation {other}: batch1, batch1000, interested, fresh"),
    };
    op();
    measured(&op);
}
