//! Hostile guest: makes the host hold WASI resources for it, call after
//! call.
//!
//! Each `get-users-for-states` creates `per_call` WASI pollables
//! (`monotonic-clock.subscribe-duration(0)`) and never drops them: each is
//! an entry in the host's resource table, host memory the guest's memory
//! limit doesn't count. Config `{"per_call": K}` (default 10,000). It then
//! logs (`log`, info) `"holding N pollables"`, N being all it created since
//! this instance started, and answers nothing.

use std::sync::atomic::{AtomicU64, Ordering};

use matrix::presence_router::module_api::{self, LogLevel};

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

// The import std itself uses for `std::thread::sleep`, declared raw so that
// the pollable it returns can be kept forever (the `wasi` crate is not a
// dependency of these guests). A pollable is an `own` handle: an i32.
#[link(wasm_import_module = "wasi:clocks/monotonic-clock@0.2.0")]
unsafe extern "C" {
    #[link_name = "subscribe-duration"]
    fn subscribe_duration(nanoseconds: i64) -> i32;
}

static PER_CALL: AtomicU64 = AtomicU64::new(10_000);
static HOLDING: AtomicU64 = AtomicU64::new(0);

struct Hostile;

impl Guest for Hostile {
    fn parse_config(config: String) -> Result<(), String> {
        let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        if let Some(per_call) = config.get("per_call") {
            let per_call = per_call.as_u64().ok_or("`per_call` must be a number")?;
            PER_CALL.store(per_call, Ordering::Relaxed);
        }
        Ok(())
    }

    fn get_users_for_states(_states: Vec<UserPresenceState>) -> Vec<Route> {
        for _ in 0..PER_CALL.load(Ordering::Relaxed) {
            // SAFETY: a plain import call; the handle it returns is never
            // used, never dropped (the point of this guest).
            let pollable = unsafe { subscribe_duration(0) };
            std::hint::black_box(pollable);
            HOLDING.fetch_add(1, Ordering::Relaxed);
        }
        module_api::log(
            LogLevel::Info,
            &format!("holding {} pollables", HOLDING.load(Ordering::Relaxed)),
        );
        Vec::new()
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        InterestedUsers::Users(Vec::new())
    }
}

export!(Hostile);
