//! What the binary's end-to-end tests share: running it on some input, and
//! reading its JSON Lines output.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

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
