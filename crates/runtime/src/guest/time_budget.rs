//! The time budget of a call (`limits.timeout`), and the watchdog thread
//! that makes a running guest check it.
//!
//! # What a call is charged
//!
//! A call is charged its own CPU time plus the waits it asked for, never the
//! time it spent waiting for a core. A wall-clock deadline would report a
//! healthy router as `timeout` whenever the homeserver is busy, and the
//! failure policy would then suspend it: routing would stop exactly under
//! load. (Cloudflare Workers limit CPU time rather than wall time for the
//! same reason.) Fuel already bounds the guest's instructions
//! deterministically; the time budget adds what fuel can't see: host work
//! done for the guest (copying its arguments, checking its answer) and the
//! waits it asked for.
//!
//! A router never really waits (see `clock.rs`): a clock wait completes at
//! once and its duration is charged here, so a router that sleeps longer
//! than its budget fails as `timeout` at once, without holding a thread.
//!
//! # How it is enforced
//!
//! Reading a thread's CPU clock is a system call (1.5 µs on the 2-core VM
//! this was measured on, as long as a one-state call), so a call doesn't
//! read it up front. Instead each thread keeps a recent reading of its own
//! CPU clock ([`ThreadCpuSample`], refreshed at the start of a call when it
//! is older than [`SAMPLE_MAX_AGE`]). The engine uses epoch interruption:
//! while any call is running, the [`Watchdog`] thread advances the epoch
//! every [`TICK`], and each running guest then checks its budget on its own
//! thread ([`TimeBudget::on_tick`]). At its first tick a call reads its
//! thread's CPU clock and charges what the thread used since the sample
//! (the call's own time, and at most [`SAMPLE_MAX_AGE`] of whatever the
//! thread computed just before it: an error that can only go against the
//! guest, and is bounded in CPU time, not by how long the thread waited for
//! a core). After that the CPU clock is read only when the call could have
//! used up its budget. A call that ends before its first tick (almost every
//! call) costs two atomic operations, a thread-local read and one
//! `Instant::now()`.
//!
//! When nothing is running, the watchdog is parked: an idle runtime costs
//! nothing. The first call after an idle spell unparks it.
//!
//! A call therefore ends at most one tick after its budget is used up, plus
//! however long the operating system takes to run the watchdog thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use wasmtime::EngineWeak;

use super::waits::Waits;

/// How often the epoch advances while a call runs: the precision of the
/// time budget.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// The oldest a thread's CPU-clock sample may be when a call starts on it:
/// the most CPU time of the thread's own from before a call that may be
/// charged to the call.
pub(crate) const SAMPLE_MAX_AGE: Duration = Duration::from_millis(1);

/// A thread's CPU clock as read at a wall-clock time.
#[derive(Clone, Copy)]
struct ThreadCpuSample {
    wall: Instant,
    cpu: Duration,
}

thread_local! {
    static CPU_SAMPLE: std::cell::Cell<Option<ThreadCpuSample>> =
        const { std::cell::Cell::new(None) };
}

impl ThreadCpuSample {
    /// This thread's sample, read afresh if it is older than
    /// [`SAMPLE_MAX_AGE`] at `now`.
    fn recent(now: Instant) -> ThreadCpuSample {
        CPU_SAMPLE.with(|cell| match cell.get() {
            Some(sample) if now.saturating_duration_since(sample.wall) <= SAMPLE_MAX_AGE => sample,
            _ => {
                let sample = ThreadCpuSample {
                    wall: now,
                    cpu: thread_cpu_time(),
                };
                cell.set(Some(sample));
                sample
            }
        })
    }
}

/// The marker error of a call whose time budget is used up.
#[derive(Debug, thiserror::Error)]
#[error("time budget used up")]
pub(crate) struct BudgetUsedUp;

/// The thread that advances the engine's epoch while calls run.
pub(crate) struct Watchdog {
    shared: Arc<WatchdogShared>,
    thread: Option<Thread>,
}

struct WatchdogShared {
    /// Calls (and instantiations) running now.
    running: AtomicUsize,
    /// Ticks so far: a call that saw one may have outrun its budget.
    ticks: AtomicU64,
    /// Set by the watchdog just before it parks; a call that starts and
    /// sees it set unparks it.
    parked: AtomicBool,
    /// Set when the engine goes away.
    stop: AtomicBool,
}

impl Watchdog {
    pub(crate) fn start(engine: EngineWeak) -> Watchdog {
        let shared = Arc::new(WatchdogShared {
            running: AtomicUsize::new(0),
            ticks: AtomicU64::new(0),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let theirs = shared.clone();
        let spawned = thread::Builder::new()
            // Linux keeps 15 bytes of a thread name: this one fits whole.
            .name("pr-watchdog".into())
            .spawn(move || theirs.run(&engine));
        let thread = match spawned {
            Ok(handle) => Some(handle.thread().clone()),
            Err(e) => {
                // Without the watchdog a computing guest is stopped by fuel
                // alone: carry on, loudly.
                tracing::error!(
                    "cannot start the watchdog thread, time budgets are off (fuel still bounds every call): {e}"
                );
                None
            }
        };
        Watchdog { shared, thread }
    }

    /// Ticks so far.
    pub(crate) fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::Relaxed)
    }

    /// Marks a call as running until the guard is dropped.
    pub(crate) fn running(&self) -> Running<'_> {
        // SeqCst here and in `run`: either this call sees `parked` set and
        // unparks the watchdog, or the watchdog sees this call running and
        // does not park (the two stores and loads are totally ordered).
        // Only the call that clears `parked` unparks: the calls after it
        // would each pay a system call for nothing while the watchdog
        // waits for a core (another thread busy on it), and one unpark
        // wakes the watchdog even if it has not parked yet.
        self.shared.running.fetch_add(1, Ordering::SeqCst);
        if self.shared.parked.swap(false, Ordering::SeqCst)
            && let Some(thread) = &self.thread
        {
            thread.unpark();
        }
        Running(self)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = &self.thread {
            thread.unpark();
        }
    }
}

/// A running call, for the watchdog.
pub(crate) struct Running<'a>(&'a Watchdog);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.shared.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WatchdogShared {
    fn run(&self, engine: &EngineWeak) {
        while !self.stop.load(Ordering::SeqCst) {
            if self.running.load(Ordering::SeqCst) == 0 {
                self.parked.store(true, Ordering::SeqCst);
                if self.running.load(Ordering::SeqCst) == 0 && !self.stop.load(Ordering::SeqCst) {
                    // Spurious wake-ups only cost a loop.
                    thread::park();
                }
                self.parked.store(false, Ordering::SeqCst);
                continue;
            }
            thread::sleep(TICK);
            match engine.upgrade() {
                Some(engine) => {
                    engine.increment_epoch();
                    self.ticks.fetch_add(1, Ordering::Relaxed);
                }
                None => return,
            }
        }
    }
}

/// The time budget of one call: what it has been charged, and whether it is
/// used up.
#[derive(Clone)]
pub(crate) struct TimeBudget {
    budget: Duration,
    started: Instant,
    /// `waits.total()` when the call started.
    waits_at_start: Duration,
    /// The CPU clock of the call's thread at or shortly before its start.
    cpu_floor: Option<Duration>,
    /// Once the first tick has come: what the call had been charged then
    /// (excluding waits), the wall time, and the thread's CPU time.
    measured: Option<Measured>,
}

#[derive(Clone, Copy)]
struct Measured {
    charged: Duration,
    wall: Instant,
    cpu: Duration,
}

impl TimeBudget {
    /// A budget that started at `started` (when the call got its instance
    /// slot), for a store whose waits so far are `waits`.
    pub(crate) fn new(budget: Duration, started: Instant, waits: &Waits) -> TimeBudget {
        TimeBudget {
            budget,
            started,
            waits_at_start: waits.total(),
            cpu_floor: Some(ThreadCpuSample::recent(started).cpu),
            measured: None,
        }
    }

    /// A budget for a call in a slice, which wakes no watchdog and reads no
    /// CPU clock: its fuel bounds what it computes, and its waits are
    /// charged here as they are made. Should another call's watchdog tick
    /// while it runs, the wall time since it started is charged.
    pub(crate) fn in_slice(budget: Duration, started: Instant, waits: &Waits) -> TimeBudget {
        TimeBudget {
            budget,
            started,
            waits_at_start: waits.total(),
            cpu_floor: None,
            measured: None,
        }
    }

    /// The budget of a store that is not running a call: never used up.
    pub(crate) fn idle() -> TimeBudget {
        TimeBudget {
            budget: Duration::MAX,
            started: Instant::now(),
            waits_at_start: Duration::ZERO,
            cpu_floor: None,
            measured: None,
        }
    }

    /// When the budget started (the call got its instance slot).
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// At a tick of the watchdog, on the guest's own thread: whether the
    /// budget is used up.
    pub(crate) fn on_tick(&mut self, waits: &Waits) -> bool {
        let now = Instant::now();
        let waited = waits.total().saturating_sub(self.waits_at_start);
        if waited >= self.budget {
            return true;
        }
        let Some(measured) = self.measured else {
            // The first tick: the thread's CPU time since its sample (which
            // is at most the wall time since the call started, and at most
            // SAMPLE_MAX_AGE of CPU more than the call's own).
            let cpu = thread_cpu_time();
            let wall = now.saturating_duration_since(self.started);
            let charged = match self.cpu_floor {
                Some(floor) => wall.min(cpu.saturating_sub(floor)),
                None => wall,
            };
            self.measured = Some(Measured {
                charged,
                wall: now,
                cpu,
            });
            return charged.saturating_add(waited) >= self.budget;
        };
        // CPU time never runs faster than the wall clock: while this bound is
        // under budget, the CPU clock need not be read.
        let at_most = measured.charged + now.duration_since(measured.wall);
        if at_most.saturating_add(waited) < self.budget {
            return false;
        }
        let cpu = thread_cpu_time();
        let charged = measured.charged + cpu.saturating_sub(measured.cpu);
        // Re-base, so the next bound is tight again.
        self.measured = Some(Measured {
            charged,
            wall: now,
            cpu,
        });
        charged.saturating_add(waited) >= self.budget
    }

    /// At the end of a call: whether it overspent through its waits (a guest
    /// that slept past its budget and answered before the next tick).
    pub(crate) fn waits_overspent(&self, waits: &Waits) -> bool {
        waits.total().saturating_sub(self.waits_at_start) >= self.budget
    }
}

/// The CPU time of the calling thread so far.
fn thread_cpu_time() -> Duration {
    #[cfg(unix)]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid, writable timespec.
        let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
        if result == 0 {
            return Duration::new(
                u64::try_from(now.tv_sec).unwrap_or(0),
                u32::try_from(now.tv_nsec).unwrap_or(0),
            );
        }
    }
    // Where a thread's CPU clock can't be read, the wall clock stands in
    // (charging waits for a core too): still a bound, never a free pass.
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_charged_in_full_and_at_once() {
        let waits = Waits::default();
        let mut clock = TimeBudget::new(Duration::from_millis(100), Instant::now(), &waits);
        assert!(!clock.on_tick(&waits));
        waits.add(Duration::from_millis(60));
        assert!(!clock.waits_overspent(&waits));
        waits.add(Duration::from_millis(60));
        assert!(clock.waits_overspent(&waits));
        assert!(clock.on_tick(&waits));
    }

    #[test]
    fn waits_before_the_call_are_not_its_own() {
        let waits = Waits::default();
        waits.add(Duration::from_secs(5));
        let mut clock = TimeBudget::new(Duration::from_millis(100), Instant::now(), &waits);
        assert!(!clock.on_tick(&waits));
        assert!(!clock.waits_overspent(&waits));
    }

    #[test]
    fn computing_past_the_budget_is_caught() {
        let waits = Waits::default();
        let mut clock = TimeBudget::new(Duration::from_millis(5), Instant::now(), &waits);
        let mut spent = false;
        // Bounded by CPU time consumed, not by a wall-clock guess: the loop
        // ends once the clock says the budget is gone.
        for _ in 0..10_000_000 {
            if clock.on_tick(&waits) {
                spent = true;
                break;
            }
            std::hint::black_box((0..1000).sum::<u64>());
        }
        assert!(spent);
        let measured = clock.measured.expect("measured");
        assert!(measured.charged >= Duration::from_millis(4));
    }
}
