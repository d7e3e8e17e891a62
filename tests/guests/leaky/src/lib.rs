//! A router that leaks on purpose, for the test kit's leak check: it
//! answers correctly (nothing, and no one) but keeps what it is given.
//!
//! By default each `get-users-for-states` keeps its whole batch, and each
//! `get-interested-users` the user ID it was asked about, in global
//! vectors that are never emptied: a bug that passes every functional
//! test. Config `{"leak_bytes": N}` instead keeps one allocation of exactly
//! N bytes per call of either callback and nothing else, so that the
//! figure the kit measures can be checked against a known leak.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

/// 0: keep the arguments; otherwise the bytes kept per call.
static LEAK_BYTES: AtomicUsize = AtomicUsize::new(0);
static KEPT_BATCHES: Mutex<Vec<Vec<UserPresenceState>>> = Mutex::new(Vec::new());
static KEPT_USERS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static KEPT_BYTES: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Keeps `N` bytes (non-zero, so that no allocator can hand out pages it
/// never touched) if configured to; true if it did.
fn keep_bytes() -> bool {
    let n = LEAK_BYTES.load(Ordering::Relaxed);
    if n == 0 {
        return false;
    }
    if let Ok(mut kept) = KEPT_BYTES.lock() {
        kept.push(std::hint::black_box(vec![1u8; n]));
    }
    true
}

struct Leaky;

impl Guest for Leaky {
    fn parse_config(config: String) -> Result<(), String> {
        let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        if let Some(n) = config.get("leak_bytes") {
            let n = n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or("`leak_bytes` must be a number of bytes")?;
            LEAK_BYTES.store(n, Ordering::Relaxed);
        }
        Ok(())
    }

    fn get_users_for_states(states: Vec<UserPresenceState>) -> Vec<Route> {
        if !keep_bytes()
            && let Ok(mut kept) = KEPT_BATCHES.lock()
        {
            kept.push(states);
        }
        Vec::new()
    }

    fn get_interested_users(user_id: String) -> InterestedUsers {
        if !keep_bytes()
            && let Ok(mut kept) = KEPT_USERS.lock()
        {
            kept.push(user_id);
        }
        InterestedUsers::Users(Vec::new())
    }
}

export!(Leaky);
