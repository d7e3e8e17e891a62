//! The routers of one configuration, called together the way Synapse calls
//! its presence routers, and their answers merged.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use presence_router_model::{
    CallStats, FailureKind, InterestedUsers, Routed, RouterFailure, RouterSetConfig, TrustedKey,
    UserPresenceState, UsersForStates,
};

use presence_router_model::text::escape_control;

use crate::cache::CacheSetting;
use crate::call::{
    CheckedAnswer, GetInterestedUsers, GetUsersForStates, RouterAnswer, RouterCall, RouterOutcome,
};
use crate::canary::{Canary, ShadowJob, ShadowMode, ShadowModuleApi};
use crate::compiler::Compiler;
use crate::component_file::read_component;
use crate::error::LoadError;
use crate::guest::{CheckedInterest, CheckedRoutes, FuelProfiler, GuestEngine, InstancePool};
use crate::module_api::ModuleApi;
use crate::router::{Router, RouterInfo, component_digest};
use crate::signature::TrustedKeys;
use crate::slice::{Part, RouterPart, Slice, Unfinished};
use crate::stats::{Callback, RouterMetrics, RouterStats};
use presence_router_model::CanaryStats;

/// How a router set is loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Where compiled components are kept (default: the user's cache
    /// directory).
    pub cache: CacheSetting,
    /// Compile on the calling thread instead of wasmtime's pool of compiler
    /// threads. For a process forked after an earlier load (a homeserver
    /// that daemonizes once its configuration is checked): the pool's
    /// threads did not survive the fork, and work handed to them would
    /// never finish.
    pub compile_on_calling_thread: bool,
    /// Where routers' canaries make their shadow calls.
    pub shadow: ShadowMode,
    /// Sample every instance's stacks by fuel into this profiler
    /// (`presence-router profile`); calls run slower, never differently.
    pub profiler: Option<FuelProfiler>,
}

/// Loaded presence routers, in configuration order.
///
/// Cheap to share: wrap it in an `Arc` and call it from as many tasks as you
/// like; each router keeps a pool of warm instances, so concurrent calls run
/// side by side up to `limits.max_instances` per router.
///
/// A guest call runs to its end on the thread that polls it, without
/// yielding (its time budget is that thread's CPU time, see
/// SECURITY.md, "Why a time budget"): a call holds its executor thread for as long as its
/// routers compute, at most their `timeout`s. On an executor shared with
/// latency-sensitive work, call from `spawn_blocking` or a runtime of its
/// own.
pub struct RouterSet {
    /// Shared with the next version of the set for the routers a reload
    /// kept.
    routers: Vec<Arc<Router>>,
    /// One per router, in the same order.
    canaries: Vec<CanarySlot>,
    module_api: Arc<dyn ModuleApi>,
}

/// A router's canary, if it has one.
#[derive(Clone)]
pub(crate) enum CanarySlot {
    None,
    /// On trial (or decided, and waiting for the set to apply it).
    Trial(Arc<Canary>),
    /// Applied: the decision stays with the router, so that reloading the
    /// configuration that still names the canary neither tries it again
    /// nor undoes a promotion.
    Decided(Arc<DecidedCanary>),
}

impl CanarySlot {
    /// Whether this is the very slot `other` is (none and none alike).
    fn is_same_slot(&self, other: Option<&CanarySlot>) -> bool {
        match (self, other) {
            (CanarySlot::None, None | Some(CanarySlot::None)) => true,
            (CanarySlot::Trial(a), Some(CanarySlot::Trial(b))) => Arc::ptr_eq(a, b),
            (CanarySlot::Decided(a), Some(CanarySlot::Decided(b))) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// A canary whose decision was applied.
pub(crate) struct DecidedCanary {
    pub config: presence_router_model::CanaryConfig,
    pub digest: [u8; 32],
    pub stats: CanaryStats,
    /// Its recording, kept open for a later canary recording to the same
    /// file (a file is locked by one recorder).
    pub recorder: Option<Arc<crate::recording::Recorder>>,
}

impl DecidedCanary {
    /// Whether `config`, whose file now has `digest`, names this very
    /// version: the same component bytes, configuration, limits and
    /// signature requirement (the criteria of a decided trial no longer
    /// matter: editing them does not undo a promotion).
    fn is_same(&self, config: &presence_router_model::CanaryConfig, digest: &[u8; 32]) -> bool {
        let (old, new) = (&self.config.router, &config.router);
        old.name == new.name
            && old.component == new.component
            && old.config_json == new.config_json
            && old.limits == new.limits
            && old.signed_by == new.signed_by
            && self.digest == *digest
    }

    fn promoted(&self) -> bool {
        matches!(
            self.stats.decision,
            Some((presence_router_model::CanaryDecision::Promoted, _))
        )
    }
}

/// What a reload did to each router, by name (from
/// [`crate::LiveRouterSet::reload`], and in a [`Reloaded`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Routers loaded anew: their component file or configuration changed.
    pub reloaded: Vec<String>,
    /// Routers taken over as they were (warm instances, health, figures).
    pub kept: Vec<String>,
    /// Routers new to the configuration, and those no longer in it.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Routers taken out although their file and configuration did not
    /// change, because their signature no longer verifies with the trusted
    /// keys as they are now (a key file replaced: the key revoked), with
    /// why. Every other router of the reload is swapped in as usual.
    pub revoked: Vec<(String, String)>,
    /// Routers whose canary started, changed or ended (with the router
    /// itself reloaded or kept).
    pub canaries: Vec<String>,
    /// Routers whose new canary could not be loaded, with why: the router
    /// itself is reloaded or kept as usual, with no canary (one bad canary
    /// fails no reload).
    pub canaries_refused: Vec<(String, String)>,
}

impl ReloadReport {
    /// Whether the new version differs from the old in any router.
    pub fn changed(&self) -> bool {
        !(self.reloaded.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.revoked.is_empty()
            && self.canaries.is_empty())
    }
}

/// The next version of a router set, from [`RouterSet::reload`], with what
/// the reload did.
pub struct Reloaded {
    pub set: RouterSet,
    pub report: ReloadReport,
}

impl Reloaded {
    /// Whether the new version differs from the old in any router.
    pub fn changed(&self) -> bool {
        self.report.changed()
    }
}

impl RouterSet {
    /// Loads the routers of a configuration file.
    pub async fn load_file(
        path: impl AsRef<Path>,
        module_api: Arc<dyn ModuleApi>,
    ) -> Result<Self, LoadError> {
        let config = RouterSetConfig::from_file(path)?;
        Self::load(&config, module_api).await
    }

    /// Compiles every router, checks it against the presence-router world and
    /// runs its `parse-config`. Fails if any router fails, naming it.
    pub async fn load(
        config: &RouterSetConfig,
        module_api: Arc<dyn ModuleApi>,
    ) -> Result<Self, LoadError> {
        Self::load_with(config, module_api, &LoadOptions::default()).await
    }

    /// Like [`RouterSet::load`], with where compiled components are cached.
    pub async fn load_with(
        config: &RouterSetConfig,
        module_api: Arc<dyn ModuleApi>,
        options: &LoadOptions,
    ) -> Result<Self, LoadError> {
        let trusted_keys = read_trusted_keys(&config.trusted_keys, &config.source).await?;
        let compiler = compiler_for(config.routers.iter(), options)?;
        let mut routers = Vec::with_capacity(config.routers.len());
        let mut canaries = Vec::with_capacity(config.routers.len());
        for router in &config.routers {
            routers.push(Arc::new(
                Router::load(
                    compiler.clone(),
                    module_api.clone(),
                    router,
                    &config.source,
                    &trusted_keys,
                    None,
                )
                .await?,
            ));
            canaries.push(load_canary(router, config, &trusted_keys, options, None).await?);
        }
        Ok(RouterSet {
            routers,
            canaries,
            module_api,
        })
    }

    /// Loads `config` as the next version of this set, leaving this one
    /// untouched (calls keep running on it): a router whose component file
    /// holds the same bytes and whose configuration is the same is taken
    /// over as it is (its warm instances, health and figures); the others
    /// are compiled, checked and started (`parse-config`) as at a first
    /// load, and go on counting in the figures of the router of the same
    /// name. Fails like [`RouterSet::load`], naming the router, if any of
    /// them fails: then nothing changed, and that router's
    /// `failed_reloads` counts one.
    ///
    /// Swap the result in with [`crate::LiveRouterSet`], or hold it yourself.
    pub async fn reload(
        &self,
        config: &RouterSetConfig,
        options: &LoadOptions,
    ) -> Result<Reloaded, LoadError> {
        let outcome = self.reload_inner(config, options).await;
        if let Err(error) = &outcome
            && let Some(router) = error
                .router()
                .and_then(|name| self.routers.iter().find(|r| r.name() == name))
        {
            count_failed_reload(router.metrics(), error);
        }
        outcome
    }

    async fn reload_inner(
        &self,
        config: &RouterSetConfig,
        options: &LoadOptions,
    ) -> Result<Reloaded, LoadError> {
        // The keys are read again: one may have been replaced or revoked.
        let trusted_keys = read_trusted_keys(&config.trusted_keys, &config.source).await?;
        // Which routers changed: their file is read and hashed (compiling is
        // what costs; reading is not). One kept as it is still has its
        // signature checked against the keys as they are now: a router whose
        // key was replaced (revoked) is not kept, and not loaded again.
        let mut previous = Vec::with_capacity(config.routers.len());
        let mut revoked = Vec::new();
        for router in &config.routers {
            let old = self.routers.iter().find(|r| r.name() == router.name);
            // A router whose canary was promoted serves as that canary
            // while the configuration still names it.
            let promoted = match (old, &router.canary) {
                (Some(_), Some(canary)) => self
                    .promoted_canary(&router.name, canary)
                    .await
                    .map(|bytes| (&canary.router, bytes)),
                _ => None,
            };
            let before = match old {
                None => Previous::Load,
                Some(old) => {
                    // What serves: the promoted canary, or the configured
                    // version if its file and configuration are the same.
                    let kept = match promoted {
                        Some((canary, bytes)) => Some((canary, bytes)),
                        None => match read_component(&router.component).await {
                            Ok(bytes) if old.is_same(router, &component_digest(&bytes)) => {
                                Some((router, bytes))
                            }
                            // Reported by the load below, naming the router.
                            Ok(_) | Err(_) => None,
                        },
                    };
                    match kept {
                        None => Previous::Load,
                        Some((version, bytes)) => {
                            match check_signature(version, &config.source, &trusted_keys, bytes)
                                .await
                            {
                                Ok(()) => Previous::Keep(old.clone()),
                                Err(LoadError::Signature { refusal, .. }) => {
                                    old.metrics().signature_refused(refusal.reason());
                                    revoked.push((
                                        router.name.clone(),
                                        format!(
                                            "{}: {}",
                                            escape_control(
                                                &version.component.display().to_string()
                                            ),
                                            refusal
                                        ),
                                    ));
                                    Previous::Revoked
                                }
                                Err(other) => return Err(other),
                            }
                        }
                    }
                }
            };
            previous.push(before);
        }
        let to_load: Vec<_> = config
            .routers
            .iter()
            .zip(&previous)
            .filter(|(_, before)| matches!(before, Previous::Load))
            .map(|(router, _)| router)
            .collect();
        // The new routers get an engine of their own, sized for them (made
        // for the first of them): the old version's instances hold their
        // slots until its last call ends.
        let mut compiler: Option<Arc<Compiler>> = None;
        let mut set = RouterSet {
            routers: Vec::with_capacity(config.routers.len()),
            canaries: Vec::with_capacity(config.routers.len()),
            module_api: self.module_api.clone(),
        };
        let mut report = ReloadReport {
            removed: self
                .routers
                .iter()
                .map(|r| r.name().to_owned())
                .filter(|name| !config.routers.iter().any(|r| r.name == *name))
                .collect(),
            revoked,
            ..ReloadReport::default()
        };
        for (router, before) in config.routers.iter().zip(previous) {
            let running_canary = self
                .routers
                .iter()
                .position(|r| r.name() == router.name)
                .map(|i| self.canaries[i].clone());
            match before {
                Previous::Keep(kept) => {
                    report.kept.push(router.name.clone());
                    set.routers.push(kept);
                    set.canaries.push(
                        next_canary(router, config, &trusted_keys, options, running_canary)
                            .await
                            .reported_in(&mut report, &router.name),
                    );
                    continue;
                }
                Previous::Revoked => continue,
                Previous::Load => {}
            }
            let compiler = match compiler.clone() {
                Some(compiler) => compiler,
                None => {
                    let made = compiler_for(to_load.iter().copied(), options)?;
                    compiler = Some(made.clone());
                    made
                }
            };
            let old = self.routers.iter().find(|r| r.name() == router.name);
            let loaded = Router::load(
                compiler,
                self.module_api.clone(),
                router,
                &config.source,
                &trusted_keys,
                old.map(|old| old.metrics().clone()),
            )
            .await?;
            match old {
                Some(_) => report.reloaded.push(router.name.clone()),
                None => report.added.push(router.name.clone()),
            }
            set.routers.push(Arc::new(loaded));
            // A new live version starts its canary's trial again, unless the
            // canary is the same and was decided.
            let running_canary =
                running_canary.filter(|slot| matches!(slot, CanarySlot::Decided(_)));
            set.canaries.push(
                next_canary(router, config, &trusted_keys, options, running_canary)
                    .await
                    .reported_in(&mut report, &router.name),
            );
        }
        // Counted once the whole new version loaded: a reload that fails on
        // a later router reloaded none.
        for router in &set.routers {
            if report.reloaded.iter().any(|name| name == router.name()) {
                router.metrics().reloaded();
            }
        }
        Ok(Reloaded { set, report })
    }

    /// This set with one router loaded anew: the router of the same name is
    /// replaced (it goes on in that router's figures), or the router is
    /// added last. The other routers are shared as they are. This set is
    /// untouched; on an error, the replaced router's `failed_reloads`
    /// counts one.
    pub async fn with_router(
        &self,
        router: &presence_router_model::RouterConfig,
        source: &Path,
        trusted_keys: &[TrustedKey],
        options: &LoadOptions,
    ) -> Result<RouterSet, LoadError> {
        self.with_router_of(router, source, trusted_keys, options, None)
            .await
    }

    /// [`RouterSet::with_router`], refused if the component file does not
    /// hold the bytes of `digest` (a canary's file changed since its trial).
    pub(crate) async fn with_router_of(
        &self,
        router: &presence_router_model::RouterConfig,
        source: &Path,
        trusted_keys: &[TrustedKey],
        options: &LoadOptions,
        digest: Option<&[u8; 32]>,
    ) -> Result<RouterSet, LoadError> {
        let old = self.routers.iter().position(|r| r.name() == router.name);
        let metrics = old.map(|i| self.routers[i].metrics().clone());
        let loaded = match (
            compiler_for(std::iter::once(router), options),
            read_trusted_keys(trusted_keys, source).await,
        ) {
            (Ok(compiler), Ok(keys)) => {
                Router::load(
                    compiler,
                    self.module_api.clone(),
                    router,
                    source,
                    &keys,
                    metrics.clone(),
                )
                .await
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        let loaded = loaded.and_then(|loaded| match digest {
            Some(digest) if loaded.digest() != digest => Err(LoadError::Component {
                at: crate::error::RouterAt {
                    file: source.to_owned(),
                    key: format!("{}.component", router.key),
                    router: router.name.clone(),
                },
                path: router.component.clone(),
                message: "the file changed since the canary's trial: the bytes tried are not \
                          there any more"
                    .to_owned(),
            }),
            _ => Ok(loaded),
        });
        let loaded = match loaded {
            Ok(loaded) => Arc::new(loaded),
            Err(e) => {
                if let Some(metrics) = &metrics {
                    count_failed_reload(metrics, &e);
                }
                return Err(e);
            }
        };
        let canary = match read_trusted_keys(trusted_keys, source).await {
            Ok(keys) => {
                let config = RouterSetConfig {
                    source: source.to_owned(),
                    routers: Vec::new(),
                    trusted_keys: trusted_keys.to_vec(),
                };
                load_canary(router, &config, &keys, options, None).await
            }
            Err(e) => Err(e),
        };
        let canary = match canary {
            Ok(canary) => canary,
            Err(e) => {
                if let Some(metrics) = &metrics {
                    count_failed_reload(metrics, &e);
                }
                return Err(e);
            }
        };
        let mut routers = self.routers.clone();
        let mut canaries = self.canaries.clone();
        match old {
            Some(i) => {
                routers[i].metrics().reloaded();
                routers[i] = loaded;
                canaries[i] = canary;
            }
            None => {
                routers.push(loaded);
                canaries.push(canary);
            }
        }
        Ok(RouterSet {
            routers,
            canaries,
            module_api: self.module_api.clone(),
        })
    }

    /// Whether the running router `name` is the promoted `canary` (the
    /// same canary, its file unchanged).
    async fn promoted_canary(
        &self,
        name: &str,
        canary: &presence_router_model::CanaryConfig,
    ) -> Option<Vec<u8>> {
        let i = self.routers.iter().position(|r| r.name() == name)?;
        let CanarySlot::Decided(decided) = &self.canaries[i] else {
            return None;
        };
        if !decided.promoted() {
            return None;
        }
        let bytes = read_component(&canary.router.component).await.ok()?;
        decided
            .is_same(canary, &component_digest(&bytes))
            .then_some(bytes)
    }

    /// This set with its decided canaries applied: a promoted one loaded
    /// again, from its file, as the live version of its router (in that
    /// router's figures, as a reload), a rejected one dropped; each
    /// reported once through [`ModuleApi::canary_decided`]. A promoted
    /// canary that can't be loaded again, or whose file changed during the
    /// trial, is rejected instead. `None` if no canary was decided.
    pub(crate) async fn with_decisions_applied(
        &self,
        options: &LoadOptions,
    ) -> Option<(RouterSet, Vec<CanaryStats>)> {
        if !self.canary_decided() {
            return None;
        }
        let mut routers = Vec::with_capacity(self.routers.len());
        let mut canaries = Vec::with_capacity(self.routers.len());
        let mut applied = Vec::new();
        for (router, slot) in self.slots() {
            let CanarySlot::Trial(canary) = slot else {
                routers.push(router.clone());
                canaries.push(slot.clone());
                continue;
            };
            let mut stats = canary.stats();
            let Some((decision, why)) = stats.decision.clone() else {
                routers.push(router.clone());
                canaries.push(slot.clone());
                continue;
            };
            let live = match decision {
                presence_router_model::CanaryDecision::Promoted => {
                    match self.promote(canary, router, options).await {
                        Ok(promoted) => {
                            router.metrics().reloaded();
                            Arc::new(promoted)
                        }
                        Err(why_not) => {
                            stats.decision = Some((
                                presence_router_model::CanaryDecision::Rejected,
                                format!(
                                    "{why}; but it could not be made the live version: {why_not}"
                                ),
                            ));
                            router.clone()
                        }
                    }
                }
                presence_router_model::CanaryDecision::Rejected => router.clone(),
            };
            canary.flush_recording(std::time::Duration::from_secs(1));
            stats.recorded = canary.stats().recorded;
            self.module_api.canary_decided(&stats);
            routers.push(live);
            canaries.push(CanarySlot::Decided(Arc::new(DecidedCanary {
                config: canary.config().clone(),
                digest: *canary.router().digest(),
                stats: stats.clone(),
                recorder: canary.recorder().cloned(),
            })));
            applied.push(stats);
        }
        Some((
            RouterSet {
                routers,
                canaries,
                module_api: self.module_api.clone(),
            },
            applied,
        ))
    }

    /// `canary` loaded again as the live version of `live`, going on in
    /// its figures; refused if its file no longer holds the bytes tried.
    async fn promote(
        &self,
        canary: &Canary,
        live: &Router,
        options: &LoadOptions,
    ) -> Result<Router, String> {
        let keys = read_trusted_keys(&canary.trusted_keys(), canary.source())
            .await
            .map_err(|e| e.to_string())?;
        let config = &canary.config().router;
        let compiler = compiler_for(std::iter::once(config), options).map_err(|e| e.to_string())?;
        let promoted = Router::load(
            compiler,
            self.module_api.clone(),
            config,
            canary.source(),
            &keys,
            Some(live.metrics().clone()),
        )
        .await
        .map_err(|e| e.to_string())?;
        if promoted.digest() != canary.router().digest() {
            return Err(format!(
                "{}: the file changed during the trial",
                escape_control(&config.component.display().to_string())
            ));
        }
        Ok(promoted)
    }

    /// Every canary's trial, or how it ended, in router order.
    pub fn canary_stats(&self) -> Vec<CanaryStats> {
        self.canaries
            .iter()
            .filter_map(|slot| match slot {
                CanarySlot::None => None,
                CanarySlot::Trial(canary) => Some(canary.stats()),
                CanarySlot::Decided(decided) => Some(decided.stats.clone()),
            })
            .collect()
    }

    /// The figures of the canaries on trial, as routers (`<router>.canary`).
    pub fn canary_router_stats(&self) -> Vec<RouterStats> {
        self.canaries
            .iter()
            .filter_map(|slot| match slot {
                CanarySlot::Trial(canary) => {
                    let mut stats = canary.router().stats();
                    stats.router = format!("{}.canary", stats.router);
                    Some(stats)
                }
                _ => None,
            })
            .collect()
    }

    /// Whether a canary was decided and waits for
    /// [`crate::LiveRouterSet::apply_canary_decisions`].
    pub fn canary_decided(&self) -> bool {
        self.canaries
            .iter()
            .any(|slot| matches!(slot, CanarySlot::Trial(canary) if canary.is_decided()))
    }

    /// The operator's decision on router `router`'s canary on trial, to be
    /// applied by [`crate::LiveRouterSet::apply_canary_decisions`]; false
    /// if it has none on trial.
    pub fn decide_canary(
        &self,
        router: &str,
        decision: presence_router_model::CanaryDecision,
    ) -> bool {
        let Some(i) = self.routers.iter().position(|r| r.name() == router) else {
            return false;
        };
        match &self.canaries[i] {
            CanarySlot::Trial(canary) if !canary.is_decided() => {
                canary.decide_now(decision, "the operator's decision".to_owned());
                true
            }
            _ => false,
        }
    }

    /// Waits, at most `timeout` each, for the canaries' divergent requests
    /// recorded so far to be written; whether they are.
    pub fn flush_canary_recordings(&self, timeout: std::time::Duration) -> bool {
        self.canaries.iter().all(|slot| match slot {
            CanarySlot::Trial(canary) => canary.flush_recording(timeout),
            _ => true,
        })
    }

    /// The routers and their canaries (for the set that applies decisions).
    pub(crate) fn slots(&self) -> impl Iterator<Item = (&Arc<Router>, &CanarySlot)> {
        self.routers.iter().zip(&self.canaries)
    }

    /// Marks the routers of this set that `next` does not share as retired:
    /// their calls still running finish, but no longer set the figures of
    /// the router's current version (its instance gauges).
    pub(crate) fn retire_replaced_by(&self, next: &RouterSet) {
        for router in &self.routers {
            if !next.routers.iter().any(|r| Arc::ptr_eq(r, router)) {
                router.retire();
            }
        }
    }

    /// What each router's calls came to so far, in order.
    pub fn stats(&self) -> Vec<RouterStats> {
        self.routers.iter().map(|r| r.stats()).collect()
    }

    /// The loaded routers, in order.
    pub fn routers(&self) -> impl ExactSizeIterator<Item = &RouterInfo> {
        self.routers.iter().map(|r| r.info())
    }

    /// Makes a fresh instance of router `index` (instantiation and
    /// `parse-config`) and drops it; for the benchmarks, which measure what a
    /// call after a trap pays. False if it failed or there is no such router.
    #[doc(hidden)]
    pub async fn make_fresh_instance(&self, index: usize) -> bool {
        self.make_fresh_instance_blocking(index)
    }

    /// [`RouterSet::make_fresh_instance`] on the calling thread.
    #[doc(hidden)]
    pub fn make_fresh_instance_blocking(&self, index: usize) -> bool {
        self.routers
            .get(index)
            .is_some_and(|router| router.make_fresh_instance())
    }

    /// Makes every router's pool of warm instances full
    /// (`limits.max_instances` each) now, so that the first concurrent calls
    /// don't pay for instantiation. A router whose fresh instance fails is
    /// reported, like a failed call, and the others are still warmed.
    pub async fn warm_up(&self) -> Vec<RouterFailure> {
        self.warm_up_blocking()
    }

    /// [`RouterSet::warm_up`] on the calling thread.
    pub fn warm_up_blocking(&self) -> Vec<RouterFailure> {
        self.routers
            .iter()
            .filter_map(|router| router.warm_up().err())
            .collect()
    }

    /// How many warm instances the routers hold between calls.
    pub fn warm_instances(&self) -> usize {
        self.routers.iter().map(|r| r.idle_instances()).sum()
    }

    /// Linear memory held by all idle instances, in bytes.
    pub fn idle_memory_bytes(&self) -> usize {
        self.routers.iter().map(|r| r.idle_memory_bytes()).sum()
    }

    /// Which extra users should receive which states of `states`: every
    /// router is given the whole batch (in one call), and the answers are
    /// unioned per user. A router that fails is skipped.
    ///
    /// The call runs on the thread that polls it, to its end, without
    /// yielding (see [`RouterSet`]); it is
    /// [`RouterSet::get_users_for_states_blocking`] in an `async fn`.
    pub async fn get_users_for_states(
        &self,
        states: &[UserPresenceState],
    ) -> Routed<UsersForStates> {
        self.get_users_for_states_blocking(states)
    }

    /// [`RouterSet::get_users_for_states`] on the calling thread. A router
    /// never waits for anything: this computes, for at most the routers'
    /// `timeout`s, and never blocks on I/O.
    pub fn get_users_for_states_blocking(
        &self,
        states: &[UserPresenceState],
    ) -> Routed<UsersForStates> {
        self.call_whole(&GetUsersForStates(states))
    }

    /// Tries [`RouterSet::get_users_for_states`] within `slice` per router
    /// (see [`Slice`]): the answer, or the call as far as it got, for
    /// [`RouterSet::finish_get_users_for_states`] to complete. Every router
    /// is tried, whatever the routers before it did.
    pub fn get_users_for_states_in_slice(
        &self,
        states: &[UserPresenceState],
        slice: &Slice,
    ) -> Result<Routed<UsersForStates>, Unfinished<CheckedRoutes>> {
        self.get_users_for_states_in_slice_where(states, slice, |_| true)
    }

    /// [`RouterSet::get_users_for_states_in_slice`], trying only the
    /// routers (by position) that `try_router` allows: the others are left
    /// pending, not run (unless suspended: skipping one is done here).
    pub fn get_users_for_states_in_slice_where(
        &self,
        states: &[UserPresenceState],
        slice: &Slice,
        try_router: impl Fn(usize) -> bool,
    ) -> Result<Routed<UsersForStates>, Unfinished<CheckedRoutes>> {
        self.call_in_slice(&GetUsersForStates(states), slice, try_router)
    }

    /// Completes a call begun by [`RouterSet::get_users_for_states_in_slice`]
    /// (on the same `states`), running its pending routers in order with
    /// their full limits.
    pub fn finish_get_users_for_states(
        &self,
        states: &[UserPresenceState],
        done: Unfinished<CheckedRoutes>,
    ) -> Routed<UsersForStates> {
        self.finish(&GetUsersForStates(states), done)
    }

    /// Runs router `router` (by position) on `states` with its full
    /// limits: its part of a call, for [`Unfinished::complete`].
    pub fn call_router_for_states(
        &self,
        router: usize,
        states: &[UserPresenceState],
    ) -> RouterPart<CheckedRoutes> {
        self.call_router(router, &GetUsersForStates(states))
    }

    /// Whose presence `user_id` should additionally see. Routers are asked in
    /// order and their answers unioned; the first that answers "all users"
    /// decides, and the routers after it are not called.
    ///
    /// Like [`RouterSet::get_users_for_states`], it runs to its end on the
    /// thread that polls it.
    pub async fn get_interested_users(&self, user_id: &str) -> Routed<InterestedUsers> {
        self.get_interested_users_blocking(user_id)
    }

    /// [`RouterSet::get_interested_users`] on the calling thread.
    pub fn get_interested_users_blocking(&self, user_id: &str) -> Routed<InterestedUsers> {
        self.call_whole(&GetInterestedUsers(user_id))
    }

    /// Tries [`RouterSet::get_interested_users`] within `slice` per router.
    /// A router that needs more than its slice doesn't stop the routers
    /// after it from being tried; should it answer "all users" in the end,
    /// their answers and sends are left out, as if they had not been
    /// called.
    pub fn get_interested_users_in_slice(
        &self,
        user_id: &str,
        slice: &Slice,
    ) -> Result<Routed<InterestedUsers>, Unfinished<CheckedInterest>> {
        self.get_interested_users_in_slice_where(user_id, slice, |_| true)
    }

    /// [`RouterSet::get_interested_users_in_slice`], trying only the
    /// routers that `try_router` allows (as
    /// [`RouterSet::get_users_for_states_in_slice_where`]).
    pub fn get_interested_users_in_slice_where(
        &self,
        user_id: &str,
        slice: &Slice,
        try_router: impl Fn(usize) -> bool,
    ) -> Result<Routed<InterestedUsers>, Unfinished<CheckedInterest>> {
        self.call_in_slice(&GetInterestedUsers(user_id), slice, try_router)
    }

    /// Completes a call begun by [`RouterSet::get_interested_users_in_slice`]
    /// (for the same user), with the routers' full limits.
    pub fn finish_get_interested_users(
        &self,
        user_id: &str,
        done: Unfinished<CheckedInterest>,
    ) -> Routed<InterestedUsers> {
        self.finish(&GetInterestedUsers(user_id), done)
    }

    /// Runs router `router` (by position) for `user_id` with its full
    /// limits: its part of a call, for [`Unfinished::complete`].
    pub fn call_router_for_interest(
        &self,
        router: usize,
        user_id: &str,
    ) -> RouterPart<CheckedInterest> {
        self.call_router(router, &GetInterestedUsers(user_id))
    }

    /// The routers' number.
    pub fn len(&self) -> usize {
        self.routers.len()
    }

    /// Whether the set has no router.
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty()
    }

    /// Router `router`'s part of a call, failed without running it (the
    /// embedder could not run it in time: it waited behind its own calls,
    /// or used more than its share of the embedder's threads): counted
    /// and reported like any failure, and by the failure policy.
    pub fn fail_router<T>(
        &self,
        router: usize,
        callback: Callback,
        kind: FailureKind,
        message: String,
    ) -> RouterPart<T> {
        RouterPart(RouterOutcome::Failed(match self.routers.get(router) {
            Some(r) => r.fail_unrun(callback, kind, message),
            None => no_such_router(router),
        }))
    }

    /// `call` made in one go: every router in order, with its full limits.
    fn call_whole<C: RouterCall>(&self, call: &C) -> Routed<C::Merged> {
        self.finish(call, Unfinished::not_started())
    }

    /// Tries `call` on every router (those `try_router` allows, and the
    /// suspended ones, which are skipped) within `slice`: the answer, or the
    /// call as far as it got. The routers after one whose answer decides
    /// the call are not called.
    fn call_in_slice<C: RouterCall>(
        &self,
        call: &C,
        slice: &Slice,
        try_router: impl Fn(usize) -> bool,
    ) -> Result<Routed<C::Merged>, Unfinished<C::Answer>> {
        let mut done = Unfinished::in_slice(self.routers.len());
        for (i, router) in self.routers.iter().enumerate() {
            if done.decided_before(i) {
                done.not_called(i);
                continue;
            }
            // A suspended router is skipped wherever it is asked: asking
            // it here costs nothing and sends no part elsewhere.
            let outcome = if try_router(i) || router.suspended_now() {
                router.call(call, Some(slice))
            } else {
                RouterOutcome::SliceUsedUp { ran: false }
            };
            done.record(i, outcome);
        }
        if !done.has_pending(self.routers.len()) {
            Ok(self.merge(call, done))
        } else {
            Err(done)
        }
    }

    /// Completes `done`, running its pending routers in order with their
    /// full limits, up to a router whose answer decides the call.
    fn finish<C: RouterCall>(
        &self,
        call: &C,
        mut done: Unfinished<C::Answer>,
    ) -> Routed<C::Merged> {
        for i in done.pending(self.routers.len()) {
            // In order, so every router before `i` is done by now.
            if done.decided_before(i) {
                break;
            }
            done.record(i, self.routers[i].call(call, None));
        }
        self.merge(call, done)
    }

    /// Router `router`'s part of `call`, made with its full limits.
    fn call_router<C: RouterCall>(&self, router: usize, call: &C) -> RouterPart<C::Answer> {
        RouterPart(match self.routers.get(router) {
            Some(r) => r.call(call, None),
            None => RouterOutcome::Failed(no_such_router(router)),
        })
    }

    /// The answers of the routers that answered, merged; the failures and
    /// sends of the routers whose answers the merge took, reported.
    /// The live routers' answers are copied for the canaries that draw
    /// this call; the copies are handed to them once the call's answer and
    /// sends are.
    fn merge<C: RouterCall>(&self, call: &C, done: Unfinished<C::Answer>) -> Routed<C::Merged> {
        let mut report = Report::default();
        let mut shadow = Shadow::default();
        // Taken lazily, in order: once a router's answer decides the call,
        // the merge takes no more, and the routers after it are left out
        // of the report too, as if they had not been called.
        let answers = self
            .routers
            .iter()
            .zip(&self.canaries)
            .zip(done.parts)
            .filter_map(|((router, canary), part)| match part {
                Part::Done(answer) => {
                    if let CanarySlot::Trial(canary) = canary {
                        shadow.sample(canary, call, &answer);
                    }
                    report.take(router, answer)
                }
                Part::Pending | Part::NotCalled => None,
            });
        let merged = C::merge(answers);
        let routed = report.finish(merged, self.module_api.as_ref());
        shadow.submit();
        routed
    }
}

fn no_such_router(router: usize) -> RouterFailure {
    RouterFailure {
        router: format!("#{router}"),
        kind: FailureKind::Trap,
        message: format!("the router set has no router {router}"),
        suspension: None,
    }
}

/// What a reload does with a router of the running version.
enum Previous {
    /// Taken over as it is.
    Keep(Arc<Router>),
    /// Taken out: its signature no longer verifies.
    Revoked,
    /// Loaded anew (or for the first time).
    Load,
}

/// A configuration's trusted keys, read (an error names the key and the
/// configuration, `source`).
pub(crate) async fn read_trusted_keys(
    keys: &[TrustedKey],
    source: &Path,
) -> Result<Arc<TrustedKeys>, LoadError> {
    TrustedKeys::read(keys)
        .await
        .map(Arc::new)
        .map_err(|error| LoadError::TrustedKey {
            file: source.to_owned(),
            error,
        })
}

/// A new version of a router that failed to load, in its figures: a failed
/// reload, and why if its signature was refused.
fn count_failed_reload(metrics: &crate::stats::RouterMetrics, error: &LoadError) {
    metrics.reload_failed();
    if let LoadError::Signature { refusal, .. } = error {
        metrics.signature_refused(refusal.reason());
    }
}

/// Checks the signature of a router kept by a reload, off the executor
/// (it hashes the whole file).
async fn check_signature(
    router: &presence_router_model::RouterConfig,
    source: &Path,
    trusted_keys: &Arc<TrustedKeys>,
    bytes: Vec<u8>,
) -> Result<(), LoadError> {
    let Some(required) = router.signed_by.clone() else {
        return Ok(());
    };
    let keys = trusted_keys.clone();
    let checked = tokio::task::spawn_blocking(move || keys.check(&required, &bytes)).await;
    let at = crate::error::RouterAt {
        file: source.to_owned(),
        key: format!("{}.component", router.key),
        router: router.name.clone(),
    };
    match checked {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(refusal)) => Err(LoadError::Signature {
            at,
            path: router.component.clone(),
            refusal: Box::new(refusal),
        }),
        Err(e) => Err(LoadError::Component {
            at,
            path: router.component.clone(),
            message: format!("the signature check did not finish: {e}"),
        }),
    }
}

/// The engine for `routers`, with its compiler and cache: its pooling
/// allocator has a slot for each of their instances (and one for a fresh
/// instance made while a trapped one is dropped), each as large as the
/// largest memory limit.
pub(crate) fn compiler_for<'a>(
    routers: impl Iterator<Item = &'a presence_router_model::RouterConfig> + Clone,
    options: &LoadOptions,
) -> Result<Arc<Compiler>, LoadError> {
    let pool = InstancePool {
        instances: routers
            .clone()
            .map(|r| {
                u32::try_from(r.limits.max_instances)
                    .unwrap_or(u32::MAX)
                    .saturating_add(1)
            })
            .fold(0, u32::saturating_add),
        max_memory_bytes: routers.map(|r| r.limits.memory).max().unwrap_or(0),
    };
    let engine = GuestEngine::new(
        &pool,
        !options.compile_on_calling_thread,
        options.profiler.clone(),
    )
    .map_err(LoadError::Engine)?;
    Ok(Arc::new(Compiler::new(engine, &options.cache)))
}

/// The sampled calls of one live call, for the canaries that drew it.
#[derive(Default)]
struct Shadow {
    jobs: Vec<(Arc<Canary>, ShadowJob)>,
}

impl Shadow {
    /// Copies the call and the live router's `answer` if `canary` draws it.
    fn sample<C: RouterCall>(
        &mut self,
        canary: &Arc<Canary>,
        call: &C,
        answer: &Result<RouterAnswer<C::Answer>, presence_router_model::RouterFailure>,
    ) {
        match answer {
            Ok(answer) => {
                let size = call
                    .input_size()
                    .saturating_add(answer.answer.answer_entries());
                if !canary.draw(C::CALLBACK, size) {
                    return;
                }
                // One copy of the input for every canary of the call.
                let input = match self.jobs.first() {
                    Some((_, job)) => job.input.clone(),
                    None => call.shadow_input(),
                };
                self.jobs.push((
                    canary.clone(),
                    ShadowJob {
                        input,
                        live: C::live_answer(&answer.answer),
                        live_fuel: answer.stats.fuel_used,
                        size,
                    },
                ));
            }
            // Nothing to compare with.
            Err(_) => {
                if canary.draw(C::CALLBACK, 0) {
                    canary.skip();
                }
            }
        }
    }

    fn submit(self) {
        for (canary, job) in self.jobs {
            canary.submit(job);
        }
    }
}

/// What a reload makes of a router's canary: the slot, how it differs from
/// the running one, and why a new canary could not be loaded.
struct NextCanary {
    slot: CanarySlot,
    changed: bool,
    refused: Option<String>,
}

impl NextCanary {
    /// The slot, with what became of it written in `report`.
    fn reported_in(self, report: &mut ReloadReport, router: &str) -> CanarySlot {
        if self.changed {
            report.canaries.push(router.to_owned());
        }
        if let Some(why) = self.refused {
            report.canaries_refused.push((router.to_owned(), why));
        }
        self.slot
    }
}

/// A router's canary at a reload: [`load_canary`], where one that can't be
/// loaded leaves the router without a canary (one bad canary fails no
/// reload).
async fn next_canary(
    router: &presence_router_model::RouterConfig,
    config: &RouterSetConfig,
    trusted_keys: &Arc<TrustedKeys>,
    options: &LoadOptions,
    running: Option<CanarySlot>,
) -> NextCanary {
    let (slot, refused) =
        match load_canary(router, config, trusted_keys, options, running.clone()).await {
            Ok(slot) => (slot, None),
            Err(e) => (CanarySlot::None, Some(e.to_string())),
        };
    NextCanary {
        changed: !slot.is_same_slot(running.as_ref()),
        slot,
        refused,
    }
}

/// Router `router`'s canary, if the configuration gives it one: the
/// running one (`running`) where it is the same, else loaded anew.
async fn load_canary(
    router: &presence_router_model::RouterConfig,
    config: &RouterSetConfig,
    trusted_keys: &Arc<TrustedKeys>,
    options: &LoadOptions,
    running: Option<CanarySlot>,
) -> Result<CanarySlot, LoadError> {
    let Some(canary) = router.canary.as_deref() else {
        return Ok(CanarySlot::None);
    };
    // A recording of the running canary's to the same file goes on being
    // written by the same recorder: the file is locked by one.
    let recorder = match (&running, &canary.record_divergent) {
        (Some(CanarySlot::Trial(running)), Some(record)) => running
            .recorder()
            .filter(|recorder| recorder.path() == record.path)
            .cloned(),
        (Some(CanarySlot::Decided(decided)), Some(record)) => decided
            .recorder
            .as_ref()
            .filter(|recorder| recorder.path() == record.path)
            .cloned(),
        _ => None,
    };
    match running {
        Some(CanarySlot::Trial(running)) => {
            let same = match read_component(&canary.router.component).await {
                Ok(bytes) if running.is_same(canary, &component_digest(&bytes)) => {
                    check_signature(&canary.router, &config.source, trusted_keys, bytes).await?;
                    true
                }
                _ => false,
            };
            if same {
                running.set_trusted_keys(&config.trusted_keys);
                if let Some(decision) = canary.decision {
                    running
                        .decide_now(decision, "the operator's decision (`decision:`)".to_owned());
                }
                return Ok(CanarySlot::Trial(running));
            }
        }
        Some(CanarySlot::Decided(decided)) => {
            if let Ok(bytes) = read_component(&canary.router.component).await
                && decided.is_same(canary, &component_digest(&bytes))
            {
                return Ok(CanarySlot::Decided(decided));
            }
        }
        Some(CanarySlot::None) | None => {}
    }
    load_trial(
        canary,
        &config.source,
        &config.trusted_keys,
        trusted_keys,
        options,
        recorder,
    )
    .await
    .map(CanarySlot::Trial)
}

/// A canary, loaded as a router of its own (`<router>.canary` in the
/// figures, its sends and logs dropped) with its recording.
pub(crate) async fn load_trial(
    canary: &presence_router_model::CanaryConfig,
    source: &Path,
    trusted_key_config: &[TrustedKey],
    trusted_keys: &Arc<TrustedKeys>,
    options: &LoadOptions,
    recorder: Option<Arc<crate::recording::Recorder>>,
) -> Result<Arc<Canary>, LoadError> {
    let name = &canary.router.name;
    let compiler = compiler_for(std::iter::once(&canary.router), options)?;
    let loaded = Router::load(
        compiler,
        Arc::new(ShadowModuleApi),
        &canary.router,
        source,
        trusted_keys,
        Some(Arc::new(RouterMetrics::new(&format!("{name}.canary")))),
    )
    .await?;
    let recorder = match (&canary.record_divergent, recorder) {
        (None, _) => None,
        (Some(_), Some(recorder)) => Some(recorder),
        (Some(record), None) => Some(Arc::new(
            crate::recording::Recorder::new(
                record.path.clone(),
                1.0,
                record.max_bytes,
                record.keep,
            )
            .map_err(|e| LoadError::Recording {
                at: crate::error::RouterAt {
                    file: source.to_owned(),
                    key: format!("{}.record_divergent", canary.router.key),
                    router: name.clone(),
                },
                message: e.to_string(),
            })?,
        )),
    };
    Ok(Arc::new(Canary::new(
        loaded,
        canary.clone(),
        source,
        trusted_key_config,
        options.shadow,
        recorder,
    )))
}

/// Collects failures and sends over the routers of one call.
#[derive(Default)]
struct Report {
    failures: Vec<RouterFailure>,
    /// (router name, users) in configuration order.
    sends: Vec<(String, Vec<String>)>,
    stats: Vec<CallStats>,
}

impl Report {
    /// The answer of a router that succeeded; a failure is recorded.
    fn take<T>(
        &mut self,
        router: &Router,
        answer: Result<RouterAnswer<T>, RouterFailure>,
    ) -> Option<T> {
        match answer {
            Ok(answer) => {
                self.stats.push(answer.stats);
                if !answer.sends.is_empty() {
                    self.sends.push((router.name().to_owned(), answer.sends));
                }
                Some(answer.answer)
            }
            Err(failure) => {
                self.failures.push(failure);
                None
            }
        }
    }

    /// Hands the sends to the embedder, once the whole call is over.
    fn finish<T>(self, answer: T, module_api: &dyn ModuleApi) -> Routed<T> {
        let mut seen = HashSet::new();
        let mut sent_presence_to = Vec::new();
        for (router, users) in &self.sends {
            module_api.send_local_online_presence_to(router, users);
            for user in users {
                if seen.insert(user.as_str()) {
                    sent_presence_to.push(user.clone());
                }
            }
        }
        Routed {
            answer,
            failures: self.failures,
            sent_presence_to,
            stats: self.stats,
        }
    }
}
