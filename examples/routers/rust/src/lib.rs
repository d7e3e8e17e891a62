//! The `ExamplePresenceRouter` of Synapse's documentation, as a WebAssembly
//! component: start here to write your own router.
//!
//! Configuration (the router's `config:` mapping, handed over as JSON):
//!
//! - `always_send_to_users`: these users receive every presence update that
//!   is routed, and `get-interested-users` answers `all-users` for them.
//! - `blacklisted_users`: updates *from* these users are never routed by
//!   this router (delivery between users who share a room is untouched).
//!
//! Both are optional lists of Matrix user IDs and default to empty; any other
//! key, or a value of the wrong type, is refused with a message naming it.
//!
//! Build: `./build.sh` (after `./setup.sh`), which runs `cargo build --release
//! --target wasm32-wasip2`.

use std::sync::OnceLock;

// Each call's allocations come from an arena that empties when the call
// ends (`call_arena.rs`): a router that keeps nothing between calls pays a
// few instructions per allocation instead of a general allocator's few
// hundred. Only where a component runs on one thread: its bookkeeping is
// not atomic (a host build, `cargo test` say, keeps std's allocator).
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
mod call_arena;

use rustc_hash::FxHashSet;
use serde::Deserialize;

// Generates the `Guest` trait to implement, the `export!` macro, and the
// interface types; the world `use`s `route`, `interested-users` and
// `user-presence-state`, so they are in scope here.
wit_bindgen::generate!({
    path: "wit",
    world: "presence-router",
});

/// The validated configuration. `parse-config` runs once per instance,
/// before any other call, so a `OnceLock` is all the state a router needs.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RouterConfig {
    always_send_to_users: Vec<String>,
    /// A set, because it is looked up once per state of every batch. Hashed
    /// with FxHash, not std's SipHash, which took longer than the rest of the
    /// lookup. SipHash is keyed against HashDoS, where an attacker *inserts*
    /// colliding keys; this set is filled from the operator's configuration
    /// and only looked up with other people's IDs, so a fast unkeyed hash is
    /// safe here (and needs no randomness from the host).
    blacklisted_users: FxHashSet<String>,
}

static CONFIG: OnceLock<RouterConfig> = OnceLock::new();

fn config() -> &'static RouterConfig {
    // The host calls `parse-config` first on every instance; if some host did
    // not, routing nothing is the safe answer.
    CONFIG.get_or_init(RouterConfig::default)
}

/// The ids must look like Matrix user IDs (`@localpart:server`): a typo here
/// would otherwise silently route nothing.
fn check_user_ids<'a>(key: &str, ids: impl IntoIterator<Item = &'a String>) -> Result<(), String> {
    for id in ids {
        let well_formed = id
            .strip_prefix('@')
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(localpart, server)| !localpart.is_empty() && !server.is_empty());
        if !well_formed {
            return Err(format!(
                "{key}: `{id}` is not a Matrix user ID (@localpart:server)"
            ));
        }
    }
    Ok(())
}

struct ExampleRouter;

impl Guest for ExampleRouter {
    fn parse_config(config: String) -> Result<(), String> {
        // serde_path_to_error names the key in type errors
        // ("always_send_to_users: invalid type: string ..., expected a sequence").
        let mut json = serde_json::Deserializer::from_str(&config);
        let parsed: RouterConfig =
            serde_path_to_error::deserialize(&mut json).map_err(|e| {
                match e.path().to_string() {
                    path if path == "." => e.inner().to_string(),
                    path => format!("{path}: {}", e.inner()),
                }
            })?;
        check_user_ids("always_send_to_users", &parsed.always_send_to_users)?;
        check_user_ids("blacklisted_users", &parsed.blacklisted_users)?;
        CONFIG
            .set(parsed)
            .map_err(|_| "parse-config was called twice".to_string())?;
        // What the router keeps for its life is allocated: from now on,
        // each call's allocations come from the arena.
        #[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
        call_arena::start();
        Ok(())
    }

    fn get_users_for_states(states: Vec<UserPresenceState>) -> Vec<Route> {
        let config = config();
        if config.always_send_to_users.is_empty() {
            return Vec::new();
        }
        // Answer with indices into the batch: the host already holds the
        // states, so nothing is copied back across the boundary.
        let routed: Vec<u32> = states
            .iter()
            .zip(0u32..)
            .filter(|(state, _)| !config.blacklisted_users.contains(&state.user_id))
            .map(|(_, index)| index)
            .collect();
        // As in the documentation, every listed user gets every routed
        // update, their own included, and an entry even when nothing is
        // routed.
        config
            .always_send_to_users
            .iter()
            .map(|user_id| Route {
                user_id: user_id.clone(),
                states: routed.clone(),
            })
            .collect()
    }

    fn get_interested_users(user_id: String) -> InterestedUsers {
        // Must line up with `get_users_for_states`: the users who receive all
        // routed updates are exactly those interested in everyone.
        if config().always_send_to_users.contains(&user_id) {
            InterestedUsers::AllUsers
        } else {
            InterestedUsers::Users(Vec::new())
        }
    }
}

export!(ExampleRouter);
