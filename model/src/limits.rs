//! The per-router limits, their defaults, and how each one is written in
//! the YAML configuration.

use std::fmt;
use std::time::Duration;

/// What one router may consume in one call. Every call starts afresh:
/// nothing carries over from the call before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (roughly, wasm instructions) for one call, before the per-state
    /// share. YAML `fuel`, an integer.
    pub fuel: u64,
    /// Extra fuel per state in the batch, so that large batches are not
    /// starved by a budget sized for small ones. YAML `fuel_per_state`.
    pub fuel_per_state: u64,
    /// The most linear memory, in bytes, an instance may have (all its
    /// memories together). YAML `memory`: `64MiB`, `512KiB`, or bytes.
    pub memory: u64,
    /// Wall-clock deadline for one call. YAML `timeout`: `100ms`, `2s`.
    pub timeout: Duration,
    /// The largest answer accepted from one call, counted in entries: each
    /// route, state index or user ID is one. YAML `max_answer_entries`.
    pub max_answer_entries: usize,
    /// How many instances of the router may run at once (each is kept warm
    /// between calls). YAML `max_instances`.
    pub max_instances: usize,
    /// `send-local-online-presence-to` calls kept per callback; more are
    /// dropped and counted. YAML `max_send_calls`.
    pub max_send_calls: usize,
    /// Log lines (from `log`, stdout and stderr) kept per callback; more are
    /// dropped and counted. YAML `max_log_lines`.
    pub max_log_lines: usize,
}

impl Limits {
    /// Defaults sized for a compact router (Rust, C) and generous enough for
    /// one built with a language runtime inside (JavaScript, Python): the
    /// deadline, not fuel, is what stops a slow router first.
    pub const DEFAULT: Limits = Limits {
        fuel: 10_000_000,
        fuel_per_state: 200_000,
        memory: 64 * 1024 * 1024,
        timeout: Duration::from_millis(100),
        max_answer_entries: 1_000_000,
        max_instances: 4,
        max_send_calls: 16,
        max_log_lines: 64,
    };

    /// A log line longer than this is cut (at a character boundary).
    pub const MAX_LOG_LINE_BYTES: usize = 1024;

    /// The fuel budget of a call on a batch of `states` states.
    pub fn fuel_for_batch(&self, states: usize) -> u64 {
        let states = u64::try_from(states).unwrap_or(u64::MAX);
        self.fuel
            .saturating_add(self.fuel_per_state.saturating_mul(states))
    }
}

/// A byte count the way the configuration writes it: `64MiB`, `512KiB`,
/// or plain bytes when it is not a whole number of either.
pub fn format_bytes(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    match bytes {
        0 => "0 bytes".to_owned(),
        b if b % GIB == 0 => format!("{}GiB", b / GIB),
        b if b % MIB == 0 => format!("{}MiB", b / MIB),
        b if b % KIB == 0 => format!("{}KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fuel {} + {} per state, memory {}, timeout {}, \
             answers up to {} entries, {} instance(s), \
             {} send calls and {} log lines per call",
            self.fuel,
            self.fuel_per_state,
            format_bytes(self.memory),
            humantime::format_duration(self.timeout),
            self.max_answer_entries,
            self.max_instances,
            self.max_send_calls,
            self.max_log_lines,
        )
    }
}
