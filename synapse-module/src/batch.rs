//! Synapse's objects to the runtime's records: a batch of
//! `UserPresenceState`s read once (the answer is built from the batch's own
//! objects, `answer.rs`).

use presence_router_runtime::{Presence, UserPresenceState};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::events::{EventQueue, WARNING, report};

/// A batch as the routers see it: the states that could be read, and for
/// each the position in Synapse's list it came from.
pub(crate) struct Batch {
    pub states: Vec<UserPresenceState>,
    pub from_batch: Vec<usize>,
}

impl Batch {
    /// Reads Synapse's states; one that can't be read is reported and left
    /// out.
    pub(crate) fn read(py: Python<'_>, states: &[Bound<'_, PyAny>], events: &EventQueue) -> Batch {
        let mut batch = Batch {
            states: Vec::with_capacity(states.len()),
            from_batch: Vec::with_capacity(states.len()),
        };
        for (position, state) in states.iter().enumerate() {
            match read_state(py, state) {
                Ok(record) => {
                    batch.states.push(record);
                    batch.from_batch.push(position);
                }
                Err(why) => report(
                    events,
                    WARNING,
                    format!("presence state {position} of the batch was not routed: {why}"),
                ),
            }
        }
        batch
    }
}

/// Reads one `UserPresenceState`, one attribute lookup per field (by
/// interned name). Timestamps Synapse never writes negative are read as 0
/// if they are; anything that isn't the right type names the field.
fn read_state(py: Python<'_>, state: &Bound<'_, PyAny>) -> Result<UserPresenceState, String> {
    let user_id = attribute(state, intern!(py, "user_id"))?;
    let user_id = text(&user_id, "user_id")?.to_owned();
    let in_state = |e: String| format!("{e} (user {user_id})");
    let presence = attribute(state, intern!(py, "state")).map_err(in_state)?;
    let presence = Presence::from(text(&presence, "state").map_err(in_state)?);
    let timestamp = |name: &Bound<'_, PyString>| -> Result<u64, String> {
        let value = attribute(state, name).map_err(in_state)?;
        let value: i64 = value
            .extract()
            .map_err(|_| in_state(wrong_type(&value, name, "an integer")))?;
        Ok(u64::try_from(value).unwrap_or(0))
    };
    let status_msg = attribute(state, intern!(py, "status_msg")).map_err(in_state)?;
    let status_msg = if status_msg.is_none() {
        None
    } else {
        Some(
            text(&status_msg, "status_msg")
                .map_err(|_| in_state(wrong_type(&status_msg, "status_msg", "a string or None")))?
                .to_owned(),
        )
    };
    let currently_active = attribute(state, intern!(py, "currently_active")).map_err(in_state)?;
    let currently_active: bool = currently_active
        .extract()
        .map_err(|_| in_state(wrong_type(&currently_active, "currently_active", "a bool")))?;
    Ok(UserPresenceState {
        last_active_ts: timestamp(intern!(py, "last_active_ts"))?,
        last_federation_update_ts: timestamp(intern!(py, "last_federation_update_ts"))?,
        last_user_sync_ts: timestamp(intern!(py, "last_user_sync_ts"))?,
        status_msg,
        currently_active,
        state: presence,
        user_id,
    })
}

fn attribute<'py>(
    state: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> Result<Bound<'py, PyAny>, String> {
    state
        .getattr(name)
        .map_err(|_| format!("it has no `{name}`"))
}

/// A `str` attribute, borrowed (no copy of its UTF-8 is made here).
fn text<'a>(value: &'a Bound<'_, PyAny>, name: &str) -> Result<&'a str, String> {
    value
        .cast::<PyString>()
        .ok()
        .and_then(|s| s.to_str().ok())
        .ok_or_else(|| wrong_type(value, name, "a string"))
}

fn wrong_type(value: &Bound<'_, PyAny>, name: impl std::fmt::Display, expected: &str) -> String {
    format!(
        "`{name}` is {}, not {expected}",
        value
            .get_type()
            .name()
            .map_or_else(|_| "?".into(), |n| n.to_string())
    )
}
