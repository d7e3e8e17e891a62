//! A canary whose live version runs outside the runtime: the Synapse
//! module's Python presence router, which a wasm port is to replace. The
//! trial is a [`crate::canary`]'s; the embedder hands it the live answers.

use std::path::Path;
use std::sync::Arc;

use presence_router_model::{
    CanaryConfig, CanaryDecision, CanaryStats, InterestedUsers, RouterConfig, TrustedKey,
    UserPresenceState, UsersForStates,
};

use crate::call::{LiveAnswer, ShadowInput};
use crate::canary::{Canary, ShadowJob};
use crate::error::LoadError;
use crate::router_set::{LoadOptions, load_trial, read_trusted_keys};
use crate::stats::Callback;

/// A canary whose live version runs outside the runtime (the Synapse
/// module's Python presence router, which a port is to replace): the
/// embedder hands it each live answer it draws, and on its promotion adds
/// it to its router set as the live version
/// ([`crate::LiveRouterSet::promote_external`]: loaded anew, its signature
/// checked again, refused if its file changed during the trial). Its fuel
/// can't be compared with the live version's: `max_fuel_ratio` does not
/// apply.
pub struct ExternalCanary {
    canary: Arc<Canary>,
}

impl ExternalCanary {
    /// Loads the canary (checking its signature against `trusted_keys`
    /// where its configuration requires one), as a router set loads one.
    pub async fn load(
        config: &CanaryConfig,
        source: &Path,
        trusted_keys: &[TrustedKey],
        options: &LoadOptions,
    ) -> Result<ExternalCanary, LoadError> {
        let keys = read_trusted_keys(trusted_keys, source).await?;
        load_trial(config, source, trusted_keys, &keys, options, None)
            .await
            .map(|canary| ExternalCanary { canary })
    }

    /// Whether the live call of `callback` that just ended, of `size`
    /// states (or one user) and answer entries, is to be repeated on the
    /// canary (the configuration's `sample`, evenly, and room in its
    /// queue): copy its input and answer only then.
    pub fn draw(&self, callback: Callback, size: usize) -> bool {
        self.canary.draw(callback, size)
    }

    /// A drawn `get_users_for_states` call and the live version's answer
    /// (the states routed to each user, as indices into `states`).
    pub fn shadow_states(&self, states: Vec<UserPresenceState>, live: &UsersForStates) {
        let size = states.len()
            + live
                .values()
                .map(|indices| 1 + indices.len())
                .sum::<usize>();
        self.canary.submit(ShadowJob {
            size,
            input: ShadowInput::States(states.into()),
            live: LiveAnswer::Routes(
                live.iter()
                    .map(|(user, indices)| (user.clone(), indices.clone()))
                    .collect(),
            ),
            live_fuel: 0,
        });
    }

    /// A drawn `get_interested_users` call and the live version's answer.
    pub fn shadow_interest(&self, user_id: &str, live: &InterestedUsers) {
        let size = 1 + match live {
            InterestedUsers::All => 1,
            InterestedUsers::Users(users) => users.len(),
        };
        self.canary.submit(ShadowJob {
            size,
            input: ShadowInput::Interest(user_id.into()),
            live: LiveAnswer::Interest(match live {
                InterestedUsers::All => None,
                InterestedUsers::Users(users) => Some(users.iter().cloned().collect()),
            }),
            live_fuel: 0,
        });
    }

    /// A drawn call whose live version failed: nothing to compare.
    pub fn skip(&self) {
        self.canary.skip();
    }

    /// The operator's decision, taken at once.
    pub fn decide(&self, decision: CanaryDecision) {
        self.canary
            .decide_now(decision, "the operator's decision".to_owned());
    }

    /// Its trial so far, or its decision.
    pub fn stats(&self) -> CanaryStats {
        self.canary.stats()
    }

    /// The canary as a router, to be loaded as the live version once it is
    /// promoted.
    pub fn router_config(&self) -> &RouterConfig {
        &self.canary.config().router
    }

    /// The configuration it was loaded from, and its trusted keys.
    pub fn source(&self) -> &Path {
        self.canary.source()
    }

    pub fn trusted_keys(&self) -> Vec<TrustedKey> {
        self.canary.trusted_keys()
    }

    /// SHA-256 of the component file as it was tried.
    pub(crate) fn digest(&self) -> &[u8; 32] {
        self.canary.router().digest()
    }

    /// Waits, at most `timeout`, for its divergent requests to be written.
    pub fn flush_recording(&self, timeout: std::time::Duration) -> bool {
        self.canary.flush_recording(timeout)
    }
}
