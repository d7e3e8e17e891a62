//! Traps: a guest that panics, executes `unreachable` or recurses without
//! end is skipped as `trap`, with what it said (a panic's message is in the
//! failure and in the router's log); only the guest's own stack overflows;
//! the next call gets a fresh instance and works.

use presence_router_runtime::{FailureKind, LogLevel, Presence};
use presence_router_tests::{batch, beside_example, failure_kinds};

use crate::support::{skipped_then_recovers, skipped_twice};

#[tokio::test]
async fn panic_is_a_trap_with_its_message_in_the_log() {
    let (routers, api) = beside_example("hostile", "HOSTILE_PANIC", "{}", "{}").await;
    let states = batch(&[("@a:x", Presence::Online), ("@b:y", Presence::Online)]);
    let routed = routers.get_users_for_states(&states).await;
    assert_eq!(failure_kinds(&routed), vec![("hostile", FailureKind::Trap)]);
    assert!(
        routed.failures[0]
            .message
            .contains("hostile panic on a batch of 2 states"),
        "{}",
        routed.failures[0].message
    );
    let logs = api.logs.lock().unwrap().clone();
    assert!(
        logs.iter().any(|(router, level, line)| router == "hostile"
            && *level == LogLevel::Warn
            && line == "hostile panic on a batch of 2 states"),
        "{logs:?}"
    );
    let routed = routers.get_interested_users("@a:x").await;
    assert_eq!(failure_kinds(&routed), vec![("hostile", FailureKind::Trap)]);
    assert!(
        routed.failures[0]
            .message
            .contains("hostile panic for @a:x")
    );
}

#[tokio::test]
async fn panic_is_a_trap_with_the_message() {
    skipped_then_recovers(
        "{}",
        "@panic:test",
        FailureKind::Trap,
        "scripted panic for @panic:test",
    )
    .await;
}

#[tokio::test]
async fn unreachable_is_a_trap() {
    skipped_twice(
        "HOSTILE_UNREACHABLE",
        "{}",
        "{}",
        FailureKind::Trap,
        "wasm `unreachable` instruction executed",
    )
    .await;
}

#[tokio::test]
async fn deep_recursion_overflows_the_guest_stack_only() {
    skipped_twice(
        "HOSTILE_DEEP",
        "{}",
        "{}",
        FailureKind::Trap,
        "call stack exhausted",
    )
    .await;
}

#[tokio::test]
async fn stack_overflow_is_a_trap() {
    skipped_then_recovers(
        "{}",
        "@deep:test",
        FailureKind::Trap,
        "call stack exhausted",
    )
    .await;
}
