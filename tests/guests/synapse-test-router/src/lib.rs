//! The router of Synapse's own presence router tests
//! (`tests/events/test_presence_router.py`, `PresenceRouterTestModule`):
//! every user in `users_who_should_receive_all_presence` receives every
//! state of every batch (an entry even for an empty batch), and is
//! interested in all users; everyone else gets nothing extra.
//!
//! For the host-function half of the peer suite (its test calls
//! `send_local_online_presence_to` itself), the optional
//! `send_on_status_msg: {status_msg, users}` makes the router call
//! `send-local-online-presence-to(users)` when a state in a batch carries
//! that status message: once per sender and `last-active-ts` per instance,
//! because the snapshot it causes reaches this router again, carrying the
//! same state.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    users_who_should_receive_all_presence: Vec<String>,
    #[serde(default)]
    send_on_status_msg: Option<SendOnStatusMsg>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SendOnStatusMsg {
    status_msg: String,
    users: Vec<String>,
}

/// The (sender, last-active-ts) pairs already acted on.
static SENT_FOR: Mutex<Option<HashSet<(String, u64)>>> = Mutex::new(None);

static CONFIG: OnceLock<Config> = OnceLock::new();

fn listed() -> &'static [String] {
    CONFIG
        .get()
        .map_or(&[], |c| &c.users_who_should_receive_all_presence)
}

struct SynapseTestRouter;

impl Guest for SynapseTestRouter {
    fn parse_config(config: String) -> Result<(), String> {
        let config: Config = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        CONFIG
            .set(config)
            .map_err(|_| "configured twice".to_owned())
    }

    fn get_users_for_states(states: Vec<UserPresenceState>) -> Vec<Route> {
        if let Some(send) = CONFIG.get().and_then(|c| c.send_on_status_msg.as_ref()) {
            let mut sent_for = SENT_FOR.lock().unwrap_or_else(|e| e.into_inner());
            let sent_for = sent_for.get_or_insert_with(HashSet::new);
            for state in &states {
                if state.status_msg.as_deref() == Some(send.status_msg.as_str())
                    && sent_for.insert((state.user_id.clone(), state.last_active_ts))
                {
                    matrix::presence_router::module_api::send_local_online_presence_to(&send.users);
                }
            }
        }
        let all: Vec<u32> = (0..states.len() as u32).collect();
        listed()
            .iter()
            .map(|user_id| Route {
                user_id: user_id.clone(),
                states: all.clone(),
            })
            .collect()
    }

    fn get_interested_users(user_id: String) -> InterestedUsers {
        if listed().contains(&user_id) {
            InterestedUsers::AllUsers
        } else {
            InterestedUsers::Users(Vec::new())
        }
    }
}

export!(SynapseTestRouter);
