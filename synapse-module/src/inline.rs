//! Which routers are tried on the reactor, per router and per callback.
//!
//! A call is tried first on Synapse's reactor, each router within a
//! [`Slice`](presence_router_runtime::Slice). A router that uses its slice
//! up, or answers slowly within it, is not tried there again for a while
//! for calls that large: it then costs the reactor one slice per
//! [`InlinePolicy::MEMORY`], not one per call. The policy is each router's
//! own (and each callback's): a slow router moves only its own calls off
//! the reactor, never another router's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use presence_router_runtime::{Callback, RouterSet};

/// One router's policy for one callback: the largest call tried on the
/// reactor now.
pub(crate) struct InlinePolicy {
    /// The largest batch tried on the reactor now.
    largest: AtomicUsize,
    /// Calls that answered in their slice but slowly, since `slow_since_ms`.
    slow_calls: AtomicU64,
    slow_since_ms: AtomicU64,
    /// When it was last lowered, in milliseconds since `origin` (0: never).
    lowered_at_ms: AtomicU64,
    origin: Instant,
}

impl InlinePolicy {
    /// The largest batch tried on the reactor at first: the common batch
    /// (1 to 100 states) is far inside a slice.
    pub(crate) const LARGEST: usize = 200;
    /// How long a lowered limit holds.
    pub(crate) const MEMORY: Duration = Duration::from_secs(10);
    /// A call slower than this, answered in its slice (the router's own
    /// time, plus its share of converting the answer into Python objects),
    /// counts against its size: the system may leave the thread waiting,
    /// so it takes [`InlinePolicy::SLOW_CALLS`] of them within
    /// [`InlinePolicy::MEMORY`] to move that size off the reactor.
    pub(crate) const SLOW: Duration = Duration::from_millis(5);
    pub(crate) const SLOW_CALLS: u64 = 3;

    pub(crate) fn new() -> Self {
        InlinePolicy {
            largest: AtomicUsize::new(Self::LARGEST),
            slow_calls: AtomicU64::new(0),
            slow_since_ms: AtomicU64::new(0),
            lowered_at_ms: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    /// Whether a call on `size` states (1 for an interest query) is tried on
    /// the reactor. One atomic load when it is (no clock read).
    pub(crate) fn allows(&self, size: usize) -> bool {
        if size <= self.largest.load(Ordering::Relaxed) {
            return true;
        }
        if size > Self::LARGEST {
            return false;
        }
        // Lowered: for how much longer?
        let lowered_at = self.lowered_at_ms.load(Ordering::Relaxed);
        if self.now_ms().saturating_sub(lowered_at) < Self::MEMORY.as_millis() as u64 {
            return false;
        }
        self.largest.store(Self::LARGEST, Ordering::Relaxed);
        true
    }

    /// A call on `size` states answered in its slice, costing the reactor
    /// `took`.
    pub(crate) fn answered(&self, size: usize, took: Duration) {
        if took <= Self::SLOW {
            return;
        }
        let now = self.now_ms();
        let since = self.slow_since_ms.load(Ordering::Relaxed);
        if now.saturating_sub(since) >= Self::MEMORY.as_millis() as u64 {
            self.slow_since_ms.store(now, Ordering::Relaxed);
            self.slow_calls.store(0, Ordering::Relaxed);
        }
        if self.slow_calls.fetch_add(1, Ordering::Relaxed) + 1 >= Self::SLOW_CALLS {
            self.slow_calls.store(0, Ordering::Relaxed);
            self.used_up(size);
        }
    }

    /// A call on `size` states used its slice up.
    pub(crate) fn used_up(&self, size: usize) {
        self.lowered_at_ms
            .store(self.now_ms().max(1), Ordering::Relaxed);
        self.largest
            .fetch_min(size.saturating_sub(1), Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Both callbacks' policies of one router.
pub(crate) struct RouterPolicies([InlinePolicy; 2]);

impl RouterPolicies {
    pub(crate) fn of(&self, callback: Callback) -> &InlinePolicy {
        match callback {
            Callback::GetUsersForStates => &self.0[0],
            Callback::GetInterestedUsers => &self.0[1],
        }
    }
}

/// Every router's policies, by name: a reloaded router keeps its own.
#[derive(Default)]
pub(crate) struct InlinePolicies {
    by_name: Mutex<HashMap<String, Arc<RouterPolicies>>>,
    /// The policies of the version of the set last asked about, in its
    /// order: every call asks, and the version changes only on a reload.
    /// The `Weak` holds the version's allocation, so its address is never
    /// another version's.
    last: Mutex<Option<(Weak<RouterSet>, SetPolicies)>>,
}

/// The policies of each router of one version of the set, in order.
pub(crate) type SetPolicies = Arc<[Arc<RouterPolicies>]>;

impl InlinePolicies {
    /// The policies of each router of `routers`, in order.
    pub(crate) fn for_set(&self, routers: &Arc<RouterSet>) -> SetPolicies {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((version, policies)) = last.as_ref()
            && std::ptr::eq(version.as_ptr(), Arc::as_ptr(routers))
        {
            return policies.clone();
        }
        let mut by_name = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        let policies: SetPolicies = routers
            .routers()
            .map(|router| {
                by_name
                    .entry(router.name.clone())
                    .or_insert_with(|| {
                        Arc::new(RouterPolicies([InlinePolicy::new(), InlinePolicy::new()]))
                    })
                    .clone()
            })
            .collect();
        *last = Some((Arc::downgrade(routers), policies.clone()));
        policies
    }
}
