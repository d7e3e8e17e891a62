//! Every value the configuration accepts is safe to use: at its documented
//! maximum a router loads, answers and is suspended without the runtime
//! overflowing anything; beyond it, the value is refused when the
//! configuration is read, naming the key, not when a call first uses it.
//! (The exact texts are in `golden/`: `timeout-too-long`, `fuel-too-much`,
//! ...)

use std::time::Duration;

use presence_router_runtime::{
    FailureKind, FailurePolicy, Limits, LoadError, RouterSet, Suspension,
};
use presence_router_tests::{RecordingModuleApi, failure_kinds, load, load_ok};

use crate::support::{clean, panicking};

/// Loads `yaml`, which must be refused for `key`. A configuration that
/// loads is called with a batch its router panics on: where a value used to
/// be accepted, that call is where it made the runtime panic.
async fn refused_at(yaml: &str, key: &str) -> String {
    match load(yaml).await {
        Err(LoadError::Config(error)) => {
            assert_eq!(error.key, key, "{error}");
            error.to_string()
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok((routers, _)) => {
            routers.get_users_for_states(&panicking()).await;
            panic!("loaded and called without complaint")
        }
    }
}

#[tokio::test]
async fn a_timeout_beyond_a_minute_is_refused_when_loading() {
    // It used to load, and the end of the first time budget (`parse-config`'s,
    // at load) overflowed the clock: a panic, exit 101.
    let error = refused_at(
        "routers: [{component: $SCRIPTED, limits: {timeout: 400000000000y}}]",
        "routers[0].limits.timeout",
    )
    .await;
    assert!(error.ends_with("is longer than the 1m allowed"), "{error}");
}

#[tokio::test]
async fn a_backoff_beyond_a_day_is_refused_when_loading() {
    // It used to load, and the first suspension overflowed the clock.
    for (policy, key) in [
        (
            "{suspend_after: 1, backoff: 400000000000y, max_backoff: 400000000000y}",
            "routers[0].failure_policy.backoff",
        ),
        (
            "{suspend_after: 1, max_backoff: 400000000000y}",
            "routers[0].failure_policy.max_backoff",
        ),
    ] {
        let error = refused_at(
            &format!("routers: [{{component: $SCRIPTED, failure_policy: {policy}}}]"),
            key,
        )
        .await;
        assert!(
            error.ends_with("is longer than the 1day allowed"),
            "{error}"
        );
    }
}

/// The scripted router (panics on `@panic:test`, routes `@f:x` everything
/// otherwise) at the given limits and failure policy.
async fn scripted(limits: &str, policy: &str) -> (RouterSet, std::sync::Arc<RecordingModuleApi>) {
    load_ok(&format!(
        r#"
routers:
  - name: scripted
    component: $SCRIPTED
    config: {{routes: {{"@f:x": "all"}}}}
    limits: {limits}
    failure_policy: {policy}
"#
    ))
    .await
}

#[tokio::test]
async fn a_router_at_every_maximum_loads_and_answers() {
    let (routers, _) = scripted(
        &format!(
            "{{fuel: {}, fuel_per_state: {}, memory: 4GiB, timeout: 1m, \
             max_answer_entries: {}, max_send_calls: {}, max_log_lines: {}}}",
            Limits::MAX_FUEL,
            Limits::MAX_FUEL_PER_STATE,
            Limits::MAX_ANSWER_ENTRIES,
            Limits::MAX_SEND_CALLS,
            Limits::MAX_LOG_LINES,
        ),
        "{backoff: 1d, max_backoff: 1d}",
    )
    .await;
    let info = routers.routers().next().expect("one router");
    assert_eq!(info.limits.memory, Limits::MAX_MEMORY);
    assert_eq!(info.limits.timeout, Limits::MAX_TIMEOUT);
    let routed = routers.get_users_for_states(&clean()).await;
    assert_eq!(routed.failures, vec![]);
    assert_eq!(routed.answer.keys().collect::<Vec<_>>(), vec!["@f:x"]);
    // The budget, exact: nothing saturated.
    let stats = &routed.stats[0];
    assert_eq!(
        stats.fuel_budget,
        Limits::MAX_FUEL + Limits::MAX_FUEL_PER_STATE
    );
}

#[tokio::test]
async fn the_most_instances_a_router_may_keep_can_be_reserved() {
    let (routers, _) = scripted(
        &format!("{{max_instances: {}}}", Limits::MAX_INSTANCES),
        "{}",
    )
    .await;
    assert_eq!(
        routers.get_users_for_states(&clean()).await.failures,
        vec![]
    );
}

#[tokio::test]
async fn a_router_failing_under_the_longest_backoff_is_suspended_for_a_day() {
    let (routers, api) = scripted("{}", "{suspend_after: 1, backoff: 1d, max_backoff: 1d}").await;
    let a_day = FailurePolicy::LONGEST_BACKOFF;
    let routed = routers.get_users_for_states(&panicking()).await;
    assert_eq!(
        routed.failures[0].suspension,
        Some(Suspension {
            consecutive_failures: 1,
            retry_in_ms: u64::try_from(a_day.as_millis()).expect("fits"),
        })
    );
    assert_eq!(
        *api.warnings.lock().expect("not poisoned"),
        vec![(
            "scripted".to_owned(),
            "suspended for 1day after 1 failures in a row".to_owned()
        )]
    );
    // Skipped meanwhile, even on a clean batch.
    let routed = routers.get_users_for_states(&clean()).await;
    assert_eq!(
        failure_kinds(&routed),
        vec![("scripted", FailureKind::Trap)]
    );
    let retry_in = routed.failures[0]
        .suspension
        .expect("suspended")
        .retry_in_ms;
    assert!(
        Duration::from_millis(retry_in) > a_day - Duration::from_secs(60),
        "{retry_in}"
    );
}
