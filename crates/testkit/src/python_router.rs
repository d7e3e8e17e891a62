//! A Synapse presence router written in Python, run without Synapse in an
//! interpreter the author names: the other side of a differential test of
//! its wasm port. `python_router.py` makes the class as Synapse would and
//! answers JSON lines; this file starts it and speaks to it.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use presence_router_runtime::InterestedUsers;
use presence_router_runtime::jsonl::Request;
use serde::Deserialize;

use crate::router_answer::{Answer, Outcome};

/// The driver, run with `python -c`.
const DRIVER: &str = include_str!("python_router.py");

/// How long the Python router may take to start or to answer one request
/// before the test gives up on it (a router stuck in a loop).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// One Python router class, made once, serving requests in order.
pub struct PythonRouter {
    child: Child,
    stdin: ChildStdin,
    /// Its stdout's lines, read on a thread of their own so that a router
    /// that never answers can be given up on.
    lines: Receiver<std::io::Result<String>>,
    describe: String,
}

/// What the driver answers to one request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply {
    #[serde(default)]
    routes: Option<std::collections::BTreeMap<String, BTreeSet<u32>>>,
    #[serde(default)]
    interested: Option<Interest>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    sends: BTreeSet<String>,
    #[serde(default)]
    ready: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Interest {
    All(String),
    Users(BTreeSet<String>),
}

impl PythonRouter {
    /// Starts `python` with `class` (`module.Class`, importable from the
    /// working directory or `python_path`) and its configuration; fails
    /// with the router's own words if it refuses the configuration.
    pub fn start(
        python: &Path,
        class: &str,
        config_json: &str,
        python_path: Option<&Path>,
    ) -> Result<Self, String> {
        let describe = format!("{class} (Python, {})", python.display());
        let mut command = Command::new(python);
        command
            .arg("-c")
            .arg(DRIVER)
            .arg(class)
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(dir) = python_path {
            let mut paths = vec![PathBuf::from(dir)];
            if let Some(existing) = std::env::var_os("PYTHONPATH") {
                paths.extend(std::env::split_paths(&existing));
            }
            let joined = std::env::join_paths(paths)
                .map_err(|e| format!("--python-path {}: {e}", dir.display()))?;
            command.env("PYTHONPATH", joined);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("{describe}: cannot start {}: {e}", python.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(format!("{describe}: its pipes were not made"));
        };
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        let mut router = PythonRouter {
            child,
            stdin,
            lines,
            describe,
        };
        router.write_line(config_json)?;
        let first = router.read_reply()?;
        match (first.ready, first.error) {
            (true, _) => Ok(router),
            (false, Some(error)) => Err(format!("{}: {error}", router.describe)),
            (false, None) => Err(format!("{}: did not say it was ready", router.describe)),
        }
    }

    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The router's answer to one request.
    pub fn answer(&mut self, request: &Request) -> Result<Answer, String> {
        self.write_line(&request.to_line())?;
        let reply = self.read_reply()?;
        let outcome = match (reply.error, reply.routes, reply.interested, request) {
            (Some(error), _, _, _) => Outcome::Failed(error),
            (None, Some(routes), None, Request::GetUsersForStates(_)) => Outcome::Routes(routes),
            (None, None, Some(Interest::All(all)), Request::GetInterestedUsers(_))
                if all == "ALL" =>
            {
                Outcome::Interest(InterestedUsers::All)
            }
            (None, None, Some(Interest::Users(users)), Request::GetInterestedUsers(_)) => {
                Outcome::Interest(InterestedUsers::Users(users))
            }
            _ => return Err(format!("{}: answered out of turn", self.describe)),
        };
        Ok(Answer {
            outcome,
            sends: reply.sends,
        })
    }

    fn write_line(&mut self, line: &str) -> Result<(), String> {
        self.stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.write_all(b"\n"))
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("{}: writing to it: {e}", self.describe))
    }

    fn read_reply(&mut self) -> Result<Reply, String> {
        let line = match self.lines.recv_timeout(ANSWER_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return Err(format!("{}: reading its answer: {e}", self.describe)),
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "{}: no answer within {} s",
                    self.describe,
                    ANSWER_TIMEOUT.as_secs()
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
                // Its stdout closed; it may linger (on a thread of the
                // router's): not waited for.
                let _ = self.child.kill();
                let status = self
                    .child
                    .wait()
                    .map(|status| status.to_string())
                    .unwrap_or_else(|e| e.to_string());
                return Err(format!(
                    "{}: the interpreter ended ({status}); its stderr is above",
                    self.describe
                ));
            }
        };
        serde_json::from_str(&line).map_err(|e| {
            format!(
                "{}: an answer that is not the driver's ({e}): {}",
                self.describe,
                presence_router_runtime::text::escape_untrusted(&line, 200)
            )
        })
    }
}

impl Drop for PythonRouter {
    fn drop(&mut self) {
        // Killed, not asked: a router may be stuck in a callback.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
