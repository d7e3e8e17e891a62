//! 10,000 calls to each hostile guest: every call has the same outcome (a
//! fresh instance after each trap), and the host's memory does not grow
//! after warm-up. One test in its own binary, so that no other test shares
//! the process whose memory is measured.

use presence_router_runtime::{FailureKind, Presence};
use presence_router_tests::{batch, failure_kinds, load_forgetful, proc_status_bytes};

const CALLS: usize = 10_000;
const WARM_UP: usize = 1_000;
/// Allocator caches and wasmtime's own bookkeeping move a little; a leak of
/// one instance, one answer or one log line per call would be far more.
const MAX_GROWTH_BYTES: u64 = 16 << 20;

#[tokio::test]
async fn hostile_guests_leave_no_trace_over_10000_calls() {
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
            "HOSTILE_SLEEPER",
            "{via: log}",
            "{fuel: 5000000, timeout: 1ms}",
            Some(FailureKind::Timeout),
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
