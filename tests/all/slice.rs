//! Calls tried in a `Slice` (what the Synapse module runs on its reactor,
//! GIL held): a call that fits answers as a call made in one go would; a
//! router that needs more is abandoned without a trace (no failure, no log
//! line, no send), and finishing the call gives exactly the answer,
//! failures and sends of a call made in one go, with no router run twice.
//!
//! Then a router that makes the host work while spending almost no fuel
//! (the slicer, `presence_router_tests::slicer`), as found by the attacker
//! review of the first slice version, on which every such call was answered
//! *in* the slice after holding the calling thread for 0.1 to 2 s (so the
//! module never moved it off the reactor). Host work now costs fuel (every
//! host call, and per byte and per entry of what it copies, makes or walks;
//! `guest/state.rs`), and a slice lifts at most `answer_bytes` of answer:
//! each attack uses its slice up, deterministically, by fuel, whatever the
//! machine is doing. The bound on the calling thread is asserted on its CPU
//! time, which a busy machine does not inflate (wall time would be luck).
//! (What the attacks cost the host's memory and threads: the
//! `process_wide` test binary.)

use std::time::Duration;

use presence_router_runtime::{FailureKind, Presence, Slice, UserPresenceState};
use presence_router_tests::slicer::{load_slicer, one_state, used_up_in_bounds};
use presence_router_tests::{batch, failure_kinds, load_ok};

use crate::support::guest_calls;

fn states(users: &[&str]) -> Vec<UserPresenceState> {
    batch(
        &users
            .iter()
            .map(|user| (*user, Presence::Online))
            .collect::<Vec<_>>(),
    )
}

/// `Slice::REACTOR` without its wall-clock check: a call this test expects
/// to fit must fit whatever else the machine is doing (a thread the system
/// left waiting past 5 ms would use a reactor slice up).
const PATIENT: Slice = Slice {
    time: Duration::from_secs(3600),
    ..Slice::REACTOR
};

const SCRIPTED_THEN_EXAMPLE: &str = r#"
routers:
  - name: scripted
    component: $SCRIPTED
    config: {log_calls: true, routes: {"@r:x": [0]}}
  - name: example
    component: $EXAMPLE_ROUTER
    config: {always_send_to_users: ["@w:x"]}
"#;

#[tokio::test]
async fn a_call_that_fits_its_slice_answers_as_a_whole_call() {
    let (routers, api) = load_ok(SCRIPTED_THEN_EXAMPLE).await;
    let batch = states(&["@a:x", "@send:test"]);
    let whole = routers.get_users_for_states_blocking(&batch);
    let sliced = routers
        .get_users_for_states_in_slice(&batch, &PATIENT)
        .expect("a two-state batch fits a reactor slice");
    assert_eq!(sliced.answer, whole.answer);
    assert_eq!(sliced.sent_presence_to, whole.sent_presence_to);
    assert!(sliced.failures.is_empty() && whole.failures.is_empty());
    let interest = routers
        .get_interested_users_in_slice("@w:x", &PATIENT)
        .expect("fits");
    assert_eq!(
        interest.answer,
        routers.get_interested_users_blocking("@w:x").answer
    );
    assert_eq!(guest_calls(&api, "scripted"), 2);
}

#[tokio::test]
async fn a_router_that_needs_more_is_abandoned_unseen_and_the_call_finished_once() {
    // The scripted router answers first (and sends), then the spinner uses
    // its slice up: the scripted answer is kept, not asked again.
    let (routers, api) = load_ok(
        r#"
routers:
  - name: scripted
    component: $SCRIPTED
    config: {log_calls: true, routes: {"@r:x": [0]}}
  - name: spin
    component: $HOSTILE_SPIN
    limits: {timeout: 50ms}
  - name: example
    component: $EXAMPLE_ROUTER
    config: {always_send_to_users: ["@w:x"]}
"#,
    )
    .await;
    let batch = states(&["@send:test"]);
    let unfinished = routers
        .get_users_for_states_in_slice(&batch, &Slice::REACTOR)
        .expect_err("a spinning router can't fit a slice");
    assert!(unfinished.slice_used_up());
    // The routers after the spinner are still tried: one slow router
    // delays no other.
    assert_eq!(unfinished.routers_done(), 2);
    assert_eq!(unfinished.used_up(), [1]);
    // Abandoned unseen: no failure reported, nothing sent yet.
    assert!(api.skipped.lock().expect("not poisoned").is_empty());
    assert!(api.sends.lock().expect("not poisoned").is_empty());

    let routed = routers.finish_get_users_for_states(&batch, unfinished);
    assert_eq!(
        failure_kinds(&routed),
        [("spin", FailureKind::OutOfFuel)],
        "the spinner fails once, by its own limits"
    );
    assert_eq!(routed.answer.get("@r:x"), Some(&vec![0]));
    assert_eq!(routed.answer.get("@w:x"), Some(&vec![0]));
    assert_eq!(api.skipped.lock().expect("not poisoned").len(), 1);
    assert_eq!(
        guest_calls(&api, "scripted"),
        1,
        "the scripted router ran once"
    );
    let sends = api.sends.lock().expect("not poisoned").clone();
    assert_eq!(sends.len(), 1, "sent once: {sends:?}");
}

#[tokio::test]
async fn a_router_without_a_warm_instance_is_finished_elsewhere_without_blame() {
    let (routers, api) = load_ok(SCRIPTED_THEN_EXAMPLE).await;
    // A trap loses the only instance; a slice never makes a fresh one.
    let panicked = routers.get_users_for_states_blocking(&states(&["@panic:test"]));
    assert_eq!(failure_kinds(&panicked), [("scripted", FailureKind::Trap)]);
    let batch = states(&["@a:x"]);
    let unfinished = routers
        .get_users_for_states_in_slice(&batch, &Slice::REACTOR)
        .expect_err("no warm instance");
    assert!(!unfinished.slice_used_up());
    assert_eq!(unfinished.routers_done(), 1, "the example router answered");
    let routed = routers.finish_get_users_for_states(&batch, unfinished);
    assert!(routed.failures.is_empty());
    assert_eq!(routed.answer.get("@w:x"), Some(&vec![0]));
    assert_eq!(api.skipped.lock().expect("not poisoned").len(), 1);
}

#[tokio::test]
async fn a_sleep_longer_than_the_slice_uses_it_up_and_is_charged_in_full_after() {
    let (routers, api) = load_ok(
        r#"
routers:
  - name: sleeper
    component: $HOSTILE_SLEEPER
    config: {via: sleep, ms: 50, in: [get-interested-users]}
    limits: {timeout: 1s}
"#,
    )
    .await;
    let unfinished = routers
        .get_interested_users_in_slice("@a:x", &Slice::REACTOR)
        .expect_err("50 ms of sleep is more than a 5 ms slice");
    assert!(unfinished.slice_used_up());
    // Its own budget (1 s) holds 50 ms of sleep: it answers.
    let routed = routers.finish_get_interested_users("@a:x", unfinished);
    assert!(routed.failures.is_empty(), "{:?}", routed.failures);
    assert!(api.skipped.lock().expect("not poisoned").is_empty());
}

#[tokio::test]
async fn a_router_whose_own_limit_is_below_the_slice_fails_by_it_in_the_slice() {
    // Its own fuel (10,000 plus per state) is less than a slice's: running
    // out is its own failure, counted at once, not an abandoned slice.
    let (routers, api) = load_ok(
        r#"
routers:
  - name: spin
    component: $HOSTILE_SPIN
    limits: {fuel: 10000, fuel_per_state: 0}
"#,
    )
    .await;
    let routed = routers
        .get_users_for_states_in_slice(&states(&["@a:x"]), &PATIENT)
        .expect("its own limit ends the call inside the slice");
    assert_eq!(failure_kinds(&routed), [("spin", FailureKind::OutOfFuel)]);
    assert_eq!(api.skipped.lock().expect("not poisoned").len(), 1);
}

/// `get-interested-users` answers `users` with 1,000,000 entries that all
/// point at one `@a:x`: about ten instructions of fuel, and the host would
/// lift, check and merge a million strings.
#[tokio::test]
async fn an_aliased_interest_answer_uses_its_slice_up() {
    let (set, _api) = load_slicer("{mode: interest, n: 1000000}").await;
    used_up_in_bounds("interest", || {
        set.get_interested_users_in_slice("@q:x", &Slice::REACTOR)
    });
}

/// 500,000 routes `(@a:x, [0])` aliasing one string and one index list.
#[tokio::test]
async fn an_aliased_route_answer_uses_its_slice_up() {
    let (set, _api) = load_slicer("{mode: routes, n: 500000}").await;
    used_up_in_bounds("routes", || {
        set.get_users_for_states_in_slice(&one_state(), &Slice::REACTOR)
    });
}

/// Loops of host calls that cost the guest almost no fuel of its own:
/// `get-random-bytes(65536)`, 64 KiB stdout writes, `poll` of 1,000
/// borrows of one ready pollable, `log` of a 32 MiB message.
#[tokio::test]
async fn loops_of_host_calls_use_their_slice_up() {
    for (mode, k) in [
        ("random", 4000),
        ("write", 8000),
        ("poll", 2000),
        ("log", 64),
    ] {
        let (set, _api) = load_slicer(&format!("{{mode: {mode}, k: {k}}}")).await;
        used_up_in_bounds(mode, || {
            set.get_users_for_states_in_slice(&one_state(), &Slice::REACTOR)
        });
    }
}

/// The same loops, with the router's own limits: they end, by fuel or by
/// the time budget (which comes first depends on the machine; a timeout
/// needs a tick of the watchdog to notice host work, fuel needs none).
#[tokio::test]
async fn loops_of_host_calls_end_with_full_limits() {
    use presence_router_runtime::FailureKind::{OutOfFuel, Timeout};
    for (mode, k) in [("random", 400_000), ("write", 800_000), ("poll", 200_000)] {
        let (set, _api) = load_slicer(&format!("{{mode: {mode}, k: {k}}}")).await;
        let routed = set.get_users_for_states_blocking(&one_state());
        let kinds = failure_kinds(&routed);
        assert!(
            kinds == [("slicer", OutOfFuel)] || kinds == [("slicer", Timeout)],
            "{mode}: {kinds:?}"
        );
        assert_eq!(routed.answer.get("@w:x"), Some(&vec![0]), "{mode}");
    }
}
