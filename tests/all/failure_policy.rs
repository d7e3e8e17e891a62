//! The failure policy: a router that fails is skipped for that call, with
//! the reason, and the other routers' answers stand, in either callback. A
//! router that keeps failing is suspended for a back-off that doubles, then
//! tried again; a success ends the suspension. (Each way a router fails, and
//! the next call working: `fuel.rs`, `memory.rs`, `time_budget.rs`,
//! `traps.rs`, `answers.rs`.)

use std::time::Duration;

use presence_router_runtime::{FailureKind, InterestedUsers, RouterSet, Suspension};
use presence_router_tests::{RecordingModuleApi, failure_kinds, load_ok};

use crate::support::{clean, guest_calls, panicking};

async fn flaky(policy: &str) -> (RouterSet, std::sync::Arc<RecordingModuleApi>) {
    load_ok(&format!(
        r#"
routers:
  - name: flaky
    component: $SCRIPTED
    config: {{log_calls: true, routes: {{"@f:x": "all"}}}}
    failure_policy: {policy}
  - name: example
    component: $EXAMPLE_ROUTER
    config: {{always_send_to_users: ["@w:x"]}}
"#
    ))
    .await
}

#[tokio::test]
async fn interested_users_failures_are_skipped_too() {
    let (routers, _) = load_ok(
        r#"
routers:
  - {name: first, component: $SCRIPTED, limits: {fuel: 100000}}
  - {name: second, component: $SCRIPTED, limits: {fuel: 1000000000000, timeout: 20ms}}
  - {name: third, component: $EXAMPLE_ROUTER, config: {always_send_to_users: ["@spin:test"]}}
"#,
    )
    .await;
    // `first` runs out of fuel and `second` past its time budget; `third`
    // still answers.
    let routed = routers.get_interested_users("@spin:test").await;
    assert_eq!(
        failure_kinds(&routed),
        vec![
            ("first", FailureKind::OutOfFuel),
            ("second", FailureKind::Timeout)
        ]
    );
    assert_eq!(routed.answer, InterestedUsers::All);

    let routed = routers.get_interested_users("@liar-user:test").await;
    assert_eq!(
        failure_kinds(&routed),
        vec![
            ("first", FailureKind::InvalidAnswer),
            ("second", FailureKind::InvalidAnswer)
        ]
    );
    assert!(
        routed.failures[0].message.contains("user 0: \"alice\""),
        "{}",
        routed.failures[0].message
    );
    assert_eq!(routed.answer, InterestedUsers::Users(Default::default()));
}

#[tokio::test]
async fn failures_in_a_row_suspend_the_router_and_the_others_still_answer() {
    let (routers, api) = flaky("{suspend_after: 3, backoff: 60s}").await;
    for call in 1..=2 {
        let routed = routers.get_users_for_states(&panicking()).await;
        assert_eq!(routed.failures[0].suspension, None, "call {call}");
    }
    let routed = routers.get_users_for_states(&panicking()).await;
    assert_eq!(
        routed.failures[0].suspension,
        Some(Suspension {
            consecutive_failures: 3,
            retry_in_ms: 60_000
        })
    );
    assert_eq!(
        *api.warnings.lock().unwrap(),
        vec![(
            "flaky".to_owned(),
            "suspended for 1m after 3 failures in a row".to_owned()
        )]
    );
    assert_eq!(guest_calls(&api, "flaky"), 3);

    // Suspended: skipped without running, even on a clean batch; the
    // example router answers as ever.
    for _ in 0..5 {
        let routed = routers.get_users_for_states(&clean()).await;
        assert_eq!(failure_kinds(&routed), vec![("flaky", FailureKind::Trap)]);
        let failure = &routed.failures[0];
        assert!(
            failure.message.starts_with(
                "suspended after 3 failures in a row (the last: `get-users-for-states` trapped"
            ),
            "{}",
            failure.message
        );
        let suspension = failure.suspension.expect("suspended");
        assert!(suspension.retry_in_ms > 50_000 && suspension.retry_in_ms <= 60_000);
        assert_eq!(routed.answer.keys().collect::<Vec<_>>(), vec!["@w:x"]);
    }
    assert_eq!(
        guest_calls(&api, "flaky"),
        3,
        "the suspended router was not called"
    );
    assert_eq!(routers.get_interested_users("@a:x").await.failures.len(), 1);
}

#[tokio::test]
async fn after_the_backoff_a_failing_trial_doubles_it_and_a_success_ends_it() {
    let (routers, api) = flaky("{suspend_after: 2, backoff: 100ms, max_backoff: 1s}").await;
    routers.get_users_for_states(&panicking()).await;
    let routed = routers.get_users_for_states(&panicking()).await;
    assert_eq!(
        routed.failures[0].suspension.map(|s| s.retry_in_ms),
        Some(100)
    );

    tokio::time::sleep(Duration::from_millis(150)).await;
    // The trial call runs the guest, fails, and suspends for twice as long.
    let routed = routers.get_users_for_states(&panicking()).await;
    assert_eq!(
        routed.failures[0].suspension.map(|s| s.retry_in_ms),
        Some(200)
    );
    assert_eq!(guest_calls(&api, "flaky"), 3);

    tokio::time::sleep(Duration::from_millis(250)).await;
    let routed = routers.get_users_for_states(&clean()).await;
    assert_eq!(routed.failures, vec![]);
    assert_eq!(
        routed.answer.keys().collect::<Vec<_>>(),
        vec!["@f:x", "@w:x"]
    );
    assert_eq!(*api.resumed.lock().unwrap(), vec!["flaky"]);

    // All forgiven: one failure doesn't suspend again.
    let routed = routers.get_users_for_states(&panicking()).await;
    assert_eq!(routed.failures[0].suspension, None);
}

#[tokio::test]
async fn a_success_between_failures_resets_the_count() {
    let (routers, _) = flaky("{suspend_after: 3}").await;
    for batch in [panicking(), panicking(), clean(), panicking(), panicking()] {
        let routed = routers.get_users_for_states(&batch).await;
        assert!(routed.failures.iter().all(|f| f.suspension.is_none()));
    }
}

#[tokio::test]
async fn suspend_after_zero_never_suspends() {
    let (routers, api) = flaky("{suspend_after: 0}").await;
    for _ in 0..12 {
        let routed = routers.get_users_for_states(&panicking()).await;
        assert_eq!(routed.failures[0].suspension, None);
    }
    assert_eq!(guest_calls(&api, "flaky"), 12);
}

/// When a back-off ends, many concurrent callers must not all try the
/// router: one trial call goes through (half-open), the others stay skipped,
/// and its failure doubles the back-off once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_backoff_ends_one_of_many_concurrent_callers_is_the_trial() {
    const CALLERS: usize = 32;
    let (routers, api) = flaky("{suspend_after: 1, backoff: 1s, max_backoff: 1h}").await;
    let routers = std::sync::Arc::new(routers);
    let routed = routers.get_users_for_states(&panicking()).await;
    assert_eq!(
        routed.failures[0].suspension.map(|s| s.retry_in_ms),
        Some(1000)
    );
    assert_eq!(guest_calls(&api, "flaky"), 1);
    // Sleeping longer than the back-off is safe whatever the load; the next
    // suspension lasts 2 s, far longer than it takes these callers to start.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CALLERS));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let routers = routers.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                routers.get_users_for_states(&panicking()).await
            })
        })
        .collect();
    let mut reports = Vec::new();
    for caller in callers {
        reports.push(caller.await.expect("the caller ran"));
    }
    assert_eq!(
        guest_calls(&api, "flaky"),
        2,
        "exactly one trial reached the guest"
    );
    let new_suspensions: Vec<_> = reports
        .iter()
        .filter_map(|r| r.failures[0].suspension)
        .filter(|s| s.retry_in_ms == 2000)
        .collect();
    assert_eq!(
        new_suspensions.len(),
        1,
        "the trial's failure doubled the back-off once"
    );
    let skipped = reports
        .iter()
        .filter(|r| r.failures[0].message.starts_with("suspended after"))
        .count();
    assert_eq!(skipped, CALLERS - 1);
    for report in &reports {
        assert_eq!(report.answer.keys().collect::<Vec<_>>(), vec!["@w:x"]);
    }
    let warnings = api.warnings.lock().unwrap().len();
    assert_eq!(warnings, 2, "two suspensions, each logged once");
}
