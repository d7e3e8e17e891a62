//! Runs Matrix presence routers as sandboxed WebAssembly components.
//!
//! A homeserver loads a [`RouterSet`] from a YAML configuration
//! ([`RouterSetConfig`]) and calls it once per batch of presence updates:
//! [`RouterSet::get_users_for_states`] and
//! [`RouterSet::get_interested_users`] merge the answers of every router the
//! way Synapse merges its Python presence routers. Each call runs under the
//! router's [`Limits`] (fuel, memory, a time budget); a router that breaks one,
//! traps or answers nonsense is skipped for that call and reported, and the
//! others' answers stand.
//!
//! The embedder supplies the host side of the routers' `module-api` through
//! [`ModuleApi`]. No wasmtime type appears in this API.
//!
//! ```no_run
//! use std::sync::Arc;
//! use presence_router_runtime::{LoggingModuleApi, Presence, RouterSet, UserPresenceState};
//!
//! # async fn demo() -> Result<(), presence_router_runtime::LoadError> {
//! let routers = RouterSet::load_file("routers.yaml", Arc::new(LoggingModuleApi)).await?;
//! let batch = [UserPresenceState::new("@bob:example.com", Presence::Online)];
//! let routed = routers.get_users_for_states(&batch).await;
//! for (user, states) in &routed.answer {
//!     println!("{user} also receives {states:?}");
//! }
//! # Ok(())
//! # }
//! ```

mod cache;
mod call;
mod canary;
mod compiler;
mod component_file;
mod error;
mod external_canary;
mod guest;
mod health;
mod host_budget;
mod live;
mod module_api;
pub mod recording;
mod router;
mod router_set;
mod signature;
mod slice;
pub mod stats;
#[cfg(unix)]
pub mod strict_modes;

pub use cache::{CacheBound, CacheSetting, CompileSource};
pub use canary::{QUEUE_CALLS as CANARY_QUEUE_CALLS, ShadowMode};
pub use error::{LoadError, RouterAt};
pub use external_canary::ExternalCanary;
pub use guest::{CheckedInterest, CheckedRoutes, FuelProfile, FuelProfiler};
pub use live::LiveRouterSet;
pub use module_api::{LogLevel, LoggingModuleApi, ModuleApi};
pub use presence_router_model::{
    CallStats, CanaryConfig, CanaryCriteria, CanaryDecision, CanaryStats, ConfigError,
    DivergentRecord, FailureKind, FailurePolicy, InterestedUsers, Limits, MAX_USER_ID_LEN,
    Presence, Routed, RouterConfig, RouterFailure, RouterSetConfig, Suspension, TrustedKey,
    UserPresenceState, UsersForStates, answer, format_bytes, generate, jsonl, text,
    validate_user_id,
};
pub use router::RouterInfo;
pub use router_set::{LoadOptions, ReloadReport, Reloaded, RouterSet};
pub use signature::{KeyFileError, SignatureRefusal, TrustedKeys, parse_secret_key, sign};
pub use slice::{RouterPart, Slice, Unfinished};
pub use stats::{Callback, CallbackStats, Dropped, HistogramSnapshot, RouterStats};
