//! Memory per warm instance: loads each example router with a pool of
//! `INSTANCES` instances, fills the pool with `RouterSet::warm_up`, has every
//! instance route a batch, and prints what one more warm instance costs:
//! its guest linear memory and the host's resident memory (RSS).
//!
//! `cargo bench -p presence-router-benches --bench memory`

use std::sync::Arc;

use presence_router_runtime::{Presence, RouterSet, UserPresenceState};
use presence_router_tests::{Language, example_router, load_forgetful, proc_status_bytes};

/// Enough instances that the per-instance figure is not lost in noise.
const INSTANCES: usize = 16;
const BATCH_LEN: usize = 100;

fn batch() -> Vec<UserPresenceState> {
    (0..BATCH_LEN)
        .map(|i| UserPresenceState::new(format!("@user{i}:example.com"), Presence::Online))
        .collect()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// Each of the `INSTANCES` warm instances routes one batch, at once, so
/// that each has grown its heap as a serving instance does.
async fn use_every_instance(routers: &Arc<RouterSet>) {
    let calls: Vec<_> = (0..INSTANCES)
        .map(|_| {
            let routers = routers.clone();
            tokio::spawn(async move {
                let routed = routers.get_users_for_states(&batch()).await;
                assert!(routed.failures.is_empty(), "{:?}", routed.failures);
            })
        })
        .collect();
    for call in calls {
        call.await.expect("a call task");
    }
}

async fn measure(label: &str, component: &str) {
    let rss_before = proc_status_bytes("VmRSS:");
    let routers = Arc::new(
        load_forgetful(&format!(
            "routers:\n  - name: {label}\n    component: {component}\n    \
             config: {{always_send_to_users: [\"@alice:example.com\"]}}\n    \
             limits: {{max_instances: {INSTANCES}}}\n"
        ))
        .await,
    );
    let rss_one = proc_status_bytes("VmRSS:");
    let one_linear = routers.idle_memory_bytes() as u64;
    let failures = routers.warm_up().await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(routers.warm_instances(), INSTANCES);
    let rss_warm = proc_status_bytes("VmRSS:");
    use_every_instance(&routers).await;
    let rss_used = proc_status_bytes("VmRSS:");
    let linear = routers.idle_memory_bytes() as u64 / INSTANCES as u64;
    let extra = (INSTANCES - 1) as u64;
    println!(
        "{label:>8}: load with one instance {:6.1} MiB RSS (linear memory {:.2} MiB); \
         per further warm instance: linear memory {:.2} MiB, RSS {:.2} MiB after parse-config, \
         {:.2} MiB after routing a batch of {BATCH_LEN}",
        mib(rss_one.saturating_sub(rss_before)),
        mib(one_linear),
        mib(linear),
        mib(rss_warm.saturating_sub(rss_one) / extra),
        mib(rss_used.saturating_sub(rss_one) / extra),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("memory per warm instance ({INSTANCES} instances per router)");
    measure("rust", "$EXAMPLE_ROUTER").await;
    measure("js", example_router!(Language::Js)).await;
    measure("python", example_router!(Language::Python)).await;
    measure("zig", example_router!(Language::Zig)).await;
    measure("go", example_router!(Language::Go)).await;
}
