//! The router of Synapse's own presence router tests
//! (`tests/events/test_presence_router.py`, `PresenceRouterTestModule`):
//! every user in `users_who_should_receive_all_presence` receives every
//! state of every batch (an entry even for an empty batch), and is
//! interested in all users; everyone else gets nothing extra.

use std::sync::OnceLock;

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    users_who_should_receive_all_presence: Vec<String>,
}

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
