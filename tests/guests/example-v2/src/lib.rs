//! A changed build of the example router, for the hot-reload and diff
//! tests: the same configuration keys, but `blacklisted_users` no longer
//! holds anything back (a regression an operator should see before the
//! swap: `presence-router diff` shows it, and after a reload Synapse routes
//! by it).

use serde::Deserialize;
use std::sync::OnceLock;

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RouterConfig {
    always_send_to_users: Vec<String>,
    /// Accepted, and ignored: the change under test.
    #[allow(dead_code)]
    blacklisted_users: Vec<String>,
}

static CONFIG: OnceLock<RouterConfig> = OnceLock::new();

fn always_send_to_users() -> &'static [String] {
    CONFIG.get().map_or(&[], |c| &c.always_send_to_users)
}

struct ExampleV2;

impl Guest for ExampleV2 {
    fn parse_config(config: String) -> Result<(), String> {
        let parsed: RouterConfig = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        CONFIG
            .set(parsed)
            .map_err(|_| "parse-config was called twice".to_owned())
    }

    fn get_users_for_states(states: Vec<UserPresenceState>) -> Vec<Route> {
        let all: Vec<u32> = (0..states.len() as u32).collect();
        always_send_to_users()
            .iter()
            .map(|user_id| Route {
                user_id: user_id.clone(),
                states: all.clone(),
            })
            .collect()
    }

    fn get_interested_users(user_id: String) -> InterestedUsers {
        if always_send_to_users().contains(&user_id) {
            InterestedUsers::AllUsers
        } else {
            InterestedUsers::Users(Vec::new())
        }
    }
}

export!(ExampleV2);
