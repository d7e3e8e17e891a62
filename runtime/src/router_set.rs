//! The routers of one configuration, called together the way Synapse calls
//! its presence routers, and their answers merged.

use std::collections::btree_map::Entry;
use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use presence_router_model::{
    CallStats, InterestedUsers, Routed, RouterFailure, RouterSetConfig, UserPresenceState,
    UsersForStates,
};

use crate::cache::CacheSetting;
use crate::error::LoadError;
use crate::guest::{CheckedInterest, CheckedRoutes, GuestEngine, InstancePool, error_text};
use crate::module_api::ModuleApi;
use crate::router::{Router, RouterAnswer, RouterInfo, SliceUsedUp};
use crate::slice::{Slice, Unfinished};

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
    routers: Vec<Router>,
    module_api: Arc<dyn ModuleApi>,
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
        let pool = InstancePool {
            instances: config
                .routers
                .iter()
                .map(|r| {
                    u32::try_from(r.limits.max_instances)
                        .unwrap_or(u32::MAX)
                        .saturating_add(1)
                })
                .fold(0, u32::saturating_add),
            max_memory_bytes: config
                .routers
                .iter()
                .map(|r| r.limits.memory)
                .max()
                .unwrap_or(0),
        };
        let engine = Arc::new(
            GuestEngine::new(&options.cache, &pool, !options.compile_on_calling_thread)
                .map_err(|e| LoadError::Engine(error_text(&e)))?,
        );
        let mut routers = Vec::with_capacity(config.routers.len());
        for router in &config.routers {
            routers.push(
                Router::load(engine.clone(), module_api.clone(), router, &config.source).await?,
            );
        }
        Ok(RouterSet {
            routers,
            module_api,
        })
    }

    /// The loaded routers, in order.
    pub fn routers(&self) -> impl ExactSizeIterator<Item = &RouterInfo> {
        self.routers.iter().map(Router::info)
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
            .is_some_and(Router::make_fresh_instance)
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
        self.routers.iter().map(Router::idle_instances).sum()
    }

    /// Linear memory held by all idle instances, in bytes.
    pub fn idle_memory_bytes(&self) -> usize {
        self.routers.iter().map(Router::idle_memory_bytes).sum()
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
    /// [`RouterSet::finish_get_users_for_states`] to complete.
    pub fn get_users_for_states_in_slice(
        &self,
        states: &[UserPresenceState],
        slice: &Slice,
    ) -> Result<Routed<UsersForStates>, Unfinished<CheckedRoutes>> {
        let mut done = Unfinished::new(self.routers.len());
        for router in &self.routers {
            match router.get_users_for_states(states, Some(slice)) {
                Ok(answer) => done.answers.push(answer),
                Err(SliceUsedUp { ran }) => {
                    done.slice_used_up = ran;
                    return Err(done);
                }
            }
        }
        Ok(self.merge_routes(done))
    }

    /// Completes a call begun by [`RouterSet::get_users_for_states_in_slice`]
    /// (on the same `states`), with the routers' full limits.
    pub fn finish_get_users_for_states(
        &self,
        states: &[UserPresenceState],
        mut done: Unfinished<CheckedRoutes>,
    ) -> Routed<UsersForStates> {
        for router in self.routers.iter().skip(done.answers.len()) {
            match router.get_users_for_states(states, None) {
                Ok(answer) => done.answers.push(answer),
                Err(SliceUsedUp { .. }) => unreachable!("a call without a slice can't use one up"),
            }
        }
        self.merge_routes(done)
    }

    fn merge_routes(&self, done: Unfinished<CheckedRoutes>) -> Routed<UsersForStates> {
        // Indices are gathered per user, then sorted and de-duplicated once:
        // a router's list is usually sorted already, which makes this one
        // pass; inserting into sets one by one was a fifth of a large batch.
        let mut merged = UsersForStates::new();
        let mut report = Report::default();
        for (router, answer) in self.routers.iter().zip(done.answers) {
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
    pub fn get_interested_users_in_slice(
        &self,
        user_id: &str,
        slice: &Slice,
    ) -> Result<Routed<InterestedUsers>, Unfinished<CheckedInterest>> {
        let mut done = Unfinished::new(self.routers.len());
        for router in &self.routers {
            match router.get_interested_users(user_id, Some(slice)) {
                Ok(answer) => {
                    let all = answers_all(&answer);
                    done.answers.push(answer);
                    if all {
                        break;
                    }
                }
                Err(SliceUsedUp { ran }) => {
                    done.slice_used_up = ran;
                    return Err(done);
                }
            }
        }
        Ok(self.merge_interest(done))
    }

    /// Completes a call begun by [`RouterSet::get_interested_users_in_slice`]
    /// (for the same user), with the routers' full limits.
    pub fn finish_get_interested_users(
        &self,
        user_id: &str,
        mut done: Unfinished<CheckedInterest>,
    ) -> Routed<InterestedUsers> {
        if !done.answers.iter().any(answers_all) {
            for router in self.routers.iter().skip(done.answers.len()) {
                match router.get_interested_users(user_id, None) {
                    Ok(answer) => {
                        let all = answers_all(&answer);
                        done.answers.push(answer);
                        if all {
                            break;
                        }
                    }
                    Err(SliceUsedUp { .. }) => {
                        unreachable!("a call without a slice can't use one up")
                    }
                }
            }
        }
        self.merge_interest(done)
    }

    fn merge_interest(&self, done: Unfinished<CheckedInterest>) -> Routed<InterestedUsers> {
        let mut users = BTreeSet::new();
        let mut report = Report::default();
        let mut all = false;
        for (router, answer) in self.routers.iter().zip(done.answers) {
            match report.take(router, answer) {
                Some(None) => all = true,
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

/// Whether a router answered "all users": the routers after it are not
/// called.
fn answers_all(answer: &Result<RouterAnswer<CheckedInterest>, RouterFailure>) -> bool {
    matches!(answer, Ok(answer) if answer.answer.is_none())
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
