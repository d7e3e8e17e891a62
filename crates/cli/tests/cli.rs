//! The `presence-router` binary end to end: its exit codes, its `check`
//! report, and the JSON Lines contract of `route`.

use std::path::Path;
use std::process::Output;

mod support;

use presence_router_tests::{guests, with_guest_paths, write_file};
use serde_json::{Value, json};

fn run(args: &[&str], cwd: &Path, stdin: &str) -> Output {
    run_with_env(args, cwd, stdin, &[])
}

fn run_with_env(args: &[&str], cwd: &Path, stdin: &str, env: &[(&str, &str)]) -> Output {
    support::run_binary(args, cwd, stdin, "warn", env)
}

fn answers(output: &Output) -> Vec<Value> {
    support::json_lines(output)
}

/// A config in its own directory, with the example router copied next to it
/// under a relative path.
fn config_dir(yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir(dir.path().join("routers")).expect("writable");
    std::fs::copy(
        guests::EXAMPLE_ROUTER,
        dir.path().join("routers/example.wasm"),
    )
    .expect("copied");
    write_file(dir.path(), "routers.yaml", with_guest_paths(yaml));
    dir
}

const TWO_ROUTERS: &str = r#"
routers:
  - name: example
    component: routers/example.wasm
    config: {always_send_to_users: ["@alice:example.com"], blacklisted_users: ["@mallory:example.com"]}
  - name: scripted
    component: $SCRIPTED
    config: {routes: {"@bob:example.com": [1]}, interested: {"@bob:example.com": ["@carol:remote.org"]}}
    limits: {fuel: 2000000, fuel_per_state: 1000, memory: 16MiB, timeout: 250ms}
    failure_policy: {suspend_after: 0}
"#;

#[test]
fn check_lists_every_router_with_its_limits() {
    let dir = config_dir(TWO_ROUTERS);
    // Run from elsewhere: component paths are relative to the config file.
    let cache = dir.path().join("cache");
    let config = dir.path().join("routers.yaml");
    let args = [
        "check",
        "--config",
        &config.to_string_lossy(),
        "--cache-dir",
        &cache.to_string_lossy(),
    ];
    let output = run(&args, Path::new("/"), "");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{stdout}");
    assert!(
        lines[0].ends_with("routers.yaml: 2 router(s), all loaded"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("1. example (")
            && lines[1].contains("routers/example.wasm, compiled in "),
        "{stdout}"
    );
    assert!(
        lines[2].contains("fuel 10000000 + 200000 per state, memory 64MiB, timeout 100ms"),
        "{stdout}"
    );
    assert_eq!(
        lines[3],
        "   failures: suspended after 5 failures in a row, for 1s doubling up to 5m"
    );
    assert!(lines[4].starts_with("2. scripted ("), "{stdout}");
    assert!(
        lines[5].contains("fuel 2000000 + 1000 per state, memory 16MiB, timeout 250ms"),
        "{stdout}"
    );
    assert_eq!(lines[6], "   failures: never suspended");

    // The second time, both components come from the cache.
    let output = run(&args, Path::new("/"), "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[1].contains("example.wasm, from the cache in "),
        "{stdout}"
    );
    assert!(
        lines[4].contains("scripted.wasm, from the cache in "),
        "{stdout}"
    );
    // And never with --no-cache.
    let output = run(
        &["check", "--config", &config.to_string_lossy(), "--no-cache"],
        Path::new("/"),
        "",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains(", compiled in ")),
        "{stdout}"
    );
}

#[test]
fn check_fails_with_the_file_the_key_and_what_was_expected() {
    let dir =
        config_dir("routers:\n  - component: routers/example.wasm\n    limits: {memory: lots}\n");
    let output = run(&["check", "--config", "routers.yaml"], dir.path(), "");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "error: routers.yaml: routers[0].limits.memory (router `example`): expected a size such as `64MiB` or `512KiB`, \
         or a number of bytes, found `lots` (line 3, column 22)"
    );
    assert!(output.stdout.is_empty());

    let output = run(&["route", "--config", "missing.yaml"], dir.path(), "");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .starts_with("error: missing.yaml: cannot read the configuration: ")
    );
}

#[test]
fn route_answers_each_line_in_order() {
    let dir = config_dir(TWO_ROUTERS);
    let input = [
        r#"{"get_users_for_states": [{"user_id": "@mallory:example.com", "state": "online"}, {"user_id": "@carol:remote.org", "state": "org.matrix.msc3026.busy", "last_active_ts": 1700000000000, "status_msg": "in a meeting", "currently_active": true}]}"#,
        r#"{"get_interested_users": "@alice:example.com"}"#,
        "",
        r#"{"get_interested_users": "@bob:example.com"}"#,
        "not json",
        r#"{"get_interested_users": "bob"}"#,
        r#"{"get_users_for_states": []}"#,
    ]
    .join("\n");
    let output = run(&["route", "--config", "routers.yaml"], dir.path(), &input);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let carol = json!({
        "user_id": "@carol:remote.org",
        "state": "org.matrix.msc3026.busy",
        "last_active_ts": 1700000000000u64,
        "last_federation_update_ts": 0,
        "last_user_sync_ts": 0,
        "status_msg": "in a meeting",
        "currently_active": true
    });
    assert_eq!(
        answers(&output),
        vec![
            json!({"users_for_states": {"@alice:example.com": [carol.clone()], "@bob:example.com": [carol]}}),
            json!({"interested_users": "ALL"}),
            json!({"interested_users": ["@carol:remote.org"]}),
            json!({"error": "not valid JSON: expected value at line 1 column 1"}),
            json!({"error": "get_interested_users: \"bob\" does not start with `@`"}),
            // The scripted router's index 1 is outside an empty batch.
            json!({
                "users_for_states": {"@alice:example.com": []},
                "failures": [{
                    "router": "scripted",
                    "kind": "invalid_answer",
                    "message": "route 0 (@bob:example.com): state index 1 is outside the batch of 0 state(s)"
                }]
            }),
        ]
    );
}

#[test]
fn route_reports_skipped_routers_and_sends() {
    let dir = config_dir(
        r#"
routers:
  - {name: example, component: routers/example.wasm, config: {always_send_to_users: ["@alice:example.com"]}}
  - {name: scripted, component: $SCRIPTED, limits: {fuel: 1000000, fuel_per_state: 0}}
"#,
    );
    let input = [
        r#"{"get_users_for_states": [{"user_id": "@spin:test", "state": "online"}]}"#,
        r#"{"get_users_for_states": [{"user_id": "@send:test", "state": "offline"}]}"#,
        r#"{"get_interested_users": "@panic:test"}"#,
    ]
    .join("\n");
    let output = run(&["route", "--config", "routers.yaml"], dir.path(), &input);
    assert!(output.status.success());
    let answers = answers(&output);
    assert_eq!(answers.len(), 3);
    assert_eq!(
        answers[0]["failures"],
        json!([{"router": "scripted", "kind": "out_of_fuel", "message": "`get-users-for-states` ran out of fuel (budget 1000000)"}])
    );
    assert_eq!(
        answers[0]["users_for_states"]["@alice:example.com"][0]["user_id"],
        "@spin:test"
    );
    assert_eq!(
        answers[1]["send_local_online_presence_to"],
        json!(["@dave:example.com", "@far_away_person:island"])
    );
    assert_eq!(answers[1].get("failures"), None);
    assert_eq!(answers[2]["interested_users"], json!([]));
    assert_eq!(answers[2]["failures"][0]["kind"], "trap");
    let message = answers[2]["failures"][0]["message"]
        .as_str()
        .expect("a string");
    assert!(
        message.contains("scripted panic for @panic:test"),
        "{message}"
    );
    // The skipped router is in the operator's log too, without colours:
    // stderr is not a terminal here (`route 2>file` gets plain text).
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("router skipped") && stderr.contains("scripted"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

#[test]
fn route_reports_a_suspension_in_the_failure() {
    let dir = config_dir(
        r#"
routers:
  - {name: example, component: routers/example.wasm, config: {always_send_to_users: ["@alice:example.com"]}}
  - {name: scripted, component: $SCRIPTED, failure_policy: {suspend_after: 2, backoff: 1m}}
"#,
    );
    let panic = r#"{"get_users_for_states": [{"user_id": "@panic:test", "state": "online"}]}"#;
    let input = [panic, panic, panic].join("\n");
    let output = run(&["route", "--config", "routers.yaml"], dir.path(), &input);
    assert!(output.status.success());
    let answers = answers(&output);
    assert_eq!(answers[0]["failures"][0].get("suspension"), None);
    assert_eq!(
        answers[1]["failures"][0]["suspension"],
        json!({"consecutive_failures": 2, "retry_in_ms": 60000})
    );
    let skipped = &answers[2]["failures"][0];
    assert_eq!(skipped["kind"], "trap");
    assert!(
        skipped["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("suspended after 2 failures in a row")
    );
    assert_eq!(skipped["suspension"]["consecutive_failures"], 2);
    assert_eq!(
        answers[2]["users_for_states"]["@alice:example.com"][0]["user_id"],
        "@panic:test"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("suspended for 1m after 2 failures in a row"),
        "{stderr}"
    );
}

const EXAMPLE_CONFIG_JSON: &str = r#"{"always_send_to_users": ["@alice:example.com"], "blacklisted_users": ["@mallory:example.com"]}"#;

#[test]
fn run_routes_through_one_component_as_route_does_through_a_config() {
    let dir = config_dir(
        r#"
routers:
  - component: routers/example.wasm
    config: {always_send_to_users: ["@alice:example.com"], blacklisted_users: ["@mallory:example.com"]}
"#,
    );
    let requests = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/batch.jsonl"),
    )
    .expect("the example batch");
    let cache = ["--cache-dir", guests::COMPONENT_CACHE_DIR];
    let routed = run(
        &[&["route", "--config", "routers.yaml"], &cache[..]].concat(),
        dir.path(),
        &requests,
    );
    let ran = run(
        &[
            &[
                "run",
                "--component",
                "routers/example.wasm",
                "--config-json",
                EXAMPLE_CONFIG_JSON,
            ],
            &cache[..],
        ]
        .concat(),
        dir.path(),
        &requests,
    );
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert_eq!(answers(&ran), answers(&routed));
    assert_eq!(answers(&ran).len(), requests.lines().count());
    assert_eq!(
        answers(&ran)[1],
        json!({"interested_users": "ALL"}),
        "the second request asks about @alice"
    );
}

#[test]
fn run_refuses_a_configuration_that_is_not_a_json_object() {
    let dir = config_dir("routers: []\n");
    let output = run(
        &[
            "run",
            "--component",
            "routers/example.wasm",
            "--config-json",
            "[1]",
        ],
        dir.path(),
        "",
    );
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "error: --config-json: must be a JSON object, such as '{}'"
    );
}

#[test]
fn test_passes_the_conformance_cases_and_prints_usage_against_the_limits() {
    let dir = config_dir("routers: []\n");
    let cases =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/example-router.yaml");
    let output = run(
        &[
            "test",
            "--component",
            "routers/example.wasm",
            "--config-json",
            r#"{"always_send_to_users": ["@alice:example.com", "@watcher:remote.org"], "blacklisted_users": ["@mallory:example.com"]}"#,
            "--cases",
            &cases.to_string_lossy(),
            "--cache-dir",
            guests::COMPONENT_CACHE_DIR,
        ],
        dir.path(),
        "",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.trim_end().ends_with("all passed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    // Every case that made a call shows its use of each limit.
    assert!(
        stdout.contains(" of 64MiB · answer ") && stdout.contains("s of 100ms"),
        "{stdout}"
    );
    assert!(stdout.contains(": they agree\n"), "{stdout}");
}

#[test]
fn test_fails_and_shows_the_diff_of_a_wrong_case() {
    let dir = config_dir("routers: []\n");
    write_file(
        dir.path(),
        "cases.yaml",
        r#"
cases:
  - name: mallory is routed (wrong)
    get_users_for_states:
      - {user_id: "@mallory:example.com", state: online}
    expect: {"@alice:example.com": [0]}
"#,
    );
    let output = run(
        &[
            "test",
            "--component",
            "routers/example.wasm",
            "--config-json",
            EXAMPLE_CONFIG_JSON,
            "--cases",
            "cases.yaml",
            "--cache-dir",
            guests::COMPONENT_CACHE_DIR,
        ],
        dir.path(),
        "",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("  FAIL  mallory is routed (wrong)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "        @alice:example.com: expected [0 (@mallory:example.com)], got []; \
             missing [0 (@mallory:example.com)]\n"
        ),
        "{stdout}"
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "error: 1 check(s) failed"
    );
}

#[test]
fn test_names_the_file_and_key_of_a_bad_case() {
    let dir = config_dir("routers: []\n");
    write_file(
        dir.path(),
        "cases.yaml",
        "cases:\n  - {name: a, get_interested_users: \"@a:x\", expect: 7}\n",
    );
    let output = run(
        &[
            "test",
            "--component",
            "routers/example.wasm",
            "--cases",
            "cases.yaml",
        ],
        dir.path(),
        "",
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: cases.yaml: cases[0].expect: "),
        "{stderr}"
    );
}

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

    let answers = answers(&output);
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
