//! `--stats`: what each router's calls came to, printed on exit (stderr;
//! stdout carries the answers). The numbers are the runtime's
//! `RouterSet::stats`, the same the Synapse module exports as metrics.

use std::fmt::Write as _;

use presence_router_runtime::{
    Callback, CallbackStats, CanaryStats, FailureKind, RouterStats, text::escape_control,
};

/// The summary, a block per router.
pub(crate) fn summary(stats: &[RouterStats], reloads: (u64, u64)) -> String {
    let mut out = String::new();
    for router in stats {
        let _ = writeln!(out, "router `{}`", router.router);
        for callback in Callback::ALL {
            let _ = writeln!(
                out,
                "  {}: {}",
                callback.as_str(),
                callback_line(router.callback(callback))
            );
        }
        let _ = writeln!(
            out,
            "  suspended: {}, suspensions: {}; instances: {} warm, {} live; reloads: {} ok, {} failed",
            if router.suspended { "yes" } else { "no" },
            router.suspensions,
            router.warm_instances,
            router.live_instances,
            router.reloads,
            router.failed_reloads,
        );
    }
    let _ = writeln!(out, "set reloads: {} ok, {} failed", reloads.0, reloads.1);
    out
}

/// A block per canary: its trial, and its decision.
pub(crate) fn canaries(canaries: &[CanaryStats]) -> String {
    let mut out = String::new();
    for canary in canaries {
        let _ = writeln!(
            out,
            "canary of router `{}` ({})",
            canary.router,
            escape_control(&canary.component.display().to_string())
        );
        let mut line = format!(
            "  {} shadow call(s): {} agreeing, {} divergent, {} failed; {} skipped",
            canary.calls, canary.agreed, canary.diverged, canary.failed, canary.skipped
        );
        if let Some(ratio) = canary.fuel_ratio {
            let _ = write!(line, "; fuel per call {ratio:.2}× the live version's");
        }
        if let Some(path) = &canary.record_path {
            let _ = write!(
                line,
                "; {} divergent request(s) recorded in {}",
                canary.recorded,
                escape_control(&path.display().to_string())
            );
        }
        let _ = writeln!(out, "{line}");
        let _ = match &canary.decision {
            Some((decision, why)) => writeln!(out, "  decision: {}: {why}", decision.as_str()),
            None => writeln!(out, "  decision: on trial"),
        };
    }
    out
}

fn callback_line(stats: &CallbackStats) -> String {
    let failures: Vec<String> = FailureKind::ALL
        .iter()
        .map(|kind| (kind, stats.failures_of(*kind)))
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    let mut line = format!(
        "{} call(s), {} failed{}, {} skipped while suspended, {} answer entries",
        stats.calls,
        stats.failures_total(),
        if failures.is_empty() {
            String::new()
        } else {
            format!(" ({})", failures.join(", "))
        },
        stats.skipped_suspended,
        stats.answer_entries,
    );
    if let (Some(p50), Some(p99)) = (
        stats.duration_seconds.quantile_bound(0.5),
        stats.duration_seconds.quantile_bound(0.99),
    ) {
        let _ = write!(
            line,
            "; duration p50 <= {}, p99 <= {}",
            seconds(p50),
            seconds(p99)
        );
    }
    if let Some(p99) = stats.fuel_used_ratio.quantile_bound(0.99) {
        let _ = write!(line, "; fuel used p99 <= {:.1}% of budget", p99 * 100.0);
    }
    line
}

fn seconds(bound: f64) -> String {
    if bound.is_infinite() {
        "+Inf".to_owned()
    } else if bound < 0.001 {
        format!("{}us", (bound * 1e6).round())
    } else if bound < 1.0 {
        format!("{}ms", bound * 1e3)
    } else {
        format!("{bound}s")
    }
}
