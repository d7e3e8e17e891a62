//! What the embedding homeserver provides to its routers.

use presence_router_model::{CanaryStats, RouterFailure};

/// Made where a guest's lines are captured (the sandbox, the bottom layer).
pub use crate::guest::LogLevel;

/// The host side of the WIT `module-api` interface, plus the runtime's
/// reports about routers. An embedder implements it once; every method is
/// called after a guest's call has returned, never while a guest runs, so
/// an implementation may take its time without stalling a guest (though it
/// delays the answer of the batch).
///
/// The defaults log through `tracing`, with the router's name as a field.
pub trait ModuleApi: Send + Sync + 'static {
    /// A router asked for the current online presence of local users to be
    /// pushed to `users` (Synapse's
    /// `ModuleApi.send_local_online_presence_to`). The IDs are valid Matrix
    /// user IDs; calls from a call that failed are never passed on.
    fn send_local_online_presence_to(&self, router: &str, users: &[String]) {
        tracing::info!(
            router,
            ?users,
            "send_local_online_presence_to (no homeserver attached)"
        );
    }

    /// A line a guest logged, or wrote to stdout or stderr.
    fn guest_log(&self, router: &str, level: LogLevel, message: &str) {
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "presence_router::guest", router, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "presence_router::guest", router, "{message}")
            }
            LogLevel::Info => tracing::info!(target: "presence_router::guest", router, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "presence_router::guest", router, "{message}"),
            LogLevel::Error => {
                tracing::error!(target: "presence_router::guest", router, "{message}")
            }
        }
    }

    /// A router was skipped for one call.
    fn router_skipped(&self, failure: &RouterFailure) {
        tracing::warn!(router = failure.router, kind = %failure.kind, "router skipped: {}", failure.message);
    }

    /// A suspended router answered again (see `FailurePolicy`).
    fn router_resumed(&self, router: &str) {
        tracing::info!(router, "router answered again: no longer suspended");
    }

    /// Something about a router an operator should know that is not a
    /// failure: log lines or send calls dropped at a cap, a suspension.
    fn router_warning(&self, router: &str, message: &str) {
        tracing::warn!(router, "{message}");
    }

    /// A router's canary was promoted or rejected, and the decision
    /// applied: [`CanaryStats::decision_line`] says which and why.
    fn canary_decided(&self, canary: &CanaryStats) {
        if let Some(line) = canary.decision_line() {
            tracing::info!(router = canary.router, "{line}");
        }
    }
}

/// A [`ModuleApi`] that only logs: for tools, tests, and homeservers that
/// don't act on `send-local-online-presence-to` (the calls are still in each
/// [`Routed`](crate::Routed) report).
#[derive(Clone, Copy, Debug, Default)]
pub struct LoggingModuleApi;

impl ModuleApi for LoggingModuleApi {}
