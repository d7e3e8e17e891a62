//! A router's answer is checked before anyone uses it: user IDs and state
//! indices that are not what they claim make it an `invalid_answer` that
//! says what was wrong; and an answer is bounded (by its batch, by
//! `limits.max_answer_entries`, by what handing it on costs the
//! homeserver), refused as it arrives, before it is all copied.

use presence_router_runtime::{FailureKind, Presence};
use presence_router_tests::{batch, beside_example, load_ok};

use crate::support::{skipped_then_recovers, skipped_twice, with_bystander};

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
async fn liars_are_invalid_answers_that_say_what_was_wrong() {
    let lies = [
        (
            "index",
            "route 0 (@a:x): state index 2 is outside the batch of 2 state(s)",
        ),
        ("alice", "route 0: \"alice\" does not start with `@`"),
        ("'@:x'", "route 0: \"@:x\" has an empty localpart"),
        ("'@a:'", "route 0: \"@a:\": the server name is empty"),
        (
            "long",
            "route 0: user ID of 313 bytes is longer than the 255 the Matrix spec allows",
        ),
        (
            "control",
            "route 0: \"@a\\u{7}b:example.com\" has '\\u{7}' in its localpart (only printable ASCII is allowed)",
        ),
    ];
    for (lie, message) in lies {
        let reports = skipped_twice(
            "HOSTILE_LIAR",
            &format!("{{lie: {lie}}}"),
            "{}",
            FailureKind::InvalidAnswer,
            message,
        )
        .await;
        assert_eq!(reports[0].failures[0].message, message, "{lie}");
    }
    let (routers, _) = beside_example("hostile", "HOSTILE_LIAR", "{lie: alice}", "{}").await;
    let routed = routers.get_interested_users("@w:x").await;
    assert_eq!(
        routed.failures[0].message,
        "user 1: \"alice\" does not start with `@`"
    );
    // The example router's `all-users` for @w:x comes after: not reached
    // through the liar, but the liar's failure doesn't stop it.
    assert_eq!(routed.answer, presence_router_runtime::InterestedUsers::All);
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
async fn a_flood_of_routes_is_refused_before_it_is_copied() {
    skipped_twice(
        "HOSTILE_FLOOD",
        "{routes: 3000000}",
        // The flat cap, not the one that follows the batch.
        "{memory: 256MiB, fuel: 1000000000000, timeout: 30s, answer_entries_per_state: 10000000}",
        FailureKind::InvalidAnswer,
        "sent more data than limits.max_answer_entries = 1000000 allows (over 160000000 bytes); refused before it was all copied",
    )
    .await;
}

#[tokio::test]
async fn a_route_with_millions_of_indices_is_over_the_size_cap() {
    skipped_twice(
        "HOSTILE_FLOOD",
        "{indices: 5000000}",
        "{fuel: 1000000000000, timeout: 30s, answer_entries_per_state: 10000000}",
        FailureKind::InvalidAnswer,
        "the answer has 5000001 entries (routes and state indices), more than limits.max_answer_entries = 1000000",
    )
    .await;
}

#[tokio::test]
async fn by_default_an_answer_is_bounded_by_its_batch_not_by_a_million_entries() {
    // What the host does with an answer (checks it; Synapse hashes every
    // state into Python sets) is paid for by the router: a one-state batch
    // has no use for a million entries.
    skipped_twice(
        "HOSTILE_FLOOD",
        "{indices: 5000}",
        "{fuel: 1000000000000, timeout: 30s}",
        FailureKind::InvalidAnswer,
        "the answer has 5001 entries (routes and state indices), more than the 1152 entries a batch of 2 state(s) may have (1024 + limits.answer_entries_per_state = 64 per state)",
    )
    .await;
    skipped_twice(
        "HOSTILE_FLOOD",
        "{routes: 3000000}",
        "{memory: 256MiB, fuel: 1000000000000, timeout: 30s}",
        FailureKind::InvalidAnswer,
        "sent more data than the 1152 entries a batch of 2 state(s) may have (1024 + limits.answer_entries_per_state = 64 per state) (over 184320 bytes); refused before it was all copied",
    )
    .await;
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
