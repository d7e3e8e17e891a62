//! A router set that is replaced while calls run: hot reload.
//!
//! Every call takes the version current when it starts ([`LiveRouterSet::current`],
//! one atomic reference count) and finishes on it, however many swaps
//! happen meanwhile; the old version is dropped when its last call ends. A
//! new version is loaded completely (compiled, checked, `parse-config`ured)
//! before it is swapped in, so a version that fails to load never serves a
//! call: the running one goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use presence_router_model::{RouterConfig, RouterSetConfig};

use crate::error::LoadError;
use crate::external_canary::ExternalCanary;
use crate::router_set::{LoadOptions, ReloadReport, Reloaded, RouterSet};
use presence_router_model::CanaryStats;

/// A [`RouterSet`] behind an atomic pointer, replaced by [`LiveRouterSet::reload`]
/// or [`LiveRouterSet::replace`].
pub struct LiveRouterSet {
    current: ArcSwap<RouterSet>,
    /// One reload at a time: two would each build on the version before
    /// both, and the second swap would undo the first.
    reloading: tokio::sync::Mutex<()>,
    reloads: AtomicU64,
    failed_reloads: AtomicU64,
}

impl LiveRouterSet {
    pub fn new(set: RouterSet) -> Self {
        LiveRouterSet {
            current: ArcSwap::from_pointee(set),
            reloading: tokio::sync::Mutex::new(()),
            reloads: AtomicU64::new(0),
            failed_reloads: AtomicU64::new(0),
        }
    }

    /// The version new calls use. Hold it for the whole of a call (and of a
    /// call finished later: an [`crate::Unfinished`] belongs to the set that
    /// began it).
    pub fn current(&self) -> Arc<RouterSet> {
        self.current.load_full()
    }

    /// Puts `set` in service at once; returns the version it replaced
    /// (its calls in flight finish on it).
    pub fn replace(&self, set: RouterSet) -> Arc<RouterSet> {
        let old = self.current.swap(Arc::new(set));
        old.retire_replaced_by(&self.current.load());
        old
    }

    /// Loads `config` as the next version (see [`RouterSet::reload`]: the
    /// routers whose component bytes and configuration are unchanged are
    /// kept as they are) and swaps it in if anything changed. On an error
    /// nothing changes and the running version goes on serving.
    pub async fn reload(
        &self,
        config: &RouterSetConfig,
        options: &LoadOptions,
    ) -> Result<ReloadReport, LoadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let running = self.current();
        let outcome = running.reload(config, options).await;
        self.swap_in(outcome)
    }

    /// Loads one router anew (`router.name` names the one it replaces, or
    /// it is added last) and swaps in the set with it; the other routers
    /// are kept as they are. Its signature, if it needs one, is checked
    /// against `trusted_keys` (the configuration's).
    pub async fn reload_router(
        &self,
        router: &RouterConfig,
        source: &std::path::Path,
        trusted_keys: &[presence_router_model::TrustedKey],
        options: &LoadOptions,
    ) -> Result<ReloadReport, LoadError> {
        self.load_router(router, source, trusted_keys, options, None)
            .await
    }

    /// Makes a promoted [`ExternalCanary`] a router of the set, as
    /// [`LiveRouterSet::reload_router`] does, refused if its file no longer
    /// holds the bytes it was tried with.
    pub async fn promote_external(
        &self,
        canary: &ExternalCanary,
        options: &LoadOptions,
    ) -> Result<ReloadReport, LoadError> {
        self.load_router(
            canary.router_config(),
            canary.source(),
            &canary.trusted_keys(),
            options,
            Some(canary.digest()),
        )
        .await
    }

    async fn load_router(
        &self,
        router: &RouterConfig,
        source: &std::path::Path,
        trusted_keys: &[presence_router_model::TrustedKey],
        options: &LoadOptions,
        digest: Option<&[u8; 32]>,
    ) -> Result<ReloadReport, LoadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let running = self.current();
        let outcome = running
            .with_router_of(router, source, trusted_keys, options, digest)
            .await
            .map(|set| {
                let existed = running.routers().any(|r| r.name == router.name);
                let report = ReloadReport {
                    kept: set
                        .routers()
                        .map(|r| r.name.clone())
                        .filter(|name| *name != router.name)
                        .collect(),
                    reloaded: if existed {
                        vec![router.name.clone()]
                    } else {
                        Vec::new()
                    },
                    added: if existed {
                        Vec::new()
                    } else {
                        vec![router.name.clone()]
                    },
                    ..ReloadReport::default()
                };
                Reloaded { set, report }
            });
        self.swap_in(outcome)
    }

    fn swap_in(&self, outcome: Result<Reloaded, LoadError>) -> Result<ReloadReport, LoadError> {
        match outcome {
            Ok(Reloaded { set, report }) => {
                if report.changed() {
                    let old = self.current.swap(Arc::new(set));
                    old.retire_replaced_by(&self.current.load());
                }
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(report)
            }
            Err(error) => {
                self.failed_reloads.fetch_add(1, Ordering::Relaxed);
                Err(error)
            }
        }
    }

    /// Applies the decisions of the canaries decided since the last call
    /// (see [`RouterSet::canary_decided`]): a promoted canary becomes its
    /// router's live version, a rejected one is dropped, and the new
    /// version is swapped in. Returns what each canary came to; empty if
    /// none was decided. Cheap to call after every call: it is one look
    /// at each canary unless one was decided.
    pub async fn apply_canary_decisions(&self, options: &LoadOptions) -> Vec<CanaryStats> {
        if !self.current().canary_decided() {
            return Vec::new();
        }
        let _one_at_a_time = self.reloading.lock().await;
        let running = self.current();
        match running.with_decisions_applied(options).await {
            Some((set, applied)) => {
                let old = self.current.swap(Arc::new(set));
                old.retire_replaced_by(&self.current.load());
                applied
            }
            None => Vec::new(),
        }
    }

    /// Counts a reload that failed before it could start: the embedder
    /// could not read the new configuration.
    pub fn count_failed_reload(&self) {
        self.failed_reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// Reloads tried since this set was made: `(succeeded, failed)`. A
    /// reload that found nothing changed counts as succeeded.
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads.load(Ordering::Relaxed),
            self.failed_reloads.load(Ordering::Relaxed),
        )
    }
}
