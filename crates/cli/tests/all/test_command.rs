//! `presence-router test`: the conformance cases pass with each case's use
//! of the limits shown, a wrong case fails with its diff, a bad case file
//! is named by file and key. (Its leak report: `leaks.rs`.)

use std::path::Path;

use presence_router_tests::{CONFORMANCE_CONFIG, guests, write_file};

use crate::support::{EXAMPLE_CONFIG_JSON, config_dir, run};

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
            CONFORMANCE_CONFIG,
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

#[test]
fn a_call_over_the_authors_cost_budget_fails_the_test_and_says_by_how_much() {
    let dir = config_dir("routers: []\n");
    write_file(
        dir.path(),
        "cases.yaml",
        r#"
budgets: {fuel_per_call: 100000000, fuel_per_state: 10000000, memory: 64MiB, answer_entries: 100000}
cases:
  - name: mallory is not routed
    get_users_for_states:
      - {user_id: "@mallory:example.com", state: online}
    expect: {}
"#,
    );
    let test = |extra: &[&str]| {
        let mut args = vec![
            "test",
            "--component",
            "routers/example.wasm",
            "--config-json",
            EXAMPLE_CONFIG_JSON,
            "--cases",
            "cases.yaml",
            "--cache-dir",
            guests::COMPONENT_CACHE_DIR,
        ];
        args.extend_from_slice(extra);
        run(&args, dir.path(), "")
    };
    // Within the file's budgets: every case that made a call passes them.
    let output = test(&[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "\ncost budgets: fuel 100,000,000 per call, fuel 10,000,000 per state, memory \
             64MiB, answers of 100,000 entries\n  PASS  "
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("  PASS  mallory is not routed\n"),
        "{stdout}"
    );
    // The command line wins: one unit of fuel per call fails every call.
    let output = test(&["--max-fuel-per-call", "1", "--max-memory", "64KiB"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("cost budgets: fuel 1 per call, fuel 10,000,000 per state, memory 64KiB"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  FAIL  mallory is not routed\n        fuel ")
            && stdout.contains(" for the call, over the budget of 1 per call\n")
            && stdout.contains(", over the budget of 64KiB\n"),
        "{stdout}"
    );
    // A bad budget is named.
    let output = test(&["--max-memory", "lots"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("expected a size such as `2MiB`"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
