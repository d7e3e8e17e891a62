//! `presence-router diff`: replays recorded requests through two versions of
//! the routers and reports every answer that differs, before an operator
//! swaps one version for the other.
//!
//! ```text
//! presence-router diff --config old.yaml --with new.yaml < recorded.jsonl
//! presence-router diff --component old.wasm --with-component new.wasm \
//!     [--config-json J] [--with-config-json J] < recorded.jsonl
//! ```
//!
//! The old side is `--config` or `--component` (with `--config-json`,
//! default `{}`); the new side is `--with` or `--with-component` (default:
//! the old component) with `--with-config-json` (default: the old
//! `--config-json`), so `--component r.wasm --config-json A
//! --with-config-json B` compares two configurations of one component. A
//! lone component runs under the default limits and is never suspended, as
//! in `run`.
//!
//! stdin is the JSON Lines request format of `route` (`crates/model/src/jsonl.rs`),
//! which the Synapse module's recorder writes. Every request goes to the old
//! set, then to the new one. stdout gets one JSON object per line for each
//! request whose outcome differs, and for each line that is not a request;
//! nothing for a request both sides answered alike:
//!
//! ```text
//! {"line": N, "request": "get_users_for_states",
//!  "users": {"@u:x": {"old": [STATE, ...], "new": [STATE, ...]}, ...}}
//! {"line": N, "request": "get_interested_users", "user_id": "@u:x",
//!  "interested_users": {"old": "ALL" | ["@v:y", ...], "new": ...}}
//! {"line": N, "malformed": TEXT}
//! ```
//!
//! `line` counts every line of stdin from 1, blank ones included; `STATE` is
//! as in `route`'s answers. `users` holds only the users whose routed states
//! differ (a user with no entry and one with an empty entry were both routed
//! nothing: no difference), in the order of their IDs, and at most
//! [`MAX_USERS_PER_LINE`] of them, fewer once their states take
//! [`LINE_STATES_BUDGET`] bytes: the others are counted in `"more_users": N`.
//! One recorded state (a remote user's status message, up to a whole line)
//! routed to thousands of users must not become a line of gigabytes. Either
//! request's object also carries
//! `"send_local_online_presence_to": {"old": [...], "new": [...]}` (sorted)
//! when the two sides asked presence to be sent to different users, and
//! `"failures": {"old": [FAILURE, ...], "new": [...]}` (as in `route`) when a
//! router was skipped on either side; the keys that did not differ are left
//! out. A malformed line is reported and the replay goes on; so is a line
//! longer than [`MAX_LINE`] (never held whole: it is skipped to its
//! newline), and a last line with no newline, which a recording cut short
//! (a full disk) ends with, says so. A last line with no newline that is a
//! whole request is replayed: a JSON object cut short never parses.
//!
//! stderr ends with a summary for people: requests replayed, requests
//! answered differently and the users they concern, requests with failures
//! on each side, malformed lines. Past [`MAX_SUMMARY_USERS`] distinct users,
//! it says "at least" that many; a long `--config-json` is shortened.
//!
//! The exit status: 0, every request was replayed and answered the same by
//! both sides with no failure; 1, something differed: an answer, a send, a
//! router failure on either side, or a malformed line (a request that could
//! not be compared); 2, the diff could not run (a configuration or component
//! that does not load, bad arguments, stdin unreadable, stdout closed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use presence_router_runtime::jsonl::{self as protocol, Request};
use presence_router_runtime::{
    InterestedUsers, Limits, RouterFailure, RouterSet, RouterSetConfig, UserPresenceState,
};
use presence_router_testkit::single_router;

use crate::{CacheArgs, CliModuleApi};

/// The exit status of a diff that found a difference.
const DIFFERENT: u8 = 1;
/// The exit status of a diff that could not run (clap's for bad arguments).
const COULD_NOT_RUN: u8 = 2;

/// The longest input line read: a longer one is malformed, and skipped
/// without being held.
const MAX_LINE: usize = 64 << 20;
/// The most users listed in one line of the report...
const MAX_USERS_PER_LINE: usize = 100;
/// ...and the JSON bytes of their states past which no more are listed
/// (the first user always is).
const LINE_STATES_BUDGET: usize = 16 << 20;
/// The most distinct users the summary keeps to count.
const MAX_SUMMARY_USERS: usize = 100_000;
/// The most characters of a `--config-json` the summary shows.
const MAX_SHOWN_CONFIG: usize = 200;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("old").required(true).args(["config", "component"])))]
#[command(group(
    clap::ArgGroup::new("new")
        .required(true)
        .multiple(true)
        .args(["with", "with_component", "with_config_json"])
))]
pub(crate) struct DiffArgs {
    /// The old routers: a YAML configuration.
    #[arg(long, value_name = "FILE", conflicts_with = "component")]
    config: Option<PathBuf>,
    /// The new routers: a YAML configuration.
    #[arg(long = "with", value_name = "FILE", conflicts_with_all = ["with_component", "with_config_json"])]
    with: Option<PathBuf>,
    /// The old router: one component (.wasm), under the default limits.
    #[arg(long, value_name = "FILE")]
    component: Option<PathBuf>,
    /// The new router: one component (default: --component).
    #[arg(long, value_name = "FILE")]
    with_component: Option<PathBuf>,
    /// The old component's configuration, the JSON object `parse-config`
    /// gets (default: {}).
    #[arg(long, value_name = "JSON", requires = "component")]
    config_json: Option<String>,
    /// The new component's configuration (default: --config-json).
    #[arg(long, value_name = "JSON")]
    with_config_json: Option<String>,
    #[command(flatten)]
    cache: CacheArgs,
}

/// One side of the diff, as the arguments gave it.
enum Side {
    Config(PathBuf),
    Component { path: PathBuf, config_json: String },
}

impl Side {
    fn describe(&self) -> String {
        match self {
            Side::Config(path) => path.display().to_string(),
            Side::Component { path, config_json } => {
                format!("{} with {}", path.display(), shortened(config_json))
            }
        }
    }

    async fn load(&self, cache: &CacheArgs) -> anyhow::Result<RouterSet> {
        let config = match self {
            Side::Config(path) => RouterSetConfig::from_file(path)?,
            Side::Component { path, config_json } => {
                single_router(path, config_json, Limits::DEFAULT)
            }
        };
        // Each side loads with options of its own, as `route` would load it.
        Ok(RouterSet::load_with(&config, Arc::new(CliModuleApi), &cache.options()).await?)
    }
}

impl DiffArgs {
    /// The old and the new side, or why the arguments don't make two.
    fn sides(&self) -> anyhow::Result<(Side, Side)> {
        let old = match (&self.config, &self.component) {
            (Some(config), None) => Side::Config(config.clone()),
            (None, Some(component)) => Side::Component {
                path: component.clone(),
                config_json: json_object("--config-json", self.config_json.as_deref())?,
            },
            // clap's `old` group requires exactly one.
            _ => anyhow::bail!("give the old routers as --config FILE or --component FILE"),
        };
        let new = match (&self.with, &self.with_component) {
            (Some(with), _) => Side::Config(with.clone()),
            (None, component) => {
                let Some(path) = component.as_ref().or(self.component.as_ref()) else {
                    anyhow::bail!(
                        "--with-config-json needs a component to configure: \
                         --with-component FILE (or --component FILE for both sides)"
                    );
                };
                let config_json = self
                    .with_config_json
                    .as_deref()
                    .or(self.config_json.as_deref());
                Side::Component {
                    path: path.clone(),
                    config_json: json_object("--with-config-json", config_json)?,
                }
            }
        };
        Ok((old, new))
    }
}

/// `text` cut to its first [`MAX_SHOWN_CONFIG`] characters, `…` marking a
/// cut.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(MAX_SHOWN_CONFIG) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// `text` (default `{}`) checked to be a JSON object.
fn json_object(flag: &str, text: Option<&str>) -> anyhow::Result<String> {
    match serde_json::from_str::<Value>(text.unwrap_or("{}")) {
        Ok(value @ Value::Object(_)) => Ok(value.to_string()),
        Ok(_) => anyhow::bail!("{flag}: must be a JSON object, such as '{{}}'"),
        Err(e) => anyhow::bail!("{flag}: not valid JSON: {e}"),
    }
}

/// Runs `presence-router diff`; the exit status is its verdict.
pub(crate) async fn diff(args: DiffArgs) -> ExitCode {
    match replay(&args).await {
        Ok(summary) => {
            eprint!("{summary}");
            if summary.anything_differed() {
                ExitCode::from(DIFFERENT)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(COULD_NOT_RUN)
        }
    }
}

/// What the replay came to.
#[derive(Default)]
struct Summary {
    old: String,
    new: String,
    states_requests: u64,
    interest_requests: u64,
    /// Requests whose answer or sends differ.
    differing: u64,
    /// The users those differences concern: routed to, or asked about; at
    /// most [`MAX_SUMMARY_USERS`].
    users: BTreeSet<String>,
    /// Whether a user was left out of `users`, full.
    more_users: bool,
    failed_old: u64,
    failed_new: u64,
    malformed: u64,
}

impl Summary {
    fn anything_differed(&self) -> bool {
        self.differing + self.failed_old + self.failed_new + self.malformed > 0
    }

    /// Counts `user` among those the differences concern.
    fn concerns(&mut self, user: &str) {
        if self.users.len() < MAX_SUMMARY_USERS {
            self.users.insert(user.to_owned());
        } else if !self.users.contains(user) {
            self.more_users = true;
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "diff: old: {}", self.old)?;
        writeln!(f, "diff: new: {}", self.new)?;
        writeln!(
            f,
            "diff: {} request(s) replayed ({} get_users_for_states, {} get_interested_users)",
            self.states_requests + self.interest_requests,
            self.states_requests,
            self.interest_requests
        )?;
        writeln!(
            f,
            "diff: {} answered differently, concerning {}{} user(s)",
            self.differing,
            if self.more_users { "at least " } else { "" },
            self.users.len()
        )?;
        writeln!(
            f,
            "diff: router failures in {} request(s) on the old side, {} on the new side",
            self.failed_old, self.failed_new
        )?;
        writeln!(
            f,
            "diff: {} malformed line(s), not replayed",
            self.malformed
        )?;
        if self.anything_differed() {
            writeln!(f, "diff: DIFFERENT (the lines on stdout say where)")
        } else {
            writeln!(f, "diff: no difference")
        }
    }
}

async fn replay(args: &DiffArgs) -> anyhow::Result<Summary> {
    let (old_side, new_side) = args.sides()?;
    let old = old_side
        .load(&args.cache)
        .await
        .with_context(|| format!("the old routers ({})", old_side.describe()))?;
    let new = new_side
        .load(&args.cache)
        .await
        .with_context(|| format!("the new routers ({})", new_side.describe()))?;
    let mut summary = Summary {
        old: old_side.describe(),
        new: new_side.describe(),
        ..Summary::default()
    };
    let mut input = BufReader::new(tokio::io::stdin());
    let mut output = tokio::io::stdout();
    let mut line = Vec::new();
    let mut number: u64 = 0;
    loop {
        let read = read_line(&mut input, &mut line)
            .await
            .context("reading stdin")?;
        number += 1;
        let request = match read {
            Read::End => break,
            Read::TooLong => Err(format!("longer than 64 MiB ({MAX_LINE} bytes): not read")),
            Read::Line { unterminated } => {
                let request = match std::str::from_utf8(&line) {
                    Err(e) => Err(format!("not valid UTF-8: {e}")),
                    Ok(text) if text.trim().is_empty() => continue,
                    Ok(text) => protocol::parse_request(text),
                };
                request.map_err(|e| {
                    if unterminated {
                        format!(
                            "the last line has no newline at its end: cut short (was the \
                             recording interrupted?): {e}"
                        )
                    } else {
                        e
                    }
                })
            }
        };
        let report = match request {
            Err(message) => {
                summary.malformed += 1;
                Some(json!({ "line": number, "malformed": message }))
            }
            Ok(Request::GetUsersForStates(batch)) => {
                summary.states_requests += 1;
                let old = old.get_users_for_states(&batch).await;
                let new = new.get_users_for_states(&batch).await;
                let mut users = Map::new();
                let (mut more_users, mut listed_bytes) = (0u64, 0usize);
                // The JSON size of each state, measured once the first
                // difference needs it.
                let mut sizes: Option<Vec<usize>> = None;
                let names: BTreeSet<&String> = old.answer.keys().chain(new.answer.keys()).collect();
                for user in names {
                    let (was, is) = (routed_to(&old.answer, user), routed_to(&new.answer, user));
                    if was == is {
                        continue;
                    }
                    summary.concerns(user);
                    if users.len() >= MAX_USERS_PER_LINE || listed_bytes >= LINE_STATES_BUDGET {
                        more_users += 1;
                        continue;
                    }
                    let sizes = sizes.get_or_insert_with(|| batch.iter().map(json_len).collect());
                    listed_bytes += [was, is]
                        .iter()
                        .flat_map(|indices| indices.iter())
                        .filter_map(|&i| sizes.get(i as usize))
                        .sum::<usize>();
                    users.insert(
                        user.clone(),
                        json!({ "old": states(&batch, was), "new": states(&batch, is) }),
                    );
                }
                let mut differs = Map::new();
                if !users.is_empty() {
                    differs.insert("users".into(), Value::Object(users));
                }
                if more_users > 0 {
                    differs.insert("more_users".into(), json!(more_users));
                }
                compared(
                    &mut summary,
                    number,
                    "get_users_for_states",
                    differs,
                    [&old.sent_presence_to, &new.sent_presence_to],
                    [&old.failures, &new.failures],
                )
            }
            Ok(Request::GetInterestedUsers(user_id)) => {
                summary.interest_requests += 1;
                let old = old.get_interested_users(&user_id).await;
                let new = new.get_interested_users(&user_id).await;
                let mut differs = Map::new();
                differs.insert("user_id".into(), json!(user_id));
                if old.answer != new.answer {
                    summary.concerns(&user_id);
                    differs.insert(
                        "interested_users".into(),
                        json!({ "old": interest(&old.answer), "new": interest(&new.answer) }),
                    );
                }
                compared(
                    &mut summary,
                    number,
                    "get_interested_users",
                    differs,
                    [&old.sent_presence_to, &new.sent_presence_to],
                    [&old.failures, &new.failures],
                )
            }
        };
        if let Some(report) = report {
            let mut text = report.to_string();
            text.push('\n');
            output
                .write_all(text.as_bytes())
                .await
                .context("writing stdout")?;
        }
    }
    output.flush().await.context("writing stdout")?;
    Ok(summary)
}

/// The report line of one replayed request (none if both sides agreed):
/// `differs` (what the answers differ in, and `user_id` for an interest
/// query) with the sends and failures added, and the summary counted.
fn compared(
    summary: &mut Summary,
    line: u64,
    request: &str,
    differs: Map<String, Value>,
    [old_sends, new_sends]: [&Vec<String>; 2],
    [old_failures, new_failures]: [&Vec<RouterFailure>; 2],
) -> Option<Value> {
    let mut report = Map::new();
    report.insert("line".into(), json!(line));
    report.insert("request".into(), json!(request));
    let answers_differ = differs.keys().any(|key| key != "user_id");
    report.extend(differs);
    // Who gets presence pushed matters, not in which order it was asked.
    let (old_sends, new_sends): (BTreeSet<&String>, BTreeSet<&String>) =
        (old_sends.iter().collect(), new_sends.iter().collect());
    let sends_differ = old_sends != new_sends;
    if sends_differ {
        for user in old_sends.symmetric_difference(&new_sends) {
            summary.concerns(user);
        }
        report.insert(
            "send_local_online_presence_to".into(),
            json!({ "old": old_sends, "new": new_sends }),
        );
    }
    if answers_differ || sends_differ {
        summary.differing += 1;
    }
    summary.failed_old += u64::from(!old_failures.is_empty());
    summary.failed_new += u64::from(!new_failures.is_empty());
    let failed = !old_failures.is_empty() || !new_failures.is_empty();
    if failed {
        report.insert(
            "failures".into(),
            json!({ "old": old_failures, "new": new_failures }),
        );
    }
    (answers_differ || sends_differ || failed).then_some(Value::Object(report))
}

/// What [`read_line`] read.
enum Read {
    /// A line, in the buffer: `unterminated` if it is the last and has no
    /// newline.
    Line { unterminated: bool },
    /// A line longer than [`MAX_LINE`], skipped to its end; the buffer is
    /// emptied.
    TooLong,
    /// The end of the input.
    End,
}

/// Reads the next line into `line`, holding at most [`MAX_LINE`] + 1 bytes
/// of it: a longer line is read on to its newline and dropped as it goes.
async fn read_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<Read> {
    line.clear();
    let limit = MAX_LINE as u64 + 1;
    if (&mut *input).take(limit).read_until(b'\n', line).await? == 0 {
        return Ok(Read::End);
    }
    if line.ends_with(b"\n") {
        return Ok(Read::Line {
            unterminated: false,
        });
    }
    if line.len() <= MAX_LINE {
        // The input ended before a newline.
        return Ok(Read::Line { unterminated: true });
    }
    // Don't keep 64 MiB of capacity for the lines to come.
    *line = Vec::new();
    loop {
        let buffer = input.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(Read::TooLong);
        }
        match buffer.iter().position(|&b| b == b'\n') {
            Some(newline) => {
                input.consume(newline + 1);
                return Ok(Read::TooLong);
            }
            None => {
                let all = buffer.len();
                input.consume(all);
            }
        }
    }
}

/// The length of `state` as JSON, measured without writing it anywhere.
fn json_len(state: &UserPresenceState) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing to a counter never fails, and a state always serializes.
    let _ = serde_json::to_writer(&mut counter, state);
    counter.0
}

/// The batch indices routed to `user`: none if the answer has no entry.
fn routed_to<'a>(answer: &'a BTreeMap<String, Vec<u32>>, user: &str) -> &'a [u32] {
    answer.get(user).map_or(&[], Vec::as_slice)
}

/// The states at `indices`, as `route` writes them.
fn states(batch: &[UserPresenceState], indices: &[u32]) -> Value {
    indices
        .iter()
        .filter_map(|&i| batch.get(i as usize))
        .map(|state| json!(state))
        .collect()
}

/// An interest answer, as `route` writes it.
fn interest(answer: &InterestedUsers) -> Value {
    match answer {
        InterestedUsers::All => json!("ALL"),
        InterestedUsers::Users(users) => json!(users),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_its_cap_the_summary_counts_at_least_that_many_users() {
        let mut summary = Summary::default();
        for n in 0..MAX_SUMMARY_USERS {
            summary.concerns(&format!("@u{n}:x"));
        }
        // One already counted: still exact.
        summary.concerns("@u0:x");
        assert!(
            summary
                .to_string()
                .contains(&format!("concerning {MAX_SUMMARY_USERS} user(s)\n")),
            "{summary}"
        );
        summary.concerns("@one-more:x");
        assert_eq!(summary.users.len(), MAX_SUMMARY_USERS);
        assert!(
            summary.to_string().contains(&format!(
                "concerning at least {MAX_SUMMARY_USERS} user(s)\n"
            )),
            "{summary}"
        );
    }

    #[test]
    fn a_long_configuration_is_cut_at_a_character() {
        assert_eq!(shortened("{}"), "{}");
        let long = format!("{{\"a\": \"{}\"}}", "é".repeat(300));
        let cut = shortened(&long);
        assert_eq!(cut.chars().count(), MAX_SHOWN_CONFIG + 1);
        assert!(cut.ends_with("éé…"), "{cut}");
    }
}
