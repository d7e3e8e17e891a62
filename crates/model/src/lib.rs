//! The data of presence routing, without the sandbox: presence states and
//! answers, the YAML configuration and its limits, Matrix user ID rules, the
//! checks every router answer must pass, the CLI's JSON Lines contract, and
//! requests generated from bytes for testing routers against each other.
//!
//! Nothing here runs a guest. It is split from `presence-router-runtime`
//! (which re-exports all of it) so that tools such as the fuzzers can use it
//! without building wasmtime; the `wasmtime` feature adds the derives that
//! let the runtime lower a batch into a guest without copying it first.

pub mod answer;
mod canary;
mod config;
mod failure;
pub mod generate;
pub mod jsonl;
mod limits;
mod presence;
pub mod text;
mod user_id;

pub use canary::{CanaryConfig, CanaryCriteria, CanaryDecision, CanaryStats, DivergentRecord};
pub use config::{ConfigError, RouterConfig, RouterSetConfig, TrustedKey};
pub use failure::{FailureKind, RouterFailure, Suspension};
pub use limits::{FailurePolicy, Limits, format_bytes};
pub use presence::{
    CallStats, InterestedUsers, Presence, Routed, UserPresenceState, UsersForStates,
};
pub use user_id::{MAX_USER_ID_LEN, validate_user_id};
