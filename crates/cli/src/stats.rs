//! `--stats`: what each router's calls came to, printed on exit (stderr;
//! stdout carries the answers). The numbers are the runtime's
//! `RouterSet::stats`, the same the Synapse module exports as metrics.

use std::fmt::Write as _;

use presence_router_runtime::{Callback, CallbackStats, FailureKind, RouterStats};

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
