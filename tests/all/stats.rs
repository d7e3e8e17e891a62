//! Figures. Per call: each answer says what the call used against its
//! limits (`Routed::stats`). Per router (`RouterSet::stats`, and the same
//! through the `metrics` facade in the `metrics_facade` test binary): exact
//! counts of calls, failures per kind, skips, suspensions, answer entries
//! and instances after known calls.

use std::time::Duration;

use presence_router_runtime::{Callback, FailureKind, Presence, RouterStats, Slice};
use presence_router_tests::{batch, beside_example, load_ok};

use crate::example_router::EXAMPLE;

fn of<'a>(stats: &'a [RouterStats], router: &str) -> &'a RouterStats {
    stats
        .iter()
        .find(|s| s.router == router)
        .unwrap_or_else(|| panic!("no figures for {router}: {stats:?}"))
}

#[tokio::test]
async fn calls_answers_and_fuel_are_counted_per_router_and_callback() {
    let (routers, _) = load_ok(
        r#"
routers:
  - name: example
    component: $EXAMPLE_ROUTER
    config: {always_send_to_users: ["@w:x", "@v:x"]}
"#,
    )
    .await;
    let states = batch(&[("@a:x", Presence::Online), ("@b:x", Presence::Offline)]);
    for _ in 0..3 {
        routers.get_users_for_states(&states).await;
    }
    routers.get_interested_users("@w:x").await;
    routers.get_interested_users("@q:x").await;

    let stats = routers.stats();
    let example = of(&stats, "example");
    let routed = &example.get_users_for_states;
    assert_eq!(routed.calls, 3);
    assert_eq!(routed.failures_total(), 0);
    // Each answer: two users, each with both states: 2 * (1 + 2) entries.
    assert_eq!(routed.answer_entries, 3 * 6);
    assert_eq!(routed.duration_seconds.count, 3);
    assert_eq!(routed.fuel_used_ratio.count, 3);
    // A two-state call of the example router uses a sliver of its budget.
    assert_eq!(routed.fuel_used_ratio.quantile_bound(1.0), Some(0.001));
    let interest = example.callback(Callback::GetInterestedUsers);
    assert_eq!(interest.calls, 2);
    // "All users" for @w:x counts one entry; an empty list none.
    assert_eq!(interest.answer_entries, 1);
    assert_eq!((example.suspended, example.suspensions), (false, 0));
    assert_eq!((example.warm_instances, example.live_instances), (1, 1));
    assert_eq!((example.reloads, example.failed_reloads), (0, 0));
}

#[tokio::test]
async fn failures_are_counted_by_kind_and_the_other_routers_still_count_answers() {
    let (routers, _) = beside_example(
        "spinner",
        "HOSTILE_SPIN",
        "{}",
        "{fuel: 1000000, fuel_per_state: 0, timeout: 10s}",
    )
    .await;
    let states = batch(&[("@a:x", Presence::Online)]);
    for _ in 0..4 {
        routers.get_users_for_states(&states).await;
    }
    let stats = routers.stats();
    let spinner = &of(&stats, "spinner").get_users_for_states;
    assert_eq!(spinner.calls, 4);
    assert_eq!(spinner.failures_of(FailureKind::OutOfFuel), 4);
    assert_eq!(spinner.failures_total(), 4);
    // A call that ran out of fuel used all of it.
    assert_eq!(spinner.fuel_used_ratio.count, 4);
    assert_eq!(spinner.fuel_used_ratio.counts.last(), Some(&0));
    assert_eq!(spinner.fuel_used_ratio.quantile_bound(0.0), Some(1.0));
    let example = &of(&stats, "example").get_users_for_states;
    assert_eq!((example.calls, example.failures_total()), (4, 0));
}

#[tokio::test]
async fn a_suspension_is_counted_and_skipped_calls_are_not_calls() {
    let (routers, _) = load_ok(
        r#"
routers:
  - name: panics
    component: $HOSTILE_PANIC
    failure_policy: {suspend_after: 2, backoff: 1h, max_backoff: 1h}
"#,
    )
    .await;
    let states = batch(&[("@a:x", Presence::Online)]);
    for _ in 0..5 {
        routers.get_users_for_states(&states).await;
    }
    let stats = routers.stats();
    let panics = of(&stats, "panics");
    assert_eq!(panics.get_users_for_states.calls, 2);
    assert_eq!(
        panics.get_users_for_states.failures_of(FailureKind::Trap),
        2
    );
    assert_eq!(panics.get_users_for_states.skipped_suspended, 3);
    assert_eq!((panics.suspended, panics.suspensions), (true, 1));
}

#[tokio::test]
async fn a_call_abandoned_in_a_slice_and_finished_counts_once() {
    let (routers, _) = beside_example(
        "spinner",
        "HOSTILE_SPIN",
        "{}",
        "{fuel: 1000000, fuel_per_state: 0, timeout: 10s}",
    )
    .await;
    let states = batch(&[("@a:x", Presence::Online)]);
    let slice = Slice {
        time: Duration::from_secs(3600),
        ..Slice::REACTOR
    };
    let Err(unfinished) = routers.get_users_for_states_in_slice(&states, &slice) else {
        panic!("the spinner should use its slice up");
    };
    assert!(unfinished.slice_used_up());
    assert_eq!(
        of(&routers.stats(), "spinner").get_users_for_states.calls,
        0
    );
    routers.finish_get_users_for_states(&states, unfinished);
    let stats = routers.stats();
    let spinner = &of(&stats, "spinner").get_users_for_states;
    assert_eq!(spinner.calls, 1);
    assert_eq!(spinner.failures_of(FailureKind::OutOfFuel), 1);
}

#[tokio::test]
async fn each_answer_reports_what_the_call_used_against_its_limits() {
    let (routers, _) = load_ok(&format!(
        "{EXAMPLE}    limits: {{fuel: 1000000, fuel_per_state: 10000}}\n"
    ))
    .await;
    let states = batch(&[
        ("@bob:example.com", Presence::Online),
        ("@mallory:example.com", Presence::Online),
        ("@carol:remote.org", Presence::Online),
    ]);
    let routed = routers.get_users_for_states(&states).await;
    let [stats] = routed.stats.as_slice() else {
        panic!("one router, one entry: {:?}", routed.stats);
    };
    assert_eq!(&*stats.router, "example_router");
    assert_eq!(stats.fuel_budget, 1_000_000 + 3 * 10_000);
    assert!(
        (1..stats.fuel_budget).contains(&stats.fuel_used),
        "{stats:?}"
    );
    // Two routes of two indices each.
    assert_eq!(stats.answer_entries, 2 * (1 + 2));
    assert!(stats.memory_bytes >= 64 * 1024, "{stats:?}");
    // Measured, not bounded: how long a call takes depends on the machine
    // (the time budget bounds it, and the time_budget tests test that).
    assert!(stats.elapsed > Duration::ZERO, "{stats:?}");

    let interest = routers.get_interested_users("@alice:example.com").await;
    assert_eq!(interest.stats.len(), 1);
    assert_eq!(interest.stats[0].answer_entries, 1);
    assert_eq!(interest.stats[0].fuel_budget, 1_000_000 + 10_000);
}
