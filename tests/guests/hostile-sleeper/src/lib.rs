//! Hostile guest: burns wall-clock time while spending little fuel.
//!
//! `{"via": "log"}` (the default) calls `log` with a 1 MiB message over and
//! over: each call costs the guest a few units of fuel and the host a 1 MiB
//! copy and UTF-8 check, so only the deadline stops it. `{"via": "fill"}`
//! loops on 16 MiB `memory.fill`s, which wasmtime 48 charges fuel per byte:
//! fuel stops that one.
//!
//! `{"via": "sleep", "ms": N, "in": [EXPORT, ...], "then": "trap" | "answer"}`
//! blocks instead of computing: `std::thread::sleep(N ms)` (a WASI
//! `monotonic-clock.subscribe-duration` and `pollable.block`) in each listed
//! export (`parse-config`, `get-users-for-states`, `get-interested-users`;
//! `["get-users-for-states"]` by default). After the sleep, `parse-config`
//! accepts its configuration, and the other two trap (a panic) with
//! `"then": "trap"` or answer nothing (`"answer"`, the default).

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use matrix::presence_router::module_api::{self, LogLevel};

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

struct Hostile;

const PARSE_CONFIG: &str = "parse-config";
const GET_USERS_FOR_STATES: &str = "get-users-for-states";
const GET_INTERESTED_USERS: &str = "get-interested-users";

enum Via {
    Log,
    Fill,
    Sleep {
        duration: Duration,
        exports: Vec<String>,
        trap: bool,
    },
}

static VIA: OnceLock<Via> = OnceLock::new();

impl Via {
    fn parse(config: &serde_json::Value) -> Result<Via, String> {
        match config.get("via").and_then(|v| v.as_str()) {
            None | Some("log") => Ok(Via::Log),
            Some("fill") => Ok(Via::Fill),
            Some("sleep") => {
                let ms = config
                    .get("ms")
                    .and_then(|m| m.as_u64())
                    .ok_or("`ms` must be a number of milliseconds")?;
                let exports = match config.get("in") {
                    None => vec![GET_USERS_FOR_STATES.to_owned()],
                    Some(list) => list
                        .as_array()
                        .ok_or("`in` must be a list of export names")?
                        .iter()
                        .map(|e| e.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or("`in` must be a list of export names")?,
                };
                let trap = match config.get("then").and_then(|t| t.as_str()) {
                    None | Some("answer") => false,
                    Some("trap") => true,
                    Some(other) => return Err(format!("unknown `then`: {other}")),
                };
                Ok(Via::Sleep {
                    duration: Duration::from_millis(ms),
                    exports,
                    trap,
                })
            }
            Some(other) => Err(format!("unknown `via`: {other}")),
        }
    }
}

/// Sleeps if `export` is one of the listed ones; then whether to trap.
fn sleep_in(export: &str) -> bool {
    match VIA.get() {
        Some(Via::Sleep {
            duration,
            exports,
            trap,
        }) => {
            if exports.iter().any(|e| e == export) {
                std::thread::sleep(*duration);
            }
            *trap
        }
        _ => false,
    }
}

impl Guest for Hostile {
    fn parse_config(config: String) -> Result<(), String> {
        let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        VIA.set(Via::parse(&config)?)
            .map_err(|_| "configured twice".to_owned())?;
        sleep_in(PARSE_CONFIG);
        Ok(())
    }

    fn get_users_for_states(_states: Vec<UserPresenceState>) -> Vec<Route> {
        match VIA.get() {
            Some(Via::Fill) => {
                let mut buffer = vec![0u8; 16 << 20];
                let mut byte = 0u8;
                loop {
                    unsafe { std::ptr::write_bytes(buffer.as_mut_ptr(), byte, buffer.len()) };
                    black_box(&mut buffer);
                    byte = byte.wrapping_add(1);
                }
            }
            Some(Via::Sleep { .. }) => {
                if sleep_in(GET_USERS_FOR_STATES) {
                    panic!("hostile sleeper woke up in {GET_USERS_FOR_STATES} and trapped");
                }
                Vec::new()
            }
            Some(Via::Log) | None => {
                let message = "z".repeat(1 << 20);
                loop {
                    module_api::log(LogLevel::Trace, black_box(&message));
                }
            }
        }
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        if sleep_in(GET_INTERESTED_USERS) {
            panic!("hostile sleeper woke up in {GET_INTERESTED_USERS} and trapped");
        }
        InterestedUsers::Users(Vec::new())
    }
}

export!(Hostile);
