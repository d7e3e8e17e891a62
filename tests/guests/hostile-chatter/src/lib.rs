//! Hostile guest: calls `send-local-online-presence-to` and `log`, and prints, in a loop (`{"calls": N}`, default 10,000).

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

struct Hostile;

use std::sync::OnceLock;

use matrix::presence_router::module_api::{self, LogLevel};

static CALLS: OnceLock<u64> = OnceLock::new();

impl Guest for Hostile {
    fn parse_config(config: String) -> Result<(), String> {
        let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        let calls = config
            .get("calls")
            .and_then(|c| c.as_u64())
            .unwrap_or(10_000);
        CALLS.set(calls).map_err(|_| "configured twice".to_owned())
    }

    fn get_users_for_states(_states: Vec<UserPresenceState>) -> Vec<Route> {
        for i in 0..CALLS.get().copied().unwrap_or(0) {
            module_api::send_local_online_presence_to(&[format!("@u{i}:example.com")]);
            module_api::log(LogLevel::Warn, &format!("chatter {i}"));
            eprintln!("stderr chatter {i}");
        }
        Vec::new()
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        InterestedUsers::Users(Vec::new())
    }
}

export!(Hostile);
