//! `route` and `run` as long-running servers: `--stats` on exit, and
//! SIGHUP reloading the configuration and components while requests are
//! answered.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use presence_router_tests::{guests, write_file};
use serde_json::{Value, json};

/// A running `presence-router`, spoken to one line at a time.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Receiver<String>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_presence-router"))
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs");
        let stderr = child.stderr.take().expect("piped");
        let (lines, stderr_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        Server {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().expect("piped")),
            stderr: stderr_lines,
            child,
        }
    }

    fn ask(&mut self, request: &Value) -> Value {
        let stdin = self.stdin.as_mut().expect("still open");
        writeln!(stdin, "{request}").expect("the binary reads stdin");
        stdin.flush().expect("flushes");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("an answer");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    fn hang_up(&self) {
        let pid = i32::try_from(self.child.id()).expect("a pid");
        // SAFETY: sending a signal to our own child has no memory effects.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    }

    /// The stderr lines up to the first containing `needle` (a minute at
    /// most: the reload compiles, however slowly the machine runs).
    fn wait_for(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.stderr.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(e) => panic!("no line with {needle:?} ({e}); saw {seen:#?}"),
            }
        }
    }

    /// Closes stdin and returns the rest of stderr once it exits.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let status = self.child.wait().expect("exits");
        assert!(status.success(), "{status}");
        self.stderr.iter().collect::<Vec<_>>().join("\n")
    }
}

const STATE: &str = "@u:x";

fn route_one() -> Value {
    json!({"get_users_for_states": [{"user_id": STATE, "state": "online"}]})
}

fn config(dir: &std::path::Path, always: &str) -> std::path::PathBuf {
    write_file(
        dir,
        "routers.yaml",
        format!(
            "routers:\n  - name: example\n    component: {}\n    config: {{always_send_to_users: [\"{always}\"]}}\n",
            guests::EXAMPLE_ROUTER
        ),
    )
}

#[test]
fn sighup_reloads_the_configuration_and_a_bad_one_leaves_the_old_serving() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = config(dir.path(), "@before:x");
    let cache = dir.path().join("cache");
    let mut server = Server::start(&[
        "route",
        "--config",
        &path.to_string_lossy(),
        "--cache-dir",
        &cache.to_string_lossy(),
        "--stats",
    ]);
    // Answered: the SIGHUP handler is installed.
    let answer = server.ask(&route_one());
    assert_eq!(
        answer["users_for_states"]["@before:x"][0]["user_id"], STATE,
        "{answer}"
    );

    config(dir.path(), "@after:x");
    server.hang_up();
    server.wait_for("reloaded the routers");
    let answer = server.ask(&route_one());
    assert!(
        answer["users_for_states"].get("@after:x").is_some(),
        "{answer}"
    );

    write_file(dir.path(), "routers.yaml", "routers: [nonsense");
    server.hang_up();
    let lines = server.wait_for("reloading failed");
    let error = lines.last().expect("the line");
    assert!(
        error.contains("the running version goes on serving") && error.contains("routers.yaml"),
        "{error}"
    );
    let answer = server.ask(&route_one());
    assert!(
        answer["users_for_states"].get("@after:x").is_some(),
        "{answer}"
    );

    let stats = server.finish();
    assert!(stats.contains("router `example`"), "{stats}");
    assert!(
        stats.contains("get_users_for_states: 3 call(s), 0 failed"),
        "{stats}"
    );
    assert!(stats.contains("reloads: 1 ok, 0 failed"), "{stats}");
    assert!(stats.contains("set reloads: 1 ok, 1 failed"), "{stats}");
}

#[test]
fn stats_count_calls_and_failures_per_kind() {
    let mut server = Server::start(&[
        "run",
        "--component",
        guests::HOSTILE_PANIC,
        "--no-cache",
        "--stats",
    ]);
    for _ in 0..2 {
        let answer = server.ask(&route_one());
        assert_eq!(answer["failures"][0]["kind"], "trap", "{answer}");
    }
    let answer = server.ask(&json!({"get_interested_users": STATE}));
    assert_eq!(answer["failures"][0]["kind"], "trap", "{answer}");
    let stats = server.finish();
    assert!(
        stats.contains("get_users_for_states: 2 call(s), 2 failed (trap 2)"),
        "{stats}"
    );
    assert!(
        stats.contains("get_interested_users: 1 call(s), 1 failed (trap 1)"),
        "{stats}"
    );
}
