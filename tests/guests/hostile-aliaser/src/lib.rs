//! Hostile guest: makes the host copy far more than the guest holds.
//!
//! In `get-users-for-states` it builds one buffer of `mib` MiB (a
//! syntactically plausible but far too long user ID, `@aaa…:example.com`)
//! and calls the host through the raw canonical ABI, so that many arguments
//! alias that one buffer:
//!
//! - `"target": "send"` (the default): `send-local-online-presence-to` with
//!   a list of `entries` strings that all point at the buffer, `calls` times;
//! - `"target": "log"`: `log` (warn) with the whole buffer as the message,
//!   `calls` times;
//! - `"target": "write"`: WASI `output-stream.write` on stdout with the whole
//!   buffer, `calls` times (ignoring the permit `check-write` grants);
//! - `"target": "random"`: WASI `get-random-bytes` of `mib` MiB, `calls`
//!   times (the host makes the bytes before it copies them in).
//!
//! Config `{"mib": 40, "entries": 3, "calls": 16, "target": "send" | "log" |
//! "write" | "random"}`
//! (those are the defaults). A host that lifts each argument into its own
//! allocation copies `mib × entries × calls` MiB per call from `mib` MiB of
//! guest memory. It then answers nothing.

use std::sync::OnceLock;

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

// The same imports wit-bindgen declares for `module-api`, called directly so
// that the arguments can alias each other.
#[link(wasm_import_module = "matrix:presence-router/module-api@0.1.0")]
unsafe extern "C" {
    /// `send-local-online-presence-to: func(users: list<string>)`: a pointer
    /// to `len` (pointer, length) pairs of 32-bit words.
    #[link_name = "send-local-online-presence-to"]
    fn raw_send(list: *mut u8, len: usize);
    /// `log: func(level: log-level, message: string)`.
    #[link_name = "log"]
    fn raw_log(level: i32, message: *mut u8, len: usize);
}

#[link(wasm_import_module = "wasi:cli/stdout@0.2.0")]
unsafe extern "C" {
    /// `get-stdout: func() -> output-stream`.
    #[link_name = "get-stdout"]
    fn raw_get_stdout() -> i32;
}

#[link(wasm_import_module = "wasi:io/streams@0.2.0")]
unsafe extern "C" {
    /// `[method]output-stream.write: func(self: borrow<output-stream>,
    /// contents: list<u8>) -> result<_, stream-error>`.
    #[link_name = "[method]output-stream.write"]
    fn raw_write(stream: i32, contents: *mut u8, len: usize, result: *mut u8);
}

#[link(wasm_import_module = "wasi:random/random@0.2.0")]
unsafe extern "C" {
    /// `get-random-bytes: func(len: u64) -> list<u8>`.
    #[link_name = "get-random-bytes"]
    fn raw_random(len: i64, result: *mut u8);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Send,
    Log,
    Write,
    Random,
}

/// The WIT `log-level` `warn`, as the canonical ABI lowers the enum.
const LOG_LEVEL_WARN: i32 = 3;

struct Config {
    bytes: usize,
    entries: usize,
    calls: usize,
    target: Target,
}

static CONFIG: OnceLock<Config> = OnceLock::new();
/// The one big string, made once per instance.
static BUFFER: OnceLock<String> = OnceLock::new();

struct Hostile;

impl Guest for Hostile {
    fn parse_config(config: String) -> Result<(), String> {
        let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        let number = |key: &str, default: u64| {
            config
                .get(key)
                .map_or(Some(default), |v| v.as_u64())
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(format!("`{key}` must be a number"))
        };
        let target = match config.get("target").and_then(|t| t.as_str()) {
            None | Some("send") => Target::Send,
            Some("log") => Target::Log,
            Some("write") => Target::Write,
            Some("random") => Target::Random,
            Some(other) => return Err(format!("unknown `target`: {other}")),
        };
        let parsed = Config {
            bytes: number("mib", 40)? << 20,
            entries: number("entries", 3)?,
            calls: number("calls", 16)?,
            target,
        };
        CONFIG
            .set(parsed)
            .map_err(|_| "configured twice".to_owned())
    }

    fn get_users_for_states(_states: Vec<UserPresenceState>) -> Vec<Route> {
        let Some(config) = CONFIG.get() else {
            return Vec::new();
        };
        if config.target == Target::Random {
            let mut result = [0u32; 2];
            for _ in 0..config.calls {
                // SAFETY: `result` is an aligned (pointer, length) slot; the
                // bytes land in memory the guest's allocator hands out.
                unsafe { raw_random(config.bytes as i64, result.as_mut_ptr().cast()) };
            }
            return Vec::new();
        }
        let buffer = BUFFER.get_or_init(|| {
            const SERVER: &str = ":example.com";
            let mut id = String::with_capacity(config.bytes);
            id.push('@');
            id.extend(std::iter::repeat_n(
                'a',
                config.bytes.saturating_sub(1 + SERVER.len()),
            ));
            id.push_str(SERVER);
            id
        });
        let (ptr, len) = (buffer.as_ptr().cast_mut(), buffer.len());
        if config.target == Target::Write {
            // SAFETY: no arguments; returns an owned handle.
            let stdout = unsafe { raw_get_stdout() };
            let mut result = [0u32; 2];
            for _ in 0..config.calls {
                // SAFETY: a valid buffer the host only reads, and an aligned
                // slot for the result.
                unsafe { raw_write(stdout, ptr, len, result.as_mut_ptr().cast()) };
            }
        } else if config.target == Target::Log {
            for _ in 0..config.calls {
                // SAFETY: a valid UTF-8 string the host only reads.
                unsafe { raw_log(LOG_LEVEL_WARN, ptr, len) };
            }
        } else {
            // Every entry is the same (pointer, length): one buffer, many
            // strings.
            let mut list: Vec<u32> = Vec::with_capacity(config.entries * 2);
            for _ in 0..config.entries {
                list.push(ptr as u32);
                list.push(len as u32);
            }
            for _ in 0..config.calls {
                // SAFETY: `list` holds `entries` (pointer, length) pairs of
                // valid UTF-8 strings, aligned to 4; the host only reads.
                unsafe { raw_send(list.as_mut_ptr().cast(), config.entries) };
            }
        }
        Vec::new()
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        InterestedUsers::Users(Vec::new())
    }
}

export!(Hostile);
