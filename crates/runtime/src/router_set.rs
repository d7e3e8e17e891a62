//! The routers of one configuration, called together the way Synapse calls
//! its presence routers, and their answers merged.

use std::collections::btree_map::Entry;
use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use presence_router_model::{
    CallStats, FailureKind, InterestedUsers, Routed, RouterFailure, RouterSetConfig,
    UserPresenceState, UsersForStates,
};

use crate::cache::CacheSetting;
use crate::component_file::read_component;
use crate::error::LoadError;
use crate::guest::{CheckedInterest, CheckedRoutes, GuestEngine, InstancePool, error_text};
use crate::module_api::ModuleApi;
use crate::router::{Router, RouterAnswer, RouterInfo, SliceUsedUp, component_digest};
use crate::slice::{Part, RouterPart, Slice, Unfinished};
use crate::stats::{Callback, RouterStats};

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
}

/// Loaded presence routers, in configuration order.
///
/// Cheap to share: wrap it in an `Arc` and call it from as many tasks as you
/// like; each router keeps a pool of warm instances, so concurrent calls run
/// side by side up to `limits.max_instances` per router.
///
/// A guest call runs to its end on the thread that polls it, without
/// yielding (its time budget is that thread's CPU time, see
/// ARCHITECTURE.md): a call holds its executor thread for as long as its
/// routers compute, at most their `timeout`s. On an executor shared with
/// latency-sensitive work, call from `spawn_blocking` or a runtime of its
/// own.
pub struct RouterSet {
    /// Shared with the next version of the set for the routers a reload
    /// kept.
    routers: Vec<Arc<Router>>,
    module_api: Arc<dyn ModuleApi>,
}

/// The next version of a router set, from [`RouterSet::reload`].
pub struct Reloaded {
    pub set: RouterSet,
    /// Routers loaded anew: their component file or configuration changed.
    pub reloaded: Vec<String>,
    /// Routers taken over as they were (warm instances, health, figures).
    pub kept: Vec<String>,
    /// Routers new to the configuration, and those no longer in it.
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl Reloaded {
    /// Whether the new version differs from the old in any router.
    pub fn changed(&self) -> bool {
        !(self.reloaded.is_empty() && self.added.is_empty() && self.removed.is_empty())
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
        let engine = engine_for(config.routers.iter(), options)?;
        let mut routers = Vec::with_capacity(config.routers.len());
        for router in &config.routers {
            routers.push(Arc::new(
                Router::load(
                    engine.clone(),
                    module_api.clone(),
                    router,
                    &config.source,
                    None,
                )
                .await?,
            ));
        }
        Ok(RouterSet {
            routers,
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
            router.metrics().reload_failed();
        }
        outcome
    }

    async fn reload_inner(
        &self,
        config: &RouterSetConfig,
        options: &LoadOptions,
    ) -> Result<Reloaded, LoadError> {
        // Which routers changed: their file is read and hashed (compiling is
        // what costs; reading is not).
        let mut kept_routers = Vec::with_capacity(config.routers.len());
        for router in &config.routers {
            let old = self.routers.iter().find(|r| r.name() == router.name);
            let same = match old {
                None => None,
                Some(old) => match read_component(&router.component).await {
                    Ok(bytes) => old
                        .is_same(router, &component_digest(&bytes))
                        .then(|| old.clone()),
                    // Reported by the load below, naming the router.
                    Err(_) => None,
                },
            };
            kept_routers.push(same);
        }
        let to_load: Vec<_> = config
            .routers
            .iter()
            .zip(&kept_routers)
            .filter(|(_, kept)| kept.is_none())
            .map(|(router, _)| router)
            .collect();
        // The new routers get an engine of their own, sized for them: the
        // old version's instances hold their slots until its last call ends.
        let engine = if to_load.is_empty() {
            None
        } else {
            Some(engine_for(to_load.iter().copied(), options)?)
        };
        let mut reloaded = Reloaded {
            set: RouterSet {
                routers: Vec::with_capacity(config.routers.len()),
                module_api: self.module_api.clone(),
            },
            reloaded: Vec::new(),
            kept: Vec::new(),
            added: Vec::new(),
            removed: self
                .routers
                .iter()
                .map(|r| r.name().to_owned())
                .filter(|name| !config.routers.iter().any(|r| r.name == *name))
                .collect(),
        };
        for (router, kept) in config.routers.iter().zip(kept_routers) {
            if let Some(kept) = kept {
                reloaded.kept.push(router.name.clone());
                reloaded.set.routers.push(kept);
                continue;
            }
            let engine = engine
                .clone()
                .unwrap_or_else(|| unreachable!("an engine is made when a router is loaded"));
            let old = self.routers.iter().find(|r| r.name() == router.name);
            let loaded = Router::load(
                engine,
                self.module_api.clone(),
                router,
                &config.source,
                old.map(|old| old.metrics().clone()),
            )
            .await?;
            match old {
                Some(_) => reloaded.reloaded.push(router.name.clone()),
                None => reloaded.added.push(router.name.clone()),
            }
            reloaded.set.routers.push(Arc::new(loaded));
        }
        // Counted once the whole new version loaded: a reload that fails on
        // a later router reloaded none.
        for router in &reloaded.set.routers {
            if reloaded.reloaded.iter().any(|name| name == router.name()) {
                router.metrics().reloaded();
            }
        }
        Ok(reloaded)
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
        options: &LoadOptions,
    ) -> Result<RouterSet, LoadError> {
        let old = self.routers.iter().position(|r| r.name() == router.name);
        let metrics = old.map(|i| self.routers[i].metrics().clone());
        let loaded = match engine_for(std::iter::once(router), options) {
            Ok(engine) => {
                Router::load(
                    engine,
                    self.module_api.clone(),
                    router,
                    source,
                    metrics.clone(),
                )
                .await
            }
            Err(e) => Err(e),
        };
        let loaded = match loaded {
            Ok(loaded) => Arc::new(loaded),
            Err(e) => {
                if let Some(metrics) = &metrics {
                    metrics.reload_failed();
                }
                return Err(e);
            }
        };
        let mut routers = self.routers.clone();
        match old {
            Some(i) => {
                routers[i].metrics().reloaded();
                routers[i] = loaded;
            }
            None => routers.push(loaded),
        }
        Ok(RouterSet {
            routers,
            module_api: self.module_api.clone(),
        })
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
        let done = Unfinished::new(self.routers.len());
        self.finish_get_users_for_states(states, done)
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
        let mut done = Unfinished::new(self.routers.len());
        for (i, router) in self.routers.iter().enumerate() {
            // A suspended router is skipped wherever it is asked: asking
            // it here costs nothing and sends no part elsewhere.
            let part = if try_router(i) || router.suspended_now() {
                router.get_users_for_states(states, Some(slice))
            } else {
                Err(SliceUsedUp { ran: false })
            };
            done.parts.push(match part {
                Ok(answer) => Part::Done(answer),
                Err(SliceUsedUp { ran }) => {
                    if ran {
                        done.used_up.push(i);
                    }
                    Part::Pending
                }
            });
        }
        if !done.has_pending(self.routers.len()) {
            Ok(self.merge_routes(done))
        } else {
            Err(done)
        }
    }

    /// Completes a call begun by [`RouterSet::get_users_for_states_in_slice`]
    /// (on the same `states`), running its pending routers in order with
    /// their full limits.
    pub fn finish_get_users_for_states(
        &self,
        states: &[UserPresenceState],
        mut done: Unfinished<CheckedRoutes>,
    ) -> Routed<UsersForStates> {
        for i in done.pending(self.routers.len()) {
            let part = self.call_router_for_states(i, states);
            done.complete(i, part);
        }
        self.merge_routes(done)
    }

    /// Runs router `router` (by position) on `states` with its full
    /// limits: its part of a call, for [`Unfinished::complete`].
    pub fn call_router_for_states(
        &self,
        router: usize,
        states: &[UserPresenceState],
    ) -> RouterPart<CheckedRoutes> {
        self.call_router(router, |r| r.get_users_for_states(states, None))
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
        match self.routers.get(router) {
            Some(r) => RouterPart(Err(r.fail_unrun(callback, kind, message))),
            None => RouterPart(Err(no_such_router(router))),
        }
    }

    fn call_router<T>(
        &self,
        router: usize,
        call: impl FnOnce(&Router) -> crate::router::SliceOutcome<T>,
    ) -> RouterPart<T> {
        match self.routers.get(router).map(|r| call(r)) {
            Some(Ok(answer)) => RouterPart(answer),
            Some(Err(SliceUsedUp { .. })) => {
                unreachable!("a call without a slice can't use one up")
            }
            None => RouterPart(Err(no_such_router(router))),
        }
    }

    fn merge_routes(&self, done: Unfinished<CheckedRoutes>) -> Routed<UsersForStates> {
        // Indices are gathered per user, then sorted and de-duplicated once:
        // a router's list is usually sorted already, which makes this one
        // pass; inserting into sets one by one was a fifth of a large batch.
        let mut merged = UsersForStates::new();
        let mut report = Report::default();
        for (router, part) in self.routers.iter().zip(done.parts) {
            let Part::Done(answer) = part else { continue };
            if let Some(routes) = report.take(router, answer) {
                for (user_id, indices) in routes {
                    match merged.entry(user_id) {
                        Entry::Occupied(mut entry) => entry.get_mut().extend(indices),
                        Entry::Vacant(entry) => {
                            entry.insert(indices);
                        }
                    }
                }
            }
        }
        for indices in merged.values_mut() {
            if !indices.is_sorted() {
                indices.sort_unstable();
            }
            indices.dedup();
        }
        report.finish(merged, self.module_api.as_ref())
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
        let done = Unfinished::new(self.routers.len());
        self.finish_get_interested_users(user_id, done)
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
        let mut done = Unfinished::new(self.routers.len());
        for (i, router) in self.routers.iter().enumerate() {
            if decided(&done.parts) {
                done.parts.push(Part::NotCalled);
                continue;
            }
            let part = if try_router(i) || router.suspended_now() {
                router.get_interested_users(user_id, Some(slice))
            } else {
                Err(SliceUsedUp { ran: false })
            };
            done.parts.push(match part {
                Ok(answer) => Part::Done(answer),
                Err(SliceUsedUp { ran }) => {
                    if ran {
                        done.used_up.push(i);
                    }
                    Part::Pending
                }
            });
        }
        if !done.has_pending(self.routers.len()) {
            Ok(self.merge_interest(done))
        } else {
            Err(done)
        }
    }

    /// Completes a call begun by [`RouterSet::get_interested_users_in_slice`]
    /// (for the same user), with the routers' full limits.
    pub fn finish_get_interested_users(
        &self,
        user_id: &str,
        mut done: Unfinished<CheckedInterest>,
    ) -> Routed<InterestedUsers> {
        for i in done.pending(self.routers.len()) {
            // In order, so every router before `i` is done by now.
            if decided(&done.parts[..i.min(done.parts.len())]) {
                break;
            }
            let part = self.call_router_for_interest(i, user_id);
            done.complete(i, part);
        }
        self.merge_interest(done)
    }

    /// Runs router `router` (by position) for `user_id` with its full
    /// limits: its part of a call, for [`Unfinished::complete`].
    pub fn call_router_for_interest(
        &self,
        router: usize,
        user_id: &str,
    ) -> RouterPart<CheckedInterest> {
        self.call_router(router, |r| r.get_interested_users(user_id, None))
    }

    fn merge_interest(&self, done: Unfinished<CheckedInterest>) -> Routed<InterestedUsers> {
        let mut users = BTreeSet::new();
        let mut report = Report::default();
        let mut all = false;
        for (router, part) in self.routers.iter().zip(done.parts) {
            let Part::Done(answer) = part else { continue };
            match report.take(router, answer) {
                Some(None) => {
                    // The first "all users" decides: whatever the routers
                    // after it answered is left out.
                    all = true;
                    break;
                }
                Some(Some(named)) => users.extend(named),
                None => {}
            }
        }
        let answer = if all {
            InterestedUsers::All
        } else {
            InterestedUsers::Users(users)
        };
        report.finish(answer, self.module_api.as_ref())
    }
}

impl Unfinished<CheckedInterest> {
    /// Marks the pending routers after a router that answered "all users"
    /// as not to be called: their part no longer matters. An embedder
    /// running parts side by side calls it after each
    /// [`Unfinished::complete`].
    pub fn drop_unneeded(&mut self) {
        let Some(first_all) = self
            .parts
            .iter()
            .position(|part| matches!(part, Part::Done(Ok(answer)) if answer.answer.is_none()))
        else {
            return;
        };
        // Only once every router before it is done: one of them may still
        // answer "all users" itself, or be needed for its users.
        if self.parts[..first_all]
            .iter()
            .any(|part| matches!(part, Part::Pending))
        {
            return;
        }
        for i in first_all + 1..self.parts.len() {
            self.not_called(i);
        }
    }
}

/// Whether the parts so far decide an interest call: a router answered
/// "all users", and every router before it is done.
fn decided(parts: &[Part<CheckedInterest>]) -> bool {
    for part in parts {
        match part {
            Part::Pending => return false,
            Part::Done(Ok(answer)) if answer.answer.is_none() => return true,
            _ => {}
        }
    }
    false
}

fn no_such_router(router: usize) -> RouterFailure {
    RouterFailure {
        router: format!("#{router}"),
        kind: FailureKind::Trap,
        message: format!("the router set has no router {router}"),
        suspension: None,
    }
}

/// The engine for `routers`: its pooling allocator has a slot for each of
/// their instances (and one for a fresh instance made while a trapped one
/// is dropped), each as large as the largest memory limit.
fn engine_for<'a>(
    routers: impl Iterator<Item = &'a presence_router_model::RouterConfig> + Clone,
    options: &LoadOptions,
) -> Result<Arc<GuestEngine>, LoadError> {
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
    Ok(Arc::new(
        GuestEngine::new(&options.cache, &pool, !options.compile_on_calling_thread)
            .map_err(|e| LoadError::Engine(error_text(&e)))?,
    ))
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
