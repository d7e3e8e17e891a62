//! `test --against`: two routers on the same requests. A router and a
//! faithful port agree (exit 0); a regression is found, shrunk to one
//! state, and reported the same way for the same seed (exit 1); a Python
//! router is run without Synapse; `--replay` answers a JSON line per
//! request.

use std::path::Path;

use presence_router_tests::{CONFORMANCE_CONFIG, guests, write_file};

use crate::support::{config_dir, json_lines, run};

/// The documentation's Python router, as the e2e tests run it in Synapse.
fn python_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../synapse-module/e2e")
}

/// `test` of the example router (with the conformance configuration)
/// against `against`, with `extra` arguments, in `dir`.
fn test_against(dir: &Path, against: &str, extra: &[&str], stdin: &str) -> std::process::Output {
    let mut args = vec![
        "test",
        "--component",
        "routers/example.wasm",
        "--config-json",
        CONFORMANCE_CONFIG,
        "--against",
        against,
        "--cache-dir",
        guests::COMPONENT_CACHE_DIR,
    ];
    args.extend_from_slice(extra);
    run(&args, dir, stdin)
}

#[test]
fn the_rust_example_agrees_with_the_documentations_python_router() {
    let dir = config_dir("routers: []\n");
    let python_path = python_dir();
    let output = test_against(
        dir.path(),
        "python:example_presence_router.ExamplePresenceRouter",
        &[
            "--python-path",
            &python_path.to_string_lossy(),
            "--requests",
            "300",
        ],
        "",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("PASS  300 requests answered alike"),
        "{stdout}"
    );
    assert!(stdout.contains("seed "), "{stdout}");
}

#[test]
fn a_legacy_python_router_with_plain_methods_agrees() {
    let dir = config_dir("routers: []\n");
    // Synapse's legacy `presence.presence_router` form: methods looked up
    // by name, plain functions allowed; a faithful port of the example.
    write_file(
        dir.path(),
        "legacy_port.py",
        r#"
class Router:
    def __init__(self, config, api):
        self.users = set(config.get("always_send_to_users", []))
        self.blacklisted = set(config.get("blacklisted_users", []))

    def get_users_for_states(self, states):
        kept = {s for s in states if s.user_id not in self.blacklisted}
        return {user: set(kept) for user in self.users}

    def get_interested_users(self, user_id):
        return "ALL" if user_id in self.users else set()
"#,
    );
    let output = test_against(
        dir.path(),
        "python:legacy_port.Router",
        &["--python-path", ".", "--requests", "200"],
        "",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_regression_is_found_shrunk_and_repeated_by_its_seed() {
    let dir = config_dir("routers: []\n");
    let args = ["--seed", "42", "--max-states", "12"];
    let output = test_against(dir.path(), guests::EXAMPLE_V2, &args, "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    // The second version routes the blacklisted user's update: the smallest
    // batch that shows it is that one update.
    let request = stdout
        .lines()
        .skip_while(|line| !line.starts_with("  request"))
        .nth(1)
        .expect("the request line");
    let request: serde_json::Value = serde_json::from_str(request.trim()).expect("JSON");
    let batch = request["get_users_for_states"].as_array().expect("a batch");
    assert_eq!(batch.len(), 1, "{stdout}");
    assert_eq!(batch[0]["user_id"], "@mallory:example.com", "{stdout}");
    // Shrunk to plain fields, too.
    assert_eq!(batch[0]["status_msg"], serde_json::Value::Null, "{stdout}");
    assert!(stdout.contains("FAIL  "), "{stdout}");
    assert!(stdout.contains("seed 42"), "{stdout}");
    // The same seed, the same report.
    let again = test_against(dir.path(), guests::EXAMPLE_V2, &args, "");
    assert_eq!(String::from_utf8_lossy(&again.stdout), stdout);
}

#[test]
fn a_python_router_that_raises_is_a_difference_not_a_crash() {
    let dir = config_dir("routers: []\n");
    // The documentation's listing verbatim reads `update.state_key`, which
    // `UserPresenceState` does not have.
    write_file(
        dir.path(),
        "verbatim_docs.py",
        r#"
from synapse.module_api import ModuleApi

class Router:
    def __init__(self, config, api: ModuleApi):
        self.users = config.get("always_send_to_users", [])
        self.blacklisted = config.get("blacklisted_users", [])

    async def get_users_for_states(self, state_updates):
        desired = {u for u in state_updates if u.state_key not in self.blacklisted}
        return {user: desired for user in self.users}

    async def get_interested_users(self, user_id):
        print("a router's print goes to stderr, not into the protocol")
        return "ALL" if user_id in self.users else set()
"#,
    );
    let output = test_against(
        dir.path(),
        "python:verbatim_docs.Router",
        &["--python-path", ".", "--seed", "1"],
        "",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(r#""failed":"AttributeError"#) && stdout.contains("state_key"),
        "{stdout}"
    );
}

#[test]
fn replay_answers_a_line_per_request_and_stops_at_the_first_difference() {
    let dir = config_dir("routers: []\n");
    let requests = concat!(
        r#"{"get_users_for_states": [{"user_id": "@bob:example.com", "state": "online"}]}"#,
        "\n",
        r#"{"get_interested_users": "@alice:example.com"}"#,
        "\n",
        r#"{"get_users_for_states": [{"user_id": "@bob:example.com", "state": "online"}, {"user_id": "@mallory:example.com", "state": "offline", "status_msg": "x"}]}"#,
        "\n",
        r#"{"get_interested_users": "@bob:example.com"}"#,
        "\n",
    );
    let output = test_against(dir.path(), guests::EXAMPLE_V2, &["--replay", "-"], requests);
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["agree"], true);
    assert_eq!(lines[1]["agree"], true);
    let differ = &lines[2]["differ"];
    assert_eq!(differ["line"], 3);
    assert_eq!(differ["original_states"], 2);
    assert_eq!(
        differ["request"]["get_users_for_states"][0]["user_id"],
        "@mallory:example.com"
    );
}

#[test]
fn a_router_that_will_not_load_is_exit_2() {
    let dir = config_dir("routers: []\n");
    let output = run(
        &[
            "test",
            "--component",
            "routers/example.wasm",
            "--against",
            "python:no_such_module.Router",
            "--no-cache",
        ],
        dir.path(),
        "",
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no_such_module.Router (Python") && stderr.contains("ModuleNotFoundError"),
        "{stderr}"
    );
}
