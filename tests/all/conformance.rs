//! One conformance suite for the example router in every language: the
//! cases of `tests/conformance/example-router.yaml`, the test kit's
//! built-in cases and its consistency check, run through the runtime
//! against the Rust, JavaScript, Python, C, C++, Zig and Go components. Also: the kit itself
//! catches what it is for (a wrong answer, callbacks that disagree, a
//! router that needs more than the limits).

use std::path::Path;

use presence_router_runtime::Limits;
use presence_router_testkit::{TestKit, check_consistency, read_case_file};
use presence_router_tests::{CONFORMANCE_CONFIG, guests, test_load_options};
use presence_router_tests::{Language, example_router};

const CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/conformance/example-router.yaml"
);

/// Every failed check of one component, as readable lines: what
/// `presence-router test` runs, with the conformance cases.
async fn conformance_failures(component: &str) -> Vec<String> {
    conformance_failures_of(component, Path::new(CASES), CONFORMANCE_CONFIG).await
}

/// [`conformance_failures`] with another release's cases and configuration.
pub(crate) async fn conformance_failures_of(
    component: &str,
    cases: &Path,
    config_json: &str,
) -> Vec<String> {
    let mut kit = TestKit::new(
        Path::new(component),
        config_json,
        test_load_options(),
        Limits::DEFAULT,
    );
    let cases = read_case_file(cases).expect("the conformance cases parse");
    assert!(cases.len() >= 15, "{} cases", cases.len());
    let run = kit.run_all(&cases).await.expect("it loads");
    assert_eq!(run.cases.len(), cases.len());
    assert_eq!(run.builtin.len(), kit.builtin_cases().len());
    let mut failures: Vec<String> = run
        .builtin
        .iter()
        .chain(&run.cases)
        .filter(|result| !result.passed)
        .map(|result| format!("{}: {}", result.name, result.details.join(" / ")))
        .collect();
    match run.consistency {
        Ok((mismatches, _)) => failures.extend(mismatches.into_iter().map(|m| m.what)),
        Err(message) => failures.push(message),
    }
    failures
}

#[tokio::test]
async fn the_rust_example_router_conforms() {
    assert_eq!(
        conformance_failures(guests::EXAMPLE_ROUTER).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn the_javascript_example_router_conforms() {
    assert_eq!(
        conformance_failures(example_router!(Language::Js)).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn the_python_example_router_conforms() {
    assert_eq!(
        conformance_failures(example_router!(Language::Python)).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn the_c_example_router_conforms() {
    assert_eq!(
        conformance_failures(example_router!(Language::C)).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn the_cpp_example_router_conforms() {
    assert_eq!(
        conformance_failures(example_router!(Language::Cpp)).await,
        Vec::<String>::new()
    );
}

/// What a router says when it refuses `config`: the text after the
/// runtime's "the router refused its configuration: ".
async fn refusal(component: &str, config: &str) -> String {
    let routers =
        presence_router_testkit::single_router(Path::new(component), config, Limits::DEFAULT);
    let loaded = presence_router_runtime::RouterSet::load_with(
        &routers,
        std::sync::Arc::new(presence_router_runtime::LoggingModuleApi),
        &test_load_options(),
    )
    .await;
    let error = match loaded {
        Ok(_) => return format!("accepted {config}"),
        Err(e) => e.to_string(),
    };
    match error.split_once("the router refused its configuration: ") {
        Some((_, message)) => message.to_owned(),
        None => panic!("{component} with {config}: {error}"),
    }
}

/// Asserts every one of `configs` is refused by `reference`, and by each of
/// `components` in exactly its words.
async fn refuse_alike(reference: &str, components: &[&str], configs: &[&str]) {
    for config in configs {
        let expected = refusal(reference, config).await;
        assert!(!expected.starts_with("accepted"), "{expected}");
        for component in components {
            assert_eq!(
                refusal(component, config).await,
                expected,
                "{component} with {config}"
            );
        }
    }
}

#[tokio::test]
async fn the_c_and_cpp_routers_refuse_in_the_rust_routers_words() {
    // serde_json's messages, key path and position included; the C and C++
    // readers are written to say the same (the JavaScript and Python
    // routers only name the key).
    let configs = [
        r#"{"colour": "blue"}"#,
        r#"{"always_send_to_users": [], "zz": [1, 2]}"#,
        r#"{"always_send_to_users": "@a:example.com"}"#,
        r#"{"always_send_to_users": "a \"quoted\"\n\u0007 string"}"#,
        r#"{"always_send_to_users": {"x": 1}}"#,
        r#"{"blacklisted_users": null}"#,
        r#"{"always_send_to_users": [1]}"#,
        r#"{"always_send_to_users": ["@a:example.com", -7]}"#,
        r#"{"blacklisted_users": [true]}"#,
        r#"{"blacklisted_users": [1.5]}"#,
        r#"{"blacklisted_users": [1e300]}"#,
        r#"{"blacklisted_users": [0.00001]}"#,
        r#"{"blacklisted_users": [12345678901234567890]}"#,
        r#"{"blacklisted_users": [[]]}"#,
        r#"{"blacklisted_users": [{}]}"#,
        r#"{"always_send_to_users": ["alice"]}"#,
        r#"{"always_send_to_users": ["@a:example.com"], "blacklisted_users": ["@:example.com"]}"#,
        r#"{"blacklisted_users": ["@mallory"], "always_send_to_users": ["é"]}"#,
    ];
    refuse_alike(
        guests::EXAMPLE_ROUTER,
        &[example_router!(Language::C), example_router!(Language::Cpp)],
        &configs,
    )
    .await;
}

#[tokio::test]
async fn the_zig_example_router_conforms() {
    assert_eq!(
        conformance_failures(example_router!(Language::Zig)).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn the_go_example_router_conforms() {
    assert_eq!(
        conformance_failures(example_router!(Language::Go)).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn the_zig_and_go_routers_refuse_in_the_python_routers_words() {
    // The words of the JavaScript and Python routers: the Rust router's key
    // path, what was expected and what was found, without serde_json's
    // position. The Zig and Go routers read JSON with their standard
    // libraries (std.json, encoding/json), which report neither serde's
    // words nor its positions.
    let configs = [
        r#"{"colour": "blue"}"#,
        r#"{"always_send_to_users": [], "zz": [1, 2]}"#,
        r#"{"always_send_to_users": "@a:example.com"}"#,
        r#"{"always_send_to_users": {"x": 1}}"#,
        r#"{"blacklisted_users": null}"#,
        r#"{"always_send_to_users": [1]}"#,
        r#"{"always_send_to_users": ["@a:example.com", -7]}"#,
        r#"{"blacklisted_users": [true]}"#,
        r#"{"blacklisted_users": [null]}"#,
        r#"{"blacklisted_users": [1.5]}"#,
        r#"{"blacklisted_users": [12345678901234567890]}"#,
        r#"{"blacklisted_users": [[]]}"#,
        r#"{"blacklisted_users": [{}]}"#,
        r#"{"always_send_to_users": ["alice"]}"#,
        r#"{"always_send_to_users": ["@a:example.com"], "blacklisted_users": ["@:example.com"]}"#,
        r#"{"blacklisted_users": ["@mallory"], "always_send_to_users": ["é"]}"#,
    ];
    refuse_alike(
        example_router!(Language::Python),
        &[
            example_router!(Language::Zig),
            example_router!(Language::Go),
        ],
        &configs,
    )
    .await;
}

#[tokio::test]
async fn a_wrong_expectation_fails_with_a_diff_naming_the_states() {
    let cases = presence_router_testkit::cases::parse_cases(
        r#"
cases:
  - name: wrong on purpose
    get_users_for_states:
      - {user_id: "@bob:example.com", state: online}
      - {user_id: "@mallory:example.com", state: online}
    expect: {"@alice:example.com": [0, 1]}
  - name: refusal expected, none comes
    config: {always_send_to_users: []}
    expect_config_error: "anything"
"#,
    )
    .expect("valid cases");
    let mut kit = TestKit::new(
        Path::new(guests::EXAMPLE_ROUTER),
        CONFORMANCE_CONFIG,
        test_load_options(),
        Limits::DEFAULT,
    );
    let wrong = kit.run_case(&cases[0]).await;
    assert!(!wrong.passed);
    assert_eq!(
        wrong.details,
        vec![
            "@alice:example.com: expected [0 (@bob:example.com), 1 (@mallory:example.com)], \
             got [0 (@bob:example.com)]; missing [1 (@mallory:example.com)]",
            "@watcher:remote.org: expected [], got [0 (@bob:example.com)]; unexpected \
             [0 (@bob:example.com)]",
        ]
    );
    // The call still reports what it used.
    assert_eq!(wrong.stats.map(|s| s.answer_entries), Some(4));
    let accepted = kit.run_case(&cases[1]).await;
    assert!(!accepted.passed);
    assert!(
        accepted.details[0].contains("was accepted"),
        "{:?}",
        accepted.details
    );
}

#[tokio::test]
async fn callbacks_that_disagree_are_reported_with_the_smallest_example() {
    // Routes every update to @w, but says @w is interested in no one.
    let config = r#"{"routes": {"@w:example.com": "all"}, "interested": {}}"#;
    let mut kit = TestKit::new(
        Path::new(guests::SCRIPTED),
        config,
        test_load_options(),
        Limits::DEFAULT,
    );
    let routers = kit.router_set(config, false).await.expect("it loads");
    let (mismatches, _) = check_consistency(&routers, config)
        .await
        .expect("the router answers");
    let about_kit0: Vec<_> = mismatches
        .iter()
        .filter(|m| m.sender == "@kit0:example.com")
        .collect();
    let [mismatch] = about_kit0.as_slice() else {
        panic!("one mismatch about @kit0: {mismatches:#?}");
    };
    assert_eq!(mismatch.user, "@w:example.com");
    assert!(
        mismatch.what.contains("does not name @kit0:example.com"),
        "{}",
        mismatch.what
    );
    assert_eq!(
        mismatch.example,
        "get-users-for-states([{user_id: @kit0:example.com, state: online}]) routes it to \
         @w:example.com; get-interested-users(@w:example.com) = {}"
    );
}

#[tokio::test]
async fn a_router_over_the_limits_is_told_what_it_needs() {
    let limits = Limits {
        fuel: 50_000,
        fuel_per_state: 10,
        ..Limits::DEFAULT
    };
    let mut kit = TestKit::new(
        Path::new(guests::EXAMPLE_ROUTER),
        CONFORMANCE_CONFIG,
        test_load_options(),
        limits,
    );
    let (name, call) = kit
        .builtin_cases()
        .into_iter()
        .find(|(name, _)| name.contains("1,000"))
        .expect("the large built-in case");
    let result = kit.run_builtin(&name, &call).await;
    assert!(!result.passed);
    assert!(
        result.details[0].starts_with("out_of_fuel:"),
        "{:?}",
        result.details
    );
    assert!(
        result.details[1].starts_with("with the limits raised, it needs fuel ")
            && result.details[1].contains("limits.fuel 50000 + limits.fuel_per_state 10 × 1000"),
        "{:?}",
        result.details
    );
}
