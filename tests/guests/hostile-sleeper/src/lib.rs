//! Hostile guest: burns wall-clock time while spending little fuel.
//!
//! `{"via": "log"}` (the default) calls `log` with a 1 MiB message over and
//! over: each call costs the guest a few units of fuel and the host a 1 MiB
//! copy and UTF-8 check, so only the deadline stops it. `{"via": "fill"}`
//! loops on 16 MiB `memory.fill`s, which wasmtime 48 charges fuel per byte:
//! fuel stops that one.

use std::hint::black_box;
use std::sync::OnceLock;

use matrix::presence_router::module_api::{self, LogLevel};

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

struct Hostile;

static VIA_FILL: OnceLock<bool> = OnceLock::new();

impl Guest for Hostile {
    fn parse_config(config: String) -> Result<(), String> {
        let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        let fill = config.get("via").and_then(|v| v.as_str()) == Some("fill");
        VIA_FILL
            .set(fill)
            .map_err(|_| "configured twice".to_owned())
    }

    fn get_users_for_states(_states: Vec<UserPresenceState>) -> Vec<Route> {
        if VIA_FILL.get().copied().unwrap_or(false) {
            let mut buffer = vec![0u8; 16 << 20];
            let mut byte = 0u8;
            loop {
                unsafe { std::ptr::write_bytes(buffer.as_mut_ptr(), byte, buffer.len()) };
                black_box(&mut buffer);
                byte = byte.wrapping_add(1);
            }
        }
        let message = "z".repeat(1 << 20);
        loop {
            module_api::log(LogLevel::Trace, black_box(&message));
        }
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        InterestedUsers::Users(Vec::new())
    }
}

export!(Hostile);
