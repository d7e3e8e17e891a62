//! The runtime's tests against real guest components, a module per
//! subject: look for a behaviour by its name. Tests that measure or change
//! the whole process are in the `process_wide` binary, the `metrics`
//! facade's in `metrics_facade` (tests/Cargo.toml says why).
//!
//! `cargo test -p presence-router-tests --test all -- fuel::` runs one
//! subject.

/// Each way a router's answer can be wrong or too big.
mod answers;
/// The compiled-component cache: integrity, bounds, other users.
mod cache;
/// Canaries: new versions tried in shadow, promoted or rejected.
mod canary;
/// Routers built by earlier releases, loaded by this one.
mod compatibility;
/// Every configuration value at its maximum, and beyond.
mod config_bounds;
/// The example router in every language against one suite.
mod conformance;
/// The example routers against each other on generated requests.
mod differential;
/// The documentation's example router.
mod example_router;
/// Skipping a failed router, and suspending one that keeps failing.
mod failure_policy;
/// Fuel: the computation a call may do, host work included.
mod fuel;
/// The exact error text of every bad configuration (`golden/`).
mod golden_errors;
/// presence-router-guest-build's post-return check.
mod guest_build;
/// Guest text escaped and cut.
mod guest_text;
/// Warm and fresh instances, and the pools of them.
mod instances;
/// The test kit's leak checks.
mod leaks;
/// What is refused at load.
mod loading;
/// A router's memory limit and WASI resource cap.
mod memory;
/// Several routers' answers merged.
mod merging;
/// Profiles by fuel of the example router in every language.
mod profile;
/// Hot reload.
mod reload;
/// What a router can see of the host: nothing.
mod sandbox;
/// Presence sends and log lines, and their caps.
mod sends_and_logs;
/// Signed routers: trusted keys, refusals, reload, the cache.
mod signatures;
/// Calls tried in a `Slice`.
mod slice;
/// Per-call and per-router figures.
mod stats;
/// The helpers several subjects' tests share.
mod support;
/// Synapse's own presence router tests' facts.
mod synapse_peer_suite;
/// The time budget: a call's wall-clock limit; waits charged, not slept.
mod time_budget;
/// Panics, `unreachable`, stack overflow.
mod traps;
