//! The JSON Lines contract of `presence-router route`: one request per line
//! on stdin, one answer per line on stdout, in order.
//!
//! | request | answer |
//! | --- | --- |
//! | `{"get_users_for_states": [STATE, ...]}` | `{"users_for_states": {"@u:x": [STATE, ...]}}` |
//! | `{"get_interested_users": "@u:x"}` | `{"interested_users": "ALL"}` or `{"interested_users": ["@v:y"]}` |
//! | anything else | `{"error": TEXT}` (and the stream goes on) |
//!
//! An answer also carries `"failures": [{"router", "kind", "message"}]`
//! when a router was skipped, and `"send_local_online_presence_to": [...]`
//! when a router asked for presence to be pushed.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{InterestedUsers, Routed, UserPresenceState, UsersForStates, validate_user_id};

/// One request line.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    GetUsersForStates(Vec<UserPresenceState>),
    GetInterestedUsers(String),
}

impl Request {
    /// The request as one line of this format (without the newline).
    pub fn to_line(&self) -> String {
        match self {
            Request::GetUsersForStates(batch) => json!({ "get_users_for_states": batch }),
            Request::GetInterestedUsers(user) => json!({ "get_interested_users": user }),
        }
        .to_string()
    }
}

/// Parses one line; the error text says what is wrong and where.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let mut json = serde_json::Deserializer::from_str(line);
    let request: Request = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let why = if inner.is_syntax() || inner.is_eof() {
            format!("not valid JSON: {inner}")
        } else {
            inner.to_string()
        };
        if path == "." {
            why
        } else {
            format!("{path}: {why}")
        }
    })?;
    json.end().map_err(|e| format!("not valid JSON: {e}"))?;
    match &request {
        Request::GetUsersForStates(states) => {
            for (i, state) in states.iter().enumerate() {
                validate_user_id(&state.user_id)
                    .map_err(|why| format!("get_users_for_states[{i}].user_id: {why}"))?;
            }
        }
        Request::GetInterestedUsers(user_id) => {
            validate_user_id(user_id).map_err(|why| format!("get_interested_users: {why}"))?;
        }
    }
    Ok(request)
}

/// The answer line to a `get_users_for_states` request: each user with the
/// states routed to them, in batch order.
pub fn users_for_states_answer(
    batch: &[UserPresenceState],
    routed: &Routed<UsersForStates>,
) -> Value {
    let users: Map<String, Value> = routed
        .answer
        .iter()
        .map(|(user, indices)| {
            let states = indices
                .iter()
                .filter_map(|&i| batch.get(i as usize))
                .map(|state| json!(state))
                .collect();
            (user.clone(), Value::Array(states))
        })
        .collect();
    with_report(json!({ "users_for_states": users }), routed)
}

/// The answer line to a `get_interested_users` request.
pub fn interested_users_answer(routed: &Routed<InterestedUsers>) -> Value {
    let users = match &routed.answer {
        InterestedUsers::All => json!("ALL"),
        InterestedUsers::Users(users) => json!(users),
    };
    with_report(json!({ "interested_users": users }), routed)
}

/// The answer line to a line that is not a request.
pub fn error_answer(message: &str) -> Value {
    json!({ "error": message })
}

fn with_report<T>(mut answer: Value, routed: &Routed<T>) -> Value {
    if let Value::Object(fields) = &mut answer {
        if !routed.failures.is_empty() {
            fields.insert("failures".into(), json!(routed.failures));
        }
        if !routed.sent_presence_to.is_empty() {
            fields.insert(
                "send_local_online_presence_to".into(),
                json!(routed.sent_presence_to),
            );
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Presence;

    #[test]
    fn parses_both_requests_with_synapse_field_names() {
        let request = parse_request(
            r#"{"get_users_for_states": [{"user_id": "@a:x", "state": "org.matrix.msc3026.busy", "last_active_ts": 5, "status_msg": "hi"}, {"user_id": "@b:x", "state": "dnd"}]}"#,
        )
        .unwrap();
        let mut busy = UserPresenceState::new("@a:x", Presence::Busy);
        busy.last_active_ts = 5;
        busy.status_msg = Some("hi".into());
        let other = UserPresenceState::new("@b:x", Presence::Other("dnd".into()));
        assert_eq!(request, Request::GetUsersForStates(vec![busy, other]));
        assert_eq!(
            parse_request(r#"{"get_interested_users": "@a:x"}"#).unwrap(),
            Request::GetInterestedUsers("@a:x".into())
        );
    }

    #[test]
    fn says_what_is_wrong_with_a_bad_line() {
        let cases = [
            (
                "not json",
                "not valid JSON: expected value at line 1 column 1",
            ),
            (
                r#"{"get_users_for_states": [{"user_id": "@a:x"}]}"#,
                "get_users_for_states[0]: missing field `state` at line 1 column 45",
            ),
            (
                r#"{"get_users_for_states": [{"user_id": 5, "state": "online"}]}"#,
                "get_users_for_states[0].user_id: invalid type: integer `5`, expected a string at line 1 column 39",
            ),
            (
                r#"{"get_users_for_states": [{"user_id": "bob", "state": "online"}]}"#,
                "get_users_for_states[0].user_id: \"bob\" does not start with `@`",
            ),
            (
                r#"{"get_interested_users": "@a:"}"#,
                "get_interested_users: \"@a:\": the server name is empty",
            ),
            (
                r#"{"route": 1}"#,
                "unknown variant `route`, expected `get_users_for_states` or `get_interested_users` at line 1 column 8",
            ),
            (
                r#"{"get_interested_users": "@a:x"} {}"#,
                "not valid JSON: trailing characters at line 1 column 34",
            ),
        ];
        let actual: Vec<String> = cases
            .iter()
            .map(|(line, _)| parse_request(line).unwrap_err())
            .collect();
        let expected: Vec<&str> = cases.iter().map(|(_, expected)| *expected).collect();
        assert_eq!(actual, expected);
    }
}
