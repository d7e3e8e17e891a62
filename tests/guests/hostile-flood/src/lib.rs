//! Hostile guest: answers with millions of routes (`{"routes": N}`), or one route with millions of indices (`{"indices": N}`).

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

struct Hostile;

use std::sync::OnceLock;

static FLOOD: OnceLock<(String, usize)> = OnceLock::new();

impl Guest for Hostile {
    fn parse_config(config: String) -> Result<(), String> {
        let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        let (kind, count) = match (config.get("routes"), config.get("indices")) {
            (Some(n), _) => ("routes", n),
            (_, Some(n)) => ("indices", n),
            _ => return Err("set `routes` or `indices`".into()),
        };
        let count = count.as_u64().ok_or("the count must be a number")? as usize;
        FLOOD
            .set((kind.to_owned(), count))
            .map_err(|_| "configured twice".to_owned())
    }

    fn get_users_for_states(_states: Vec<UserPresenceState>) -> Vec<Route> {
        match FLOOD.get() {
            Some((kind, count)) if kind == "routes" => (0..*count)
                .map(|i| Route {
                    user_id: format!("@u{i}:x"),
                    states: Vec::new(),
                })
                .collect(),
            Some((_, count)) => vec![Route {
                user_id: "@u:x".into(),
                states: vec![0; *count],
            }],
            None => Vec::new(),
        }
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        let count = FLOOD.get().map_or(0, |(_, count)| *count);
        InterestedUsers::Users((0..count).map(|i| format!("@u{i}:x")).collect())
    }
}

export!(Hostile);
