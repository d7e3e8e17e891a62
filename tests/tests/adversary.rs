//! Adversaries: guests that attack what the limits of
//! SECURITY.md did not cover. Each test states the contract it holds the
//! runtime to.
//!
//! - A router never really waits: a clock wait (`std::thread::sleep`)
//!   completes at once and its duration is charged to the call's time budget
//!   (`limits.timeout`), which one call shares with the fresh instance it may
//!   need (instantiation and `parse-config`).
//! - The host holds no more for a guest than its limits allow: user IDs
//!   longer than Matrix's 255 bytes are refused as they arrive, a log
//!   message is cut at 1 KiB, an instance holds at most 1024 WASI resources,
//!   and an instance that ends a call holding more of them than it started
//!   with is discarded (every call starts afresh).
//! - Guest text is data: every control character of a guest's log line,
//!   output, panic or refusal is escaped visibly, and the text is cut at
//!   1024 bytes with a note of how much was cut.
//!
//! No test depends on the wall clock: waits are charged exactly, and the
//! only time bounds are sanity bounds far above any honest run (a runtime
//! that really slept would take an hour).

use std::time::{Duration, Instant};

use presence_router_runtime::{FailureKind, InterestedUsers, LoadError, Presence, UsersForStates};
use presence_router_tests::{batch, beside_example, failure_kinds, load, yaml_beside_example};

/// Far above any honest run of a test here, far below the hour a sleeper
/// asks for: only a runtime that really waits gets near it.
const SANITY_BOUND: Duration = Duration::from_secs(60);

/// One hour, in milliseconds: the sleep no call may really take.
const AN_HOUR_MS: u64 = 3_600_000;

fn two_states() -> Vec<presence_router_runtime::UserPresenceState> {
    batch(&[("@a:x", Presence::Online), ("@b:y", Presence::Unavailable)])
}

/// The example router's answer for [`two_states`], alone.
fn example_answered(routed: &presence_router_runtime::Routed<UsersForStates>) -> bool {
    routed.answer.len() == 1 && routed.answer.get("@w:x") == Some(&vec![0, 1])
}

/// Asserts that `router` alone was skipped, as `kind` with `fragment` in its
/// message, and that the example router beside it answered.
fn assert_only_skipped(
    routed: &presence_router_runtime::Routed<UsersForStates>,
    call: usize,
    router: &str,
    kind: FailureKind,
    fragment: &str,
) {
    assert_eq!(
        failure_kinds(routed),
        vec![(router, kind)],
        "call {call}: {:?}",
        routed.failures
    );
    assert!(
        routed.failures[0].message.contains(fragment),
        "call {call}: {}",
        routed.failures[0].message
    );
    assert!(example_answered(routed), "call {call}: {:?}", routed.answer);
}

/// Whether `c` is a control character: C0 (with `\n`, `\r`, `\t`), DEL, C1.
fn is_control(c: char) -> bool {
    c < ' ' || c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c)
}

fn controls_in(text: &str) -> Vec<char> {
    text.chars().filter(|&c| is_control(c)).collect()
}

/// The first `chars` characters of `text`, to show in a failed assertion.
fn head(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

// ITEM 1: deadlines hold whatever the guest does.

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

// ITEM 4: the host holds no more for a guest than its limits allow. (The
// host's memory under these guests is measured in hostile_memory.rs.)

/// Limits under which the aliaser can build its 40 MiB buffer.
const ALIASER_LIMITS: &str = "{memory: 64MiB, fuel: 1000000000000, timeout: 30s}";

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
async fn an_aliased_giant_log_message_is_cut_to_1_kib() {
    let (routers, api) = beside_example(
        "aliaser",
        "HOSTILE_ALIASER",
        "{mib: 40, calls: 16, target: log}",
        ALIASER_LIMITS,
    )
    .await;
    let states = two_states();
    for call in 1..=2 {
        api.clear();
        let routed = routers.get_users_for_states(&states).await;
        assert_eq!(routed.failures, vec![], "call {call}");
        assert!(
            example_answered(&routed),
            "call {call}: {:?}",
            routed.answer
        );
        let logs = api.logs_of("aliaser");
        assert_eq!(logs.len(), 16, "call {call}");
        for line in &logs {
            assert!(
                line.starts_with("@aaaa") && line.contains("more bytes cut"),
                "call {call}: {}",
                head(line, 200)
            );
            assert!(line.len() <= 1024 + 64, "call {call}: {} bytes", line.len());
        }
    }
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

#[tokio::test]
async fn every_call_starts_afresh_without_the_resources_the_last_one_kept() {
    // The hoarder logs how many pollables it created since its instance
    // started. An instance that ends a call holding more WASI resources than
    // it started with is discarded, so every call runs on a fresh one.
    let (routers, api) = beside_example(
        "hoarder",
        "HOSTILE_HOARDER",
        "{per_call: 100}",
        "{fuel: 1000000000000, timeout: 30s}",
    )
    .await;
    let states = two_states();
    for call in 1..=5 {
        api.clear();
        let routed = routers.get_users_for_states(&states).await;
        assert_eq!(routed.failures, vec![], "call {call}");
        assert!(
            example_answered(&routed),
            "call {call}: {:?}",
            routed.answer
        );
        assert_eq!(
            api.logs_of("hoarder"),
            vec!["holding 100 pollables"],
            "call {call}"
        );
    }
}

// ITEM 5: guest text is data, never terminal control or a forged log line.

#[tokio::test]
async fn a_forgers_log_output_and_stderr_are_escaped() {
    let (routers, api) = beside_example("forger", "HOSTILE_FORGER", "{}", "{}").await;
    let states = two_states();
    for call in 1..=2 {
        api.clear();
        let routed = routers.get_users_for_states(&states).await;
        assert_eq!(routed.failures, vec![], "call {call}");
        assert!(
            example_answered(&routed),
            "call {call}: {:?}",
            routed.answer
        );
        let logs = api.logs_of("forger");
        for line in &logs {
            assert_eq!(
                controls_in(line),
                Vec::<char>::new(),
                "call {call}: {line:?}"
            );
        }
        // The log line, whole: its newline can't start a line of its own.
        assert!(
            logs.iter()
                .any(|l| l == "ok\\n2026-11-30T00:00:00Z WARN presence_router: FORGED host line"),
            "call {call}: {logs:?}"
        );
        // stdout: a carriage return, clear screen, red.
        assert!(
            logs.iter()
                .any(|l| l.contains("\\r\\u{1b}[2J\\u{1b}[31mred\\u{1b}[0m")),
            "call {call}: {logs:?}"
        );
        // stderr: a C1 CSI.
        assert!(
            logs.iter().any(|l| l.contains("forged \\u{9b}31m C1 red")),
            "call {call}: {logs:?}"
        );
    }
}

#[tokio::test]
async fn a_panic_message_full_of_controls_is_escaped_in_the_failure() {
    let (routers, api) = beside_example("forger", "HOSTILE_FORGER", "{panic: true}", "{}").await;
    let states = two_states();
    for call in 1..=2 {
        let routed = routers.get_users_for_states(&states).await;
        assert_eq!(
            failure_kinds(&routed),
            vec![("forger", FailureKind::Trap)],
            "call {call}"
        );
        let message = &routed.failures[0].message;
        assert_eq!(
            controls_in(message),
            Vec::<char>::new(),
            "call {call}: {message:?}"
        );
        assert!(message.contains("FORGED panic"), "call {call}: {message:?}");
        assert!(
            example_answered(&routed),
            "call {call}: {:?}",
            routed.answer
        );
    }
    for (_, _, line) in api.logs.lock().unwrap().iter() {
        assert_eq!(controls_in(line), Vec::<char>::new(), "{line:?}");
    }
    for failure in api.skipped.lock().unwrap().iter() {
        assert_eq!(
            controls_in(&failure.message),
            Vec::<char>::new(),
            "{failure:?}"
        );
    }
}

#[tokio::test]
async fn a_refusal_that_forges_and_floods_is_escaped_and_cut() {
    // Fuel enough to build the 8 MB refusal.
    let yaml = yaml_beside_example(
        "forger",
        "HOSTILE_FORGER",
        "{refuse: true}",
        "{fuel: 1000000000}",
    );
    let error = match load(&yaml).await {
        Ok(_) => panic!("a refusing router loaded"),
        Err(error) => error,
    };
    assert!(
        matches!(&error, LoadError::ConfigRefused { at, .. } if at.router == "forger"),
        "{error:?}"
    );
    let text = error.to_string();
    let shown = head(&text, 300);
    assert_eq!(controls_in(&text), Vec::<char>::new(), "{shown:?}");
    assert!(text.len() < 2048, "{} bytes: {shown:?}", text.len());
    assert!(text.contains("more bytes cut"), "{shown:?}");
    assert!(
        text.contains("\\u{1b}[2J\\nFORGED: xxxx"),
        "the refusal is quoted, escaped: {shown:?}"
    );
}
