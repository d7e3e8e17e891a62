//! What a router hands the homeserver besides its answer: presence sends
//! (`send-local-online-presence-to`) and log lines (`log`, stdout, stderr).
//! They reach the homeserver after the call, and only if the call
//! succeeded; a send to anything but a valid user ID invalidates the call,
//! refused as it arrives; sends and log lines beyond their caps
//! (`limits.max_send_calls`, `limits.max_log_lines`) are dropped and
//! counted, which is no failure. (How guest text is escaped and cut:
//! `guest_text.rs`.)

use presence_router_runtime::{FailureKind, LogLevel, Presence};
use presence_router_tests::{batch, beside_example, failure_kinds};

use crate::support::{ALIASER_LIMITS, example_answered, two_states, with_bystander};

#[tokio::test]
async fn sends_and_logs_reach_the_homeserver_after_the_call() {
    let (routers, api) = with_bystander("{}").await;
    let routed = routers
        .get_users_for_states(&batch(&[("@send:test", Presence::Online)]))
        .await;
    assert_eq!(routed.failures, vec![]);
    let expected = vec![
        "@dave:example.com".to_owned(),
        "@far_away_person:island".to_owned(),
    ];
    assert_eq!(routed.sent_presence_to, expected);
    assert_eq!(
        *api.sends.lock().unwrap(),
        vec![("hostile".to_owned(), expected)]
    );
    assert!(api.logs.lock().unwrap().contains(&(
        "hostile".into(),
        LogLevel::Info,
        "sent presence to two users".into()
    )));

    api.clear();
    routers
        .get_users_for_states(&batch(&[("@print:test", Presence::Online)]))
        .await;
    let logs = api.logs.lock().unwrap().clone();
    assert!(
        logs.contains(&("hostile".into(), LogLevel::Info, "hello from stdout".into())),
        "{logs:?}"
    );
    assert!(
        logs.contains(&("hostile".into(), LogLevel::Warn, "hello from stderr".into())),
        "{logs:?}"
    );
}

#[tokio::test]
async fn a_send_to_a_non_user_invalidates_the_call_and_nothing_is_sent() {
    let (routers, api) = with_bystander("{}").await;
    let routed = routers
        .get_users_for_states(&batch(&[("@send-bad:test", Presence::Online)]))
        .await;
    assert_eq!(routed.failures.len(), 1);
    assert_eq!(routed.failures[0].kind, FailureKind::InvalidAnswer);
    assert!(
        routed.failures[0]
            .message
            .contains("send-local-online-presence-to call 0: user 0: \"not-a-user\"")
    );
    assert_eq!(routed.sent_presence_to, Vec::<String>::new());
    assert!(api.sends.lock().unwrap().is_empty());
}

#[tokio::test]
async fn sends_past_the_entry_cap_invalidate_the_call_as_they_arrive() {
    // `chatter` sends to one user at a time; the 11th is over the cap of 10.
    let (routers, api) = with_bystander("{max_answer_entries: 10, max_send_calls: 100}").await;
    let routed = routers
        .get_users_for_states(&batch(&[("@chatter:test", Presence::Online)]))
        .await;
    assert_eq!(
        failure_kinds(&routed),
        vec![("hostile", FailureKind::InvalidAnswer)]
    );
    assert!(
        routed.failures[0].message.ends_with(
            "send-local-online-presence-to was given 11 users, more than limits.max_answer_entries = 10"
        ),
        "{}",
        routed.failures[0].message
    );
    assert_eq!(routed.sent_presence_to, Vec::<String>::new());
    assert!(api.sends.lock().unwrap().is_empty());
}

#[tokio::test]
async fn aliased_giant_user_ids_are_refused_as_they_arrive() {
    let (routers, api) = beside_example(
        "aliaser",
        "HOSTILE_ALIASER",
        "{mib: 40, entries: 3, calls: 16, target: send}",
        ALIASER_LIMITS,
    )
    .await;
    let states = two_states();
    for call in 1..=2 {
        let routed = routers.get_users_for_states(&states).await;
        assert_eq!(
            failure_kinds(&routed),
            vec![("aliaser", FailureKind::InvalidAnswer)],
            "call {call}: {:?}",
            routed.failures
        );
        let message = &routed.failures[0].message;
        assert!(message.contains("255"), "call {call}: {message}");
        assert!(
            message.len() < 4096,
            "call {call}: the failure quotes the user ID: {} bytes",
            message.len()
        );
        assert_eq!(routed.sent_presence_to, Vec::<String>::new());
        assert!(
            example_answered(&routed),
            "call {call}: {:?}",
            routed.answer
        );
    }
    assert!(api.sends.lock().unwrap().is_empty());
}

#[tokio::test]
async fn sends_of_a_call_that_traps_are_dropped() {
    let (routers, api) = with_bystander("{}").await;
    let routed = routers
        .get_users_for_states(&batch(&[
            ("@send:test", Presence::Online),
            ("@panic:test", Presence::Online),
        ]))
        .await;
    // `send` comes first in the batch, but `run_command` stops at the first
    // command that answers: here `send` doesn't answer, so `panic` runs.
    assert_eq!(routed.failures[0].kind, FailureKind::Trap);
    assert!(routed.sent_presence_to.is_empty());
    assert!(api.sends.lock().unwrap().is_empty());
}

#[tokio::test]
async fn sends_and_log_lines_beyond_the_caps_are_dropped_and_counted() {
    let (routers, api) = with_bystander("{max_send_calls: 5, max_log_lines: 10}").await;
    let routed = routers
        .get_users_for_states(&batch(&[("@chatter:test", Presence::Online)]))
        .await;
    assert_eq!(routed.failures, vec![], "chatter is not a failure");
    assert_eq!(
        routed.sent_presence_to,
        (0..5)
            .map(|i| format!("@u{i}:example.com"))
            .collect::<Vec<_>>()
    );
    // The `log` calls came first and filled the cap; stdout was cut off.
    let logs = api.logs_of("hostile");
    assert_eq!(
        logs,
        (0..10).map(|i| format!("chatter {i}")).collect::<Vec<_>>()
    );
    let warnings = api.warnings.lock().unwrap().clone();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[0].0, "hostile");
    // 990 `log` calls, and all 1,000 stdout lines.
    assert_eq!(
        warnings[0].1,
        "1990 log line(s) dropped: over limits.max_log_lines = 10 per call"
    );
    assert_eq!(
        warnings[1].1,
        "995 send-local-online-presence-to call(s) dropped: over limits.max_send_calls = 5 per call"
    );
}

#[tokio::test]
async fn chatter_is_capped_counted_and_not_a_failure() {
    let (routers, api) = beside_example(
        "hostile",
        "HOSTILE_CHATTER",
        "{calls: 10000}",
        "{fuel: 1000000000000, timeout: 10s}",
    )
    .await;
    let states = batch(&[("@a:x", Presence::Online)]);
    for _ in 0..2 {
        api.clear();
        let routed = routers.get_users_for_states(&states).await;
        assert_eq!(routed.failures, vec![]);
        assert_eq!(
            routed.sent_presence_to,
            (0..16)
                .map(|i| format!("@u{i}:example.com"))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            api.logs_of("hostile"),
            (0..64).map(|i| format!("chatter {i}")).collect::<Vec<_>>()
        );
        assert_eq!(
            *api.warnings.lock().unwrap(),
            vec![
                ("hostile".to_owned(), "19936 log line(s) dropped: over limits.max_log_lines = 64 per call".to_owned()),
                ("hostile".to_owned(), "9984 send-local-online-presence-to call(s) dropped: over limits.max_send_calls = 16 per call".to_owned()),
            ]
        );
        assert_eq!(routed.answer["@w:x"], vec![0]);
    }
}
