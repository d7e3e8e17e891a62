//! The host's own memory under hostile guests. 10,000 calls to each: every
//! call has the same outcome (a fresh instance after each trap), and the
//! host's memory does not grow after warm-up. Then the guests that try to
//! make the host hold more than their limits: the host's peak memory stays
//! within a router's memory limit plus a margin, and its resident memory
//! flat; a slicer's send of a million aliased entries makes it hold nothing
//! (before, one such send grew the host by 270 MiB).

use presence_router_runtime::{FailureKind, Presence, Slice};
use presence_router_tests::slicer::{load_slicer, one_state, used_up_in_bounds};
use presence_router_tests::{batch, failure_kinds, load_forgetful, load_ok, proc_status_bytes};

use crate::{TURN, measuring};

const CALLS: usize = 10_000;
const WARM_UP: usize = 1_000;
/// Allocator caches and wasmtime's own bookkeeping move a little; a leak of
/// one instance, one answer or one log line per call would be far more.
const MAX_GROWTH_BYTES: u64 = 16 << 20;

#[test]
fn hostile_guests_leave_no_trace_over_10000_calls() {
    measuring(hostile_guests_leave_no_trace());
}

async fn hostile_guests_leave_no_trace() {
    let cases: &[(&str, &str, &str, Option<FailureKind>)] = &[
        (
            "HOSTILE_SPIN",
            "{}",
            "{fuel: 100000, fuel_per_state: 0}",
            Some(FailureKind::OutOfFuel),
        ),
        (
            "HOSTILE_SPIN",
            "{}",
            "{fuel: 1000000000000000, timeout: 1ms}",
            Some(FailureKind::Timeout),
        ),
        (
            // The host's work on each 1 MiB line is charged to the guest's
            // fuel: fuel stops it, deterministically.
            "HOSTILE_SLEEPER",
            "{via: log}",
            "{fuel: 5000000, timeout: 10s}",
            Some(FailureKind::OutOfFuel),
        ),
        (
            "HOSTILE_BALLOON",
            "{}",
            "{memory: 2MiB, fuel: 1000000000000}",
            Some(FailureKind::Memory),
        ),
        ("HOSTILE_DEEP", "{}", "{}", Some(FailureKind::Trap)),
        ("HOSTILE_PANIC", "{}", "{}", Some(FailureKind::Trap)),
        ("HOSTILE_UNREACHABLE", "{}", "{}", Some(FailureKind::Trap)),
        (
            "HOSTILE_FLOOD",
            "{routes: 2000}",
            "{max_answer_entries: 10}",
            Some(FailureKind::InvalidAnswer),
        ),
        (
            "HOSTILE_FLOOD",
            "{indices: 2000}",
            "{max_answer_entries: 1000}",
            Some(FailureKind::InvalidAnswer),
        ),
        (
            "HOSTILE_LIAR",
            "{lie: alice}",
            "{}",
            Some(FailureKind::InvalidAnswer),
        ),
        ("HOSTILE_CHATTER", "{calls: 100}", "{}", None),
        ("HOSTILE_SNOOP", "{}", "{}", None),
    ];
    let states = batch(&[("@a:x", Presence::Online), ("@b:y", Presence::Online)]);
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (guest, config, limits, expected) in cases {
        let routers = load_forgetful(&format!(
            r#"
routers:
  - {{name: hostile, component: ${guest}, config: {config}, limits: {limits}, failure_policy: {{suspend_after: 0}}}}
  - {{name: example, component: $EXAMPLE_ROUTER, config: {{always_send_to_users: ["@w:x"]}}}}
"#
        ))
        .await;
        let mut before = 0;
        let mut wrong = 0;
        let started = std::time::Instant::now();
        for call in 0..CALLS {
            if call == WARM_UP {
                before = proc_status_bytes("VmRSS:");
            }
            let routed = routers.get_users_for_states(&states).await;
            let kinds: Vec<_> = failure_kinds(&routed)
                .into_iter()
                .map(|(_, kind)| kind)
                .collect();
            let example_answered = routed.answer.get("@w:x") == Some(&vec![0, 1]);
            if kinds != expected.iter().copied().collect::<Vec<_>>() || !example_answered {
                wrong += 1;
            }
        }
        let per_call = started.elapsed() / CALLS as u32;
        let after = proc_status_bytes("VmRSS:");
        let growth = after.saturating_sub(before);
        // The time is for the reader (how much a hostile call costs the
        // host), not asserted.
        report.push(format!(
            "{guest:20} {config:18} {:>8.1?} per call, {:>6} KiB resident after warm-up, {:>5} KiB growth over {} calls",
            per_call,
            before / 1024,
            growth / 1024,
            CALLS - WARM_UP
        ));
        if wrong > 0 {
            failures.push(format!(
                "{guest} {config}: {wrong} of {CALLS} calls did not go as expected"
            ));
        }
        if growth > MAX_GROWTH_BYTES {
            failures.push(format!(
                "{guest} {config}: the host grew by {} KiB",
                growth / 1024
            ));
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        report.join("\n")
    );
}

/// Resets the process's peak resident memory (`VmHWM`) to what it holds now,
/// and returns that; `None` where the kernel can't (then the peak is not
/// measured).
fn reset_peak_resident() -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    Some(proc_status_bytes("VmHWM:"))
}

/// The router's memory limit in the cases below.
const GUEST_MEMORY_LIMIT: u64 = 64 << 20;
/// What the host may hold beyond the guest's own memory (its allocator's
/// caches, wasmtime's bookkeeping, the answers), at its peak.
const HOST_MARGIN_BYTES: u64 = 16 << 20;

/// 20 calls to a guest that passes one 40 MiB buffer to the host 48 times
/// per call (3 aliased user IDs in each of 16 `send-local-online-presence-to`
/// calls), or a 56 MiB one 16 times as a `log` message. The host refuses the user IDs as
/// they arrive (over Matrix's 255 bytes) and cuts the message at 1 KiB
/// without copying the rest: its peak memory grows by less than the router's
/// memory limit plus a margin.
#[test]
fn aliased_buffers_are_not_copied_by_the_host() {
    measuring(aliased_buffers_are_not_copied());
}

async fn aliased_buffers_are_not_copied() {
    const CALLS: usize = 20;
    // (config, the failure expected with a fragment of its message).
    let cases: &[(&str, Option<(FailureKind, &str)>)] = &[
        (
            "{mib: 40, entries: 3, calls: 16, target: send}",
            Some((FailureKind::InvalidAnswer, "255")),
        ),
        // 56 MiB: the guest's buffer and one host copy of it can't both fit
        // under the bound.
        ("{mib: 56, calls: 16, target: log}", None),
        // One WASI write of the whole buffer, far over `check-write`'s permit:
        // refused before wasmtime-wasi would have copied it.
        (
            "{mib: 56, calls: 16, target: write}",
            Some((FailureKind::InvalidAnswer, "check-write allows")),
        ),
        // 56 MiB of random bytes, refused before the host makes them.
        (
            "{mib: 56, calls: 16, target: random}",
            Some((FailureKind::InvalidAnswer, "more than the 65536 a call may")),
        ),
    ];
    let states = batch(&[("@a:x", Presence::Online), ("@b:y", Presence::Online)]);
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (config, expected) in cases {
        let (routers, api) = load_ok(&format!(
            r#"
routers:
  - {{name: hostile, component: $HOSTILE_ALIASER, config: {config}, limits: {{memory: {GUEST_MEMORY_LIMIT}, fuel: 1000000000000, timeout: 30s}}, failure_policy: {{suspend_after: 0}}}}
  - {{name: example, component: $EXAMPLE_ROUTER, config: {{always_send_to_users: ["@w:x"]}}}}
"#
        ))
        .await;
        let Some(before) = reset_peak_resident() else {
            println!("/proc/self/clear_refs is not writable here: peak memory not measured");
            return;
        };
        let mut wrong = Vec::new();
        for call in 0..CALLS {
            api.clear();
            let routed = routers.get_users_for_states(&states).await;
            let kinds: Vec<_> = failure_kinds(&routed)
                .into_iter()
                .map(|(_, kind)| kind)
                .collect();
            let example_answered = routed.answer.get("@w:x") == Some(&vec![0, 1]);
            let message_ok = match expected {
                Some((_, fragment)) => routed
                    .failures
                    .first()
                    .is_some_and(|f| f.message.contains(fragment)),
                None => api
                    .logs_of("hostile")
                    .iter()
                    .all(|line| line.len() <= 1024 + 64),
            };
            if kinds != expected.iter().map(|(kind, _)| *kind).collect::<Vec<_>>()
                || !example_answered
                || !message_ok
            {
                wrong.push(format!(
                    "call {call}: {:?}",
                    routed
                        .failures
                        .iter()
                        .map(|f| (f.kind, f.message.chars().take(200).collect::<String>()))
                        .collect::<Vec<_>>()
                ));
            }
        }
        let peak = proc_status_bytes("VmHWM:");
        let growth = peak.saturating_sub(before);
        report.push(format!(
            "HOSTILE_ALIASER {config:48} {:>7} KiB resident before, peak {:>7} KiB: {:>7} KiB more",
            before / 1024,
            peak / 1024,
            growth / 1024
        ));
        if !wrong.is_empty() {
            failures.push(format!(
                "{config}: {} of {CALLS} calls did not go as expected, first: {}",
                wrong.len(),
                wrong[0]
            ));
        }
        if growth >= GUEST_MEMORY_LIMIT + HOST_MARGIN_BYTES {
            failures.push(format!(
                "{config}: the host's peak grew by {} KiB, more than the router's {} KiB of memory plus {} KiB",
                growth / 1024,
                GUEST_MEMORY_LIMIT / 1024,
                HOST_MARGIN_BYTES / 1024
            ));
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        report.join("\n")
    );
}

/// A guest that creates WASI pollables and never drops them. With 10,000 a
/// call, every call is refused at 1024 WASI resources (and the next runs on
/// a fresh instance). With 40 a call, every call succeeds, each on a fresh
/// instance since the last ended holding more than it started with: four
/// such routers side by side (a warm instance each) would otherwise hold
/// 4 × 2,200 × 40 = 352,000 pollables by the end (under wasmtime's own cap
/// of 100,000 handles per store), about 80 MiB of host memory. Either way
/// the host's resident memory stays flat after warm-up.
#[test]
fn hoarded_wasi_resources_are_not_kept_across_calls() {
    measuring(hoarded_wasi_resources_are_not_kept());
}

async fn hoarded_wasi_resources_are_not_kept() {
    // (config, hoarders side by side, warm-up calls, measured calls, outcome
    // of each call for each hoarder)
    let cases: &[(&str, usize, usize, usize, Option<FailureKind>)] = &[
        ("{per_call: 10000}", 1, 10, 100, Some(FailureKind::Memory)),
        ("{per_call: 40}", 4, 200, 2000, None),
    ];
    let states = batch(&[("@a:x", Presence::Online), ("@b:y", Presence::Online)]);
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for &(config, hoarders, warm_up, measured, expected) in cases {
        let mut yaml = String::from("routers:\n");
        for i in 0..hoarders {
            yaml.push_str(&format!(
                "  - {{name: hoarder{i}, component: $HOSTILE_HOARDER, config: {config}, limits: {{fuel: 1000000000000, timeout: 30s}}, failure_policy: {{suspend_after: 0}}}}\n"
            ));
        }
        yaml.push_str(
            "  - {name: example, component: $EXAMPLE_ROUTER, config: {always_send_to_users: [\"@w:x\"]}}\n",
        );
        let routers = load_forgetful(&yaml).await;
        let mut before = 0;
        let mut wrong = Vec::new();
        for call in 0..warm_up + measured {
            if call == warm_up {
                before = proc_status_bytes("VmRSS:");
            }
            let routed = routers.get_users_for_states(&states).await;
            let kinds: Vec<_> = failure_kinds(&routed)
                .into_iter()
                .map(|(_, kind)| kind)
                .collect();
            let example_answered = routed.answer.get("@w:x") == Some(&vec![0, 1]);
            let messages_ok = routed
                .failures
                .iter()
                .all(|f| f.message.contains("WASI resources"));
            if kinds
                != expected
                    .into_iter()
                    .cycle()
                    .take(hoarders)
                    .collect::<Vec<_>>()
                || !example_answered
                || !messages_ok
            {
                wrong.push(format!("call {call}: {:?}", routed.failures));
            }
        }
        let after = proc_status_bytes("VmRSS:");
        let growth = after.saturating_sub(before);
        report.push(format!(
            "HOSTILE_HOARDER {config:18} ×{hoarders} {:>7} KiB resident after warm-up, {:>6} KiB growth over {measured} calls",
            before / 1024,
            growth / 1024
        ));
        if !wrong.is_empty() {
            failures.push(format!(
                "{config}: {} of {} calls did not go as expected, first: {}",
                wrong.len(),
                warm_up + measured,
                wrong[0]
            ));
        }
        if growth > MAX_GROWTH_BYTES {
            failures.push(format!(
                "{config}: the host grew by {} KiB over {measured} calls",
                growth / 1024
            ));
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        report.join("\n")
    );
}

/// One `send-local-online-presence-to` of 1,000,000 entries aliasing one
/// valid 255-byte user ID (the default `max_answer_entries`): each entry is
/// paid for before it is read, so this one is refused before any is.
#[tokio::test]
async fn an_aliased_send_uses_its_slice_up_and_no_host_memory() {
    let _turn = TURN.lock().await;
    let (set, _api) = load_slicer("{mode: send, n: 1000000}").await;
    // From what the process holds now, not from the peaks of the tests
    // before this one, where the kernel allows.
    let peak_before = reset_peak_resident().unwrap_or_else(|| proc_status_bytes("VmHWM:"));
    used_up_in_bounds("send", || {
        set.get_users_for_states_in_slice(&one_state(), &Slice::REACTOR)
    });
    let growth = proc_status_bytes("VmHWM:").saturating_sub(peak_before);
    assert!(
        growth < 16 << 20,
        "the host's peak grew by {} MiB",
        growth >> 20
    );
}
