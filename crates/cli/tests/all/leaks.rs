//! `presence-router test`'s leak report, as printed: memory growth per call
//! on one instance, and exports that return an allocation with no
//! post-return to free it.

use std::path::Path;
use std::process::{Command, Output};

use presence_router_tests::components::without_post_returns;
use presence_router_tests::{CONFORMANCE_CONFIG, Language, example_router};
use presence_router_tests::{guests, write_file};

fn test(component: &Path, config_json: &str) -> (Output, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_presence-router"))
        .args(["test", "--component"])
        .arg(component)
        .args([
            "--config-json",
            config_json,
            "--cache-dir",
            guests::COMPONENT_CACHE_DIR,
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

/// The lines of one section of the report, from its heading to the next
/// blank line.
fn section<'a>(stdout: &'a str, heading: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .skip_while(|line| !line.starts_with(heading))
        .skip(1)
        .take_while(|line| !line.is_empty())
        .collect()
}

/// `~4,032 bytes per call` in a line, as a number.
fn bytes_per_call(line: &str) -> u64 {
    let digits: String = line
        .split_once("leaks ~")
        .and_then(|(_, rest)| rest.split_once(" bytes per call"))
        .map(|(number, _)| number.replace(',', ""))
        .unwrap_or_else(|| panic!("no rate in {line:?}"));
    digits.parse().unwrap_or_else(|e| panic!("{digits:?}: {e}"))
}

#[test]
fn the_example_router_is_flat_and_frees_what_it_returns() {
    let (output, stdout) = test(Path::new(guests::EXAMPLE_ROUTER), CONFORMANCE_CONFIG);
    assert!(output.status.success(), "{stdout}");
    assert_eq!(
        section(
            &stdout,
            "memory across calls, on one instance: 200 warm-up calls, then of each callback until \
             5,000 calls in a row leave it unchanged (at most 12,000)"
        ),
        [
            // The call arena is in the component's static data.
            "  PASS  get-users-for-states: flat at 1344KiB over 5,000 calls (batches of 5 and 9 \
             states in turn)",
            "  PASS  get-interested-users: flat at 1344KiB over 5,000 calls (10 users in turn)",
        ]
    );
    assert_eq!(
        section(
            &stdout,
            "freeing what the exports return (post-return, from the component binary)"
        ),
        [
            "  PASS  parse-config frees what it returns (post-return)",
            "  PASS  get-users-for-states frees what it returns (post-return)",
            "  PASS  get-interested-users frees what it returns (post-return)",
        ]
    );
    assert!(stdout.ends_with("\nall passed\n"), "{stdout}");
}

#[test]
fn a_leak_is_a_warning_with_its_rate_and_when_it_traps() {
    let (output, stdout) = test(Path::new(guests::LEAKY), r#"{"leak_bytes": 4000}"#);
    // A warning: the runtime contains a leak, and the author decides.
    assert!(output.status.success(), "{stdout}");
    let growth = section(&stdout, "memory across calls, on one instance: ");
    assert_eq!(growth.len(), 2, "{stdout}");
    for (line, export) in growth
        .iter()
        .zip(["get-users-for-states", "get-interested-users"])
    {
        assert!(
            line.starts_with(&format!("  WARN  {export}: leaks ~")),
            "{line}"
        );
        assert!(
            line.contains(" bytes per call: at the 64MiB memory limit it traps after ~"),
            "{line}"
        );
        assert!((4_000..4_100).contains(&bytes_per_call(line)), "{line}");
    }
    assert!(
        stdout.ends_with("\nall passed, with 2 warning(s) (WARN above)\n"),
        "{stdout}"
    );
}

#[test]
fn exports_without_post_return_are_named_and_their_leak_measured() {
    let bytes = std::fs::read(guests::EXAMPLE_ROUTER).expect("built");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stripped = write_file(dir.path(), "stripped.wasm", without_post_returns(&bytes));
    let (output, stdout) = test(&stripped, CONFORMANCE_CONFIG);
    assert!(output.status.success(), "{stdout}");
    assert_eq!(
        section(
            &stdout,
            "freeing what the exports return (post-return, from the component binary)"
        ),
        [
            "parse-config",
            "get-users-for-states",
            "get-interested-users"
        ]
        .map(|name| format!(
            "  WARN  {name} returns an allocation but has no post-return: everything it \
             returns is leaked on every call"
        ))
    );
    let growth = section(&stdout, "memory across calls, on one instance: ");
    assert!(
        growth[0].starts_with("  WARN  get-users-for-states: leaks ~"),
        "{stdout}"
    );
    assert!(bytes_per_call(growth[0]) > 50, "{stdout}");
    // Its get-interested-users answers allocate nothing: nothing leaks.
    assert!(
        growth[1].starts_with("  PASS  get-interested-users: flat at "),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("\nall passed, with 4 warning(s) (WARN above)\n"),
        "{stdout}"
    );
}

#[test]
fn the_unfixed_cpp_build_is_flagged_by_both_checks() {
    let (output, stdout) = test(
        Path::new(example_router!(Language::CppLeaky)),
        CONFORMANCE_CONFIG,
    );
    assert!(output.status.success(), "{stdout}");
    let growth = section(&stdout, "memory across calls, on one instance: ");
    assert!(
        growth[0].starts_with("  WARN  get-users-for-states: leaks ~")
            && growth[0].contains(" bytes per call: at the 64MiB memory limit it traps after ~"),
        "{stdout}"
    );
    assert!(bytes_per_call(growth[0]) > 300, "{stdout}");
    assert_eq!(
        section(
            &stdout,
            "freeing what the exports return (post-return, from the component binary)"
        ),
        [
            "parse-config",
            "get-users-for-states",
            "get-interested-users"
        ]
        .map(|name| format!(
            "  WARN  {name} returns an allocation but has no post-return: everything it \
             returns is leaked on every call"
        ))
    );
}
