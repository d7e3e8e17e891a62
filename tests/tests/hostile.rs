//! The hostile-guest corpus (SECURITY.md): each guest tries one way to hurt
//! the host. For each, the exact outcome; the example router beside it still
//! answers correctly in the same call; and the next call goes the same way
//! (on a fresh instance where the last one trapped).

use std::time::{Duration, Instant};

use presence_router_runtime::{FailureKind, LogLevel, Presence, Routed, UsersForStates};
use presence_router_tests::{batch, beside_example, failure_kinds, load};

/// Routes a two-state batch twice; both times the hostile router must be
/// skipped as `kind` with a message containing `message`, and the example
/// router must route both states to `@w:x`.
async fn skipped_twice(
    guest: &str,
    config: &str,
    limits: &str,
    kind: FailureKind,
    message: &str,
) -> Vec<Routed<UsersForStates>> {
    let (routers, api) = beside_example("hostile", guest, config, limits).await;
    let states = batch(&[("@a:x", Presence::Online), ("@b:y", Presence::Unavailable)]);
    let mut reports = Vec::new();
    for call in 1..=2 {
        let routed = routers.get_users_for_states(&states).await;
        assert_eq!(
            failure_kinds(&routed),
            vec![("hostile", kind)],
            "{guest}, call {call}"
        );
        assert!(
            routed.failures[0].message.contains(message),
            "{guest}, call {call}: {}",
            routed.failures[0].message
        );
        assert_eq!(
            routed.answer.len(),
            1,
            "{guest}: only the example router answered"
        );
        assert_eq!(routed.answer["@w:x"], vec![0, 1], "{guest}");
        reports.push(routed);
    }
    assert_eq!(
        api.skipped.lock().unwrap().len(),
        2,
        "{guest}: both failures were reported"
    );
    reports
}

#[tokio::test]
async fn spin_runs_out_of_fuel() {
    skipped_twice(
        "HOSTILE_SPIN",
        "{}",
        "{fuel: 1000000, fuel_per_state: 0, timeout: 10s}",
        FailureKind::OutOfFuel,
        "ran out of fuel (budget 1000000)",
    )
    .await;
}

#[tokio::test]
async fn spin_with_plenty_of_fuel_meets_the_deadline() {
    let started = Instant::now();
    skipped_twice(
        "HOSTILE_SPIN",
        "{}",
        "{fuel: 1000000000000000, timeout: 50ms}",
        FailureKind::Timeout,
        "ran past its 50ms deadline",
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
async fn a_log_flood_pays_fuel_for_what_the_host_reads() {
    // Each `log` of a 1 MiB message costs the guest a few instructions and
    // the host a 1 MiB UTF-8 check: the host's work is charged to the
    // guest's fuel (a byte a unit), so fuel stops it long before the
    // deadline (it used to be only the deadline, which needs a watchdog
    // tick to notice).
    skipped_twice(
        "HOSTILE_SLEEPER",
        "{via: log}",
        "{fuel: 5000000, fuel_per_state: 0, timeout: 10s}",
        FailureKind::OutOfFuel,
        "ran out of fuel",
    )
    .await;
}

#[tokio::test]
async fn a_memory_fill_loop_pays_fuel_per_byte() {
    // wasmtime 48 charges bulk memory operations per byte: a 16 MiB fill
    // costs more than the whole default budget, long before the deadline.
    skipped_twice(
        "HOSTILE_SLEEPER",
        "{via: fill}",
        "{timeout: 10s}",
        FailureKind::OutOfFuel,
        "ran out of fuel",
    )
    .await;
}

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

#[tokio::test]
async fn snoop_finds_no_way_out() {
    let (routers, api) = beside_example("hostile", "HOSTILE_SNOOP", "{}", "{}").await;
    let routed = routers
        .get_users_for_states(&batch(&[("@a:x", Presence::Online)]))
        .await;
    assert_eq!(
        routed.failures,
        vec![],
        "looking is not a crime, and it found nothing"
    );
    assert!(routed.answer.contains_key("@snoop:example.com") && routed.answer.contains_key("@w:x"));
    assert_eq!(
        api.logs_of("hostile"),
        vec![
            "file: Err(NotFound)",
            "dir: Err(NotFound)",
            "env: []",
            "args: []",
            "tcp: Err(PermissionDenied)",
            "udp: Err(PermissionDenied)",
            "stdin: Ok(0)",
        ]
    );
}

#[tokio::test]
async fn bad_config_refuses_the_whole_set_at_load() {
    let cases = [
        (
            "err",
            "routers[0].config (router `hostile`): the router refused its configuration: hostile refusal: `mode` is err",
        ),
        (
            "panic",
            "routers[0] (router `hostile`): the router failed while starting (trap): `parse-config` trapped",
        ),
        (
            "spin",
            "routers[0] (router `hostile`): the router failed while starting (timeout): `parse-config` ran past its 50ms deadline",
        ),
    ];
    for (mode, expected) in cases {
        let yaml = format!(
            "routers: [{{name: hostile, component: $HOSTILE_BAD_CONFIG, config: {{mode: {mode}}}, limits: {{fuel: 1000000000000, timeout: 50ms}}}}, {{component: $EXAMPLE_ROUTER}}]"
        );
        let error = match load(&yaml).await {
            Ok(_) => panic!("{mode}: loaded"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.starts_with(&format!("routers.yaml: {expected}")),
            "{mode}: {error}"
        );
    }
}

#[tokio::test]
async fn bad_config_in_a_recycled_instance_skips_the_router() {
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 1500;
    let (routers, _) = beside_example(
        "hostile",
        "HOSTILE_BAD_CONFIG",
        &format!("{{mode: err-after, after_unix_ms: {after}}}"),
        "{}",
    )
    .await;
    let clean = batch(&[("@a:x", Presence::Online)]);
    assert_eq!(routers.get_users_for_states(&clean).await.failures, vec![]);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    // The warm instance still works; a trap throws it away...
    assert_eq!(routers.get_users_for_states(&clean).await.failures, vec![]);
    let trap = batch(&[("@trap:x", Presence::Online)]);
    assert_eq!(
        failure_kinds(&routers.get_users_for_states(&trap).await),
        vec![("hostile", FailureKind::Trap)]
    );
    // ...and the fresh one refuses its configuration: skipped, call after call.
    for _ in 0..2 {
        let routed = routers.get_users_for_states(&clean).await;
        assert_eq!(failure_kinds(&routed), vec![("hostile", FailureKind::Trap)]);
        assert_eq!(
            routed.failures[0].message,
            "a fresh instance refused its configuration: hostile refusal: the time has come"
        );
        assert_eq!(routed.answer["@w:x"], vec![0]);
    }
}
