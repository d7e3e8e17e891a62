//! The whole life of a call finished off the reactor: the table of jobs,
//! submitting one, cancelling it, the worker threads that finish it, and
//! the answer the reactor builds from it.
//!
//! A call is first tried on the reactor, each router in its slice
//! (`lib.rs`). The routers whose slice ran out (or that are not tried there
//! for now) are the job's *parts*: each is queued for the worker threads in
//! its own router's queue, and the workers take parts from the queues in
//! turn; a router runs on one worker at a time while another router has
//! parts waiting (on both, up to its `max_instances`, when none has), so a
//! router that is slow ties up one worker, never both. Every cost of a part
//! is its router's:
//!
//! - a part is failed unrun, at once, if its router's own backlog is longer
//!   than its time budget (the parts ahead of it in its queue times its
//!   parts' mean CPU time), or its queue is full
//!   ([`MAX_QUEUED_PER_ROUTER`]);
//! - the CPU time the workers spend on a router's parts is counted against
//!   its share of them (all the workers, divided by the routers): a router
//!   over its share has its parts failed unrun until it is well back within
//!   it.
//!
//! Those failures count like any other, so the failure policy suspends a
//! router that keeps costing more than its share; the other routers'
//! parts, and the routers that answered on the reactor, are never held up
//! or left out by it. A batch waits for a router's part at most that
//! router's own backlog (bounded by its time budget), a free worker (the
//! other routers' parts: each at most its own budget), and its run.
//!
//! Workers never take the GIL: they hold owned Rust data, push a finished
//! job onto a queue, and wake the reactor by writing a byte to a socket it
//! watches (`reactor.addReader`, `_jobs.py`). Twisted's `deferToThread`
//! would take the GIL twice per job, each time waiting up to CPython's
//! switch interval behind a busy reactor. The reactor then builds the
//! Python answer from the batch's own objects, which this module keeps
//! for it meanwhile. Where the reactor can't watch a socket (Synapse's
//! unit-test harness), Synapse's thread pool finishes a job in one go with
//! the GIL released ([`JobTable::run`]).
//!
//! The workers start on first use, in the process that uses them: Synapse
//! loads its modules before it daemonizes, and threads do not survive a
//! fork.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use presence_router_runtime::{
    Callback, CheckedInterest, CheckedRoutes, FailureKind, InterestedUsers, Routed, RouterPart,
    RouterSet, Unfinished, UserPresenceState, UsersForStates,
};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::answer::{Answered, InterestAnswer, StatesAnswer};
use crate::events::{Event, collecting_events};

/// How many worker threads finish parts.
const WORKERS: usize = 2;

/// The most parts of one router waiting for a worker: more fail at once.
/// (What a router's parts can hold of the host is bounded by it: a job
/// waits on at least one queued or running part.)
pub(crate) const MAX_QUEUED_PER_ROUTER: usize = 32;

/// The most parts of one router queued or running before any of its parts
/// has run, so that its cost is known: a new (or reloaded) router's first
/// burst waits for at most this many of its own parts.
const UNKNOWN_COST_PARTS: usize = 8;

/// What a job does differently for each callback: what its parts share
/// (owned, for the workers), which of the runtime's calls run and finish
/// them, and which answer it makes.
pub(crate) trait JobCallback {
    const CALLBACK: Callback;
    /// What the call is about: the batch, or the user.
    type Input: Clone;
    /// One router's checked answer.
    type Checked;

    /// Runs router `router`'s part with its full limits.
    fn run(routers: &RouterSet, router: usize, input: &Self::Input) -> RouterPart<Self::Checked>;

    /// Merges the parts (every one done) into the call's answer; with
    /// parts still pending, runs them first, in order, on this thread.
    fn finish(routers: &RouterSet, input: &Self::Input, done: Unfinished<Self::Checked>) -> Answer;

    /// A part was handed in.
    fn completed(_done: &mut Unfinished<Self::Checked>) {}
}

/// `get_users_for_states`.
pub(crate) struct ForStates;

/// `get_interested_users`.
pub(crate) struct ForInterest;

impl JobCallback for ForStates {
    const CALLBACK: Callback = Callback::GetUsersForStates;
    type Input = Arc<[UserPresenceState]>;
    type Checked = CheckedRoutes;

    fn run(routers: &RouterSet, router: usize, states: &Self::Input) -> RouterPart<CheckedRoutes> {
        routers.call_router_for_states(router, states)
    }

    fn finish(
        routers: &RouterSet,
        states: &Self::Input,
        done: Unfinished<CheckedRoutes>,
    ) -> Answer {
        Answer::States(routers.finish_get_users_for_states(states, done))
    }
}

impl JobCallback for ForInterest {
    const CALLBACK: Callback = Callback::GetInterestedUsers;
    type Input = Arc<str>;
    type Checked = CheckedInterest;

    fn run(routers: &RouterSet, router: usize, user_id: &Arc<str>) -> RouterPart<CheckedInterest> {
        routers.call_router_for_interest(router, user_id)
    }

    fn finish(
        routers: &RouterSet,
        user_id: &Arc<str>,
        done: Unfinished<CheckedInterest>,
    ) -> Answer {
        Answer::Interest(routers.finish_get_interested_users(user_id, done))
    }

    fn completed(done: &mut Unfinished<CheckedInterest>) {
        // A router before the rest answered "all users": the rest are no
        // longer asked.
        done.drop_unneeded();
    }
}

/// A call as far as the reactor got, with what its parts need: owned data,
/// and the version of the router set that began it (a reload meanwhile
/// changes nothing for it).
pub(crate) struct Call<C: JobCallback> {
    routers: Arc<RouterSet>,
    input: C::Input,
    done: Unfinished<C::Checked>,
}

impl<C: JobCallback> Call<C> {
    pub(crate) fn new(
        routers: Arc<RouterSet>,
        input: C::Input,
        done: Unfinished<C::Checked>,
    ) -> Self {
        Call {
            routers,
            input,
            done,
        }
    }

    fn pending(&self) -> Vec<usize> {
        self.done.pending(self.routers.len())
    }

    fn is_pending(&self, router: usize) -> bool {
        self.done.is_pending(router)
    }

    fn has_pending(&self) -> bool {
        self.done.has_pending(self.routers.len())
    }

    fn input(&self) -> Part<C> {
        Part {
            routers: self.routers.clone(),
            input: self.input.clone(),
        }
    }

    fn complete(&mut self, router: usize, part: RouterPart<C::Checked>) {
        self.done.complete(router, part);
        C::completed(&mut self.done);
    }

    fn finish(self) -> Answer {
        C::finish(&self.routers, &self.input, self.done)
    }
}

/// What one part needs to run on a worker, without the table's lock.
struct Part<C: JobCallback> {
    routers: Arc<RouterSet>,
    input: C::Input,
}

impl<C: JobCallback> Part<C> {
    fn run(&self, router: usize) -> RouterPart<C::Checked> {
        C::run(&self.routers, router, &self.input)
    }

    fn fail(&self, router: usize, message: String) -> RouterPart<C::Checked> {
        self.routers
            .fail_router(router, C::CALLBACK, FailureKind::Timeout, message)
    }
}

/// A job's call, of either callback.
pub(crate) enum Work {
    States(Call<ForStates>),
    Interest(Call<ForInterest>),
}

/// A finished call.
pub(crate) enum Answer {
    States(Routed<UsersForStates>),
    Interest(Routed<InterestedUsers>),
    /// Its caller gave up on it: not answered.
    Cancelled,
    /// The host panicked while finishing it (a bug of ours, not a
    /// router's: a router's failure is an answer).
    Panicked(String),
}

/// A part of a job, of either callback.
enum PartInput {
    States(Part<ForStates>),
    Interest(Part<ForInterest>),
}

/// What a part came to, of either callback.
enum PartOutcome {
    States(RouterPart<CheckedRoutes>),
    Interest(RouterPart<CheckedInterest>),
}

impl Work {
    fn routers(&self) -> &Arc<RouterSet> {
        match self {
            Work::States(call) => &call.routers,
            Work::Interest(call) => &call.routers,
        }
    }

    fn pending(&self) -> Vec<usize> {
        match self {
            Work::States(call) => call.pending(),
            Work::Interest(call) => call.pending(),
        }
    }

    fn is_pending(&self, router: usize) -> bool {
        match self {
            Work::States(call) => call.is_pending(router),
            Work::Interest(call) => call.is_pending(router),
        }
    }

    fn has_pending(&self) -> bool {
        match self {
            Work::States(call) => call.has_pending(),
            Work::Interest(call) => call.has_pending(),
        }
    }

    fn input(&self) -> PartInput {
        match self {
            Work::States(call) => PartInput::States(call.input()),
            Work::Interest(call) => PartInput::Interest(call.input()),
        }
    }

    fn complete(&mut self, router: usize, part: PartOutcome) {
        match (self, part) {
            (Work::States(call), PartOutcome::States(part)) => call.complete(router, part),
            (Work::Interest(call), PartOutcome::Interest(part)) => call.complete(router, part),
            // A part is made from its own job's input.
            _ => {}
        }
    }

    /// Merges the parts (every one done) into the call's answer; with
    /// parts still pending, runs them first, in order, on this thread.
    pub(crate) fn finish(self) -> Answer {
        match self {
            Work::States(call) => call.finish(),
            Work::Interest(call) => call.finish(),
        }
    }
}

impl PartInput {
    fn run(&self, router: usize) -> PartOutcome {
        match self {
            PartInput::States(part) => PartOutcome::States(part.run(router)),
            PartInput::Interest(part) => PartOutcome::Interest(part.run(router)),
        }
    }

    fn fail(&self, router: usize, message: String) -> PartOutcome {
        match self {
            PartInput::States(part) => PartOutcome::States(part.fail(router, message)),
            PartInput::Interest(part) => PartOutcome::Interest(part.fail(router, message)),
        }
    }
}

/// A finished job, waiting for the reactor.
struct Finished {
    job: u64,
    answer: Answer,
    events: Vec<Event>,
}

/// A job in the table.
struct Job {
    /// Taken out when the job is finished in one go (`run`).
    work: Option<Work>,
    cancelled: bool,
    /// Parts waiting in queues, and parts running on a worker.
    queued: usize,
    running: usize,
    /// What its parts reported.
    events: Vec<Event>,
}

/// One router's queue, and its share of the workers.
struct RouterQueue {
    parts: VecDeque<Queued>,
    /// Its parts running on a worker now, and the most that may
    /// (`max_instances`: more would wait for an instance on a worker).
    running: usize,
    max_running: usize,
    /// What each part ahead in its queue will cost it: the CPU time of its
    /// parts, rising at once with a costlier part and falling slowly (so
    /// that cheap parts now and then can't hide costly ones). Unknown until
    /// a part has run: until then at most [`UNKNOWN_COST_PARTS`] are
    /// admitted.
    mean_cpu: Duration,
    ran_any: bool,
    /// Its time budget: its share's bucket holds at least that much.
    budget: Duration,
    share: WorkerShare,
}

impl RouterQueue {
    fn new(max_running: usize, budget: Duration, now: Instant) -> Self {
        RouterQueue {
            parts: VecDeque::new(),
            running: 0,
            max_running: max_running.max(1),
            mean_cpu: Duration::ZERO,
            ran_any: false,
            budget,
            share: WorkerShare::new(now),
        }
    }

    /// Whether another part may be queued before any has run (its cost
    /// unknown).
    fn unknown_cost_full(&self) -> bool {
        !self.ran_any && self.parts.len() + self.running >= UNKNOWN_COST_PARTS
    }

    /// The CPU time its queued and running parts will take, by its mean.
    fn backlog(&self) -> Duration {
        let parts = u32::try_from(self.parts.len() + self.running).unwrap_or(u32::MAX);
        self.mean_cpu.saturating_mul(parts)
    }

    /// A part of it ran for `cpu`.
    fn ran(&mut self, cpu: Duration) {
        self.mean_cpu = if !self.ran_any || cpu >= self.mean_cpu {
            cpu
        } else {
            // Down by 1/16 of the difference a part: a router turns
            // costly at once, cheap again over tens of parts.
            self.mean_cpu.mul_f64(15.0 / 16.0) + cpu.mul_f64(1.0 / 16.0)
        };
        self.ran_any = true;
    }
}

/// A part waiting for a worker.
struct Queued {
    job: u64,
    router: usize,
}

/// A router's share of the workers' CPU time: a token bucket refilled at
/// `WORKERS / routers` seconds per second, holding one second's worth (or
/// its time budget, if longer).
/// A part's CPU time is charged when it ends. A router whose bucket runs
/// dry is over its share: its parts fail unrun until the bucket is half
/// full again, so that a router that keeps costing more than its share
/// fails calls in a row, and the failure policy suspends it.
struct WorkerShare {
    tokens: f64,
    at: Instant,
    over: bool,
}

impl WorkerShare {
    fn new(now: Instant) -> Self {
        WorkerShare {
            tokens: f64::NAN,
            at: now,
            over: false,
        }
    }

    /// Seconds of worker CPU per second this router may use.
    fn rate(routers: usize) -> f64 {
        WORKERS as f64 / routers.max(1) as f64
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        if self.tokens.is_nan() {
            self.tokens = burst;
        }
        let since = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + since * rate).min(burst);
        self.at = now;
    }

    /// Whether the router is over its share; `burst` is what its bucket
    /// holds (a second's worth, or its time budget if longer: one call
    /// within its budget never puts it over).
    fn over(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        if self.over {
            self.over = self.tokens < burst / 2.0;
        } else {
            self.over = self.tokens < 0.0;
        }
        self.over
    }

    fn charge(&mut self, rate: f64, burst: f64, cpu: Duration, now: Instant) {
        self.refill(rate, burst, now);
        self.tokens -= cpu.as_secs_f64();
    }
}

/// What a worker does next.
enum Task {
    Run {
        job: u64,
        router: usize,
        input: PartInput,
        key: String,
        rate: f64,
    },
    Fail {
        job: u64,
        router: usize,
        input: PartInput,
        message: String,
    },
}

/// The table behind one lock: jobs, and each router's queue.
#[derive(Default)]
struct Table {
    jobs: HashMap<u64, Job>,
    next: u64,
    queues: HashMap<String, RouterQueue>,
    /// The routers with parts queued, in the order the workers serve them.
    turn: VecDeque<String>,
    /// The set is gone: the workers stop.
    closed: bool,
}

/// Shared by the table and its workers.
struct Core {
    table: Mutex<Table>,
    queued: Condvar,
    finished: Mutex<Vec<Finished>>,
}

impl Table {
    /// The next part to run, from the routers' queues in turn: a router
    /// that already runs a part goes after the routers that don't, and one
    /// at its `max_instances` waits. `None`: nothing can run now.
    fn next_task(&mut self) -> Option<Task> {
        loop {
            let key = self.next_router()?;
            if let Some(task) = self.next_of(key) {
                return Some(task);
            }
        }
    }

    /// Takes the router whose part runs next out of the turn.
    fn next_router(&mut self) -> Option<String> {
        let runnable = |queues: &HashMap<String, RouterQueue>, key: &String, idle_only: bool| {
            queues
                .get(key)
                .is_some_and(|q| q.running < q.max_running && (!idle_only || q.running == 0))
        };
        let at = (0..self.turn.len())
            .find(|&i| runnable(&self.queues, &self.turn[i], true))
            .or_else(|| {
                (0..self.turn.len()).find(|&i| runnable(&self.queues, &self.turn[i], false))
            })?;
        self.turn.remove(at)
    }

    /// The next part of router `key`'s queue as a task (the router goes
    /// back to the end of the turn if it has more); `None` if that part
    /// is no longer wanted.
    fn next_of(&mut self, key: String) -> Option<Task> {
        let queue = self.queues.get_mut(&key)?;
        let part = queue.parts.pop_front()?;
        if !queue.parts.is_empty() {
            self.turn.push_back(key.clone());
        }
        let entry = self.jobs.get_mut(&part.job)?;
        entry.queued = entry.queued.saturating_sub(1);
        let work = entry.work.as_ref()?;
        if entry.cancelled || !work.is_pending(part.router) {
            // A cancelled job with nothing queued or running is forgotten.
            if entry.cancelled && entry.queued == 0 && entry.running == 0 {
                self.jobs.remove(&part.job);
            }
            return None;
        }
        let input = work.input();
        let routers = work.routers().len();
        let rate = WorkerShare::rate(routers);
        entry.running += 1;
        // The share holds whether or not the other routers use theirs: a
        // router that needs more than its share of the workers all the
        // time is failing, not busy.
        let queue = self.queues.get_mut(&key)?;
        let burst = rate.max(queue.budget.as_secs_f64());
        if queue.share.over(rate, burst, Instant::now()) {
            return Some(Task::Fail {
                job: part.job,
                router: part.router,
                input,
                message: format!(
                    "not run: its calls used more than its share of the module's worker \
                     threads ({} ms of CPU per second, with {routers} router(s))",
                    (rate * 1000.0).round()
                ),
            });
        }
        queue.running += 1;
        Some(Task::Run {
            job: part.job,
            router: part.router,
            input,
            key,
            rate,
        })
    }
}

/// The worker threads of one process, and the socket that wakes the
/// reactor.
struct Workers {
    /// The reactor's end: readable once a job has finished.
    wake: UnixStream,
    waker: Arc<UnixStream>,
    pid: u32,
}

/// What the reactor keeps of a job to answer it: the batch's own objects.
struct ForAnswer {
    objects: Vec<Py<PyAny>>,
    from_batch: Vec<usize>,
    events: Vec<Event>,
}

/// The jobs of one router set.
pub(crate) struct JobTable {
    core: Arc<Core>,
    workers: Mutex<Option<Workers>>,
    for_answer: Mutex<HashMap<u64, ForAnswer>>,
}

impl JobTable {
    pub(crate) fn new() -> Self {
        JobTable {
            core: Arc::new(Core {
                table: Mutex::new(Table {
                    next: 1,
                    ..Table::default()
                }),
                queued: Condvar::new(),
                finished: Mutex::new(Vec::new()),
            }),
            workers: Mutex::new(None),
            for_answer: Mutex::new(HashMap::new()),
        }
    }

    /// Adds a job: `work` is the call as far as the reactor got; `objects`
    /// and `from_batch` what its answer is built from; `events` what the
    /// reactor's part reported. Returns its number.
    pub(crate) fn add(
        &self,
        work: Work,
        objects: Vec<Py<PyAny>>,
        from_batch: Vec<usize>,
        events: Vec<Event>,
    ) -> u64 {
        let mut table = self.core.lock();
        let job = table.next;
        table.next += 1;
        table.jobs.insert(
            job,
            Job {
                work: Some(work),
                cancelled: false,
                queued: 0,
                running: 0,
                events: Vec::new(),
            },
        );
        drop(table);
        lock(&self.for_answer).insert(
            job,
            ForAnswer {
                objects,
                from_batch,
                events,
            },
        );
        job
    }

    /// Queues a job's parts for the workers (started now if they are not);
    /// its answer comes from `take_finished` once the descriptor of
    /// `fileno` is readable. A part whose router's queue is full fails at
    /// once.
    pub(crate) fn submit(&self, job: u64) -> PyResult<()> {
        self.started_workers()?;
        let now = Instant::now();
        let mut full = Vec::new();
        {
            let mut guard = self.core.lock();
            let table = &mut *guard;
            let entry = table.jobs.get_mut(&job).ok_or_else(|| no_job(job))?;
            if entry.queued + entry.running > 0 {
                return Err(PyRuntimeError::new_err(format!(
                    "job {job} was submitted already"
                )));
            }
            let work = entry.work.as_ref().ok_or_else(|| no_job(job))?;
            let routers = work.routers().clone();
            let pending = work.pending();
            for router in pending {
                let Some(info) = routers.routers().nth(router) else {
                    continue;
                };
                let queue = table.queues.entry(info.name.clone()).or_insert_with(|| {
                    RouterQueue::new(info.limits.max_instances, info.limits.timeout, now)
                });
                queue.max_running = info.limits.max_instances.max(1);
                queue.budget = info.limits.timeout;
                let refusal = if queue.parts.len() >= MAX_QUEUED_PER_ROUTER {
                    Some(format!(
                        "not run: {MAX_QUEUED_PER_ROUTER} calls of this router are already \
                         waiting for the module's worker threads"
                    ))
                } else if queue.unknown_cost_full() {
                    Some(format!(
                        "not run: {UNKNOWN_COST_PARTS} calls of this router are already \
                         waiting for the module's worker threads, and none has run yet"
                    ))
                } else if queue.backlog() > info.limits.timeout {
                    Some(format!(
                        "not run: its calls ahead of it would take about {} ms of the module's \
                         worker threads, more than its {} time budget",
                        queue.backlog().as_millis(),
                        humantime::format_duration(info.limits.timeout)
                    ))
                } else {
                    None
                };
                if let Some(message) = refusal {
                    if let Some(work) = entry.work.as_ref() {
                        full.push((router, work.input(), message));
                    }
                    continue;
                }
                if queue.parts.is_empty() {
                    table.turn.push_back(info.name.clone());
                }
                queue.parts.push_back(Queued { job, router });
                entry.queued += 1;
            }
            entry.running += full.len();
        }
        self.core.queued.notify_all();
        let waker = self.waker();
        for (router, input, message) in full {
            let (part, events) = collecting_events(|| input.fail(router, message));
            self.core
                .part_done(job, router, part, events, waker.as_deref());
        }
        Ok(())
    }

    /// Gives up on a job: its parts not yet running are dropped, and it is
    /// never answered.
    pub(crate) fn cancel(&self, job: u64) {
        {
            let mut table = self.core.lock();
            if let Some(entry) = table.jobs.get_mut(&job) {
                entry.cancelled = true;
                if entry.queued == 0 && entry.running == 0 {
                    // Not submitted, or every part done: nothing will end it.
                    table.jobs.remove(&job);
                }
            }
        }
        lock(&self.for_answer).remove(&job);
    }

    /// Forgets a job that will not be run (its caller failed before
    /// handing it on).
    pub(crate) fn drop_job(&self, job: u64) {
        self.core.lock().jobs.remove(&job);
        lock(&self.for_answer).remove(&job);
    }

    /// How many jobs wait to be finished or answered.
    pub(crate) fn pending(&self) -> usize {
        lock(&self.for_answer).len()
    }

    /// The descriptor that becomes readable when a job is done (the
    /// workers start now if they haven't).
    pub(crate) fn fileno(&self) -> PyResult<i32> {
        self.started_workers()?;
        Ok(lock(&self.workers)
            .as_ref()
            .map_or(-1, |workers| workers.wake.as_raw_fd()))
    }

    /// The jobs finished since the last call, `[(job, answer)]`: each
    /// answer as `route_states` or `route_interest` would have returned it,
    /// or the exception that building it raised (that job's alone).
    /// `more_events` adds what the runtime reported outside any call.
    pub(crate) fn take_finished<'py>(
        &self,
        py: Python<'py>,
        more_events: impl Fn(&mut Vec<Event>),
    ) -> Vec<(u64, Bound<'py, PyAny>)> {
        if let Some(workers) = lock(&self.workers).as_ref() {
            let mut drain = [0u8; 256];
            // Nonblocking: stops at WouldBlock once the socket is empty.
            while matches!((&workers.wake).read(&mut drain), Ok(n) if n > 0) {}
        }
        let finished = std::mem::take(&mut *lock(&self.core.finished));
        finished
            .into_iter()
            .filter_map(|mut f| {
                more_events(&mut f.events);
                let answer = match self.answer(py, f.job, f.answer, f.events) {
                    Ok(Some(answer)) => answer,
                    Ok(None) => return None,
                    Err(e) => e.into_value(py).into_bound(py).into_any(),
                };
                Some((f.job, answer))
            })
            .collect()
    }

    /// Finishes a job in one go on this thread, with the GIL released (for
    /// Synapse's thread pool, where the reactor can't watch the workers'
    /// socket).
    pub(crate) fn run<'py>(
        &self,
        py: Python<'py>,
        job: u64,
        more_events: impl Fn(&mut Vec<Event>),
    ) -> PyResult<Bound<'py, PyAny>> {
        let work = {
            let mut table = self.core.lock();
            let entry = table.jobs.remove(&job).ok_or_else(|| no_job(job))?;
            entry.work.ok_or_else(|| no_job(job))?
        };
        let (answer, mut events) = py.detach(|| collecting_events(|| work.finish()));
        more_events(&mut events);
        self.answer(py, job, answer, events)?
            .ok_or_else(|| PyRuntimeError::new_err(format!("job {job} was cancelled")))
    }

    /// A finished job's answer (none if it was cancelled); the job is
    /// forgotten.
    fn answer<'py>(
        &self,
        py: Python<'py>,
        job: u64,
        answer: Answer,
        events: Vec<Event>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(kept) = lock(&self.for_answer).remove(&job) else {
            // Cancelled: nobody waits for it.
            return Ok(None);
        };
        let mut all_events = kept.events;
        all_events.extend(events);
        let answered = match answer {
            Answer::States(routed) => {
                let objects: Vec<Bound<'py, PyAny>> =
                    kept.objects.into_iter().map(|o| o.into_bound(py)).collect();
                Answered::States(StatesAnswer::build(
                    py,
                    routed.answer,
                    routed.sent_presence_to,
                    &objects,
                    &kept.from_batch,
                    all_events,
                )?)
            }
            Answer::Interest(routed) => Answered::Interest(InterestAnswer::build(
                py,
                routed.answer,
                routed.sent_presence_to,
                all_events,
            )?),
            Answer::Cancelled => return Ok(None),
            Answer::Panicked(why) => {
                return Err(PyRuntimeError::new_err(format!(
                    "finishing a router call failed: {why}"
                )));
            }
        };
        answered.into_py_any(py).map(Some)
    }

    fn waker(&self) -> Option<Arc<UnixStream>> {
        lock(&self.workers)
            .as_ref()
            .map(|workers| workers.waker.clone())
    }

    /// Starts the workers in this process if they are not running here.
    fn started_workers(&self) -> PyResult<()> {
        let mut workers = lock(&self.workers);
        if workers
            .as_ref()
            .is_some_and(|w| w.pid == std::process::id())
        {
            return Ok(());
        }
        let start = || -> std::io::Result<Workers> {
            let (wake, waker) = UnixStream::pair()?;
            wake.set_nonblocking(true)?;
            waker.set_nonblocking(true)?;
            let waker = Arc::new(waker);
            for index in 0..WORKERS {
                let core = self.core.clone();
                let waker = waker.clone();
                std::thread::Builder::new()
                    .name(format!("pr-offload-{index}"))
                    .spawn(move || core.work(&waker))?;
            }
            Ok(Workers {
                wake,
                waker,
                pid: std::process::id(),
            })
        };
        *workers = Some(start().map_err(|e| {
            PyRuntimeError::new_err(format!("cannot start the worker threads: {e}"))
        })?);
        Ok(())
    }
}

impl Drop for JobTable {
    fn drop(&mut self) {
        self.core.lock().closed = true;
        self.core.queued.notify_all();
    }
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    /// A worker's life: the next part in turn, run or failed, until the
    /// set is gone.
    fn work(&self, waker: &UnixStream) {
        loop {
            let Some(task) = self.next_task() else {
                return;
            };
            match task {
                Task::Run {
                    job,
                    router,
                    input,
                    key,
                    rate,
                } => {
                    let cpu = thread_cpu_time();
                    // A panic of ours must not take the worker with it: the
                    // part fails with it, and the next part runs.
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        collecting_events(|| input.run(router))
                    }));
                    let used = thread_cpu_time().saturating_sub(cpu);
                    {
                        let mut table = self.lock();
                        if let Some(queue) = table.queues.get_mut(&key) {
                            queue.running = queue.running.saturating_sub(1);
                            queue.ran(used);
                            let burst = rate.max(queue.budget.as_secs_f64());
                            queue.share.charge(rate, burst, used, Instant::now());
                        }
                        // This router may run again, on the other worker.
                        self.queued.notify_one();
                    }
                    match ran {
                        Ok((part, events)) => {
                            self.part_done(job, router, part, events, Some(waker))
                        }
                        Err(panic) => self.job_panicked(job, panic_text(&*panic), waker),
                    }
                }
                Task::Fail {
                    job,
                    router,
                    input,
                    message,
                } => {
                    let (part, events) = collecting_events(|| input.fail(router, message));
                    self.part_done(job, router, part, events, Some(waker));
                }
            }
        }
    }

    /// Takes the next part, from the routers' queues in turn; waits while
    /// there is none. `None`: the set is gone.
    fn next_task(&self) -> Option<Task> {
        let mut guard = self.lock();
        loop {
            if guard.closed {
                return None;
            }
            if let Some(task) = guard.next_task() {
                return Some(task);
            }
            guard = self
                .queued
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A part ended: it joins its job, which is finished once no part is
    /// left.
    fn part_done(
        &self,
        job: u64,
        router: usize,
        part: PartOutcome,
        events: Vec<Event>,
        waker: Option<&UnixStream>,
    ) {
        let done = {
            let mut table = self.lock();
            let Some(entry) = table.jobs.get_mut(&job) else {
                return;
            };
            entry.running = entry.running.saturating_sub(1);
            entry.events.extend(events);
            if let Some(work) = entry.work.as_mut() {
                work.complete(router, part);
            }
            // Parts still queued for it that are no longer wanted (their
            // job is gone, or a router before them answered "all users")
            // are skipped when a worker reaches them.
            let finished = entry.running == 0
                && (entry.cancelled || entry.work.as_ref().is_some_and(|w| !w.has_pending()));
            if finished {
                table.jobs.remove(&job)
            } else {
                None
            }
        };
        let Some(entry) = done else { return };
        let (answer, mut events) = if entry.cancelled {
            (Answer::Cancelled, Vec::new())
        } else {
            match entry.work {
                Some(work) => collecting_events(|| work.finish()),
                None => (Answer::Cancelled, Vec::new()),
            }
        };
        let mut all_events = entry.events;
        all_events.append(&mut events);
        self.push_finished(job, answer, all_events, waker);
    }

    fn job_panicked(&self, job: u64, why: String, waker: &UnixStream) {
        let removed = self.lock().jobs.remove(&job);
        if removed.is_some() {
            self.push_finished(job, Answer::Panicked(why), Vec::new(), Some(waker));
        }
    }

    fn push_finished(
        &self,
        job: u64,
        answer: Answer,
        events: Vec<Event>,
        waker: Option<&UnixStream>,
    ) {
        lock(&self.finished).push(Finished {
            job,
            answer,
            events,
        });
        if let Some(mut waker) = waker {
            // A full socket already holds a wake-up: nothing is lost.
            let _ = waker.write(&[1]);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves its data consistent: a panic elsewhere can't
    // leave it half-done.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn no_job(job: u64) -> PyErr {
    PyRuntimeError::new_err(format!("no job {job} waiting"))
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// The CPU time of the calling thread so far: what a part cost the
/// workers, whatever else the machine was doing.
fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}
