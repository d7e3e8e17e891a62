//! What the binary's end-to-end tests share: running it on some input,
//! reading its JSON Lines output, and configurations to run it with.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use presence_router_tests::{guests, with_guest_paths, write_file};
use serde_json::Value;

/// Runs `presence-router ARGS` in `cwd` with `stdin` as its input, `RUST_LOG`
/// at `log` unless `env` says otherwise.
pub fn run_binary(
    args: &[&str],
    cwd: &Path,
    stdin: &str,
    log: &str,
    env: &[(&str, &str)],
) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_presence-router"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", log)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.as_bytes())
        .expect("the binary reads stdin");
    child.wait_with_output().expect("the binary exits")
}

/// Every line of stdout, each of which must be JSON.
pub fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line on stdout is JSON"))
        .collect()
}

pub fn run(args: &[&str], cwd: &Path, stdin: &str) -> Output {
    run_with_env(args, cwd, stdin, &[])
}

pub fn run_with_env(args: &[&str], cwd: &Path, stdin: &str, env: &[(&str, &str)]) -> Output {
    run_binary(args, cwd, stdin, "warn", env)
}

/// A directory with the example router at `routers/example.wasm` and each
/// `(name, yaml)` written beside it.
pub fn configs(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir(dir.path().join("routers")).expect("writable");
    std::fs::copy(
        guests::EXAMPLE_ROUTER,
        dir.path().join("routers/example.wasm"),
    )
    .expect("copied");
    for (name, yaml) in files {
        write_file(dir.path(), name, with_guest_paths(yaml));
    }
    dir
}

/// A configuration `routers.yaml` in its own directory, with the example
/// router copied next to it under a relative path (`routers/example.wasm`).
pub fn config_dir(yaml: &str) -> tempfile::TempDir {
    configs(&[("routers.yaml", yaml)])
}

/// The example router beside the scripted one, each with its own limits
/// and failure policy.
pub const TWO_ROUTERS: &str = r#"
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

/// The example router's configuration, for `run` and `test`.
pub const EXAMPLE_CONFIG_JSON: &str = r#"{"always_send_to_users": ["@alice:example.com"], "blacklisted_users": ["@mallory:example.com"]}"#;
