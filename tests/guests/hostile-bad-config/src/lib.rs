//! Hostile guest: misbehaves in `parse-config`, as `{"mode": ...}` says: `err`, `panic`, `spin`, or `err-after` (refuse once the wall clock passes `{"after_unix_ms": T}`, so that only a recycled instance refuses).

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

struct Hostile;

use std::time::{SystemTime, UNIX_EPOCH};

impl Guest for Hostile {
    #[allow(clippy::empty_loop)]
    fn parse_config(config: String) -> Result<(), String> {
        let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        match config.get("mode").and_then(|m| m.as_str()) {
            Some("err") => Err("hostile refusal: `mode` is err".into()),
            Some("panic") => panic!("hostile panic in parse-config"),
            Some("spin") => loop {},
            Some("err-after") => {
                let after = config
                    .get("after_unix_ms")
                    .and_then(|a| a.as_u64())
                    .unwrap_or(0);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                if now >= after {
                    Err("hostile refusal: the time has come".into())
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    fn get_users_for_states(states: Vec<UserPresenceState>) -> Vec<Route> {
        // A state from @trap:x makes the instance trap, so that the next call
        // needs a fresh one.
        if states.iter().any(|s| s.user_id == "@trap:x") {
            core::arch::wasm32::unreachable()
        }
        vec![Route {
            user_id: "@configured:x".into(),
            states: Vec::new(),
        }]
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        InterestedUsers::Users(Vec::new())
    }
}

export!(Hostile);
