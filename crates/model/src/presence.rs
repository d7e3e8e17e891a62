//! Presence data as plain Rust types: what an embedder hands to a
//! [`RouterSet`](crate::RouterSet) and gets back.
//!
//! With the `wasmtime` feature, [`UserPresenceState`] derives wasmtime's
//! `Lower`, so the runtime lowers a batch into a guest straight from the
//! caller's slice, never converting it on the way in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
#[cfg(feature = "wasmtime")]
use wasmtime::component::{ComponentType, Lower};

/// A user's presence state, as Synapse spells it.
///
/// Serialises to and from Synapse's strings. States that arrive over
/// federation are not validated by homeservers, so any string that is none of
/// the four known ones is kept, unchanged, as [`Presence::Other`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "wasmtime", derive(ComponentType, Lower), component(variant))]
#[derive(Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Presence {
    #[cfg_attr(feature = "wasmtime", component(name = "online"))]
    Online,
    #[cfg_attr(feature = "wasmtime", component(name = "unavailable"))]
    Unavailable,
    #[cfg_attr(feature = "wasmtime", component(name = "offline"))]
    Offline,
    /// Synapse's `org.matrix.msc3026.busy` (MSC3026).
    #[cfg_attr(feature = "wasmtime", component(name = "busy"))]
    Busy,
    /// Any other state string, exactly as received.
    #[cfg_attr(feature = "wasmtime", component(name = "other"))]
    Other(String),
}

impl Presence {
    /// The state as Synapse writes it.
    pub fn as_str(&self) -> &str {
        match self {
            Presence::Online => "online",
            Presence::Unavailable => "unavailable",
            Presence::Offline => "offline",
            Presence::Busy => "org.matrix.msc3026.busy",
            Presence::Other(state) => state,
        }
    }
}

impl From<&str> for Presence {
    fn from(state: &str) -> Self {
        match state {
            "online" => Presence::Online,
            "unavailable" => Presence::Unavailable,
            "offline" => Presence::Offline,
            "org.matrix.msc3026.busy" => Presence::Busy,
            other => Presence::Other(other.to_owned()),
        }
    }
}

impl From<String> for Presence {
    fn from(state: String) -> Self {
        match Presence::from(state.as_str()) {
            // Reuse the caller's allocation for unknown states.
            Presence::Other(_) => Presence::Other(state),
            known => known,
        }
    }
}

impl From<Presence> for String {
    fn from(presence: Presence) -> Self {
        match presence {
            Presence::Other(state) => state,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One presence update: Synapse's `UserPresenceState`, with its field names.
///
/// In JSON only `user_id` and `state` are required; timestamps default to 0,
/// `status_msg` to none and `currently_active` to false.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "wasmtime", derive(ComponentType, Lower), component(record))]
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPresenceState {
    #[cfg_attr(feature = "wasmtime", component(name = "user-id"))]
    pub user_id: String,
    pub state: Presence,
    #[cfg_attr(feature = "wasmtime", component(name = "last-active-ts"))]
    #[serde(default)]
    pub last_active_ts: u64,
    #[cfg_attr(feature = "wasmtime", component(name = "last-federation-update-ts"))]
    #[serde(default)]
    pub last_federation_update_ts: u64,
    #[cfg_attr(feature = "wasmtime", component(name = "last-user-sync-ts"))]
    #[serde(default)]
    pub last_user_sync_ts: u64,
    #[cfg_attr(feature = "wasmtime", component(name = "status-msg"))]
    #[serde(default)]
    pub status_msg: Option<String>,
    #[cfg_attr(feature = "wasmtime", component(name = "currently-active"))]
    #[serde(default)]
    pub currently_active: bool,
}

impl UserPresenceState {
    /// A state with only a user and a presence set, as a test or a quick
    /// experiment wants it.
    pub fn new(user_id: impl Into<String>, state: Presence) -> Self {
        UserPresenceState {
            user_id: user_id.into(),
            state,
            last_active_ts: 0,
            last_federation_update_ts: 0,
            last_user_sync_ts: 0,
            status_msg: None,
            currently_active: false,
        }
    }
}

/// The merged answer of `get-users-for-states`: for each user who should
/// also receive updates, the indices (into the batch that was routed) of
/// those updates, ascending and without repeats.
///
/// Indices rather than copies, so that an embedder hands back its *own*
/// state objects (Synapse expects the same `UserPresenceState` objects it
/// passed in). A user may map to an empty set: a router named them but
/// routed nothing to them, and Synapse's `ALL_USERS` path relies on the
/// entry being there.
pub type UsersForStates = BTreeMap<String, Vec<u32>>;

/// The merged answer of `get-interested-users`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterestedUsers {
    /// Everyone's presence: Synapse's `ALL_USERS`.
    All,
    /// The presence of these users, in addition to room-mates.
    Users(BTreeSet<String>),
}

/// A merged answer, with what happened on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed<T> {
    pub answer: T,
    /// The routers skipped in this call, in configuration order.
    pub failures: Vec<crate::RouterFailure>,
    /// Everyone the routers asked local online presence to be sent to
    /// during this call, in order, without repeats.
    pub sent_presence_to: Vec<String>,
    /// What each router that answered used, in the order they were called.
    pub stats: Vec<CallStats>,
}

/// What one router's successful call used, to set limits by (and for
/// `presence-router test`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallStats {
    pub router: std::sync::Arc<str>,
    /// Fuel the call consumed, and the budget it had.
    pub fuel_used: u64,
    pub fuel_budget: u64,
    /// The instance's linear memory after the call: the most it has used,
    /// since wasm memory never shrinks.
    pub memory_bytes: u64,
    /// Entries in the answer: one per route or named user, one per index.
    pub answer_entries: usize,
    /// Wall-clock time of the call itself (not waiting for an instance).
    pub elapsed: std::time::Duration,
}
