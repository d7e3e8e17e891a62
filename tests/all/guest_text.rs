//! Guest text is data, never terminal control or a forged log line: every
//! control character of a guest's log line, output, panic or refusal is
//! escaped visibly, and the text is cut at 1 KiB with a note of how much
//! was cut. (The same text through the CLI: the CLI's tests, `guest_text`.)

use presence_router_runtime::{FailureKind, LoadError, Presence};
use presence_router_tests::{batch, beside_example, failure_kinds, load, yaml_beside_example};

use crate::support::{ALIASER_LIMITS, example_answered, two_states, with_bystander};

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
