//! Hostile guest: writes text meant to fool whoever reads the host's log or
//! terminal.
//!
//! In `get-users-for-states` it logs (`log`, warn) a message with a newline
//! followed by what looks like a line of the host's own log, prints to stdout
//! a carriage return and ANSI sequences (clear the screen, red), and writes
//! to stderr a line with a C1 control (CSI, U+009B). Then it answers nothing.
//!
//! Config: `{"refuse": true}` makes `parse-config` refuse with a message that
//! clears the screen, forges a line, and goes on for 8 MB; `{"panic": true}`
//! makes `get-users-for-states` panic, after the above, with a message full
//! of controls (which the host quotes in the failure).

use std::sync::atomic::{AtomicBool, Ordering};

use matrix::presence_router::module_api::{self, LogLevel};

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

/// What the forger logs: "ok", then a line dressed as the host's.
pub const FORGED_LOG: &str = "ok\n2026-11-30T00:00:00Z WARN presence_router: FORGED host line";
/// What it prints to stdout: back to the start of the line, clear the
/// screen, red.
pub const FORGED_STDOUT: &str = "\r\x1b[2J\x1b[31mred\x1b[0m\n";
/// What it writes to stderr: a C1 CSI (U+009B) sequence.
pub const FORGED_STDERR: &str = "forged \u{9b}31m C1 red";

static PANIC: AtomicBool = AtomicBool::new(false);

struct Hostile;

impl Guest for Hostile {
    fn parse_config(config: String) -> Result<(), String> {
        let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        let flag = |key: &str| config.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
        if flag("refuse") {
            let mut message = String::from("\x1b[2J\nFORGED: ");
            message.extend(std::iter::repeat_n('x', 8_000_000));
            return Err(message);
        }
        PANIC.store(flag("panic"), Ordering::Relaxed);
        Ok(())
    }

    fn get_users_for_states(_states: Vec<UserPresenceState>) -> Vec<Route> {
        module_api::log(LogLevel::Warn, FORGED_LOG);
        print!("{FORGED_STDOUT}");
        eprintln!("{FORGED_STDERR}");
        if PANIC.load(Ordering::Relaxed) {
            panic!("\x1b[2J\r\x1b[31mFORGED panic\x1b[0m\u{9b}2J\x07");
        }
        Vec::new()
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        InterestedUsers::Users(Vec::new())
    }
}

export!(Hostile);
