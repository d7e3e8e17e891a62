//! A router's `canary:`: a new version tried in shadow beside the live one
//! on a sample of live calls, and what it must show to be promoted.
//!
//! ```yaml
//! routers:
//!   - name: example
//!     component: routers/example.wasm
//!     canary:
//!       component: routers/example-v2.wasm   # default: the live component
//!       config: {...}                        # default: the live config
//!       limits: {...}                        # default: the live limits
//!       sample: 0.1                          # share of live calls also run on it
//!       promote_after: 1000                  # agreeing answers needed
//!       max_divergent: 0                     # divergent answers tolerated
//!       max_failures: 0                      # failed calls tolerated
//!       max_fuel_ratio: 2.0                  # its fuel per call against the live one's
//!       record_divergent: divergent.jsonl    # or {path, max_bytes, keep}
//!       decision: promote                    # an operator's decision, taken at once
//! ```

use std::path::PathBuf;

use crate::RouterConfig;

/// A canary of a router, with its defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryConfig {
    /// The canary version as a router: the live router's name, its own
    /// component, config and limits (each the live one's unless given),
    /// the live router's failure policy and signature requirement; its
    /// `key` is `routers[i].canary`.
    pub router: RouterConfig,
    /// The share of live calls also run on the canary, above 0 and at most
    /// one. Calls are drawn evenly (every second call for 0.5), not at
    /// random, so that a trial replayed gives the same decision.
    pub sample: f64,
    pub criteria: CanaryCriteria,
    /// Where the requests it answered differently are written, in the JSON
    /// Lines request format `presence-router diff` replays.
    pub record_divergent: Option<DivergentRecord>,
    /// The operator's decision, taken as soon as the canary is loaded.
    pub decision: Option<CanaryDecision>,
}

/// What a canary must show: promoted once it has `promote_after` answers
/// that agree with the live version's, within the rest; rejected as soon
/// as it passes one of the maxima.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryCriteria {
    pub promote_after: u64,
    pub max_divergent: u64,
    pub max_failures: u64,
    /// Its mean fuel per call against the live version's on the same
    /// calls, checked when it would be promoted.
    pub max_fuel_ratio: Option<f64>,
}

/// The file divergent requests go to, bounded as the module's recording is:
/// rotated past `max_bytes`, `keep` older files kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DivergentRecord {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub keep: u32,
}

/// What became of a canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CanaryDecision {
    /// It became the live version.
    Promoted,
    /// It was dropped; the live version goes on.
    Rejected,
}

impl CanaryDecision {
    /// The decision in the words logs, metrics and `--stats` use.
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryDecision::Promoted => "promoted",
            CanaryDecision::Rejected => "rejected",
        }
    }
}

impl CanaryCriteria {
    /// Agreeing answers needed when `promote_after` is not given.
    pub const DEFAULT_PROMOTE_AFTER: u64 = 1000;
}

impl DivergentRecord {
    /// A recording of divergent requests holds at most this much per file
    /// unless `max_bytes` says otherwise.
    pub const DEFAULT_MAX_BYTES: u64 = 16 << 20;
    /// Rotated files kept unless `keep` says otherwise.
    pub const DEFAULT_KEEP: u32 = 1;
}

/// What a canary's trial came to so far, or how it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryStats {
    /// The router it is a new version of.
    pub router: String,
    /// Its component file.
    pub component: PathBuf,
    /// Shadow calls made: agreed + diverged + failed.
    pub calls: u64,
    /// Answers the same as the live version's.
    pub agreed: u64,
    /// Answers that differed.
    pub diverged: u64,
    /// Calls that failed (trapped, ran out of a limit, answered nonsense).
    pub failed: u64,
    /// Sampled calls not made: its queue was full, or the live call failed
    /// (nothing to compare with).
    pub skipped: u64,
    /// Its mean fuel per call against the live version's on the same calls.
    pub fuel_ratio: Option<f64>,
    /// Divergent requests recorded to `record_divergent` (handed to its
    /// writer: written, or being written), and where.
    pub recorded: u64,
    pub record_path: Option<PathBuf>,
    /// Promoted or rejected, and why; `None` while on trial.
    pub decision: Option<(CanaryDecision, String)>,
}

impl CanaryStats {
    /// The one log line of its decision, once applied; `None` on trial.
    pub fn decision_line(&self) -> Option<String> {
        let (decision, why) = self.decision.as_ref()?;
        let component = crate::text::escape_control(&self.component.display().to_string());
        let mut line = format!(
            "canary of router `{}` ({component}) {} after {} shadow call(s): {why}",
            self.router,
            decision.as_str(),
            self.calls,
        );
        match decision {
            CanaryDecision::Promoted => line.push_str("; it is the live version now"),
            CanaryDecision::Rejected => line.push_str("; the live version goes on serving"),
        }
        if let Some(path) = &self.record_path
            && self.recorded > 0
        {
            line.push_str(&format!(
                "; {} divergent request(s) recorded in {} (replay them with `presence-router diff`)",
                self.recorded,
                crate::text::escape_control(&path.display().to_string())
            ));
        }
        Some(line)
    }
}
