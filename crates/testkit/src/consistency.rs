//! Whether a router's two callbacks agree.
//!
//! Synapse uses `get-users-for-states` when presence changes (whose sync
//! streams to wake) and `get-interested-users` when a user syncs (whose
//! presence to put in their `/sync`; for `all-users`, everyone's that
//! changed, filtered through `get-users-for-states` again). Its
//! documentation warns that the two must line up, or users see presence
//! late or never. On generated batches, for every user `u`:
//!
//! - if `get-interested-users(u)` names users `X`, every update routed to
//!   `u` must come from a user in `X`, and every update from a user in `X`
//!   must be routed to `u`;
//! - if it answers `all-users`, every update the router routes to anyone
//!   must be routed to `u` too. An update the router routes to nobody (the
//!   documentation's blacklist) is not expected: Synapse's all-users path
//!   filters it out through `get-users-for-states` for everyone alike.
//!
//! A user's own updates are left out: Synapse always shows users their own
//! presence. Each mismatch is retried on a batch of the one update, to give
//! the smallest example that shows it.

use std::collections::{BTreeMap, BTreeSet};

use presence_router_runtime::generate::RequestGenerator;
use presence_router_runtime::{InterestedUsers, Presence, RouterSet, UserPresenceState};

/// One way the two callbacks disagree, with the smallest example found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The user who would see odd presence.
    pub user: String,
    /// Whose update it is about.
    pub sender: String,
    pub what: String,
    pub example: String,
}

/// What `get-interested-users` answered for one user.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Interest {
    All,
    Users(BTreeSet<String>),
}

/// Runs the check on batches generated from the user IDs in the router's
/// configuration and some of its own. `Err` if the router failed a call.
pub async fn check_consistency(
    routers: &RouterSet,
    config_json: &str,
) -> Result<(Vec<Mismatch>, String), String> {
    let users = user_pool(config_json);
    let batches = [
        users
            .iter()
            .map(|u| UserPresenceState::new(u.clone(), Presence::Online))
            .collect::<Vec<_>>(),
        users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let presence =
                    [Presence::Unavailable, Presence::Offline, Presence::Busy][i % 3].clone();
                UserPresenceState::new(u.clone(), presence)
            })
            .collect(),
    ];
    let mut interest = BTreeMap::new();
    let mut mismatches: Vec<Mismatch> = Vec::new();
    for batch in &batches {
        let routes = routes_by_sender(routers, batch).await?;
        let mut asked: BTreeSet<String> = users.iter().cloned().collect();
        asked.extend(routes.keys().cloned());
        for user in asked {
            if !interest.contains_key(&user) {
                let answer = interest_of(routers, &user).await?;
                interest.insert(user.clone(), answer);
            }
            for (sender, what) in disagreements(&user, &interest[&user], &routes, batch) {
                if mismatches
                    .iter()
                    .any(|m| m.user == user && m.sender == sender)
                {
                    continue;
                }
                let example =
                    smallest_example(routers, &user, &interest[&user], &sender, batch).await?;
                mismatches.push(Mismatch {
                    user: user.clone(),
                    sender,
                    what,
                    example,
                });
            }
        }
    }
    let summary = format!(
        "{} users asked, {} generated batches of {} states",
        interest.len(),
        batches.len(),
        users.len()
    );
    Ok((mismatches, summary))
}

/// The user IDs in the configuration (the users a router treats
/// specially), and some it has never heard of, local and remote.
pub(crate) fn user_pool(config_json: &str) -> Vec<String> {
    let mut users: BTreeSet<String> = RequestGenerator::users_in_config(config_json)
        .into_iter()
        .collect();
    users.extend((0..4).map(|i| format!("@kit{i}:example.com")));
    users.extend((0..2).map(|i| format!("@kit{i}:elsewhere.example.org")));
    users.into_iter().collect()
}

/// Each user the router routes to, with the senders of their updates.
async fn routes_by_sender(
    routers: &RouterSet,
    batch: &[UserPresenceState],
) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let routed = routers.get_users_for_states(batch).await;
    if let Some(failure) = routed.failures.first() {
        return Err(format!("get-users-for-states failed: {}", failure.message));
    }
    Ok(routed
        .answer
        .into_iter()
        .map(|(user, indices)| {
            let senders = indices
                .iter()
                .filter_map(|&i| batch.get(i as usize))
                .map(|state| state.user_id.clone())
                .collect();
            (user, senders)
        })
        .collect())
}

async fn interest_of(routers: &RouterSet, user: &str) -> Result<Interest, String> {
    let routed = routers.get_interested_users(user).await;
    if let Some(failure) = routed.failures.first() {
        return Err(format!(
            "get-interested-users({user}) failed: {}",
            failure.message
        ));
    }
    Ok(match routed.answer {
        InterestedUsers::All => Interest::All,
        InterestedUsers::Users(users) => Interest::Users(users),
    })
}

/// (sender, what is wrong) for every update `user` should get and doesn't,
/// or gets and shouldn't.
fn disagreements(
    user: &str,
    interest: &Interest,
    routes: &BTreeMap<String, BTreeSet<String>>,
    batch: &[UserPresenceState],
) -> Vec<(String, String)> {
    let none = BTreeSet::new();
    let received = routes.get(user).unwrap_or(&none);
    let mut found = Vec::new();
    match interest {
        Interest::Users(named) => {
            for sender in received.difference(named) {
                if sender != user {
                    found.push((
                        sender.clone(),
                        format!(
                            "{sender}'s update is routed to {user}, but get-interested-users({user}) \
                             does not name {sender}: {user}'s sync is woken for it, and /sync \
                             leaves it out"
                        ),
                    ));
                }
            }
            let senders: BTreeSet<&String> = batch.iter().map(|s| &s.user_id).collect();
            for sender in named {
                if sender != user && senders.contains(sender) && !received.contains(sender) {
                    found.push((
                        sender.clone(),
                        format!(
                            "get-interested-users({user}) names {sender}, but {sender}'s update \
                             is not routed to {user}: {user} sees it only when something else \
                             wakes their sync"
                        ),
                    ));
                }
            }
        }
        Interest::All => {
            let routed_to_anyone: BTreeSet<&String> = routes.values().flatten().collect();
            for sender in routed_to_anyone {
                if sender != user && !received.contains(sender) {
                    found.push((
                        sender.clone(),
                        format!(
                            "get-interested-users({user}) is all-users, but {sender}'s update, \
                             routed to others, is not routed to {user}"
                        ),
                    ));
                }
            }
        }
    }
    found
}

/// The mismatch on a batch of the sender's update alone, if it shows
/// there; otherwise where it was seen.
async fn smallest_example(
    routers: &RouterSet,
    user: &str,
    interest: &Interest,
    sender: &str,
    batch: &[UserPresenceState],
) -> Result<String, String> {
    let Some(state) = batch.iter().find(|s| s.user_id == sender) else {
        return Ok(format!("in a generated batch of {} states", batch.len()));
    };
    let alone = std::slice::from_ref(state);
    let routes = routes_by_sender(routers, alone).await?;
    let shows = disagreements(user, interest, &routes, alone)
        .iter()
        .any(|(s, _)| s == sender);
    if !shows {
        return Ok(format!(
            "in a generated batch of {} states (not with {sender}'s update alone)",
            batch.len()
        ));
    }
    let routed = if routes
        .get(user)
        .is_some_and(|senders| senders.contains(sender))
    {
        "routes it to"
    } else {
        "does not route it to"
    };
    let interest = match interest {
        Interest::All => "all-users".to_owned(),
        Interest::Users(users) => format!("{users:?}"),
    };
    Ok(format!(
        "get-users-for-states([{{user_id: {sender}, state: {}}}]) {routed} {user}; \
         get-interested-users({user}) = {interest}",
        state.state
    ))
}
