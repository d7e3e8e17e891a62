//! The standalone call costs of BENCHMARKS.md counted in instructions, for
//! comparisons that hold on a busy machine (wall-clock benchmarks don't):
//!
//! ```text
//! cargo bench -p presence-router-tests --bench instructions --no-run
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
    CacheSetting, LoadOptions, LoggingModuleApi, Presence, RouterSet, RouterSetConfig,
    UserPresenceState,
};
use presence_router_tests::{guests, with_guest_paths};

const CALLS: usize = 1000;

fn batch(n: usize) -> Vec<UserPresenceState> {
    (0..n)
        .map(|i| {
            let user = match i % 10 {
                0 => "@mallory:example.com".to_owned(),
                _ => format!("@user{i}:example.com"),
            };
            let mut state = UserPresenceState::new(user, Presence::Online);
            state.last_active_ts = 1_700_000_000_000 + i as u64;
            state.currently_active = i % 2 == 0;
            state
        })
        .collect()
}

#[inline(never)]
fn measured(op: &dyn Fn()) {
    for _ in 0..CALLS {
        op();
    }
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "batch1".into());
    let yaml = with_guest_paths(
        r#"routers:
  - {name: r0, component: $EXAMPLE_ROUTER, config: {always_send_to_users: ["@alice:example.com", "@bob:example.com"], blacklisted_users: ["@mallory:example.com", "@eve:example.org"]}}
"#,
    );
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
    let one = batch(1);
    let thousand = batch(1000);
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
