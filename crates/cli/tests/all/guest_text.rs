//! Guest text through the CLI: a router's log lines, output, panics and
//! refusals reach the terminal and the JSON answers escaped and cut, never
//! as terminal control or a forged log line. (The runtime's side: the
//! runtime's tests, `guest_text`.)

use std::path::Path;
use std::process::Output;

use crate::support::{config_dir, json_lines, run_with_env};

/// Like [`run`], with the host's own log colours off (`NO_COLOR`), so that
/// any terminal control in the output could only have come from a guest.
fn run_uncoloured(args: &[&str], cwd: &Path, stdin: &str) -> Output {
    run_with_env(args, cwd, stdin, &[("NO_COLOR", "1")])
}

/// The control characters (C0 but the newlines that end lines, DEL, C1) in
/// a program's output, and whether it has a carriage return or ESC byte
/// (even one that is not valid UTF-8 around it).
fn terminal_controls(output: &[u8]) -> Vec<char> {
    let text = String::from_utf8_lossy(output);
    let mut controls: Vec<char> = text
        .chars()
        .filter(|&c| c != '\n' && (c < ' ' || c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c)))
        .collect();
    for byte in [b'\x1b', b'\r'] {
        if output.contains(&byte) && !controls.contains(&char::from(byte)) {
            controls.push(char::from(byte));
        }
    }
    controls
}

#[test]
fn check_quotes_a_forged_flood_of_a_refusal_escaped_and_cut() {
    // The forger refuses its configuration with "\x1b[2J\nFORGED: " and 8 MB
    // of 'x': the error names the router and quotes the refusal, escaped and
    // cut at 1 KiB. (It needs fuel to build that.)
    let dir = config_dir(
        r#"
routers:
  - {name: forger, component: $HOSTILE_FORGER, config: {refuse: true}, limits: {fuel: 1000000000}}
  - {name: example, component: routers/example.wasm}
"#,
    );
    let output = run_uncoloured(&["check", "--config", "routers.yaml"], dir.path(), "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let shown: String = stderr.chars().take(400).collect();
    assert_eq!(output.status.code(), Some(1), "{shown:?}");
    assert_eq!(
        terminal_controls(&output.stderr),
        Vec::<char>::new(),
        "{shown:?}"
    );
    assert!(
        output.stderr.len() < 4096,
        "{} bytes: {shown:?}",
        output.stderr.len()
    );
    assert!(
        stderr.contains("router `forger`") && stderr.contains("more bytes cut"),
        "{shown:?}"
    );
    assert!(
        stderr.contains("\\u{1b}[2J\\nFORGED: xxx"),
        "the refusal is quoted, escaped: {shown:?}"
    );
    assert!(
        !stderr.lines().any(|line| line.starts_with("FORGED")),
        "{shown:?}"
    );
}

#[test]
fn route_keeps_a_forgers_text_off_the_terminal_and_out_of_the_log_lines() {
    // One forger that only writes (a log line with a forged host line after a
    // newline, ANSI on stdout, a C1 control on stderr), one that then panics
    // with controls in its message, and the example router.
    let dir = config_dir(
        r#"
routers:
  - {name: forger, component: $HOSTILE_FORGER, failure_policy: {suspend_after: 0}}
  - {name: forger_panic, component: $HOSTILE_FORGER, config: {panic: true}, failure_policy: {suspend_after: 0}}
  - {name: example, component: routers/example.wasm, config: {always_send_to_users: ["@alice:example.com"]}}
"#,
    );
    let request =
        r#"{"get_users_for_states": [{"user_id": "@bob:example.com", "state": "online"}]}"#;
    let input = [request, request].join("\n");
    let output = run_uncoloured(&["route", "--config", "routers.yaml"], dir.path(), &input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    let answers = json_lines(&output);
    assert_eq!(answers.len(), 2, "{answers:?}");
    for answer in &answers {
        assert_eq!(
            answer["users_for_states"]["@alice:example.com"][0]["user_id"], "@bob:example.com",
            "{answer}"
        );
        assert_eq!(
            answer["failures"].as_array().map(Vec::len),
            Some(1),
            "{answer}"
        );
        assert_eq!(answer["failures"][0]["router"], "forger_panic", "{answer}");
        assert_eq!(answer["failures"][0]["kind"], "trap", "{answer}");
        let message = answer["failures"][0]["message"].as_str().unwrap_or("");
        assert!(message.contains("FORGED panic"), "{message:?}");
        assert_eq!(
            terminal_controls(message.as_bytes()),
            Vec::<char>::new(),
            "the failure's message, decoded from JSON: {message:?}"
        );
    }

    assert_eq!(
        terminal_controls(&output.stderr),
        Vec::<char>::new(),
        "{stderr}"
    );
    assert!(
        !stderr
            .lines()
            .any(|line| line.starts_with("2026-11-30T00:00:00Z")),
        "a guest forged a log line: {stderr}"
    );
    // The forger's log line did reach the log, escaped, on one line.
    assert!(
        stderr.lines().any(|line| line
            .contains("ok\\n2026-11-30T00:00:00Z WARN presence_router: FORGED host line")),
        "{stderr}"
    );
}
