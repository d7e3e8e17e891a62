//! One configured router: its compiled component, its limits, and a small
//! pool of warm instances so that concurrent calls don't queue on one store.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::Semaphore;

use presence_router_model::{
    CallStats, FailureKind, FailurePolicy, Limits, RouterConfig, RouterFailure, Suspension,
    UserPresenceState, answer, format_bytes,
};

use crate::cache::CompileSource;
use crate::error::LoadError;
use crate::guest::{
    CallEffects, CallUsage, CheckedInterest, CheckedRoutes, Failure, GuestEngine, GuestInstance,
    InstanceError, LoadedComponent,
};
use crate::module_api::ModuleApi;

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

/// How a router has been doing lately, for the [`FailurePolicy`].
#[derive(Default)]
struct Health {
    consecutive_failures: u32,
    /// Suspensions since the last success.
    suspensions: u32,
    suspended_until: Option<Instant>,
    /// What made the router fail last, for the reports while suspended.
    last_failure: Option<(FailureKind, String)>,
}

/// The validated result of one router's call, with the users it asked
/// presence to be sent to.
pub(crate) struct RouterAnswer<T> {
    pub answer: T,
    pub sends: Vec<String>,
    pub stats: CallStats,
}

/// How many entries an answer has, against `limits.max_answer_entries`.
pub(crate) trait AnswerEntries {
    fn answer_entries(&self) -> usize;
}

impl AnswerEntries for CheckedRoutes {
    fn answer_entries(&self) -> usize {
        self.iter().map(|(_, indices)| 1 + indices.len()).sum()
    }
}

impl AnswerEntries for CheckedInterest {
    fn answer_entries(&self) -> usize {
        self.as_ref().map_or(1, Vec::len)
    }
}

/// An instance checked out of the pool for one call.
struct Lease<'a> {
    instance: GuestInstance,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

pub(crate) struct Router {
    info: RouterInfo,
    config_json: String,
    component: LoadedComponent,
    engine: Arc<GuestEngine>,
    module_api: Arc<dyn ModuleApi>,
    /// Warm instances not in use. At most `limits.max_instances` exist at
    /// once, which `permits` enforces.
    idle: Mutex<Vec<GuestInstance>>,
    permits: Semaphore,
    health: Mutex<Health>,
}

impl Router {
    /// Reads, compiles and checks the component, then makes a first instance
    /// and runs `parse-config` on it: a router that can't start refuses the
    /// whole set, as Synapse refuses to start.
    pub(crate) async fn load(
        engine: Arc<GuestEngine>,
        module_api: Arc<dyn ModuleApi>,
        config: &RouterConfig,
        source: &std::path::Path,
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
        // Compiling is seconds of CPU for a large component: off the executor.
        let compiling = engine.clone();
        let started = Instant::now();
        let (component, compiled_from) =
            tokio::task::spawn_blocking(move || compiling.load(&bytes))
                .await
                .map_err(|e| LoadError::Component {
                    at: at(".component"),
                    path: config.component.clone(),
                    message: format!("compilation did not finish: {e}"),
                })?
                .map_err(|message| LoadError::Component {
                    at: at(".component"),
                    path: config.component.clone(),
                    message,
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
            health: Mutex::new(Health::default()),
            config_json: config.config_json.clone(),
            component,
            engine,
            module_api,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(config.limits.max_instances),
        };
        match router.new_instance().await {
            Ok(instance) => {
                router.return_instance(instance);
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
        self.lock_idle().len()
    }

    /// Linear memory held by the idle instances, in bytes.
    pub(crate) fn idle_memory_bytes(&self) -> usize {
        self.lock_idle()
            .iter()
            .map(GuestInstance::memory_bytes)
            .sum()
    }

    pub(crate) async fn get_users_for_states(
        &self,
        states: &[UserPresenceState],
    ) -> Result<RouterAnswer<CheckedRoutes>, RouterFailure> {
        let mut lease = self.lease().await?;
        let result = lease.instance.get_users_for_states(states).await;
        self.finish(lease, result)
    }

    pub(crate) async fn get_interested_users(
        &self,
        user_id: &str,
    ) -> Result<RouterAnswer<CheckedInterest>, RouterFailure> {
        let mut lease = self.lease().await?;
        let result = lease.instance.get_interested_users(user_id).await;
        self.finish(lease, result)
    }

    /// Takes a warm instance from the pool, or makes a fresh one, within
    /// `limits.max_instances`.
    async fn lease(&self) -> Result<Lease<'_>, RouterFailure> {
        self.check_not_suspended()?;
        // The semaphore is never closed, so acquiring only waits.
        let permit = self.permits.acquire().await.map_err(|_| {
            self.failure(Failure {
                kind: FailureKind::Trap,
                message: "the router is shutting down".into(),
                instance_lost: false,
            })
        })?;
        let idle = self.lock_idle().pop();
        let instance = match idle {
            Some(instance) => instance,
            None => self.fresh_instance().await?,
        };
        Ok(Lease {
            instance,
            _permit: permit,
        })
    }

    /// Ends a call: passes on what the guest logged, puts a healthy instance
    /// back (a trapped store can't be entered again, so it is dropped), and
    /// attributes a failure to this router.
    fn finish<T: AnswerEntries>(
        &self,
        mut lease: Lease<'_>,
        result: Result<(T, CallUsage), Failure>,
    ) -> Result<RouterAnswer<T>, RouterFailure> {
        let effects = lease.instance.take_effects();
        let memory_bytes = lease.instance.memory_bytes() as u64;
        let lost = matches!(&result, Err(failure) if failure.instance_lost);
        if !lost {
            self.return_instance(lease.instance);
        }
        let sends = self.pass_on(effects);
        let (answer, usage) = result.map_err(|failure| self.failure(failure))?;
        let sends = sends.map_err(|message| self.failure(Failure::invalid_answer(message)))?;
        self.succeeded();
        let stats = CallStats {
            router: self.info.name.clone(),
            fuel_used: usage.fuel_used,
            fuel_budget: usage.fuel_budget,
            memory_bytes,
            answer_entries: answer.answer_entries(),
            elapsed: usage.elapsed,
        };
        Ok(RouterAnswer {
            answer,
            sends,
            stats,
        })
    }

    /// Fills the pool to `limits.max_instances` warm instances. All permits
    /// are held meanwhile, so no call holds an instance and the pool can't
    /// overshoot.
    pub(crate) async fn warm_up(&self) -> Result<(), RouterFailure> {
        let max = self.info.limits.max_instances;
        let Ok(_all) = self
            .permits
            .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
            .await
        else {
            return Ok(());
        };
        while self.idle_instances() < max {
            let instance = self.fresh_instance().await?;
            self.return_instance(instance);
        }
        Ok(())
    }

    /// A fresh instance for a call or the pool; its failure counts against
    /// the router like a failed call.
    async fn fresh_instance(&self) -> Result<GuestInstance, RouterFailure> {
        self.new_instance().await.map_err(|e| {
            self.failure(match e {
                InstanceError::Failed(failure) => failure,
                InstanceError::ConfigRefused(message) => Failure {
                    kind: FailureKind::Trap,
                    message: format!("a fresh instance refused its configuration: {message}"),
                    instance_lost: true,
                },
                InstanceError::WrongType(message) => Failure {
                    kind: FailureKind::Trap,
                    message,
                    instance_lost: true,
                },
            })
        })
    }

    /// Makes a fresh instance and drops it: what a call after a trap pays.
    pub(crate) async fn make_fresh_instance(&self) -> bool {
        self.new_instance().await.is_ok()
    }

    async fn new_instance(&self) -> Result<GuestInstance, InstanceError> {
        let mut made = GuestInstance::new(
            &self.engine,
            &self.component,
            &self.info.limits,
            &self.config_json,
        )
        .await;
        if let Ok(instance) = &mut made {
            // Sends during parse-config have no call to belong to: dropped.
            let _ = self.pass_on(instance.take_effects());
        }
        made
    }

    /// Logs what the guest logged and returns the users of its
    /// `send-local-online-presence-to` calls, checked.
    fn pass_on(&self, effects: CallEffects) -> Result<Vec<String>, String> {
        let name = self.name();
        for (level, line) in &effects.logs {
            self.module_api.guest_log(name, *level, line);
        }
        let limits = &self.info.limits;
        if effects.dropped_logs > 0 {
            self.module_api.router_warning(
                name,
                &format!(
                    "{} log line(s) dropped: over limits.max_log_lines = {} per call",
                    effects.dropped_logs, limits.max_log_lines
                ),
            );
        }
        if effects.dropped_sends > 0 {
            self.module_api.router_warning(
                name,
                &format!(
                    "{} send-local-online-presence-to call(s) dropped: over limits.max_send_calls = {} per call",
                    effects.dropped_sends, limits.max_send_calls
                ),
            );
        }
        answer::check_sends(&effects.sends, limits.max_answer_entries)?;
        Ok(effects.sends.into_iter().flatten().collect())
    }

    /// Attributes a failure to this router, reports it, and suspends the
    /// router if it has failed too often in a row.
    fn failure(&self, failure: Failure) -> RouterFailure {
        let policy = &self.info.failure_policy;
        let mut health = self.lock_health();
        health.consecutive_failures = health.consecutive_failures.saturating_add(1);
        health.last_failure = Some((failure.kind, failure.message.clone()));
        let mut suspension = None;
        if policy.suspend_after > 0 && health.consecutive_failures >= policy.suspend_after {
            health.suspensions = health.suspensions.saturating_add(1);
            let backoff = policy.backoff_for(health.suspensions);
            health.suspended_until = Some(Instant::now() + backoff);
            suspension = Some(suspension_for(health.consecutive_failures, backoff));
        }
        drop(health);
        let failure = RouterFailure {
            router: self.info.name.clone(),
            kind: failure.kind,
            message: failure.message,
            suspension,
        };
        self.module_api.router_skipped(&failure);
        if let Some(suspension) = suspension {
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

    /// Skips the call while the router is suspended; the report says why and
    /// for how much longer. (The suspension itself was logged once.)
    fn check_not_suspended(&self) -> Result<(), RouterFailure> {
        let health = self.lock_health();
        let Some(until) = health.suspended_until else {
            return Ok(());
        };
        let now = Instant::now();
        if now >= until {
            // The trial call: `failure` or `succeeded` decides what next.
            return Ok(());
        }
        let (kind, last) = health
            .last_failure
            .clone()
            .unwrap_or((FailureKind::Trap, String::new()));
        Err(RouterFailure {
            router: self.info.name.clone(),
            kind,
            message: format!(
                "suspended after {} failures in a row (the last: {last})",
                health.consecutive_failures
            ),
            suspension: Some(suspension_for(health.consecutive_failures, until - now)),
        })
    }

    fn succeeded(&self) {
        let mut health = self.lock_health();
        let was_suspended = health.suspended_until.is_some();
        *health = Health::default();
        drop(health);
        if was_suspended {
            self.module_api.router_resumed(&self.info.name);
        }
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn return_instance(&self, instance: GuestInstance) {
        self.lock_idle().push(instance);
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<GuestInstance>> {
        // The pool holds no invariant a panic elsewhere could break.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn suspension_for(consecutive_failures: u32, retry_in: std::time::Duration) -> Suspension {
    Suspension {
        consecutive_failures,
        retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
    }
}

/// Components built with a language runtime inside are tens of MiB; a file
/// far beyond that is a mistake (or `/dev/zero`), not a router.
const MAX_COMPONENT_BYTES: u64 = 512 * 1024 * 1024;

async fn read_component(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let size = tokio::fs::metadata(path).await?.len();
    if size > MAX_COMPONENT_BYTES {
        return Err(std::io::Error::other(format!(
            "{size} bytes is more than the {} a component may have",
            format_bytes(MAX_COMPONENT_BYTES)
        )));
    }
    tokio::fs::read(path).await
}
