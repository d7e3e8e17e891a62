//! What a router did with one request, in the terms two routers are
//! compared in (`differential.rs`): routes or interest, or a failure, and
//! whom it asked presence to be sent to; and that answer as Synapse would
//! use it.

use std::collections::{BTreeMap, BTreeSet};

use presence_router_runtime::{InterestedUsers, UserPresenceState};

/// What a router did with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub outcome: Outcome,
    /// Everyone it asked local online presence to be sent to.
    pub sends: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Each user with the indices of the batch's states routed to them.
    Routes(BTreeMap<String, BTreeSet<u32>>),
    Interest(InterestedUsers),
    /// The router failed (raised, trapped, ran out of a limit): Synapse
    /// skips it. Two failures agree whatever their messages.
    Failed(String),
}

impl Answer {
    /// The answer as Synapse uses it, for `batch`: a user routed nothing is
    /// no user, and each state is named by the first equal one.
    pub(crate) fn normalized(&self, batch: &[UserPresenceState]) -> Answer {
        let outcome = match &self.outcome {
            Outcome::Routes(routes) => {
                let first_equal = |i: u32| {
                    let state = batch.get(i as usize);
                    batch
                        .iter()
                        .position(|s| Some(s) == state)
                        .map_or(i, |first| first as u32)
                };
                Outcome::Routes(
                    routes
                        .iter()
                        .map(|(user, indices)| {
                            (
                                user.clone(),
                                indices.iter().map(|&i| first_equal(i)).collect(),
                            )
                        })
                        .filter(|(_, indices): &(String, BTreeSet<u32>)| !indices.is_empty())
                        .collect(),
                )
            }
            Outcome::Failed(_) => Outcome::Failed(String::new()),
            other => other.clone(),
        };
        // A failed call's sends are never acted on.
        let sends = match outcome {
            Outcome::Failed(_) => BTreeSet::new(),
            _ => self.sends.clone(),
        };
        Answer { outcome, sends }
    }

    /// The answer as one JSON value, for a report.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = match &self.outcome {
            Outcome::Routes(routes) => serde_json::json!({ "users_for_states": routes }),
            Outcome::Interest(InterestedUsers::All) => {
                serde_json::json!({ "interested_users": "ALL" })
            }
            Outcome::Interest(InterestedUsers::Users(users)) => {
                serde_json::json!({ "interested_users": users })
            }
            Outcome::Failed(message) => serde_json::json!({ "failed": message }),
        };
        if !self.sends.is_empty() {
            value["send_local_online_presence_to"] = serde_json::json!(self.sends);
        }
        value
    }
}
