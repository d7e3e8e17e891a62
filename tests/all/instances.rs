//! Instances: a warm instance serves call after call; a trap, or a call
//! that ends holding more WASI resources than it started with, discards
//! it, and the next call gets a fresh instance, which runs `parse-config`
//! again. A router keeps at most `limits.max_instances` for calls running
//! at once, and `warm_up` fills every router's pool.

use std::time::Duration;

use presence_router_runtime::{FailureKind, Presence};
use presence_router_tests::{batch, beside_example, failure_kinds, load_ok};

use crate::support::{example_answered, two_states};

#[tokio::test]
async fn a_fresh_instance_after_a_trap_runs_parse_config_again() {
    let (routers, api) = load_ok(
        r#"routers: [{name: r, component: $SCRIPTED, config: {log_calls: true, routes: {"@h:x": "all"}}}]"#,
    )
    .await;
    assert_eq!(api.logs_of("r"), vec!["parse-config"]);
    routers
        .get_users_for_states(&batch(&[("@panic:test", Presence::Online)]))
        .await;
    api.clear();
    let routed = routers
        .get_users_for_states(&batch(&[("@u:x", Presence::Online)]))
        .await;
    assert_eq!(
        api.logs_of("r"),
        vec!["parse-config", "get-users-for-states with 1 states"]
    );
    // The fresh instance has the configuration again.
    assert_eq!(routed.answer["@h:x"], vec![0]);
    // A warm instance is reused: no parse-config this time.
    api.clear();
    routers
        .get_users_for_states(&batch(&[("@u:x", Presence::Online)]))
        .await;
    assert_eq!(api.logs_of("r"), vec!["get-users-for-states with 1 states"]);
}

#[tokio::test]
async fn every_call_starts_afresh_without_the_resources_the_last_one_kept() {
    // The hoarder logs how many pollables it created since its instance
    // started. An instance that ends a call holding more WASI resources than
    // it started with is discarded, so every call runs on a fresh one.
    let (routers, api) = beside_example(
        "hoarder",
        "HOSTILE_HOARDER",
        "{per_call: 100}",
        "{fuel: 1000000000000, timeout: 30s}",
    )
    .await;
    let states = two_states();
    for call in 1..=5 {
        api.clear();
        let routed = routers.get_users_for_states(&states).await;
        assert_eq!(routed.failures, vec![], "call {call}");
        assert!(
            example_answered(&routed),
            "call {call}: {:?}",
            routed.answer
        );
        assert_eq!(
            api.logs_of("hoarder"),
            vec!["holding 100 pollables"],
            "call {call}"
        );
    }
}

#[tokio::test]
async fn bad_config_in_a_recycled_instance_skips_the_router() {
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 1500;
    let (routers, _) = beside_example(
        "hostile",
        "HOSTILE_BAD_CONFIG",
        &format!("{{mode: err-after, after_unix_ms: {after}}}"),
        "{}",
    )
    .await;
    let clean = batch(&[("@a:x", Presence::Online)]);
    assert_eq!(routers.get_users_for_states(&clean).await.failures, vec![]);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    // The warm instance still works; a trap throws it away...
    assert_eq!(routers.get_users_for_states(&clean).await.failures, vec![]);
    let trap = batch(&[("@trap:x", Presence::Online)]);
    assert_eq!(
        failure_kinds(&routers.get_users_for_states(&trap).await),
        vec![("hostile", FailureKind::Trap)]
    );
    // ...and the fresh one refuses its configuration: skipped, call after call.
    for _ in 0..2 {
        let routed = routers.get_users_for_states(&clean).await;
        assert_eq!(failure_kinds(&routed), vec![("hostile", FailureKind::Trap)]);
        assert_eq!(
            routed.failures[0].message,
            "a fresh instance refused its configuration: hostile refusal: the time has come"
        );
        assert_eq!(routed.answer["@w:x"], vec![0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_serves_many_tasks_at_once() {
    let (routers, _) = load_ok(
        r#"
routers:
  - component: $EXAMPLE_ROUTER
    config: {always_send_to_users: ["@w:x"]}
    limits: {max_instances: 3}
"#,
    )
    .await;
    let routers = std::sync::Arc::new(routers);
    let tasks: Vec<_> = (0..32u32)
        .map(|n| {
            let routers = routers.clone();
            tokio::spawn(async move {
                let states: Vec<_> = (0..=n)
                    .map(|i| (format!("@u{i}:x"), Presence::Online))
                    .collect();
                let states: Vec<_> = states
                    .iter()
                    .map(|(u, p)| (u.as_str(), p.clone()))
                    .collect();
                let routed = routers.get_users_for_states(&batch(&states)).await;
                (n, routed.answer["@w:x"].len())
            })
        })
        .collect();
    for task in tasks {
        let (n, routed) = task.await.expect("the task does not panic");
        assert_eq!(routed, n as usize + 1);
    }
    // Concurrent calls used more than one instance, never more than allowed.
    let warm = routers.warm_instances();
    assert!((1..=3).contains(&warm), "{warm} warm instances");
    assert!(routers.idle_memory_bytes() >= warm * 64 * 1024);
}

#[tokio::test]
async fn warm_up_fills_every_pool_to_its_limit_and_no_further() {
    let (routers, _) = load_ok(
        r#"
routers:
  - {name: a, component: $EXAMPLE_ROUTER, config: {always_send_to_users: ["@w:x"]}, limits: {max_instances: 3}}
  - {name: b, component: $SYNAPSE_TEST_ROUTER, config: {users_who_should_receive_all_presence: []}, limits: {max_instances: 2}}
"#,
    )
    .await;
    // Loading leaves the instance that ran the first parse-config.
    assert_eq!(routers.warm_instances(), 2);
    assert_eq!(routers.warm_up().await, vec![]);
    assert_eq!(routers.warm_instances(), 5);
    let one = routers.idle_memory_bytes() / 5;
    assert!(one >= 64 * 1024, "{one} bytes per instance");
    // Already full: nothing more is made, and calls use the warm instances.
    assert_eq!(routers.warm_up().await, vec![]);
    let routed = routers
        .get_users_for_states(&batch(&[("@u:x", Presence::Online)]))
        .await;
    assert_eq!(routed.answer["@w:x"], vec![0]);
    assert_eq!(routers.warm_instances(), 5);
}
