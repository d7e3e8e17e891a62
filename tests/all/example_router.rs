//! The documentation's `ExamplePresenceRouter`, run through the runtime.

use std::collections::{BTreeMap, BTreeSet};

use presence_router_runtime::{InterestedUsers, Presence};
use presence_router_tests::{batch, load, load_ok};

pub const EXAMPLE: &str = r#"
routers:
  - component: $EXAMPLE_ROUTER
    config:
      always_send_to_users: ["@alice:example.com", "@watcher:remote.org"]
      blacklisted_users: ["@mallory:example.com"]
"#;

fn routes(entries: &[(&str, &[u32])]) -> BTreeMap<String, Vec<u32>> {
    entries
        .iter()
        .map(|(user, indices)| (user.to_string(), indices.to_vec()))
        .collect()
}

#[tokio::test]
async fn always_send_users_get_every_update_but_the_blacklisted_ones() {
    let (routers, _) = load_ok(EXAMPLE).await;
    let states = batch(&[
        ("@bob:example.com", Presence::Online),
        ("@mallory:example.com", Presence::Online),
        ("@alice:example.com", Presence::Unavailable),
        (
            "@carol:remote.org",
            Presence::Other("org.example.custom".into()),
        ),
    ]);
    let routed = routers.get_users_for_states(&states).await;
    assert_eq!(routed.failures, vec![]);
    // Mallory's update (index 1) is routed to nobody; Alice gets her own.
    assert_eq!(
        routed.answer,
        routes(&[
            ("@alice:example.com", &[0, 2, 3]),
            ("@watcher:remote.org", &[0, 2, 3])
        ])
    );
}

#[tokio::test]
async fn an_empty_batch_still_names_the_always_send_users() {
    let (routers, _) = load_ok(EXAMPLE).await;
    let routed = routers.get_users_for_states(&[]).await;
    assert_eq!(
        routed.answer,
        routes(&[("@alice:example.com", &[]), ("@watcher:remote.org", &[])])
    );
}

#[tokio::test]
async fn a_batch_of_only_blacklisted_updates_routes_nothing() {
    let (routers, _) = load_ok(EXAMPLE).await;
    let states = batch(&[("@mallory:example.com", Presence::Online)]);
    let routed = routers.get_users_for_states(&states).await;
    assert_eq!(
        routed.answer,
        routes(&[("@alice:example.com", &[]), ("@watcher:remote.org", &[])])
    );
}

#[tokio::test]
async fn interested_users_is_all_for_always_send_users_and_empty_for_others() {
    let (routers, _) = load_ok(EXAMPLE).await;
    assert_eq!(
        routers
            .get_interested_users("@alice:example.com")
            .await
            .answer,
        InterestedUsers::All
    );
    assert_eq!(
        routers
            .get_interested_users("@watcher:remote.org")
            .await
            .answer,
        InterestedUsers::All
    );
    for unknown in [
        "@bob:example.com",
        "@mallory:example.com",
        "@nobody:elsewhere.net",
    ] {
        assert_eq!(
            routers.get_interested_users(unknown).await.answer,
            InterestedUsers::Users(BTreeSet::new()),
            "{unknown}"
        );
    }
}

#[tokio::test]
async fn without_config_the_router_routes_nothing() {
    let (routers, _) = load_ok("routers: [{component: $EXAMPLE_ROUTER}]").await;
    let states = batch(&[("@bob:example.com", Presence::Online)]);
    assert_eq!(
        routers.get_users_for_states(&states).await.answer,
        routes(&[])
    );
    assert_eq!(
        routers
            .get_interested_users("@bob:example.com")
            .await
            .answer,
        InterestedUsers::Users(BTreeSet::new())
    );
}

#[tokio::test]
async fn the_router_refuses_unknown_keys_wrong_types_and_bad_user_ids_by_name() {
    let cases = [
        ("{always_send_to: []}", "unknown field `always_send_to`"),
        (
            "{always_send_to_users: \"@a:x\"}",
            "always_send_to_users: invalid type: string \"@a:x\", expected a sequence",
        ),
        ("{blacklisted_users: [5]}", "blacklisted_users"),
        (
            "{always_send_to_users: [\"alice\"]}",
            "always_send_to_users: `alice` is not a Matrix user ID",
        ),
    ];
    for (config, expected) in cases {
        let yaml = format!("routers: [{{name: ex, component: $EXAMPLE_ROUTER, config: {config}}}]");
        let error = match load(&yaml).await {
            Ok(_) => panic!("{config} should be refused"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.starts_with("routers.yaml: routers[0].config (router `ex`): the router refused its configuration: "),
            "{error}"
        );
        assert!(error.contains(expected), "{config}: {error}");
    }
}

/// Each call's allocations come from the router's call arena
/// (`examples/routers/rust/src/call_arena.rs`), which empties when the
/// call ends: a one-state call costs well under the 3,543 fuel it took with
/// std's allocator, and call after call costs exactly the same. An arena
/// that did not empty would fill within these calls, and the calls after
/// would cost more, in std's allocator.
#[tokio::test]
async fn each_call_allocates_from_an_arena_that_empties_when_it_ends() {
    let (routers, _) = load_ok(EXAMPLE).await;
    let one = batch(&[("@bob:example.com", Presence::Online)]);
    let used = |routed: &presence_router_runtime::Routed<_>| {
        let [stats] = routed.stats.as_slice() else {
            panic!("one router, one entry: {:?}", routed.stats);
        };
        (stats.fuel_used, stats.memory_bytes)
    };
    let first = used(&routers.get_users_for_states(&one).await);
    assert!(first.0 < 2_500, "{first:?}");
    for call in 0..4_000 {
        assert_eq!(
            used(&routers.get_users_for_states(&one).await),
            first,
            "call {call}"
        );
    }
}
