//! Several routers at once, merged the way Synapse merges them.

use std::collections::BTreeSet;

use presence_router_runtime::{InterestedUsers, Presence};
use presence_router_tests::{batch, load_ok};

fn users(list: &[&str]) -> InterestedUsers {
    InterestedUsers::Users(list.iter().map(|u| u.to_string()).collect())
}

#[tokio::test]
async fn users_for_states_are_unioned_per_user() {
    let (routers, _) = load_ok(
        r#"
routers:
  - name: first
    component: $SCRIPTED
    config: {routes: {"@a:x": [0], "@b:x": [1]}}
  - name: second
    component: $SCRIPTED
    config: {routes: {"@a:x": [2, 0], "@c:x": "all"}}
  - name: example
    component: $EXAMPLE_ROUTER
    config: {always_send_to_users: ["@b:x"], blacklisted_users: ["@u0:x"]}
"#,
    )
    .await;
    let states = batch(&[
        ("@u0:x", Presence::Online),
        ("@u1:x", Presence::Offline),
        ("@u2:x", Presence::Busy),
    ]);
    let routed = routers.get_users_for_states(&states).await;
    let answer: Vec<(&str, Vec<u32>)> = routed
        .answer
        .iter()
        .map(|(user, set)| (user.as_str(), set.to_vec()))
        .collect();
    assert_eq!(
        answer,
        vec![
            ("@a:x", vec![0, 2]),
            ("@b:x", vec![1, 2]),
            ("@c:x", vec![0, 1, 2])
        ]
    );
}

#[tokio::test]
async fn interested_users_are_unioned_and_the_first_all_wins() {
    let (routers, api) = load_ok(
        r#"
routers:
  - name: one
    component: $SCRIPTED
    config: {log_calls: true, interested: {"@a:x": ["@p:x"], "@b:x": ["@q:x"], "@c:x": ["@r:x"]}}
  - name: two
    component: $SCRIPTED
    config: {log_calls: true, interested: {"@a:x": ["@s:x", "@p:x"], "@b:x": "all", "@c:x": ["@t:x"]}}
  - name: three
    component: $SCRIPTED
    config: {log_calls: true, interested: {"@a:x": ["@u:x"], "@b:x": ["@never:x"], "@c:x": "all"}}
"#,
    )
    .await;
    assert_eq!(
        routers.get_interested_users("@a:x").await.answer,
        users(&["@p:x", "@s:x", "@u:x"])
    );
    assert_eq!(
        api.logs_of("three"),
        vec!["parse-config", "get-interested-users for @a:x"]
    );

    api.clear();
    // `two` answers all: `three` is not called, `one`'s users don't matter.
    assert_eq!(
        routers.get_interested_users("@b:x").await.answer,
        InterestedUsers::All
    );
    assert_eq!(api.logs_of("one"), vec!["get-interested-users for @b:x"]);
    assert_eq!(api.logs_of("two"), vec!["get-interested-users for @b:x"]);
    assert_eq!(api.logs_of("three"), Vec::<String>::new());

    assert_eq!(
        routers.get_interested_users("@c:x").await.answer,
        InterestedUsers::All
    );
    assert_eq!(
        routers.get_interested_users("@nobody:x").await.answer,
        InterestedUsers::Users(BTreeSet::new())
    );
}

#[tokio::test]
async fn every_router_is_called_once_per_batch_not_per_update() {
    let (routers, api) = load_ok(
        r#"
routers:
  - {name: one, component: $SCRIPTED, config: {log_calls: true}}
  - {name: two, component: $SCRIPTED, config: {log_calls: true}}
"#,
    )
    .await;
    let states = batch(&[
        ("@a:x", Presence::Online),
        ("@b:x", Presence::Online),
        ("@c:x", Presence::Online),
    ]);
    api.clear();
    routers.get_users_for_states(&states).await;
    assert_eq!(
        api.logs_of("one"),
        vec!["get-users-for-states with 3 states"]
    );
    assert_eq!(
        api.logs_of("two"),
        vec!["get-users-for-states with 3 states"]
    );
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
