//! Hostile guest: answers with one lie, chosen by `{"lie": ...}`: `index` (outside the batch), or a user ID that is not one (`alice`, `@:x`, `@a:`, `long`, `control`).

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

struct Hostile;

use std::sync::OnceLock;

static LIE: OnceLock<String> = OnceLock::new();

fn lying_user_id() -> String {
    match LIE.get().map(String::as_str) {
        Some("alice") => "alice".into(),
        Some("@:x") => "@:x".into(),
        Some("@a:") => "@a:".into(),
        Some("long") => format!("@{}:example.com", "a".repeat(300)),
        Some("control") => "@a\u{7}b:example.com".into(),
        _ => "@honest:example.com".into(),
    }
}

impl Guest for Hostile {
    fn parse_config(config: String) -> Result<(), String> {
        let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        let lie = config
            .get("lie")
            .and_then(|l| l.as_str())
            .ok_or("set `lie`")?;
        LIE.set(lie.to_owned())
            .map_err(|_| "configured twice".to_owned())
    }

    fn get_users_for_states(states: Vec<UserPresenceState>) -> Vec<Route> {
        if LIE.get().map(String::as_str) == Some("index") {
            return vec![Route {
                user_id: "@a:x".into(),
                states: vec![0, states.len() as u32],
            }];
        }
        vec![Route {
            user_id: lying_user_id(),
            states: Vec::new(),
        }]
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        InterestedUsers::Users(vec!["@honest:example.com".into(), lying_user_id()])
    }
}

export!(Hostile);
