//! The waits a guest asked for: charged to its calls' time budgets
//! (`time_budget.rs`) and added to the monotonic clock it reads
//! (`clock.rs` answers its clock subscriptions at once).
//!
//! Both the store data (`state.rs`) and the clock's host functions need
//! them, so they live below both.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The waits a guest asked for (clock subscriptions it waited on), in
/// nanoseconds: charged to its calls' budgets and added to the monotonic
/// clock it reads, so that a guest that sleeps sees time pass.
#[derive(Clone, Default)]
pub(crate) struct Waits(Arc<AtomicU64>);

impl Waits {
    pub(crate) fn total(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    pub(crate) fn add(&self, wait: Duration) {
        let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update to saturate: a guest may ask for u64::MAX ns.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                Some(now.saturating_add(nanos))
            });
    }
}

/// The guest's monotonic clock: the host's, plus every wait the guest was
/// charged for.
#[derive(Clone)]
pub(crate) struct GuestMonotonicClock {
    origin: Instant,
    waits: Waits,
}

impl GuestMonotonicClock {
    pub(crate) fn new(waits: Waits) -> Self {
        GuestMonotonicClock {
            origin: Instant::now(),
            waits,
        }
    }
}

impl wasmtime_wasi::HostMonotonicClock for GuestMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        let elapsed = self.origin.elapsed().saturating_add(self.waits.total());
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_wait_saturates() {
        let waits = Waits::default();
        waits.add(Duration::MAX);
        waits.add(Duration::MAX);
        assert_eq!(waits.total(), Duration::from_nanos(u64::MAX));
    }
}
