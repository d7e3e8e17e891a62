//! `presence-router diff` end to end: the exact lines it reports for a
//! changed router, nothing for a router against itself, sends and failures
//! per side, malformed lines, and its exit statuses.

use std::path::Path;
use std::process::Output;

use presence_router_tests::guests;
use serde_json::{Value, json};

use crate::support::{configs, json_lines, run_binary};

/// Runs `presence-router diff ARGS` in `cwd` with the test cache, `stdin`
/// as its input.
fn diff(args: &[&str], cwd: &Path, stdin: &str) -> Output {
    let mut all = vec!["diff"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--cache-dir", guests::COMPONENT_CACHE_DIR]);
    run_binary(&all, cwd, stdin, "error", &[])
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const OLD: &str = r#"
routers:
  - name: example
    component: routers/example.wasm
    config: {always_send_to_users: ["@alice:example.com"], blacklisted_users: ["@mallory:example.com"]}
"#;

/// The same router, with one more user who gets everything.
const NEW: &str = r#"
routers:
  - name: example
    component: routers/example.wasm
    config: {always_send_to_users: ["@alice:example.com", "@dave:example.com"], blacklisted_users: ["@mallory:example.com"]}
"#;

fn state(user_id: &str) -> Value {
    json!({
        "user_id": user_id,
        "state": "online",
        "last_active_ts": 0,
        "last_federation_update_ts": 0,
        "last_user_sync_ts": 0,
        "status_msg": null,
        "currently_active": false
    })
}

const REQUESTS: &str = concat!(
    r#"{"get_users_for_states": [{"user_id": "@bob:example.com", "state": "online"}, {"user_id": "@mallory:example.com", "state": "online"}]}"#,
    "\n",
    r#"{"get_interested_users": "@dave:example.com"}"#,
    "\n",
    r#"{"get_interested_users": "@alice:example.com"}"#,
    "\n",
    "\n",
    "not json\n",
    // Empty entries on both sides, one more on the new: no state is routed
    // differently.
    r#"{"get_users_for_states": []}"#,
    "\n",
);

#[test]
fn a_changed_configuration_shows_exactly_the_users_it_routes_differently() {
    let dir = configs(&[("old.yaml", OLD), ("new.yaml", NEW)]);
    let output = diff(
        &["--config", "old.yaml", "--with", "new.yaml"],
        dir.path(),
        REQUESTS,
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        json_lines(&output),
        vec![
            // @alice's states are the same; @mallory is blacklisted on both.
            json!({"line": 1, "request": "get_users_for_states", "users": {
                "@dave:example.com": {"old": [], "new": [state("@bob:example.com")]}
            }}),
            json!({"line": 2, "request": "get_interested_users", "user_id": "@dave:example.com",
                   "interested_users": {"old": [], "new": "ALL"}}),
            json!({"line": 5, "malformed": "not valid JSON: expected value at line 1 column 1"}),
        ]
    );
    let summary = stderr(&output);
    for expected in [
        "diff: old: old.yaml\n",
        "diff: new: new.yaml\n",
        "diff: 4 request(s) replayed (2 get_users_for_states, 2 get_interested_users)\n",
        "diff: 2 answered differently, concerning 1 user(s)\n",
        "diff: router failures in 0 request(s) on the old side, 0 on the new side\n",
        "diff: 1 malformed line(s), not replayed\n",
        "diff: DIFFERENT (the lines on stdout say where)\n",
    ] {
        assert!(summary.contains(expected), "{expected:?} in {summary}");
    }
}

#[test]
fn a_router_against_itself_differs_in_nothing() {
    let dir = configs(&[("old.yaml", OLD)]);
    let requests = REQUESTS.replace("not json\n", "");
    let output = diff(
        &["--config", "old.yaml", "--with", "old.yaml"],
        dir.path(),
        &requests,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(json_lines(&output), Vec::<Value>::new());
    let summary = stderr(&output);
    assert!(
        summary.contains("diff: 4 request(s) replayed")
            && summary.contains("diff: 0 answered differently, concerning 0 user(s)")
            && summary.ends_with("diff: no difference\n"),
        "{summary}"
    );

    // The same with one component and its configuration on both sides.
    let config = r#"{"always_send_to_users": ["@alice:example.com"]}"#;
    let output = diff(
        &[
            "--component",
            "routers/example.wasm",
            "--with-component",
            "routers/example.wasm",
            "--config-json",
            config,
        ],
        dir.path(),
        &requests,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(json_lines(&output), Vec::<Value>::new());
}

#[test]
fn two_configurations_of_one_component_are_compared() {
    let dir = configs(&[]);
    let output = diff(
        &[
            "--component",
            "routers/example.wasm",
            "--config-json",
            r#"{"always_send_to_users": ["@alice:example.com"], "blacklisted_users": ["@mallory:example.com"]}"#,
            "--with-config-json",
            r#"{"always_send_to_users": ["@alice:example.com"]}"#,
        ],
        dir.path(),
        &REQUESTS.replace("not json\n", ""),
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        json_lines(&output),
        vec![
            json!({"line": 1, "request": "get_users_for_states", "users": {
                "@alice:example.com": {
                    "old": [state("@bob:example.com")],
                    "new": [state("@bob:example.com"), state("@mallory:example.com")]
                }
            }})
        ]
    );
    assert!(
        stderr(&output).contains(
            "diff: new: routers/example.wasm with {\"always_send_to_users\":[\"@alice:example.com\"]}\n"
        ),
        "{}",
        stderr(&output)
    );
}

#[test]
fn sends_and_failures_are_compared_per_side() {
    // The new version adds the scripted router: it sends presence for
    // `@send:test` and panics on `@panic:test`.
    let with_scripted = format!(
        "{OLD}  - {{name: scripted, component: $SCRIPTED, failure_policy: {{suspend_after: 0}}}}\n"
    );
    let dir = configs(&[("old.yaml", OLD), ("new.yaml", &with_scripted)]);
    let requests = [
        r#"{"get_users_for_states": [{"user_id": "@send:test", "state": "offline"}]}"#,
        r#"{"get_interested_users": "@panic:test"}"#,
        r#"{"get_interested_users": "@bob:example.com"}"#,
    ]
    .join("\n");
    let output = diff(
        &["--config", "old.yaml", "--with", "new.yaml"],
        dir.path(),
        &requests,
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        json!({"line": 1, "request": "get_users_for_states",
               "send_local_online_presence_to": {
                   "old": [], "new": ["@dave:example.com", "@far_away_person:island"]}})
    );
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[1]["user_id"], "@panic:test");
    assert_eq!(lines[1].get("interested_users"), None, "both answered []");
    assert_eq!(lines[1]["failures"]["old"], json!([]));
    let failure = &lines[1]["failures"]["new"][0];
    assert_eq!(
        (&failure["router"], &failure["kind"]),
        (&json!("scripted"), &json!("trap"))
    );
    assert!(
        failure["message"]
            .as_str()
            .is_some_and(|m| m.contains("scripted panic for @panic:test")),
        "{failure}"
    );
    let summary = stderr(&output);
    assert!(
        summary.contains("diff: 1 answered differently, concerning 2 user(s)\n")
            && summary.contains(
                "diff: router failures in 0 request(s) on the old side, 1 on the new side\n"
            ),
        "{summary}"
    );
}

#[test]
fn a_diff_that_cannot_run_exits_2_and_says_why() {
    let dir = configs(&[("old.yaml", OLD)]);
    let cases: [(&[&str], &str); 5] = [
        (
            &["--config", "old.yaml", "--with", "missing.yaml"],
            "error: the new routers (missing.yaml): missing.yaml: cannot read the configuration",
        ),
        (
            &[
                "--component",
                "routers/example.wasm",
                "--with-config-json",
                "{",
            ],
            "error: --with-config-json: not valid JSON",
        ),
        (
            &["--config", "old.yaml", "--with-config-json", "{}"],
            "error: --with-config-json needs a component to configure",
        ),
        (
            &[
                "--component",
                "routers/example.wasm",
                "--with-component",
                "routers/none.wasm",
            ],
            "error: the new routers (routers/none.wasm with {}): ",
        ),
        // clap's own refusal: no new side at all.
        (
            &["--config", "old.yaml"],
            "the following required arguments were not provided",
        ),
    ];
    for (args, expected) in cases {
        let output = diff(args, dir.path(), "");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
        if args.contains(&"routers/none.wasm") {
            assert!(
                stderr(&output).contains("routers/none.wasm: cannot read the component"),
                "{}",
                stderr(&output)
            );
        }
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

/// `--config-json` for the example router sending everything to `n` users
/// `@u000:example.com` ...
fn sending_to(n: usize) -> String {
    let users: Vec<String> = (0..n).map(|i| format!("@u{i:03}:example.com")).collect();
    json!({ "always_send_to_users": users }).to_string()
}

#[test]
fn a_request_routed_to_many_users_gives_a_bounded_line() {
    let dir = configs(&[]);
    let small =
        json!({"get_users_for_states": [{"user_id": "@bob:example.com", "state": "online"}]});
    // A remote user's status message of 1 MiB, routed to 300 users.
    let big = json!({"get_users_for_states": [{
        "user_id": "@bob:example.com", "state": "online", "status_msg": "x".repeat(1 << 20)
    }]});
    let output = diff(
        &[
            "--component",
            "routers/example.wasm",
            "--config-json",
            "{}",
            "--with-config-json",
            &sending_to(300),
        ],
        dir.path(),
        &format!("{small}\n{big}\n"),
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let raw: Vec<&str> = text.lines().collect();
    assert_eq!(raw.len(), 2, "{}", stderr(&output));
    let lines = json_lines(&output);

    // At most 100 users a line, in order; the rest counted.
    let users = lines[0]["users"].as_object().expect("users");
    let listed: Vec<&String> = users.keys().collect();
    assert_eq!(listed.len(), 100);
    let first_100: Vec<String> = (0..100).map(|i| format!("@u{i:03}:example.com")).collect();
    assert_eq!(listed, first_100.iter().collect::<Vec<_>>());
    assert_eq!(
        users["@u000:example.com"],
        json!({"old": [], "new": [state("@bob:example.com")]})
    );
    assert_eq!(lines[0]["more_users"], json!(200));

    // Big states: fewer users listed, the line stays within its budget
    // (16 MiB of states, and one user's), not 300 MiB.
    let listed = lines[1]["users"].as_object().expect("users").len();
    let more = lines[1]["more_users"].as_u64().expect("more_users") as usize;
    assert!((1..100).contains(&listed), "{listed}");
    assert_eq!(listed + more, 300);
    assert!(raw[1].len() < 20 << 20, "{} bytes", raw[1].len());

    // Every user counts in the summary.
    assert!(
        stderr(&output).contains("diff: 2 answered differently, concerning 300 user(s)\n"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_line_past_64_mib_is_malformed_and_skipped_and_the_replay_goes_on() {
    let dir = configs(&[("old.yaml", OLD), ("new.yaml", NEW)]);
    let mut input = String::with_capacity((64 << 20) + 200);
    input.push_str(r#"{"get_interested_users": ""#);
    input.push_str(&"x".repeat(64 << 20));
    input.push_str("\"}\n");
    input.push_str(r#"{"get_interested_users": "@dave:example.com"}"#);
    input.push('\n');
    let output = diff(
        &["--config", "old.yaml", "--with", "new.yaml"],
        dir.path(),
        &input,
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        json_lines(&output),
        vec![
            json!({"line": 1, "malformed": "longer than 64 MiB (67108864 bytes): not read"}),
            json!({"line": 2, "request": "get_interested_users", "user_id": "@dave:example.com",
                   "interested_users": {"old": [], "new": "ALL"}}),
        ]
    );
}

#[test]
fn a_last_line_cut_short_is_malformed_and_says_so() {
    let dir = configs(&[("old.yaml", OLD)]);
    let output = diff(
        &["--config", "old.yaml", "--with", "old.yaml"],
        dir.path(),
        "{\"get_interested_users\": \"@dave:example.com\"}\n{\"get_users_for_states\": [{\"user_id\": \"@bo",
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["line"], 2);
    let message = lines[0]["malformed"].as_str().expect("malformed");
    assert!(
        message.starts_with(
            "the last line has no newline at its end: cut short (was the recording \
             interrupted?): "
        ) && message.contains("not valid JSON: EOF while parsing"),
        "{message}"
    );
    assert!(
        stderr(&output).contains("diff: 1 malformed line(s), not replayed\n"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_long_config_json_is_shortened_in_the_summary() {
    let dir = configs(&[]);
    let config = sending_to(50);
    assert!(config.len() > 1000);
    let output = diff(
        &[
            "--component",
            "routers/example.wasm",
            "--with-component",
            "routers/example.wasm",
            "--config-json",
            &config,
        ],
        dir.path(),
        "",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let summary = stderr(&output);
    let old = summary
        .lines()
        .find(|line| line.starts_with("diff: old: "))
        .expect("the old side");
    let shown: String = config.chars().take(200).collect();
    assert_eq!(
        old,
        format!("diff: old: routers/example.wasm with {shown}…")
    );
}
