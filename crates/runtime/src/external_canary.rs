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

/// A canary whose live version runs outside the runtime (the Synapse
/// module's Python presence router, which a port is to replace): the
/// embedder hands it each live answer it draws, and on its promotion adds
/// [`ExternalCanary::router_config`] to its router set as the live version
/// (`LiveRouterSet::reload_router`). Its fuel can't be compared with the
/// live version's: `max_fuel_ratio` does not apply.
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
        load_trial(config, source, trusted_keys, &keys, options)
            .await
            .map(|canary| ExternalCanary { canary })
    }

    /// Whether the live call that just ended is to be repeated on the
    /// canary (the configuration's `sample`, evenly): copy its input and
    /// answer only then.
    pub fn draw(&self) -> bool {
        self.canary.draw()
    }

    /// A drawn `get_users_for_states` call and the live version's answer
    /// (the states routed to each user, as indices into `states`).
    pub fn shadow_states(&self, states: Vec<UserPresenceState>, live: &UsersForStates) {
        self.canary.submit(ShadowJob {
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
        self.canary.submit(ShadowJob {
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

    /// Waits, at most `timeout`, for its divergent requests to be written.
    pub fn flush_recording(&self, timeout: std::time::Duration) -> bool {
        self.canary.flush_recording(timeout)
    }
}
