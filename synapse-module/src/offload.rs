//! Calls finished off the reactor, without the GIL.
//!
//! A call is first tried on the reactor thread in a [`Slice`]; the rare one
//! that needs more (a big batch, a slow or hostile router) is finished here.
//! Twisted's `deferToThread` would do it on Synapse's thread pool, whose
//! threads need the GIL to start the work and again to hand the result back
//! (`callFromThread`), each time waiting up to CPython's switch interval
//! (5 ms) behind a busy reactor. These workers never take the GIL: they get
//! owned Rust data, push the answer onto a queue, and wake the reactor by
//! writing a byte to a socket it watches (`reactor.addReader`). The reactor
//! then builds the Python answer itself.
//!
//! The workers start on first use, in the process that uses them: Synapse
//! loads its modules before it daemonizes, and threads do not survive a
//! fork.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use presence_router_runtime::{
    CheckedInterest, CheckedRoutes, InterestedUsers, Routed, RouterSet, Unfinished,
    UserPresenceState, UsersForStates,
};

#[cfg(doc)]
use presence_router_runtime::Slice;

use crate::events::{Event, collecting_events};

/// The rest of a call, as owned data a worker can run, with the version of
/// the router set that began it (a reload meanwhile changes nothing for it).
pub(crate) enum Work {
    States {
        routers: Arc<RouterSet>,
        states: Vec<UserPresenceState>,
        done: Unfinished<CheckedRoutes>,
    },
    Interest {
        routers: Arc<RouterSet>,
        user_id: String,
        done: Unfinished<CheckedInterest>,
    },
}

/// A finished call.
pub(crate) enum Answer {
    States(Routed<UsersForStates>),
    Interest(Routed<InterestedUsers>),
    /// Its caller gave up before a worker took it: not run.
    Cancelled,
    /// The host panicked while running it (a bug of ours, not a router's:
    /// a router's failure is an answer).
    Panicked(String),
}

impl Work {
    /// Finishes the call on this thread; the events it reported come back
    /// with it.
    pub(crate) fn run(self) -> (Answer, Vec<Event>) {
        collecting_events(|| match self {
            Work::States {
                routers,
                states,
                done,
            } => Answer::States(routers.finish_get_users_for_states(&states, done)),
            Work::Interest {
                routers,
                user_id,
                done,
            } => Answer::Interest(routers.finish_get_interested_users(&user_id, done)),
        })
    }
}

/// A finished job, waiting for the reactor.
pub(crate) struct Finished {
    pub job: u64,
    pub answer: Answer,
    pub events: Vec<Event>,
}

/// How many worker threads finish calls: calls that need them are rare,
/// and each runs at most its routers' `timeout`s.
const WORKERS: usize = 2;

/// Worker threads, and the socket that wakes the reactor.
/// A job as the workers get it: its number, its work, and whether its
/// caller has given up on it.
type Submitted = (u64, Work, Arc<AtomicBool>);

pub(crate) struct Offload {
    jobs: Sender<Submitted>,
    finished: Arc<Mutex<VecDeque<Finished>>>,
    /// The reactor's end: readable once a job has finished.
    wake: UnixStream,
    pid: u32,
}

impl Offload {
    pub(crate) fn start() -> std::io::Result<Offload> {
        let (wake, waker) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        waker.set_nonblocking(true)?;
        let waker = Arc::new(waker);
        let (jobs, queue) = mpsc::channel::<Submitted>();
        let queue = Arc::new(Mutex::new(queue));
        let finished = Arc::new(Mutex::new(VecDeque::new()));
        for index in 0..WORKERS {
            let worker = Worker {
                queue: queue.clone(),
                finished: finished.clone(),
                waker: waker.clone(),
            };
            std::thread::Builder::new()
                .name(format!("pr-offload-{index}"))
                .spawn(move || worker.run())?;
        }
        Ok(Offload {
            jobs,
            finished,
            wake,
            pid: std::process::id(),
        })
    }

    /// Whether these workers belong to this process (not to the parent of
    /// a fork, whose threads did not follow).
    pub(crate) fn is_ours(&self) -> bool {
        self.pid == std::process::id()
    }

    /// The descriptor the reactor watches.
    pub(crate) fn fileno(&self) -> i32 {
        self.wake.as_raw_fd()
    }

    pub(crate) fn submit(
        &self,
        job: u64,
        work: Work,
        cancelled: Arc<AtomicBool>,
    ) -> Result<(), Work> {
        self.jobs.send((job, work, cancelled)).map_err(|e| e.0.1)
    }

    /// The jobs finished so far (and the wake-up bytes drained).
    pub(crate) fn take_finished(&self) -> Vec<Finished> {
        let mut drain = [0u8; 256];
        // Nonblocking: stops at WouldBlock once the socket is empty.
        while matches!((&self.wake).read(&mut drain), Ok(n) if n > 0) {}
        let mut finished = self.finished.lock().unwrap_or_else(PoisonError::into_inner);
        finished.drain(..).collect()
    }
}

struct Worker {
    queue: Arc<Mutex<Receiver<Submitted>>>,
    finished: Arc<Mutex<VecDeque<Finished>>>,
    waker: Arc<UnixStream>,
}

impl Worker {
    fn run(self) {
        loop {
            let next = self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .recv();
            // The module's router set is gone (it owns the sender): so is
            // the work.
            let Ok((job, work, cancelled)) = next else {
                return;
            };
            let (answer, events) = if cancelled.load(Ordering::Acquire) {
                (Answer::Cancelled, Vec::new())
            } else {
                // A panic of ours must not take the worker with it: the job
                // answers with it, and the next job runs.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.run()))
                    .unwrap_or_else(|panic| {
                        let why = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic".to_owned());
                        (Answer::Panicked(why), Vec::new())
                    })
            };
            self.finished
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back(Finished {
                    job,
                    answer,
                    events,
                });
            // A full socket already holds a wake-up: nothing is lost.
            let _ = (&*self.waker).write(&[1]);
        }
    }
}

/// Which calls are tried on the reactor first. A call whose slice ran out
/// lowers the largest batch tried there below its size, for a while: a slow
/// or hostile router then costs the reactor one slice per
/// [`InlinePolicy::MEMORY`], not one per call.
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

    /// A call slower than this by the wall clock, answered in its slice,
    /// counts against its size: the host work a router can make free of
    /// fuel is bounded, but the system may leave the thread waiting, so it
    /// takes [`InlinePolicy::SLOW_CALLS`] of them within
    /// [`InlinePolicy::MEMORY`] to move that size off the reactor.
    pub(crate) const SLOW: Duration = Duration::from_millis(5);
    pub(crate) const SLOW_CALLS: u64 = 3;

    /// A call on `size` states answered in its slice, in `took`.
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
