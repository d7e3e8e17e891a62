//! Hostile guest: valid answers and effects, cheap in fuel, that make the
//! host work hard for them. Each mode is one way a router could make its
//! host (the Synapse module on the reactor above all) pay for what it
//! asks, beyond the wasm it runs.
//!
//! Config `{"mode": M, "n": N, "k": K}`:
//! - `distinct-routes`: `get-users-for-states` answers N routes, to
//!   `@u<i>:x`, each with every index of the batch but one (`i` modulo the
//!   batch): N distinct sets of states to build;
//! - `half-routes`: N routes, to `@u<i>:x`, each with half of the batch,
//!   a window starting at `i`: N distinct sets, each as costly to build
//!   from the whole batch's set as from nothing;
//! - `new-users`: as `distinct-routes`, to N users never named before,
//!   new ones each call (`@n<call>_<i>:x`);
//! - `control-logs`: every call logs K lines at error, each 1 KiB of
//!   control characters (six times as long once escaped);
//! - `sends`: every call asks presence to be sent to N distinct users,
//!   new ones each call (`@s<call>_<i>:example.com`);
//! - `interest`: `get-interested-users` answers N users `@i<i>:x`.

use std::cell::Cell;

use matrix::presence_router::module_api::{self, LogLevel};

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

#[derive(serde::Deserialize, Default)]
struct Config {
    mode: String,
    #[serde(default)]
    n: u32,
    #[serde(default)]
    k: u32,
}

thread_local! {
    static CONFIG: std::cell::RefCell<Config> = std::cell::RefCell::new(Config::default());
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

fn with_config<T>(f: impl FnOnce(&Config) -> T) -> T {
    CONFIG.with(|c| f(&c.borrow()))
}

/// The effects every call has, whichever callback.
fn effects() {
    let call = CALLS.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    with_config(|config| match config.mode.as_str() {
        "control-logs" => {
            let line = "\u{1}".repeat(1024);
            for _ in 0..config.k {
                module_api::log(LogLevel::Error, &line);
            }
        }
        "sends" => {
            let users: Vec<String> = (0..config.n)
                .map(|i| format!("@s{call}_{i}:example.com"))
                .collect();
            module_api::send_local_online_presence_to(&users);
        }
        _ => {}
    });
}

struct CostlyRouter;

impl Guest for CostlyRouter {
    fn parse_config(config: String) -> Result<(), String> {
        let config: Config = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        CONFIG.with(|c| *c.borrow_mut() = config);
        Ok(())
    }

    fn get_users_for_states(states: Vec<UserPresenceState>) -> Vec<Route> {
        effects();
        let call = CALLS.with(Cell::get);
        with_config(|config| match config.mode.as_str() {
            mode @ ("distinct-routes" | "new-users") => {
                let len = states.len() as u32;
                (0..config.n)
                    .map(|i| Route {
                        user_id: match mode {
                            "new-users" => format!("@n{call}_{i}:x"),
                            _ => format!("@u{i}:x"),
                        },
                        states: (0..len).filter(|&s| len < 2 || s != i % len).collect(),
                    })
                    .collect()
            }
            "half-routes" => {
                let len = states.len() as u32;
                (0..config.n)
                    .map(|i| Route {
                        user_id: format!("@u{i}:x"),
                        states: (0..len)
                            .filter(|&s| (s + i) % len.max(1) < len / 2)
                            .collect(),
                    })
                    .collect()
            }
            _ => Vec::new(),
        })
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        effects();
        with_config(|config| match config.mode.as_str() {
            "interest" => {
                InterestedUsers::Users((0..config.n).map(|i| format!("@i{i}:x")).collect())
            }
            _ => InterestedUsers::Users(Vec::new()),
        })
    }
}

export!(CostlyRouter);
