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
    /// The most warm instances one router may keep.
    pub const MAX_INSTANCES: usize = 1024;

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

/// What happens to a router that keeps failing: after `suspend_after`
/// failures in a row it is not called for `backoff`; every suspension that
/// follows without a success in between lasts twice as long, up to
/// `max_backoff`. The first call after a suspension is a trial: a success
/// ends the matter, a failure suspends the router again at once.
///
/// Without it, a router that always times out would cost every batch its
/// whole deadline. YAML: `failure_policy: {suspend_after: 5, backoff: 1s,
/// max_backoff: 5m}`; `suspend_after: 0` never suspends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailurePolicy {
    pub suspend_after: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl FailurePolicy {
    pub const DEFAULT: FailurePolicy = FailurePolicy {
        suspend_after: 5,
        backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(300),
    };

    /// How long the `n`th suspension in a row (from 1) lasts.
    pub fn backoff_for(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy::DEFAULT
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.suspend_after == 0 {
            return f.write_str("never suspended");
        }
        write!(
            f,
            "suspended after {} failures in a row, for {} doubling up to {}",
            self.suspend_after,
            humantime::format_duration(self.backoff),
            humantime::format_duration(self.max_backoff),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let policy = FailurePolicy {
            suspend_after: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        let backoffs: Vec<u128> = (1..=5).map(|n| policy.backoff_for(n).as_millis()).collect();
        assert_eq!(backoffs, vec![100, 200, 400, 500, 500]);
        assert_eq!(policy.backoff_for(1000), Duration::from_millis(500));
    }
}
