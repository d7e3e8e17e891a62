//! One configured router: its compiled component, its limits, and a small
//! pool of warm instances so that concurrent calls don't queue on one store.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use presence_router_model::{
    CallStats, FailureKind, FailurePolicy, Limits, RouterConfig, RouterFailure,
};

use crate::cache::CompileSource;
use crate::call::{CheckedAnswer, RouterAnswer, RouterCall, RouterOutcome};
use crate::compiler::Compiler;
use crate::component_file::read_component;
use crate::error::LoadError;
use crate::guest::{
    CallEffects, CallStart, CallUsage, Failure, GuestEngine, GuestInstance, InstanceError,
    LoadedComponent, Slice,
};
use crate::health::{Admission, Health};
use crate::host_budget::HostBudgets;
use crate::module_api::ModuleApi;
use crate::signature::{SignatureRefusal, TrustedKeys};
use crate::stats::{CallOutcome, Callback, Dropped, RouterMetrics, RouterStats};

/// A router as `check` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterInfo {
    pub name: String,
    pub component: PathBuf,
    pub limits: Limits,
    pub failure_policy: FailurePolicy,
    /// Whether the component was compiled or came from the cache.
    pub compiled_from: CompileSource,
    /// How long reading and compiling (or deserializing) it took.
    pub load_time: std::time::Duration,
}

/// An instance checked out of the pool for one call, with the failure
/// policy's leave to make it. [`Router::finish`] gives its slot back; a
/// lease dropped unfinished (a panic mid-call) gives the slot back without
/// the instance, so the pool never shrinks.
struct Lease<'a> {
    slot: Slot<'a>,
    admission: Admission<'a>,
    /// When the call had its slot: its duration is counted from here.
    started: Instant,
}

/// A slot of the pool, with the instance in it.
struct Slot<'a> {
    router: &'a Router,
    instance: Option<GuestInstance>,
}

impl Lease<'_> {
    fn instance(&mut self) -> &mut GuestInstance {
        // Only `finish` takes it, and `finish` consumes the lease.
        self.slot
            .instance
            .as_mut()
            .unwrap_or_else(|| unreachable!("a lease's instance is taken only by finish"))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if self.instance.take().is_some() {
            self.router.give_back(None);
        }
    }
}

/// The warm instances of a router, and how many are out on calls: at most
/// `limits.max_instances` exist at once.
struct InstancePool {
    idle: Vec<GuestInstance>,
    /// Instances out on calls, or being made for one.
    leased: usize,
}

pub(crate) struct Router {
    info: RouterInfo,
    config_json: String,
    component: LoadedComponent,
    engine: Arc<GuestEngine>,
    module_api: Arc<dyn ModuleApi>,
    pool: Mutex<InstancePool>,
    /// Signalled when a slot is given back, for calls waiting for one.
    slot_freed: Condvar,
    health: Health,
    /// Its log bytes and sends per second.
    host_budgets: Mutex<HostBudgets>,
    /// Shared with the earlier and later versions of this router.
    metrics: Arc<RouterMetrics>,
    /// SHA-256 of the component file as it was loaded: a reload that finds
    /// the same bytes and the same configuration keeps this router.
    component_digest: [u8; 32],
    config: RouterConfig,
    /// Replaced by a newer version: its pool no longer sets the instance
    /// gauges.
    retired: std::sync::atomic::AtomicBool,
    /// Its name, for every call's stats without a copy.
    stats_name: Arc<str>,
}

impl Router {
    /// Reads, compiles and checks the component, then makes a first instance
    /// and runs `parse-config` on it: a router that can't start refuses the
    /// whole set, as Synapse refuses to start.
    pub(crate) async fn load(
        compiler: Arc<Compiler>,
        module_api: Arc<dyn ModuleApi>,
        config: &RouterConfig,
        source: &std::path::Path,
        trusted_keys: &Arc<TrustedKeys>,
        metrics: Option<Arc<RouterMetrics>>,
    ) -> Result<Router, LoadError> {
        let at = |key: &str| crate::error::RouterAt {
            file: source.to_owned(),
            key: format!("{}{key}", config.key),
            router: config.name.clone(),
        };
        let bytes = read_component(&config.component)
            .await
            .map_err(|e| LoadError::Component {
                at: at(".component"),
                path: config.component.clone(),
                message: format!("cannot read the component: {e}"),
            })?;
        let component_digest = component_digest(&bytes);
        // Checking the signature hashes the whole file and compiling is
        // seconds of CPU for a large component: off the executor. The
        // signature is checked first, on the bytes compiled (or looked up
        // in the cache) next.
        let compiling = compiler.clone();
        let keys = trusted_keys.clone();
        let signed_by = config.signed_by.clone();
        let started = Instant::now();
        let (component, compiled_from) = tokio::task::spawn_blocking(move || {
            if let Some(required) = &signed_by {
                keys.check(required, &bytes).map_err(NotLoaded::Signature)?;
            }
            compiling.load(&bytes).map_err(NotLoaded::Component)
        })
        .await
        .map_err(|e| LoadError::Component {
            at: at(".component"),
            path: config.component.clone(),
            message: format!("compilation did not finish: {e}"),
        })?
        .map_err(|error| match error {
            NotLoaded::Component(message) => LoadError::Component {
                at: at(".component"),
                path: config.component.clone(),
                message,
            },
            NotLoaded::Signature(refusal) => LoadError::Signature {
                at: at(".component"),
                path: config.component.clone(),
                refusal: Box::new(refusal),
            },
        })?;
        let router = Router {
            info: RouterInfo {
                name: config.name.clone(),
                component: config.component.clone(),
                limits: config.limits.clone(),
                failure_policy: config.failure_policy.clone(),
                compiled_from,
                load_time: started.elapsed(),
            },
            health: Health::new(config.failure_policy.clone()),
            host_budgets: Mutex::new(HostBudgets::new(&config.limits, Instant::now())),
            config_json: config.config_json.clone(),
            component,
            engine: compiler.engine().clone(),
            module_api,
            pool: Mutex::new(InstancePool {
                idle: Vec::new(),
                leased: 0,
            }),
            slot_freed: Condvar::new(),
            metrics: match metrics {
                // A new version starts healthy (its `Health` is new): so
                // does the gauge its suspended predecessor left up.
                Some(metrics) => {
                    metrics.resumed();
                    metrics
                }
                None => Arc::new(RouterMetrics::new(&config.name)),
            },
            component_digest,
            config: config.clone(),
            retired: std::sync::atomic::AtomicBool::new(false),
            stats_name: config.name.as_str().into(),
        };
        match router.new_instance(CallStart::now()) {
            Ok(instance) => {
                router.lock_pool().idle.push(instance);
                Ok(router)
            }
            Err(InstanceError::ConfigRefused(message)) => Err(LoadError::ConfigRefused {
                at: at(".config"),
                message,
            }),
            Err(InstanceError::WrongType(message)) => Err(LoadError::Component {
                at: at(".component"),
                path: config.component.clone(),
                message,
            }),
            Err(InstanceError::Failed(failure)) => Err(LoadError::Failed {
                at: at(""),
                kind: failure.kind,
                message: failure.message,
            }),
        }
    }

    pub(crate) fn info(&self) -> &RouterInfo {
        &self.info
    }

    pub(crate) fn name(&self) -> &str {
        &self.info.name
    }

    pub(crate) fn idle_instances(&self) -> usize {
        self.lock_pool().idle.len()
    }

    /// Linear memory held by the idle instances, in bytes.
    pub(crate) fn idle_memory_bytes(&self) -> usize {
        self.lock_pool()
            .idle
            .iter()
            .map(GuestInstance::memory_bytes)
            .sum()
    }

    /// Makes `call`, in `slice` if there is one (only a call in a slice
    /// can come to [`RouterOutcome::SliceUsedUp`]).
    pub(crate) fn call<C: RouterCall>(
        &self,
        call: &C,
        slice: Option<&Slice>,
    ) -> RouterOutcome<C::Answer> {
        let mut lease = match self.lease(slice, C::CALLBACK) {
            Ok(lease) => lease,
            Err(outcome) => return outcome,
        };
        let result = call.call(lease.instance());
        self.finish(lease, result, call)
    }

    /// Whether a call now would skip this router (it is suspended): a skip
    /// is cheap enough for any thread.
    pub(crate) fn suspended_now(&self) -> bool {
        self.health.suspended_now()
    }

    /// A call of this router failed without running it (the embedder could
    /// not run it in time): reported, counted and weighed by the failure
    /// policy like any failure; skipped if the router is suspended.
    pub(crate) fn fail_unrun(
        &self,
        callback: Callback,
        kind: FailureKind,
        message: String,
    ) -> RouterFailure {
        let admission = match self.admit() {
            Ok(admission) => admission,
            Err(skipped) => {
                self.metrics.skipped(callback);
                return skipped;
            }
        };
        self.metrics.call(
            callback,
            std::time::Duration::ZERO,
            CallOutcome::Failed(kind),
        );
        self.failure(
            admission,
            Failure {
                kind,
                message,
                instance_lost: false,
                slice_used_up: false,
            },
        )
    }

    /// Takes a warm instance from the pool, or makes a fresh one, within
    /// `limits.max_instances` (waiting for a slot while all are out on
    /// calls on other threads). A call in a slice takes only a warm
    /// instance, and waits for nothing: without one it is abandoned. No
    /// lease: what the call came to already.
    fn lease<T>(
        &self,
        slice: Option<&Slice>,
        callback: Callback,
    ) -> Result<Lease<'_>, RouterOutcome<T>> {
        let admission = match self.admit() {
            Ok(admission) => admission,
            Err(failure) => {
                self.metrics.skipped(callback);
                return Err(RouterOutcome::Failed(failure));
            }
        };
        let max = self.info.limits.max_instances;
        let idle = {
            let mut pool = self.lock_pool();
            loop {
                if let Some(instance) = pool.idle.pop() {
                    pool.leased += 1;
                    break Some(instance);
                }
                if slice.is_some() {
                    return Err(RouterOutcome::SliceUsedUp { ran: false });
                }
                if pool.leased < max {
                    pool.leased += 1;
                    break None;
                }
                // A lease is never held across an await or a wait of its
                // own, so whoever holds the slots gives them back.
                pool = self
                    .slot_freed
                    .wait(pool)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        // The time budget starts once the call has its slot: waiting for
        // one is not the router's doing. A fresh instance shares the call's
        // budget, so a router can't double its time by trapping.
        let start = CallStart::now();
        let started = start.instant();
        let instance = match idle {
            Some(mut instance) => {
                instance.begin(start, slice);
                instance
            }
            None => match self.new_instance(start) {
                Ok(instance) => instance,
                Err(e) => {
                    self.give_back(None);
                    let failure = fresh_instance_failure(e);
                    self.metrics.call(
                        callback,
                        started.elapsed(),
                        CallOutcome::Failed(failure.kind),
                    );
                    return Err(RouterOutcome::Failed(self.failure(admission, failure)));
                }
            },
        };
        Ok(Lease {
            slot: Slot {
                router: self,
                instance: Some(instance),
            },
            admission,
            started,
        })
    }

    /// Gives a leased slot back to the pool, with its instance if that can
    /// serve another call.
    fn give_back(&self, instance: Option<GuestInstance>) {
        let mut pool = self.lock_pool();
        pool.leased -= 1;
        pool.idle.extend(instance);
        if !self.retired.load(std::sync::atomic::Ordering::Relaxed) {
            self.metrics
                .instances(pool.idle.len(), pool.idle.len() + pool.leased);
        }
        drop(pool);
        self.slot_freed.notify_one();
    }

    /// Leave from the failure policy to call the router now, or the report
    /// of a skipped call.
    fn admit(&self) -> Result<Admission<'_>, RouterFailure> {
        // Suspended routers are skipped in a slice too: skipping is cheap.
        self.health
            .admit_now()
            .map_err(|skip| skip.into_failure(&self.info.name))
    }

    /// Ends a call: passes on what the guest logged, puts a healthy instance
    /// back (a trapped store can't be entered again, so it is dropped), and
    /// attributes a failure to this router.
    fn finish<C: RouterCall>(
        &self,
        mut lease: Lease<'_>,
        result: Result<(C::Answer, CallUsage), Failure>,
        call: &C,
    ) -> RouterOutcome<C::Answer> {
        let callback = C::CALLBACK;
        let mut instance = lease.slot.instance.take();
        let effects = instance
            .as_mut()
            .map(GuestInstance::take_effects)
            .unwrap_or_default();
        let memory_bytes = instance.as_ref().map_or(0, GuestInstance::memory_bytes) as u64;
        let lost = matches!(&result, Err(failure) if failure.instance_lost);
        let reusable = !lost && instance.as_mut().is_some_and(GuestInstance::reusable);
        self.give_back(instance.filter(|_| reusable));
        if matches!(&result, Err(failure) if failure.slice_used_up) {
            // Made again with full limits: what this try logged and sent is
            // dropped, and its admission counts as nothing.
            return RouterOutcome::SliceUsedUp { ran: true };
        }
        let sends = self.pass_on(effects);
        let (answer, usage) = match result {
            Ok(answered) => answered,
            Err(failure) => {
                self.metrics.call(
                    callback,
                    lease.started.elapsed(),
                    CallOutcome::Failed(failure.kind),
                );
                return RouterOutcome::Failed(self.failure(lease.admission, failure));
            }
        };
        let answer_entries = answer.answer_entries();
        // What handing the answer on will cost the embedder is the
        // router's too: at most its credit, earned per batch routed (an
        // interest call, whose rate a user controls, earns none).
        let spent = match call.hand_on_cost(&answer, answer_entries) {
            Some(cost) => self
                .lock_budgets()
                .hand_on
                .spend(cost)
                .map_err(|left| (cost, left)),
            None => Ok(()),
        };
        if let Err((cost, available)) = spent {
            self.metrics.call(
                callback,
                usage.elapsed,
                CallOutcome::Failed(FailureKind::InvalidAnswer),
            );
            let failure = Failure::invalid_answer(format!(
                "handing the answer on would take {cost} units of the host's work (one per \
                 user, and per distinct set of states the fewer of those it names and those it \
                 leaves out), more than the {available} this router has saved up: {} per call \
                 on average (1024 + limits.answer_entries_per_state), at most {} calls' worth",
                self.info.limits.answer_entries_for_batch(1),
                crate::host_budget::HandOnCredit::BURST_CALLS
            ));
            return RouterOutcome::Failed(self.failure(lease.admission, failure));
        }
        self.metrics.call(
            callback,
            usage.elapsed,
            CallOutcome::Answered {
                fuel_used: usage.fuel_used,
                fuel_budget: usage.fuel_budget,
                answer_entries,
            },
        );
        self.succeeded(lease.admission);
        let stats = CallStats {
            router: self.stats_name.clone(),
            fuel_used: usage.fuel_used,
            fuel_budget: usage.fuel_budget,
            memory_bytes,
            answer_entries,
            elapsed: usage.elapsed,
        };
        RouterOutcome::Answered(RouterAnswer {
            answer,
            sends,
            stats,
        })
    }

    /// Fills the pool to `limits.max_instances` warm instances (fewer if
    /// calls hold some meanwhile: the pool never overshoots).
    pub(crate) fn warm_up(&self) -> Result<(), RouterFailure> {
        let max = self.info.limits.max_instances;
        loop {
            {
                let mut pool = self.lock_pool();
                if pool.idle.len() + pool.leased >= max {
                    return Ok(());
                }
                pool.leased += 1;
            }
            // Each fresh instance counts like a call for the failure policy.
            let admission = match self.admit() {
                Ok(admission) => admission,
                Err(failure) => {
                    self.give_back(None);
                    return Err(failure);
                }
            };
            match self.new_instance(CallStart::now()) {
                Ok(instance) => {
                    self.give_back(Some(instance));
                    self.succeeded(admission);
                }
                Err(e) => {
                    self.give_back(None);
                    return Err(self.failure(admission, fresh_instance_failure(e)));
                }
            }
        }
    }

    /// Makes a fresh instance and drops it: what a call after a trap pays.
    pub(crate) fn make_fresh_instance(&self) -> bool {
        self.new_instance(CallStart::now()).is_ok()
    }

    fn new_instance(&self, start: CallStart) -> Result<GuestInstance, InstanceError> {
        let mut made = GuestInstance::new(
            &self.engine,
            &self.component,
            &self.info.limits,
            &self.config_json,
            start,
        );
        if let Ok(instance) = &mut made {
            // Sends during parse-config have no call to belong to: dropped.
            let _ = self.pass_on(instance.take_effects());
        }
        made
    }

    /// Logs what the guest logged and returns the users of its
    /// `send-local-online-presence-to` calls (checked as they came), as far
    /// as the router's budgets per call and per second allow; what they
    /// dropped is counted, and said once per call (per call) or once per
    /// interval (per second).
    fn pass_on(&self, mut effects: CallEffects) -> Vec<String> {
        let name = self.name();
        let limits = &self.info.limits;
        let metrics = &self.metrics;
        let mut budgets = self
            .host_budgets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !effects.logs.is_empty() || !effects.sends.is_empty() || budgets.has_unsaid() {
            let admitted = budgets.admit(&mut effects.logs, &mut effects.sends, Instant::now());
            drop(budgets);
            metrics.dropped(Dropped::LogLinesPerSecond, admitted.log_lines_dropped);
            metrics.dropped(Dropped::SendUsersPerSecond, admitted.send_users_dropped);
            for warning in &admitted.warnings {
                self.module_api.router_warning(name, warning);
            }
        } else {
            drop(budgets);
        }
        let mut logged = 0;
        for (level, line) in &effects.logs {
            logged += line.len() as u64;
            self.module_api.guest_log(name, *level, line);
        }
        metrics.logged(logged);
        let per_call = [
            (
                Dropped::LogLinesPerCall,
                effects.dropped_logs,
                "log line(s) dropped: over limits.max_log_lines",
                limits.max_log_lines,
            ),
            (
                Dropped::SendCallsPerCall,
                effects.dropped_sends,
                "send-local-online-presence-to call(s) dropped: over limits.max_send_calls",
                limits.max_send_calls,
            ),
            (
                Dropped::SendUsersPerCall,
                effects.dropped_send_users,
                "user(s) not sent presence: over limits.max_send_users",
                limits.max_send_users,
            ),
        ];
        for (what, count, text, limit) in per_call {
            if count > 0 {
                metrics.dropped(what, count as u64);
                self.module_api
                    .router_warning(name, &format!("{count} {text} = {limit} per call"));
            }
        }
        effects.sends
    }

    /// Attributes a failure to this router, reports it, and suspends the
    /// router if it has failed too often in a row.
    fn failure(&self, admission: Admission<'_>, mut failure: Failure) -> RouterFailure {
        // Guest text in a message was escaped where it entered; should any
        // path have missed it, no control character leaves from here.
        if failure.message.chars().any(char::is_control) {
            failure.message = presence_router_model::text::escape_control(&failure.message);
        }
        let suspension =
            self.health
                .failed(admission, failure.kind, &failure.message, Instant::now());
        let failure = RouterFailure {
            router: self.info.name.clone(),
            kind: failure.kind,
            message: failure.message,
            suspension,
        };
        // The report quotes the router's words (its panic message, its
        // stderr): it is paid for from its log budget, and dropped and
        // counted past it like its own lines.
        let shown = self
            .lock_budgets()
            .admit_host_line(failure.message.len() as u64, Instant::now());
        if shown || suspension.is_some() {
            self.module_api.router_skipped(&failure);
        } else {
            self.metrics.dropped(Dropped::LogLinesPerSecond, 1);
        }
        if let Some(suspension) = suspension {
            self.metrics.suspended();
            self.module_api.router_warning(
                &failure.router,
                &format!(
                    "suspended for {} after {} failures in a row",
                    humantime::format_duration(std::time::Duration::from_millis(
                        suspension.retry_in_ms
                    )),
                    suspension.consecutive_failures
                ),
            );
        }
        failure
    }

    fn succeeded(&self, admission: Admission<'_>) {
        if self.health.succeeded(admission) {
            self.metrics.resumed();
            self.module_api.router_resumed(&self.info.name);
        }
    }

    /// What this router's calls came to, with its pool as it is now.
    pub(crate) fn stats(&self) -> RouterStats {
        let (warm, live) = {
            let pool = self.lock_pool();
            (pool.idle.len(), pool.idle.len() + pool.leased)
        };
        self.metrics.snapshot(&self.info.name, warm, live)
    }

    pub(crate) fn retire(&self) {
        self.retired
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// SHA-256 of the component file it was loaded from.
    pub(crate) fn digest(&self) -> &[u8; 32] {
        &self.component_digest
    }

    pub(crate) fn metrics(&self) -> &Arc<RouterMetrics> {
        &self.metrics
    }

    /// Whether a reload to `config`, whose component file now has
    /// `digest`, would load this very router again.
    pub(crate) fn is_same(&self, config: &RouterConfig, digest: &[u8; 32]) -> bool {
        let old = &self.config;
        // Not `key`: a router moved in the list is the same router.
        old.name == config.name
            && old.component == config.component
            && old.config_json == config.config_json
            && old.limits == config.limits
            && old.failure_policy == config.failure_policy
            && self.component_digest == *digest
    }

    fn lock_budgets(&self) -> MutexGuard<'_, HostBudgets> {
        self.host_budgets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_pool(&self) -> MutexGuard<'_, InstancePool> {
        // Every update leaves the pool consistent, so one interrupted by a
        // panic elsewhere is still usable.
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a component read from its file was not loaded.
enum NotLoaded {
    Signature(SignatureRefusal),
    /// Not a component, or not a presence router.
    Component(String),
}

/// The SHA-256 of a component file's bytes.
pub(crate) fn component_digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// How a fresh instance that could not be made counts for the failure
/// policy: like a failed call.
fn fresh_instance_failure(error: InstanceError) -> Failure {
    match error {
        InstanceError::Failed(failure) => failure,
        InstanceError::ConfigRefused(message) => Failure {
            kind: FailureKind::Trap,
            message: format!("a fresh instance refused its configuration: {message}"),
            instance_lost: true,
            slice_used_up: false,
        },
        InstanceError::WrongType(message) => Failure {
            kind: FailureKind::Trap,
            message,
            instance_lost: true,
            slice_used_up: false,
        },
    }
}
