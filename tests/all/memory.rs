//! Memory: a router's linear memory is capped at `limits.memory`, and what
//! the host holds for an instance at 1024 WASI resources. A call that needs
//! more is skipped as `memory`, and the next runs on a fresh instance. (The
//! host's own memory under such guests is measured in the `process_wide`
//! test binary, `host_memory.rs`.)

use presence_router_runtime::FailureKind;
use presence_router_tests::beside_example;

use crate::support::{assert_only_skipped, skipped_then_recovers, skipped_twice, two_states};

#[tokio::test]
async fn balloon_hits_the_memory_limit() {
    skipped_twice(
        "HOSTILE_BALLOON",
        "{}",
        "{memory: 16MiB, fuel: 1000000000000}",
        FailureKind::Memory,
        "needed more than its 16MiB of memory",
    )
    .await;
}

#[tokio::test]
async fn running_out_of_memory_skips_the_router_for_that_call_only() {
    skipped_then_recovers(
        "{memory: 8MiB}",
        "@balloon:test",
        FailureKind::Memory,
        "`get-users-for-states` needed more than its 8MiB of memory",
    )
    .await;
}

#[tokio::test]
async fn a_hoard_of_wasi_resources_is_refused_at_1024() {
    let (routers, api) = beside_example(
        "hoarder",
        "HOSTILE_HOARDER",
        "{per_call: 10000}",
        "{fuel: 1000000000000, timeout: 30s}",
    )
    .await;
    let states = two_states();
    for call in 1..=3 {
        let routed = routers.get_users_for_states(&states).await;
        assert_only_skipped(
            &routed,
            call,
            "hoarder",
            FailureKind::Memory,
            "WASI resources",
        );
    }
    // Each call ran on a fresh instance: none got to log what it held.
    assert_eq!(api.logs_of("hoarder"), Vec::<String>::new());
}
