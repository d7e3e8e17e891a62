//! What a router may make the host do over time, beyond one call: its log
//! bytes and the users it sends presence to, per second, and the work of
//! handing its answers on, per call.
//!
//! Per call, a router's log lines and sends are capped where they arrive
//! (`guest/state.rs`). That bounds one call, not a router called fifty
//! times a second: 64 lines of 1 KiB per call is megabytes of log a second,
//! and every user sent to is a database write or a federation send in the
//! homeserver. So each router also has a budget per second for each, a
//! token bucket (a burst of one second's worth, then the sustained rate).
//! What is over it is dropped, counted in the router's figures, and said in
//! one warning per [`SUMMARY_INTERVAL`] while it lasts, never one per line.

use std::time::{Duration, Instant};

use presence_router_model::{Limits, format_bytes};

/// How often a router that keeps going over a budget is told so in the log.
pub(crate) const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// A token bucket: `rate` units per second, at most `burst` held.
#[derive(Debug)]
pub(crate) struct RateBudget {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl RateBudget {
    /// A full bucket.
    pub(crate) fn new(rate_per_second: u64, burst: u64, now: Instant) -> Self {
        RateBudget {
            rate: rate_per_second as f64,
            burst: burst as f64,
            tokens: burst as f64,
            refilled_at: now,
        }
    }

    /// Takes `units` if the bucket holds them (then true); else takes
    /// nothing.
    pub(crate) fn take(&mut self, units: u64, now: Instant) -> bool {
        let since = now.saturating_duration_since(self.refilled_at);
        self.tokens = (self.tokens + since.as_secs_f64() * self.rate).min(self.burst);
        self.refilled_at = now;
        let units = units as f64;
        if units <= self.tokens {
            self.tokens -= units;
            true
        } else {
            false
        }
    }
}

/// Credit earned per call and spent by a call's answer: a router may make
/// its embedder do at most `per_call` units of work per call on average,
/// with a burst of [`HandOnCredit::BURST_CALLS`] calls' worth.
#[derive(Debug)]
pub(crate) struct HandOnCredit {
    per_call: u64,
    units: u64,
}

impl HandOnCredit {
    /// How many calls' worth of credit a router may save up: a large batch
    /// now and then is paid for by the small ones around it.
    pub(crate) const BURST_CALLS: u64 = 64;

    pub(crate) fn new(per_call: u64) -> Self {
        HandOnCredit {
            per_call,
            units: per_call.saturating_mul(Self::BURST_CALLS),
        }
    }

    /// A call that answered, whose answer costs `cost` to hand on: its
    /// credit is earned, then the cost spent if there is enough (true);
    /// else nothing is spent. `available` says how much there was.
    pub(crate) fn spend(&mut self, cost: u64) -> Result<(), u64> {
        self.units = self
            .units
            .saturating_add(self.per_call)
            .min(self.per_call.saturating_mul(Self::BURST_CALLS));
        if cost <= self.units {
            self.units -= cost;
            Ok(())
        } else {
            Err(self.units)
        }
    }
}

/// What went over a budget since the last warning about it.
#[derive(Debug, Default)]
struct Dropped {
    items: u64,
    bytes: u64,
    /// When the first drop since the last warning happened.
    since: Option<Instant>,
}

/// A router's budgets over time, and what they dropped.
#[derive(Debug)]
pub(crate) struct HostBudgets {
    log_bytes: RateBudget,
    send_users: RateBudget,
    logs_dropped: Dropped,
    sends_dropped: Dropped,
    log_rate: u64,
    send_rate: u32,
    /// What handing its answers on may cost, per call on average.
    pub(crate) hand_on: HandOnCredit,
}

/// A router's effects once its budgets over time have had their say.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Admitted {
    /// Log lines dropped over the rate, and their bytes.
    pub log_lines_dropped: u64,
    pub log_bytes_dropped: u64,
    pub send_users_dropped: u64,
    /// Warnings due now: what was dropped over the last interval.
    pub warnings: Vec<String>,
}

impl HostBudgets {
    pub(crate) fn new(limits: &Limits, now: Instant) -> Self {
        HostBudgets {
            log_bytes: RateBudget::new(
                limits.log_bytes_per_second,
                limits.log_bytes_per_second,
                now,
            ),
            send_users: RateBudget::new(
                u64::from(limits.send_users_per_second),
                // A whole call's worth of sends, at least the rate.
                (limits.max_send_users as u64).max(u64::from(limits.send_users_per_second)),
                now,
            ),
            logs_dropped: Dropped::default(),
            sends_dropped: Dropped::default(),
            log_rate: limits.log_bytes_per_second,
            send_rate: limits.send_users_per_second,
            hand_on: HandOnCredit::new(limits.answer_entries_for_batch(1) as u64),
        }
    }

    /// Takes `bytes` of log for a line the host writes about the router
    /// (a failure report quoting its words): true if the log budget has
    /// them, else the line is counted as dropped.
    pub(crate) fn admit_host_line(&mut self, bytes: u64, now: Instant) -> bool {
        if self.log_bytes.take(bytes, now) {
            return true;
        }
        let dropped = &mut self.logs_dropped;
        dropped.items += 1;
        dropped.bytes += bytes;
        dropped.since.get_or_insert(now);
        false
    }

    /// Keeps the log lines and sends of one call that the budgets allow, in
    /// order (a line is kept whole or not at all), and says what was
    /// dropped.
    pub(crate) fn admit(
        &mut self,
        logs: &mut Vec<(crate::LogLevel, String)>,
        sends: &mut Vec<String>,
        now: Instant,
    ) -> Admitted {
        let mut admitted = Admitted::default();
        logs.retain(|(_, line)| {
            let bytes = line.len() as u64;
            let kept = self.log_bytes.take(bytes, now);
            if !kept {
                admitted.log_lines_dropped += 1;
                admitted.log_bytes_dropped += bytes;
            }
            kept
        });
        if admitted.log_lines_dropped > 0 {
            let dropped = &mut self.logs_dropped;
            dropped.items += admitted.log_lines_dropped;
            dropped.bytes += admitted.log_bytes_dropped;
            dropped.since.get_or_insert(now);
        }
        let allowed = sends
            .iter()
            .take_while(|_| self.send_users.take(1, now))
            .count();
        admitted.send_users_dropped = (sends.len() - allowed) as u64;
        sends.truncate(allowed);
        if admitted.send_users_dropped > 0 {
            let dropped = &mut self.sends_dropped;
            dropped.items += admitted.send_users_dropped;
            dropped.since.get_or_insert(now);
        }
        self.summaries_due(now, &mut admitted.warnings);
        admitted
    }

    /// Whether anything was dropped that has not been said yet: the next
    /// call (even one with nothing to log) says it once its interval ends.
    pub(crate) fn has_unsaid(&self) -> bool {
        self.logs_dropped.since.is_some() || self.sends_dropped.since.is_some()
    }

    fn summaries_due(&mut self, now: Instant, warnings: &mut Vec<String>) {
        let due = |dropped: &Dropped| {
            dropped
                .since
                .is_some_and(|since| now.saturating_duration_since(since) >= SUMMARY_INTERVAL)
        };
        if due(&self.logs_dropped) {
            let dropped = std::mem::take(&mut self.logs_dropped);
            warnings.push(format!(
                "{} log line(s) ({}) dropped in the last {}: over limits.log_bytes_per_second = {}",
                dropped.items,
                format_bytes(dropped.bytes),
                humantime::format_duration(SUMMARY_INTERVAL),
                format_bytes(self.log_rate),
            ));
        }
        if due(&self.sends_dropped) {
            let dropped = std::mem::take(&mut self.sends_dropped);
            warnings.push(format!(
                "{} user(s) not sent presence in the last {}: over limits.send_users_per_second = {}",
                dropped.items,
                humantime::format_duration(SUMMARY_INTERVAL),
                self.send_rate,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogLevel;

    fn lines(n: usize, bytes: usize) -> Vec<(LogLevel, String)> {
        (0..n)
            .map(|_| (LogLevel::Info, "x".repeat(bytes)))
            .collect()
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut bucket = RateBudget::new(100, 100, t0);
        assert!(bucket.take(100, t0));
        assert!(!bucket.take(1, t0));
        assert!(bucket.take(50, t0 + Duration::from_millis(500)));
        assert!(!bucket.take(1, t0 + Duration::from_millis(500)));
        // Never more than the burst, however long it rested.
        assert!(!bucket.take(101, t0 + Duration::from_secs(3600)));
        assert!(bucket.take(100, t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn log_bytes_are_held_to_the_rate_and_dropped_lines_summarised_once_per_interval() {
        let limits = Limits {
            log_bytes_per_second: 64 * 1024,
            ..Limits::DEFAULT
        };
        let t0 = Instant::now();
        let mut budgets = HostBudgets::new(&limits, t0);
        let mut kept_bytes = 0u64;
        let mut dropped_lines = 0u64;
        let mut warnings = Vec::new();
        // 100 calls a second for 30 s, 64 lines of 1 KiB each: 6.4 MiB/s
        // offered.
        for call in 0..3000u64 {
            let now = t0 + Duration::from_millis(call * 10);
            let mut logs = lines(64, 1024);
            let mut sends = Vec::new();
            let admitted = budgets.admit(&mut logs, &mut sends, now);
            kept_bytes += logs.iter().map(|(_, l)| l.len() as u64).sum::<u64>();
            dropped_lines += admitted.log_lines_dropped;
            warnings.extend(admitted.warnings);
        }
        // The burst plus 64 KiB for each of the 30 seconds (less one call).
        assert!(kept_bytes <= 64 * 1024 * 31, "{kept_bytes}");
        assert!(kept_bytes >= 64 * 1024 * 29, "{kept_bytes}");
        assert_eq!(dropped_lines * 1024 + kept_bytes, 3000 * 64 * 1024);
        // One line per ten seconds, not one per dropped line.
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0]
                .ends_with("dropped in the last 10s: over limits.log_bytes_per_second = 64KiB"),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn hand_on_credit_is_per_call_on_average_with_a_burst() {
        let mut credit = HandOnCredit::new(100);
        // A burst of 64 calls' worth, then what each call earns.
        assert_eq!(credit.spend(64 * 100), Ok(()));
        assert_eq!(credit.spend(101), Err(100));
        assert_eq!(credit.spend(100), Ok(()));
        // Cheap calls save up for a costly one, never past the burst.
        for _ in 0..1000 {
            assert_eq!(credit.spend(0), Ok(()));
        }
        assert_eq!(credit.spend(64 * 100 + 1), Err(64 * 100));
    }

    #[test]
    fn sends_are_held_to_the_rate_after_a_burst_of_one_call() {
        let limits = Limits {
            max_send_users: 100,
            send_users_per_second: 20,
            ..Limits::DEFAULT
        };
        let t0 = Instant::now();
        let mut budgets = HostBudgets::new(&limits, t0);
        let mut sent = 0;
        for call in 0..100u64 {
            let now = t0 + Duration::from_millis(call * 100);
            let mut sends: Vec<String> = (0..100).map(|i| format!("@u{i}:x")).collect();
            budgets.admit(&mut Vec::new(), &mut sends, now);
            sent += sends.len();
        }
        // A burst of 100, then 20 a second for 9.9 s.
        assert!((100 + 197..=100 + 199).contains(&sent), "{sent}");
        assert!(budgets.has_unsaid());
    }
}
