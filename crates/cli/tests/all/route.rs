//! `route` and `run`: the JSON Lines contract, a line answered for each
//! request in order, skipped routers and sends reported in the answer;
//! `run` routes through one component as `route` does through a
//! configuration.

use std::path::Path;

use presence_router_tests::guests;
use serde_json::json;

use crate::support::{EXAMPLE_CONFIG_JSON, TWO_ROUTERS, config_dir, json_lines, run};

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
        json_lines(&output),
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
    let answers = json_lines(&output);
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
    let answers = json_lines(&output);
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
    assert_eq!(json_lines(&ran), json_lines(&routed));
    assert_eq!(json_lines(&ran).len(), requests.lines().count());
    assert_eq!(
        json_lines(&ran)[1],
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
