//! Canaries offline: `route` and `run` try a new version in shadow on
//! recorded requests, print each canary's trial and decision with
//! `--stats`, and record the divergent requests for `diff`.

use crate::support::{EXAMPLE_CONFIG_JSON, config_dir, json_lines, run, run_binary};

/// Mallory's update, which the live version holds back and the canary
/// without the blacklist routes: a divergent answer.
const FROM_MALLORY: &str =
    r#"{"get_users_for_states": [{"user_id": "@mallory:example.com", "state": "online"}]}"#;
const FROM_BOB: &str =
    r#"{"get_users_for_states": [{"user_id": "@bob:example.com", "state": "online"}]}"#;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn route_rejects_a_diverging_canary_and_diff_replays_what_it_recorded() {
    let dir = config_dir(
        r#"
routers:
  - name: example
    component: routers/example.wasm
    config: {always_send_to_users: ["@alice:example.com"], blacklisted_users: ["@mallory:example.com"]}
    canary:
      config: {always_send_to_users: ["@alice:example.com"]}
      promote_after: 10
      max_divergent: 1
      record_divergent: divergent.jsonl
"#,
    );
    let input = [
        FROM_BOB,
        FROM_MALLORY,
        FROM_BOB,
        FROM_MALLORY,
        FROM_BOB,
        FROM_MALLORY,
    ]
    .join("\n");
    let output = run_binary(
        &["route", "--config", "routers.yaml", "--stats"],
        dir.path(),
        &input,
        "info",
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    // Every answer is the live version's: Mallory's update goes nowhere.
    let answers = json_lines(&output);
    assert_eq!(answers.len(), 6);
    for (i, answer) in answers.iter().enumerate() {
        let routed = &answer["users_for_states"];
        if i % 2 == 1 {
            assert_eq!(
                routed,
                &serde_json::json!({"@alice:example.com": []}),
                "line {i}"
            );
        } else {
            assert_eq!(
                routed["@alice:example.com"].as_array().map(Vec::len),
                Some(1)
            );
        }
    }
    let log = stderr(&output);
    assert!(
        log.contains(
            "canary of router `example` (routers/example.wasm) rejected after 4 shadow call(s): \
             2 divergent answer(s), more than the 1 allowed (2 agreeing, 2 divergent, 0 failed); \
             the live version goes on serving; 2 divergent request(s) recorded in divergent.jsonl"
        ),
        "{log}"
    );
    assert!(
        log.contains(
            "canary of router `example` (routers/example.wasm)\n  4 shadow call(s): 2 agreeing, \
             2 divergent, 0 failed; 0 skipped; fuel per call"
        ),
        "{log}"
    );
    assert!(
        log.contains("decision: rejected: 2 divergent answer(s)"),
        "{log}"
    );
    // What it recorded, `diff` replays and explains.
    let recorded = std::fs::read_to_string(dir.path().join("divergent.jsonl")).expect("recorded");
    let lines: Vec<serde_json::Value> = recorded
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    let mallory: serde_json::Value = serde_json::from_str(FROM_MALLORY).expect("JSON");
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(
            line["get_users_for_states"][0]["user_id"],
            mallory["get_users_for_states"][0]["user_id"]
        );
    }
    let diff = run(
        &[
            "diff",
            "--component",
            "routers/example.wasm",
            "--config-json",
            EXAMPLE_CONFIG_JSON,
            "--with-config-json",
            r#"{"always_send_to_users": ["@alice:example.com"]}"#,
        ],
        dir.path(),
        &recorded,
    );
    assert_eq!(diff.status.code(), Some(1), "{}", stderr(&diff));
    let differences = json_lines(&diff);
    assert_eq!(differences.len(), 2);
    assert_eq!(
        differences[0]["users"]["@alice:example.com"]["old"],
        serde_json::json!([])
    );
}

#[test]
fn run_promotes_a_canary_on_agreeing_answers_and_then_serves_it() {
    let dir = config_dir("routers: []\n");
    std::fs::copy(
        dir.path().join("routers/example.wasm"),
        dir.path().join("routers/example-copy.wasm"),
    )
    .expect("copied");
    let input = [FROM_BOB, FROM_MALLORY, FROM_BOB, FROM_MALLORY].join("\n");
    let output = run_binary(
        &[
            "run",
            "--component",
            "routers/example.wasm",
            "--config-json",
            EXAMPLE_CONFIG_JSON,
            "--canary",
            "{component: routers/example-copy.wasm, promote_after: 3}",
            "--stats",
        ],
        dir.path(),
        &input,
        "info",
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        log.contains(
            "canary of router `example` (./routers/example-copy.wasm) promoted after 3 shadow \
             call(s): 3 agreeing, 0 divergent, 0 failed; its fuel per call 1.00× the live \
             version's; it is the live version now"
        ),
        "{log}"
    );
    assert!(log.contains("decision: promoted: 3 agreeing"), "{log}");
    // The fourth request was answered by the promoted version, alike.
    let answers = json_lines(&output);
    assert_eq!(
        answers[3]["users_for_states"],
        serde_json::json!({"@alice:example.com": []})
    );
    // A criterion the canary can't take is named.
    let refused = run(
        &[
            "run",
            "--component",
            "routers/example.wasm",
            "--canary",
            "{component: routers/example-copy.wasm, sample: 2}",
        ],
        dir.path(),
        "",
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("routers[0].canary.sample (router `example`): expected a share"),
        "{}",
        stderr(&refused)
    );
}
