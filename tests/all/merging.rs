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
