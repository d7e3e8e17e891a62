//! A router that fails is skipped for that call, with the reason; the other
//! routers' answers stand; the next call gets a fresh instance and works.

use presence_router_runtime::{FailureKind, InterestedUsers, LogLevel, Presence, RouterSet};
use presence_router_tests::{RecordingModuleApi, batch, failure_kinds, load_ok};

/// A misbehaving scripted router beside the example router, which must keep
/// answering.
async fn with_bystander(limits: &str) -> (RouterSet, std::sync::Arc<RecordingModuleApi>) {
    load_ok(&format!(
        r#"
routers:
  - name: hostile
    component: $SCRIPTED
    config: {{routes: {{"@h:x": "all"}}, interested: {{"@asker:x": ["@h:x"]}}}}
    limits: {limits}
  - name: example
    component: $EXAMPLE_ROUTER
    config: {{always_send_to_users: ["@w:x"]}}
"#
    ))
    .await
}

/// Routes a batch containing `@<command>:test`, expects `hostile` to be
/// skipped with `kind` and `example` to answer; then routes a clean batch and
/// expects both to answer.
async fn skipped_then_recovers(limits: &str, command: &str, kind: FailureKind, message: &str) {
    let (routers, api) = with_bystander(limits).await;
    let poisoned = batch(&[("@u:x", Presence::Online), (command, Presence::Online)]);
    let routed = routers.get_users_for_states(&poisoned).await;
    assert_eq!(routed.failures.len(), 1, "{command}: {:?}", routed.failures);
    let failure = &routed.failures[0];
    assert_eq!(
        (failure.router.as_str(), failure.kind),
        ("hostile", kind),
        "{command}: {failure:?}"
    );
    assert!(
        failure.message.contains(message),
        "{command}: {}",
        failure.message
    );
    assert_eq!(routed.answer.len(), 1, "only the bystander answered");
    assert_eq!(routed.answer["@w:x"].len(), 2);
    assert_eq!(
        *api.skipped.lock().unwrap(),
        routed.failures,
        "reported to the homeserver too"
    );

    for _ in 0..2 {
        let clean = batch(&[("@u:x", Presence::Online)]);
        let routed = routers.get_users_for_states(&clean).await;
        assert_eq!(routed.failures, vec![], "{command}: the next call works");
        assert_eq!(
            routed.answer.keys().collect::<Vec<_>>(),
            vec!["@h:x", "@w:x"]
        );
    }
}

#[tokio::test]
async fn out_of_fuel() {
    skipped_then_recovers(
        "{fuel: 1000000, fuel_per_state: 0, timeout: 10s}",
        "@spin:test",
        FailureKind::OutOfFuel,
        "`get-users-for-states` ran out of fuel (budget 1000000)",
    )
    .await;
}

#[tokio::test]
async fn timeout() {
    let started = std::time::Instant::now();
    skipped_then_recovers(
        "{fuel: 100000000000000, timeout: 50ms}",
        "@spin:test",
        FailureKind::Timeout,
        "`get-users-for-states` ran past its 50ms deadline",
    )
    .await;
    // Generous: this only guards against the deadline not firing at all.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn memory() {
    skipped_then_recovers(
        "{memory: 8MiB}",
        "@balloon:test",
        FailureKind::Memory,
        "`get-users-for-states` needed more than its 8MiB of memory",
    )
    .await;
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
async fn stack_overflow_is_a_trap() {
    skipped_then_recovers(
        "{}",
        "@deep:test",
        FailureKind::Trap,
        "call stack exhausted",
    )
    .await;
}

#[tokio::test]
async fn index_outside_the_batch_is_an_invalid_answer() {
    skipped_then_recovers(
        "{}",
        "@liar-index:test",
        FailureKind::InvalidAnswer,
        "route 0 (@a:test): state index 7 is outside the batch of 2 state(s)",
    )
    .await;
}

#[tokio::test]
async fn a_route_to_a_non_user_is_an_invalid_answer() {
    skipped_then_recovers(
        "{}",
        "@liar-user:test",
        FailureKind::InvalidAnswer,
        "route 0: \"alice\" does not start with `@`",
    )
    .await;
}

#[tokio::test]
async fn an_answer_over_the_size_cap_is_an_invalid_answer() {
    let (routers, _) = with_bystander("{max_answer_entries: 3}").await;
    let states = batch(&[
        ("@a:x", Presence::Online),
        ("@b:x", Presence::Online),
        ("@c:x", Presence::Online),
    ]);
    let routed = routers.get_users_for_states(&states).await;
    assert_eq!(routed.failures.len(), 1);
    assert_eq!(routed.failures[0].kind, FailureKind::InvalidAnswer);
    assert!(
        routed.failures[0].message.contains("4 entries"),
        "{}",
        routed.failures[0].message
    );
    assert!(routed.answer.contains_key("@w:x"));
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
    // `first` runs out of fuel and `second` past its deadline; `third` still
    // answers.
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
async fn a_fresh_instance_after_a_trap_runs_parse_config_again() {
    let (routers, api) = load_ok(
        r#"routers: [{name: r, component: $SCRIPTED, config: {log_calls: true, routes: {"@h:x": "all"}}}]"#,
    )
    .await;
    assert_eq!(api.logs_of("r"), vec!["parse-config"]);
    routers
        .get_users_for_states(&batch(&[("@panic:test", Presence::Online)]))
        .await;
    api.clear();
    let routed = routers
        .get_users_for_states(&batch(&[("@u:x", Presence::Online)]))
        .await;
    assert_eq!(
        api.logs_of("r"),
        vec!["parse-config", "get-users-for-states with 1 states"]
    );
    // The fresh instance has the configuration again.
    assert_eq!(routed.answer["@h:x"], vec![0]);
    // A warm instance is reused: no parse-config this time.
    api.clear();
    routers
        .get_users_for_states(&batch(&[("@u:x", Presence::Online)]))
        .await;
    assert_eq!(api.logs_of("r"), vec!["get-users-for-states with 1 states"]);
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
async fn a_panic_after_the_log_is_full_is_still_quoted() {
    // `chatter` fills the 10 log lines (and stdout) first; the panic that
    // follows must still name itself in the failure.
    let (routers, _) = with_bystander("{max_log_lines: 10}").await;
    let routed = routers
        .get_users_for_states(&batch(&[
            ("@chatter:test", Presence::Online),
            ("@panic:test", Presence::Online),
        ]))
        .await;
    assert_eq!(failure_kinds(&routed), vec![("hostile", FailureKind::Trap)]);
    assert!(
        routed.failures[0]
            .message
            .ends_with("/ scripted panic for @panic:test)"),
        "{}",
        routed.failures[0].message
    );
}

#[tokio::test]
async fn answers_costly_to_hand_on_are_paid_from_a_credit_earned_per_call() {
    // 136 users, each a different half of a 200-state batch: within the
    // answer bound (13,736 of 13,824 entries), but 13,736 units of the
    // embedder's work to hand on (the half each set names), against 1,088
    // per call saved up over at most 64 calls.
    let (routers, _) = load_ok(
        r#"
routers:
  - name: costly
    component: $HOSTILE_COSTLY
    config: {mode: half-routes, n: 136}
    failure_policy: {suspend_after: 0}
  - name: example
    component: $EXAMPLE_ROUTER
    config: {always_send_to_users: ["@w:x"]}
"#,
    )
    .await;
    let states: Vec<_> = (0..200)
        .map(|i| {
            presence_router_runtime::UserPresenceState::new(format!("@s{i}:x"), Presence::Online)
        })
        .collect();
    let mut answered = 0;
    let mut refused = Vec::new();
    for _ in 0..20 {
        // Interest calls, whose rate a user controls, earn no credit.
        for _ in 0..7 {
            routers.get_interested_users("@asker:x").await;
        }
        let routed = routers.get_users_for_states(&states).await;
        assert_eq!(
            routed.answer["@w:x"].len(),
            200,
            "the example router always answers"
        );
        match routed.failures.as_slice() {
            [] => answered += 1,
            [failure] => refused.push(failure.clone()),
            more => panic!("{more:?}"),
        }
    }
    // 64 × 1,088 = 69,632 saved up at first, 1,088 more per call: five
    // calls' worth (13,736 each), then one call in about thirteen.
    assert_eq!(answered, 6, "{refused:?}");
    assert_eq!(refused.len(), 14);
    assert_eq!(refused[0].kind, FailureKind::InvalidAnswer);
    assert!(
        refused[0]
            .message
            .starts_with("handing the answer on would take 13736 units of the host's work"),
        "{}",
        refused[0].message
    );
}
