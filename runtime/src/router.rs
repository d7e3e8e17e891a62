//! One configured router: its compiled component, its limits, and a small
//! pool of warm instances so that concurrent calls don't queue on one store.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::Semaphore;

use presence_router_model::{
    CallStats, FailureKind, FailurePolicy, Limits, RouterConfig, RouterFailure, UserPresenceState,
};

use crate::cache::CompileSource;
use crate::component_file::read_component;
use crate::error::LoadError;
use crate::guest::{
    CallEffects, CallStart, CallUsage, CheckedInterest, CheckedRoutes, Failure, GuestEngine,
    GuestInstance, InstanceError, LoadedComponent,
};
use crate::health::{Admission, Health};
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

/// An instance checked out of the pool for one call, with the failure
/// policy's leave to make it.
struct Lease<'a> {
    instance: GuestInstance,
    admission: Admission<'a>,
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
    health: Health,
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
            health: Health::new(config.failure_policy.clone()),
            config_json: config.config_json.clone(),
            component,
            engine,
            module_api,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(config.limits.max_instances),
        };
        match router.new_instance(CallStart::now()).await {
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
        let admission = self.admit()?;
        // The semaphore is never closed, so acquiring only waits.
        let Ok(permit) = self.permits.acquire().await else {
            return Err(self.failure(
                admission,
                Failure {
                    kind: FailureKind::Trap,
                    message: "the router is shutting down".into(),
                    instance_lost: false,
                },
            ));
        };
        // The time budget starts once the call has its slot: waiting for
        // one is not the router's doing. A fresh instance shares the call's
        // budget, so a router can't double its time by trapping.
        let start = CallStart::now();
        let idle = self.lock_idle().pop();
        let instance = match idle {
            Some(mut instance) => {
                instance.begin(start);
                instance
            }
            None => match self.new_instance(start).await {
                Ok(instance) => instance,
                Err(e) => return Err(self.failure(admission, fresh_instance_failure(e))),
            },
        };
        Ok(Lease {
            instance,
            admission,
            _permit: permit,
        })
    }

    /// Leave from the failure policy to call the router now, or the report
    /// of a skipped call.
    fn admit(&self) -> Result<Admission<'_>, RouterFailure> {
        self.health
            .admit(Instant::now())
            .map_err(|skip| skip.into_failure(&self.info.name))
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
        if !lost && lease.instance.reusable() {
            self.return_instance(lease.instance);
        }
        let sends = self.pass_on(effects);
        let (answer, usage) = match result {
            Ok(answered) => answered,
            Err(failure) => return Err(self.failure(lease.admission, failure)),
        };
        self.succeeded(lease.admission);
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
            // Each fresh instance counts like a call for the failure policy.
            let admission = self.admit()?;
            match self.new_instance(CallStart::now()).await {
                Ok(instance) => {
                    self.succeeded(admission);
                    self.return_instance(instance);
                }
                Err(e) => return Err(self.failure(admission, fresh_instance_failure(e))),
            }
        }
        Ok(())
    }

    /// Makes a fresh instance and drops it: what a call after a trap pays.
    pub(crate) async fn make_fresh_instance(&self) -> bool {
        self.new_instance(CallStart::now()).await.is_ok()
    }

    async fn new_instance(&self, start: CallStart) -> Result<GuestInstance, InstanceError> {
        let mut made = GuestInstance::new(
            &self.engine,
            &self.component,
            &self.info.limits,
            &self.config_json,
            start,
        )
        .await;
        if let Ok(instance) = &mut made {
            // Sends during parse-config have no call to belong to: dropped.
            let _ = self.pass_on(instance.take_effects());
        }
        made
    }

    /// Logs what the guest logged and returns the users of its
    /// `send-local-online-presence-to` calls (checked as they came).
    fn pass_on(&self, effects: CallEffects) -> Vec<String> {
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

    fn succeeded(&self, admission: Admission<'_>) {
        if self.health.succeeded(admission) {
            self.module_api.router_resumed(&self.info.name);
        }
    }

    fn return_instance(&self, instance: GuestInstance) {
        self.lock_idle().push(instance);
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<GuestInstance>> {
        // The pool holds no invariant a panic elsewhere could break.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
        },
        InstanceError::WrongType(message) => Failure {
            kind: FailureKind::Trap,
            message,
            instance_lost: true,
        },
    }
}
