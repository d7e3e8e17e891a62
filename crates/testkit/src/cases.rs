//! The case file of `presence-router test --cases FILE`: batches or users,
//! and what the router must answer. YAML (or JSON, which is YAML):
//!
//! ```yaml
//! cases:
//!   - name: listed users get every update
//!     config: {always_send_to_users: ["@alice:example.com"]}  # optional
//!     get_users_for_states:
//!       - {user_id: "@bob:example.com", state: online}
//!       - {user_id: "@carol:example.com", state: unavailable}
//!     expect: {"@alice:example.com": [0, 1]}   # user -> indices into the batch
//!   - name: listed users are interested in everyone
//!     get_interested_users: "@alice:example.com"
//!     expect: all                              # or a list of user IDs
//!   - name: unknown keys are refused
//!     config: {colour: blue}
//!     expect_config_error: "unknown field `colour`"
//! ```
//!
//! Beside `cases:`, `budgets:` holds the router to costs
//! ([`crate::budgets`]).
//!
//! A case without `config` uses the configuration given on the command line.
//! States are written as in the CLI's JSON Lines. A user routed nothing and
//! a user not in the answer are the same to Synapse, so `expect` need not
//! list users with no states.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use presence_router_runtime::{UserPresenceState, validate_user_id};

use crate::budgets::Budgets;

/// A case file that can't be used, with where and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {key}: {message}", file.display())]
pub struct CaseFileError {
    pub file: PathBuf,
    /// `cases[2].expect`, or `.` for the whole file.
    pub key: String,
    pub message: String,
}

/// One case, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub name: String,
    /// The router's configuration as JSON text, if the case has its own.
    pub config_json: Option<String>,
    pub call: CaseCall,
}

impl Case {
    /// States in the case's batch (1 for the other kinds of case).
    pub fn states(&self) -> usize {
        match &self.call {
            CaseCall::UsersForStates { batch, .. } => batch.len(),
            CaseCall::InterestedUsers { .. } | CaseCall::ConfigError { .. } => 1,
        }
    }
}

/// What a case does, and what it expects.
#[derive(Clone, Debug, PartialEq)]
pub enum CaseCall {
    UsersForStates {
        batch: Vec<UserPresenceState>,
        /// Each user with the indices of the states they must receive.
        expect: BTreeMap<String, BTreeSet<u32>>,
    },
    InterestedUsers {
        user_id: String,
        /// `None` is `all-users`.
        expect: Option<BTreeSet<String>>,
    },
    /// `parse-config` must refuse the configuration with a message
    /// containing this text.
    ConfigError { contains: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    cases: Vec<RawCase>,
    #[serde(default)]
    budgets: Option<RawBudgets>,
}

/// `budgets:` ([`crate::budgets`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudgets {
    #[serde(default)]
    fuel_per_call: Option<u64>,
    #[serde(default)]
    fuel_per_state: Option<u64>,
    #[serde(default)]
    memory: Option<Size>,
    #[serde(default)]
    answer_entries: Option<u64>,
}

/// A number of bytes, or a size such as `2MiB`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(self) -> Result<u64, String> {
        match self {
            Size::Bytes(n) => Ok(n),
            Size::Text(text) => text
                .trim()
                .parse::<bytesize::ByteSize>()
                .map(|size| size.as_u64())
                .map_err(|_| format!("expected a size such as `2MiB`, found `{text}`")),
        }
    }
}

/// A size as the command line writes it (`--max-memory 2MiB`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    Size::Text(text.to_owned()).bytes()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(default)]
    get_users_for_states: Option<Vec<UserPresenceState>>,
    #[serde(default)]
    get_interested_users: Option<String>,
    #[serde(default)]
    expect: Option<serde_yaml::Value>,
    #[serde(default)]
    expect_config_error: Option<String>,
}

/// Reads and checks a case file (its cases; its `budgets:` too with
/// [`read_case_file_with_budgets`]).
pub fn read_case_file(path: &Path) -> Result<Vec<Case>, CaseFileError> {
    read_case_file_with_budgets(path).map(|(cases, _)| cases)
}

/// Reads and checks a case file, with its `budgets:`.
pub fn read_case_file_with_budgets(path: &Path) -> Result<(Vec<Case>, Budgets), CaseFileError> {
    let error = |key: &str, message: String| CaseFileError {
        file: path.to_owned(),
        key: key.to_owned(),
        message,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| error(".", format!("cannot read: {e}")))?;
    parse_case_file(&text).map_err(|(key, message)| error(&key, message))
}

/// Parses case-file text; the error is (key path, message).
pub fn parse_cases(text: &str) -> Result<Vec<Case>, (String, String)> {
    parse_case_file(text).map(|(cases, _)| cases)
}

/// Parses case-file text, cases and budgets; the error is (key path,
/// message).
pub fn parse_case_file(text: &str) -> Result<(Vec<Case>, Budgets), (String, String)> {
    let raw: RawFile = serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|e| {
        let key = e.path().to_string();
        (key, e.into_inner().to_string())
    })?;
    let budgets = match raw.budgets {
        None => Budgets::default(),
        Some(raw) => Budgets {
            fuel_per_call: raw.fuel_per_call,
            fuel_per_state: raw.fuel_per_state,
            memory: raw
                .memory
                .map(Size::bytes)
                .transpose()
                .map_err(|why| ("budgets.memory".to_owned(), why))?,
            answer_entries: raw.answer_entries,
        },
    };
    let cases = raw
        .cases
        .into_iter()
        .enumerate()
        .map(|(i, case)| {
            check_case(case).map_err(|(key, message)| (format!("cases[{i}]{key}"), message))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((cases, budgets))
}

fn check_case(raw: RawCase) -> Result<Case, (String, String)> {
    let config_json = match &raw.config {
        None => None,
        Some(value @ serde_json::Value::Object(_)) => Some(value.to_string()),
        Some(_) => return Err((".config".into(), "must be a mapping".into())),
    };
    let call = match (
        raw.get_users_for_states,
        raw.get_interested_users,
        raw.expect,
        raw.expect_config_error,
    ) {
        (Some(batch), None, Some(expect), None) => {
            for (i, state) in batch.iter().enumerate() {
                validate_user_id(&state.user_id)
                    .map_err(|why| (format!(".get_users_for_states[{i}].user_id"), why))?;
            }
            CaseCall::UsersForStates {
                expect: expected_routes(expect, batch.len())?,
                batch,
            }
        }
        (None, Some(user_id), Some(expect), None) => {
            validate_user_id(&user_id).map_err(|why| (".get_interested_users".to_owned(), why))?;
            CaseCall::InterestedUsers {
                user_id,
                expect: expected_interest(expect)?,
            }
        }
        (None, None, None, Some(contains)) => {
            if config_json.is_none() {
                return Err((
                    ".expect_config_error".into(),
                    "needs the case's own `config` to refuse".into(),
                ));
            }
            CaseCall::ConfigError { contains }
        }
        (Some(_), _, None, _) | (_, Some(_), None, _) => {
            return Err((
                ".expect".into(),
                "missing: what must the router answer?".into(),
            ));
        }
        _ => {
            return Err((
                ".".into(),
                "a case has either `get_users_for_states` or `get_interested_users`, \
                 with `expect`; or a `config` with `expect_config_error`"
                    .into(),
            ));
        }
    };
    Ok(Case {
        name: raw.name,
        config_json,
        call,
    })
}

fn expected_routes(
    expect: serde_yaml::Value,
    batch_len: usize,
) -> Result<BTreeMap<String, BTreeSet<u32>>, (String, String)> {
    let routes: BTreeMap<String, Vec<u32>> = serde_yaml::from_value(expect).map_err(|e| {
        (
            ".expect".to_owned(),
            format!("{e} (expected a mapping of user ID to indices into the batch)"),
        )
    })?;
    let mut checked = BTreeMap::new();
    for (user, indices) in routes {
        validate_user_id(&user).map_err(|why| (format!(".expect.{user}"), why))?;
        if let Some(bad) = indices.iter().find(|&&i| i as usize >= batch_len) {
            return Err((
                format!(".expect.{user}"),
                format!("index {bad} is outside the batch of {batch_len}"),
            ));
        }
        if !indices.is_empty() {
            checked.insert(user, indices.into_iter().collect());
        }
    }
    Ok(checked)
}

fn expected_interest(
    expect: serde_yaml::Value,
) -> Result<Option<BTreeSet<String>>, (String, String)> {
    if expect.as_str() == Some("all") {
        return Ok(None);
    }
    let users: Vec<String> = serde_yaml::from_value(expect).map_err(|e| {
        (
            ".expect".to_owned(),
            format!("{e} (expected `all` or a list of user IDs)"),
        )
    })?;
    for (i, user) in users.iter().enumerate() {
        validate_user_id(user).map_err(|why| (format!(".expect[{i}]"), why))?;
    }
    Ok(Some(users.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_kind_of_case() {
        let cases = parse_cases(
            r#"
cases:
  - name: routes
    get_users_for_states:
      - {user_id: "@b:x", state: online}
      - {user_id: "@c:x", state: offline}
    expect: {"@a:x": [1, 0], "@d:x": []}
  - name: all
    config: {k: 1}
    get_interested_users: "@a:x"
    expect: all
  - name: some
    get_interested_users: "@a:x"
    expect: ["@b:x"]
  - name: refused
    config: {colour: blue}
    expect_config_error: colour
"#,
        )
        .expect("valid cases");
        assert_eq!(cases.len(), 4);
        let CaseCall::UsersForStates { batch, expect } = &cases[0].call else {
            panic!("{:?}", cases[0]);
        };
        assert_eq!(batch.len(), 2);
        // Users routed nothing are left out; indices are a set.
        assert_eq!(
            expect,
            &BTreeMap::from([("@a:x".to_owned(), BTreeSet::from([0, 1]))])
        );
        assert_eq!(cases[1].config_json.as_deref(), Some(r#"{"k":1}"#));
        assert_eq!(
            cases[1].call,
            CaseCall::InterestedUsers {
                user_id: "@a:x".into(),
                expect: None
            }
        );
        assert_eq!(
            cases[2].call,
            CaseCall::InterestedUsers {
                user_id: "@a:x".into(),
                expect: Some(BTreeSet::from(["@b:x".to_owned()]))
            }
        );
        assert_eq!(
            cases[3].call,
            CaseCall::ConfigError {
                contains: "colour".into()
            }
        );
    }

    #[test]
    fn a_bad_case_is_named_by_its_key() {
        let error = |text: &str| parse_cases(text).expect_err(text);
        assert_eq!(
            error(
                "cases:\n  - {name: a, get_users_for_states: [{user_id: \"@b:x\", state: online}], expect: {\"@a:x\": [1]}}\n"
            ),
            (
                "cases[0].expect.@a:x".to_owned(),
                "index 1 is outside the batch of 1".to_owned()
            )
        );
        assert_eq!(
            error("cases:\n  - {name: a, get_interested_users: \"@a:x\"}\n").0,
            "cases[0].expect"
        );
        assert_eq!(
            error("cases:\n  - {name: a, get_interested_users: \"nobody\", expect: all}\n").0,
            "cases[0].get_interested_users"
        );
        assert_eq!(
            error("cases:\n  - {name: a, expect_config_error: x}\n").0,
            "cases[0].expect_config_error"
        );
        assert_eq!(
            error("cases:\n  - {name: a, colour: 1}\n").0,
            "cases[0].colour"
        );
        assert_eq!(
            error("cases:\n  - {name: a, get_users_for_states: [{user_id: \"@b:x\", state: [1]}], expect: {}}\n").0,
            "cases[0].get_users_for_states[0].state"
        );
    }
}
