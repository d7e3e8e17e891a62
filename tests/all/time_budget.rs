//! The time budget (`limits.timeout`): the wall-clock limit of one call,
//! which the call shares with the fresh instance it may need (instantiation
//! and `parse-config`). A guest that computes past it is stopped and
//! skipped as `timeout`. A guest that waits never really waits: a clock wait
//! (`std::thread::sleep`) completes at once and its duration is charged to
//! the budget.
//!
//! No sleeper test depends on the wall clock: waits are charged exactly, and
//! the only time bounds are sanity bounds far above any honest run (a
//! runtime that really slept would take an hour).

use std::time::{Duration, Instant};

use presence_router_runtime::{FailureKind, InterestedUsers, LoadError};
use presence_router_tests::{beside_example, failure_kinds, load, yaml_beside_example};

use crate::support::{
    assert_only_skipped, example_answered, skipped_then_recovers, skipped_twice, two_states,
};

/// Far above any honest run of a test here, far below the hour a sleeper
/// asks for: only a runtime that really waits gets near it.
const SANITY_BOUND: Duration = Duration::from_secs(60);

/// One hour, in milliseconds: the sleep no call may really take.
const AN_HOUR_MS: u64 = 3_600_000;

#[tokio::test]
async fn an_hour_of_sleep_in_get_users_for_states_is_a_prompt_timeout() {
    let started = Instant::now();
    let (routers, api) = beside_example(
        "sleeper",
        "HOSTILE_SLEEPER",
        &format!("{{via: sleep, ms: {AN_HOUR_MS}, in: [get-users-for-states], then: answer}}"),
        "{timeout: 100ms}",
    )
    .await;
    let states = two_states();
    for call in 1..=2 {
        let routed = routers.get_users_for_states(&states).await;
        assert_only_skipped(&routed, call, "sleeper", FailureKind::Timeout, "100ms");
    }
    assert_eq!(api.skipped.lock().unwrap().len(), 2);
    assert!(
        started.elapsed() < SANITY_BOUND,
        "the runtime waited for the guest: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_hour_of_sleep_in_get_interested_users_is_a_prompt_timeout() {
    let started = Instant::now();
    let (routers, _) = beside_example(
        "sleeper",
        "HOSTILE_SLEEPER",
        &format!("{{via: sleep, ms: {AN_HOUR_MS}, in: [get-interested-users], then: answer}}"),
        "{timeout: 100ms}",
    )
    .await;
    for call in 1..=2 {
        let routed = routers.get_interested_users("@w:x").await;
        assert_eq!(
            failure_kinds(&routed),
            vec![("sleeper", FailureKind::Timeout)],
            "call {call}: {:?}",
            routed.failures
        );
        assert!(
            routed.failures[0].message.contains("100ms"),
            "call {call}: {}",
            routed.failures[0].message
        );
        // The example router, called after the sleeper, answers "all users"
        // for @w:x.
        assert_eq!(routed.answer, InterestedUsers::All, "call {call}");
    }
    assert!(
        started.elapsed() < SANITY_BOUND,
        "the runtime waited for the guest: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_hour_of_sleep_in_parse_config_fails_the_load_as_a_timeout() {
    let started = Instant::now();
    let yaml = yaml_beside_example(
        "sleeper",
        "HOSTILE_SLEEPER",
        &format!("{{via: sleep, ms: {AN_HOUR_MS}, in: [parse-config]}}"),
        "{timeout: 100ms}",
    );
    let error = match load(&yaml).await {
        Ok(_) => panic!("a router that sleeps through parse-config loaded"),
        Err(error) => error,
    };
    let text = error.to_string();
    match &error {
        LoadError::Failed { at, kind, .. } => {
            assert_eq!(at.router, "sleeper", "{text}");
            assert_eq!(*kind, FailureKind::Timeout, "{text}");
        }
        other => panic!("expected LoadError::Failed, got {other:?}"),
    }
    assert!(
        text.contains("router `sleeper`") && text.contains("timeout") && text.contains("100ms"),
        "{text}"
    );
    assert!(
        started.elapsed() < SANITY_BOUND,
        "the runtime waited for the guest: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_call_and_the_fresh_instance_it_needs_share_one_budget() {
    // 60 ms of sleep in parse-config and 60 ms in get-users-for-states, then
    // a trap, against a budget of 100 ms. Load: instantiation and
    // parse-config, 60 ms: fits. Call 1 runs on the instance made at load:
    // 60 ms, then the trap. Call 2 needs a fresh instance: 60 + 60 ms is over
    // the one budget of the call, a timeout. So is call 3. Waits are charged
    // exactly, so this is deterministic, however loaded the machine.
    let started = Instant::now();
    let (routers, _) = beside_example(
        "sleeper",
        "HOSTILE_SLEEPER",
        "{via: sleep, ms: 60, in: [parse-config, get-users-for-states], then: trap}",
        "{timeout: 100ms}",
    )
    .await;
    let states = two_states();
    let mut kinds = Vec::new();
    for _ in 1..=3 {
        let routed = routers.get_users_for_states(&states).await;
        assert!(example_answered(&routed), "{:?}", routed.answer);
        kinds.push(
            failure_kinds(&routed)
                .into_iter()
                .map(|(router, kind)| (router.to_owned(), kind))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        kinds,
        [
            FailureKind::Trap,
            FailureKind::Timeout,
            FailureKind::Timeout
        ]
        .map(|kind| vec![("sleeper".to_owned(), kind)])
    );
    assert!(started.elapsed() < SANITY_BOUND, "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_sleep_within_the_budget_is_no_failure() {
    let started = Instant::now();
    let (routers, _) = beside_example(
        "sleeper",
        "HOSTILE_SLEEPER",
        "{via: sleep, ms: 20, in: [get-users-for-states], then: answer}",
        "{timeout: 100ms}",
    )
    .await;
    let states = two_states();
    for call in 1..=50 {
        let routed = routers.get_users_for_states(&states).await;
        assert_eq!(routed.failures, vec![], "call {call}");
        assert!(
            example_answered(&routed),
            "call {call}: {:?}",
            routed.answer
        );
    }
    assert!(started.elapsed() < SANITY_BOUND, "{:?}", started.elapsed());
}

#[tokio::test]
async fn spin_with_plenty_of_fuel_meets_the_time_budget() {
    let started = Instant::now();
    skipped_twice(
        "HOSTILE_SPIN",
        "{}",
        "{fuel: 1000000000000000, timeout: 50ms}",
        FailureKind::Timeout,
        "used up its 50ms time budget",
    )
    .await;
    // Two calls of 50ms each, plus loading; the margin is for a busy machine.
    assert!(
        started.elapsed() < Duration::from_millis(100 + 2000),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn running_past_the_time_budget_skips_the_router_for_that_call_only() {
    let started = Instant::now();
    skipped_then_recovers(
        "{fuel: 100000000000000, timeout: 50ms}",
        "@spin:test",
        FailureKind::Timeout,
        "`get-users-for-states` used up its 50ms time budget",
    )
    .await;
    // Generous: this only guards against the time budget not being enforced
    // at all.
    assert!(started.elapsed() < Duration::from_secs(5));
}
