//! The per-router limits, their defaults, and how each one is written in
//! the YAML configuration.

use std::fmt;
use std::time::Duration;

/// What one router may consume in one call. Every call starts afresh:
/// nothing carries over from the call before.
///
/// Every value the configuration accepts is safe to use: each limit has a
/// range (the `MIN_*`/`MAX_*` constants below, checked when the
/// configuration is parsed), so that no arithmetic on it can overflow and no
/// typo can turn a limit into none. A `Limits` built in code skips that
/// check; the runtime saturates rather than trusts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (roughly, wasm instructions) for one call, before the per-state
    /// share. YAML `fuel`, an integer from 1 to [`Limits::MAX_FUEL`].
    pub fuel: u64,
    /// Extra fuel per state in the batch, so that large batches are not
    /// starved by a budget sized for small ones. YAML `fuel_per_state`, from
    /// 0 (a flat budget) to [`Limits::MAX_FUEL_PER_STATE`].
    pub fuel_per_state: u64,
    /// The most linear memory, in bytes, an instance may have (all its
    /// memories together). YAML `memory`: `64MiB`, `512KiB`, or bytes; from
    /// [`Limits::MIN_MEMORY`] to [`Limits::MAX_MEMORY`].
    pub memory: u64,
    /// The time budget of one call: its own CPU time plus the clock waits
    /// it asked for (not a wall-clock deadline: time spent waiting for a
    /// core is not the router's). YAML `timeout`: `100ms`, `2s`; from
    /// [`Limits::MIN_TIMEOUT`] to [`Limits::MAX_TIMEOUT`].
    pub timeout: Duration,
    /// The largest answer accepted from one call whatever the batch,
    /// counted in entries: each route, state index or user ID is one. YAML
    /// `max_answer_entries`, from 1 to [`Limits::MAX_ANSWER_ENTRIES`]. A
    /// call's own bound is smaller: it follows its batch
    /// ([`Limits::answer_entries_for_batch`]).
    pub max_answer_entries: usize,
    /// Answer entries a call may have per state of its batch, beyond
    /// [`Limits::ANSWER_ENTRIES_BASE`]: what the host does with an answer
    /// (checking it, and in Synapse turning it into Python sets) is paid
    /// for by the router, and a one-state batch has no use for a million
    /// entries. YAML `answer_entries_per_state`, from 0 to
    /// [`Limits::MAX_ANSWER_ENTRIES`].
    pub answer_entries_per_state: usize,
    /// How many instances of the router may run at once (each is kept warm
    /// between calls). YAML `max_instances`, from 1 to
    /// [`Limits::MAX_INSTANCES`].
    pub max_instances: usize,
    /// `send-local-online-presence-to` calls kept per callback; more are
    /// dropped and counted. YAML `max_send_calls`, from 0 (the router may
    /// not send) to [`Limits::MAX_SEND_CALLS`].
    pub max_send_calls: usize,
    /// Distinct users a call's `send-local-online-presence-to` calls may
    /// name together; more are dropped and counted. Each one costs the
    /// homeserver a database write or a federation send. YAML
    /// `max_send_users`, from 0 to [`Limits::MAX_SEND_USERS`].
    pub max_send_users: usize,
    /// Users sent to per second, sustained, over all of a router's calls
    /// (a burst of `max_send_users` is allowed); more are dropped, counted,
    /// and summarised in one warning per interval. YAML
    /// `send_users_per_second`, from 1 to [`Limits::MAX_SEND_USERS`].
    pub send_users_per_second: u32,
    /// Log lines (from `log`, stdout and stderr) kept per callback; more are
    /// dropped and counted. YAML `max_log_lines`, from 0 (the router may not
    /// log) to [`Limits::MAX_LOG_LINES`].
    pub max_log_lines: usize,
    /// Bytes of log (lines as they are logged: escaped, each at most
    /// [`Limits::MAX_LOG_LINE_BYTES`]) a router may write per second,
    /// sustained over all its calls, with a burst of one second's worth;
    /// more are dropped, counted, and summarised in one warning per
    /// interval. YAML `log_bytes_per_second`: `64KiB`, or bytes; from
    /// [`Limits::MIN_LOG_BYTES_PER_SECOND`] to
    /// [`Limits::MAX_LOG_BYTES_PER_SECOND`].
    pub log_bytes_per_second: u64,
}

impl Limits {
    /// Defaults sized for a compact router (Rust, C) and generous enough for
    /// one built with a language runtime inside (JavaScript, Python): the
    /// time budget, not fuel, is what stops a slow router first.
    pub const DEFAULT: Limits = Limits {
        fuel: 10_000_000,
        fuel_per_state: 200_000,
        memory: 64 * 1024 * 1024,
        timeout: Duration::from_millis(100),
        max_answer_entries: 1_000_000,
        answer_entries_per_state: 64,
        max_instances: 4,
        max_send_calls: 16,
        max_send_users: 100,
        send_users_per_second: 20,
        max_log_lines: 64,
        log_bytes_per_second: 64 * 1024,
    };

    /// Answer entries every call may have whatever its batch, before the
    /// share per state: a one-state call of the example router with a few
    /// hundred `always_send_to_users` fits.
    pub const ANSWER_ENTRIES_BASE: usize = 1024;

    /// The most distinct users one call may send to: each is a database
    /// write or a federation send in the homeserver.
    pub const MAX_SEND_USERS: usize = 1000;

    /// One log line's worth per second at least (less could never log a
    /// whole line), and 64 KiB per second at most: a router logging at
    /// that rate all day writes 5.5 GB, which is already an operator's
    /// problem.
    pub const MIN_LOG_BYTES_PER_SECOND: u64 = 1024;
    pub const MAX_LOG_BYTES_PER_SECOND: u64 = 64 * 1024;

    /// The most fuel a call may start with, 10^15: days of computing, so
    /// the time budget (at most [`Limits::MAX_TIMEOUT`]) always stops a call
    /// first, and "fuel to spare" can still be written. With
    /// [`Limits::MAX_FUEL_PER_STATE`], the budget of any batch that can be
    /// answered (its states are indexed by `u32`) stays below `i64::MAX`,
    /// the fuel wasmtime can hold: [`Limits::fuel_for_batch`] never needs
    /// to saturate for a configured router.
    pub const MAX_FUEL: u64 = 1_000_000_000_000_000;

    /// The most fuel per state, 10^9: 5,000 times the default.
    pub const MAX_FUEL_PER_STATE: u64 = 1_000_000_000;

    /// One 64 KiB wasm page: the smallest guest has one, so less can only be
    /// a typo.
    pub const MIN_MEMORY: u64 = 64 * 1024;

    /// 4 GiB, all that a wasm32 memory can address. A larger limit could
    /// never be reached; it would only make the runtime reserve more
    /// address space for every instance slot.
    pub const MAX_MEMORY: u64 = 4 * 1024 * 1024 * 1024;

    /// 1 ms, the precision of the time budget (the runtime checks it at every
    /// tick of a 1 ms clock): a shorter timeout could not be kept.
    pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

    /// One minute. A call holds one of a homeserver's presence batches, so a
    /// time budget far beyond the default 100 ms is already a stalled
    /// homeserver; and the end of a budget, added to the time a call
    /// started, must not overflow the clock (`timeout: 400000000000y` used
    /// to panic the first call).
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

    /// The most answer entries, 10^7 (ten times the default): the host may
    /// allocate about 128 bytes per entry while it copies an answer, so this
    /// bounds one call's answer to about 1.2 GiB of host memory.
    pub const MAX_ANSWER_ENTRIES: usize = 10_000_000;

    /// The most warm instances one router may keep: each reserves a
    /// pooling-allocator slot (address space, and up to a few MiB kept
    /// resident once used).
    pub const MAX_INSTANCES: usize = 1024;

    /// The most `send-local-online-presence-to` calls kept per callback.
    pub const MAX_SEND_CALLS: usize = 10_000;

    /// The most log lines kept per callback: the host buffers up to
    /// [`Limits::MAX_LOG_LINE_BYTES`] of a guest's stdout and of its stderr
    /// per line, so this bounds that to about 10 MiB per stream and call.
    pub const MAX_LOG_LINES: usize = 10_000;

    /// A log line longer than this is cut (at a character boundary).
    pub const MAX_LOG_LINE_BYTES: usize = crate::text::MAX_GUEST_TEXT_BYTES;

    /// The answer entries a call on a batch of `states` states may have:
    /// [`Limits::ANSWER_ENTRIES_BASE`] plus `answer_entries_per_state` per
    /// state, at most `max_answer_entries`. (`get-interested-users` and the
    /// users of a call's sends count as a batch of one.)
    pub fn answer_entries_for_batch(&self, states: usize) -> usize {
        Self::ANSWER_ENTRIES_BASE
            .saturating_add(self.answer_entries_per_state.saturating_mul(states))
            .min(self.max_answer_entries)
    }

    /// How [`Limits::answer_entries_for_batch`] came to its figure, for
    /// messages ("more than ..."): `limits.max_answer_entries = 10` or `the
    /// 1152 entries a batch of 2 state(s) may have (1024 +
    /// limits.answer_entries_per_state = 64 per state)`.
    pub fn describe_answer_entries(&self, states: usize) -> String {
        let cap = self.answer_entries_for_batch(states);
        if cap == self.max_answer_entries {
            format!("limits.max_answer_entries = {cap}")
        } else {
            format!(
                "the {cap} entries a batch of {states} state(s) may have ({} + \
                 limits.answer_entries_per_state = {} per state)",
                Self::ANSWER_ENTRIES_BASE,
                self.answer_entries_per_state
            )
        }
    }

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
/// `max_backoff`. When a suspension ends, one call is let through as a
/// trial while the others are still skipped: its success ends the matter,
/// its failure suspends the router again at once (and once, however many
/// calls were waiting).
///
/// Without it, a router that always times out would cost every batch its
/// whole time budget. YAML: `failure_policy: {suspend_after: 5, backoff: 1s,
/// max_backoff: 5m}`; `suspend_after: 0` never suspends. `backoff` is longer
/// than 0 and `max_backoff` at least `backoff`; both are at most
/// [`FailurePolicy::LONGEST_BACKOFF`]. `suspend_after` may be any `u32`:
/// the failure count saturates.
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

    /// The longest `backoff` or `max_backoff`, one day: a router suspended
    /// longer is better taken out of the configuration; and the end of a
    /// suspension is a point in time that must not overflow the clock
    /// (`backoff: 400000000000y` used to panic at the first suspension).
    pub const LONGEST_BACKOFF: Duration = Duration::from_secs(24 * 60 * 60);

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
             answers up to {} + {} entries per state (at most {}), {} instance(s), \
             {} send calls to at most {} users and {} log lines per call, \
             {} users sent to and {} of log per second",
            self.fuel,
            self.fuel_per_state,
            format_bytes(self.memory),
            humantime::format_duration(self.timeout),
            Self::ANSWER_ENTRIES_BASE,
            self.answer_entries_per_state,
            self.max_answer_entries,
            self.max_instances,
            self.max_send_calls,
            self.max_send_users,
            self.max_log_lines,
            self.send_users_per_second,
            format_bytes(self.log_bytes_per_second),
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

    #[test]
    fn the_defaults_are_within_the_ranges() {
        let d = Limits::DEFAULT;
        assert!((1..=Limits::MAX_FUEL).contains(&d.fuel));
        assert!(d.fuel_per_state <= Limits::MAX_FUEL_PER_STATE);
        assert!((Limits::MIN_MEMORY..=Limits::MAX_MEMORY).contains(&d.memory));
        assert!((Limits::MIN_TIMEOUT..=Limits::MAX_TIMEOUT).contains(&d.timeout));
        assert!((1..=Limits::MAX_ANSWER_ENTRIES).contains(&d.max_answer_entries));
        assert!((1..=Limits::MAX_INSTANCES).contains(&d.max_instances));
        assert!(d.max_send_calls <= Limits::MAX_SEND_CALLS);
        assert!(d.max_log_lines <= Limits::MAX_LOG_LINES);
        assert!(d.answer_entries_per_state <= Limits::MAX_ANSWER_ENTRIES);
        assert!(d.max_send_users <= Limits::MAX_SEND_USERS);
        assert!((1..=Limits::MAX_SEND_USERS as u32).contains(&d.send_users_per_second));
        assert!(
            (Limits::MIN_LOG_BYTES_PER_SECOND..=Limits::MAX_LOG_BYTES_PER_SECOND)
                .contains(&d.log_bytes_per_second)
        );
        let p = FailurePolicy::DEFAULT;
        assert!(p.backoff <= p.max_backoff && p.max_backoff <= FailurePolicy::LONGEST_BACKOFF);
    }

    #[test]
    fn answer_entries_follow_the_batch_up_to_the_flat_cap() {
        let d = Limits::DEFAULT;
        assert_eq!(d.answer_entries_for_batch(1), 1024 + 64);
        assert_eq!(d.answer_entries_for_batch(200), 1024 + 64 * 200);
        assert_eq!(d.answer_entries_for_batch(usize::MAX), d.max_answer_entries);
        let flat = Limits {
            max_answer_entries: 10,
            ..Limits::DEFAULT
        };
        assert_eq!(flat.answer_entries_for_batch(1000), 10);
        assert_eq!(
            flat.describe_answer_entries(1000),
            "limits.max_answer_entries = 10"
        );
        assert_eq!(
            d.describe_answer_entries(2),
            "the 1152 entries a batch of 2 state(s) may have (1024 + limits.answer_entries_per_state = 64 per state)"
        );
    }

    #[test]
    fn the_largest_budget_of_an_answerable_batch_fits_wasmtimes_fuel() {
        let most = Limits {
            fuel: Limits::MAX_FUEL,
            fuel_per_state: Limits::MAX_FUEL_PER_STATE,
            ..Limits::DEFAULT
        };
        // Answers index the batch with `u32`s: no larger batch is answered.
        let states = usize::try_from(u32::MAX).expect("a 32-bit usize at least");
        let budget = most.fuel_for_batch(states);
        assert_eq!(
            u128::from(budget),
            u128::from(Limits::MAX_FUEL)
                + u128::from(Limits::MAX_FUEL_PER_STATE) * u128::from(u32::MAX),
            "exact, not saturated"
        );
        assert!(budget <= i64::MAX as u64);
    }

    #[test]
    fn the_longest_time_budget_and_suspension_can_be_added_to_now() {
        let now = std::time::Instant::now();
        assert!(now.checked_add(Limits::MAX_TIMEOUT).is_some());
        let policy = FailurePolicy {
            suspend_after: 1,
            backoff: FailurePolicy::LONGEST_BACKOFF,
            max_backoff: FailurePolicy::LONGEST_BACKOFF,
        };
        assert_eq!(policy.backoff_for(u32::MAX), FailurePolicy::LONGEST_BACKOFF);
        assert!(now.checked_add(policy.backoff_for(u32::MAX)).is_some());
    }
}
