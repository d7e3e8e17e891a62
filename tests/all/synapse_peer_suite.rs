//! The routing facts of Synapse's own presence router tests
//! (`tests/events/test_presence_router.py`), with the same test router
//! (`PresenceRouterTestModule`, here the `synapse-test-router` guest). What
//! Synapse itself adds (room membership, federation, filtering offline
//! states out of `send_local_online_presence_to`) is the homeserver's part.

use std::collections::BTreeSet;

use presence_router_runtime::{InterestedUsers, Presence};
use presence_router_tests::{batch, load_ok};

const PEER_ROUTER: &str = r#"
routers:
  - name: peer
    component: $SYNAPSE_TEST_ROUTER
    config:
      users_who_should_receive_all_presence: ["@presence_gobbler:test", "@far_away_person:island"]
"#;

#[tokio::test]
async fn a_listed_user_sharing_no_room_sees_everyone_who_sets_presence() {
    let (routers, _) = load_ok(PEER_ROUTER).await;

    // One user goes online: the listed user gets that one update.
    let one = batch(&[("@other_user:test", Presence::Online)]);
    let routed = routers.get_users_for_states(&one).await;
    assert_eq!(routed.answer["@presence_gobbler:test"].len(), 1);

    // Three set theirs, the listed user's own included: all three.
    let three = batch(&[
        ("@other_user:test", Presence::Online),
        ("@third_user:test", Presence::Unavailable),
        ("@presence_gobbler:test", Presence::Online),
    ]);
    let routed = routers.get_users_for_states(&three).await;
    assert_eq!(routed.answer["@presence_gobbler:test"], vec![0, 1, 2]);
    // The remote listed user is routed the same updates (to federate them).
    assert_eq!(routed.answer["@far_away_person:island"], vec![0, 1, 2]);

    // An unlisted user gets nothing from the router: only room-mates.
    assert!(!routed.answer.contains_key("@other_user:test"));
    assert_eq!(
        routers
            .get_interested_users("@other_user:test")
            .await
            .answer,
        InterestedUsers::Users(BTreeSet::new())
    );
}

#[tokio::test]
async fn the_all_users_path_finds_an_entry_for_a_listed_user_even_for_an_empty_batch() {
    let (routers, _) = load_ok(PEER_ROUTER).await;
    // Synapse's ALL_USERS path: get_interested_users says ALL, then the
    // batch goes through get_users_for_states and the user's entry is
    // taken. The entry must be there even when there is nothing to send.
    assert_eq!(
        routers
            .get_interested_users("@presence_gobbler:test")
            .await
            .answer,
        InterestedUsers::All
    );
    let routed = routers.get_users_for_states(&[]).await;
    assert_eq!(routed.answer.get("@presence_gobbler:test"), Some(&vec![]));
}

#[tokio::test]
async fn send_local_online_presence_to_reaches_the_homeserver_with_local_and_remote_users() {
    // The scripted router's `@send:test` command calls
    // send-local-online-presence-to(["@dave:example.com",
    // "@far_away_person:island"]), as the peer suite does for a local and
    // a remote user.
    let (routers, api) = load_ok(
        r#"
routers:
  - {name: peer, component: $SYNAPSE_TEST_ROUTER, config: {users_who_should_receive_all_presence: ["@dave:example.com"]}}
  - {name: sender, component: $SCRIPTED}
"#,
    )
    .await;
    let local_users = batch(&[
        ("@user1:test", Presence::Online),
        ("@user2:test", Presence::Unavailable),
        ("@send:test", Presence::Online),
    ]);
    let routed = routers.get_users_for_states(&local_users).await;
    assert_eq!(routed.failures, vec![]);
    assert_eq!(
        routed.sent_presence_to,
        vec!["@dave:example.com", "@far_away_person:island"]
    );
    assert_eq!(
        *api.sends.lock().unwrap(),
        vec![(
            "sender".to_owned(),
            vec![
                "@dave:example.com".to_owned(),
                "@far_away_person:island".to_owned()
            ]
        )]
    );
    // The listed user gets all three local users' states from the router.
    assert_eq!(routed.answer["@dave:example.com"], vec![0, 1, 2]);
}

#[tokio::test]
async fn the_test_router_sends_presence_once_per_state_carrying_its_status_message() {
    // What the Synapse end-to-end test uses to make a guest call
    // send-local-online-presence-to inside a running homeserver.
    let (routers, _) = load_ok(
        r#"
routers:
  - name: peer
    component: $SYNAPSE_TEST_ROUTER
    config:
      users_who_should_receive_all_presence: ["@peer:test"]
      send_on_status_msg: {status_msg: "resend", users: ["@watcher:test", "@peer:test"]}
    limits: {max_instances: 1}
"#,
    )
    .await;
    let mut states = batch(&[
        ("@courier:test", Presence::Online),
        ("@other:test", Presence::Online),
    ]);
    states[0].status_msg = Some("resend".into());
    states[0].last_active_ts = 1000;
    states[1].status_msg = Some("something else".into());

    let first = routers.get_users_for_states(&states).await;
    assert_eq!(first.sent_presence_to, vec!["@watcher:test", "@peer:test"]);
    assert_eq!(first.answer["@peer:test"], vec![0, 1]);
    // The same state again (the snapshot the send caused): no second send,
    // or a homeserver would loop.
    let again = routers.get_users_for_states(&states).await;
    assert_eq!(again.sent_presence_to, Vec::<String>::new());
    // A newer state with the message sends again.
    states[0].last_active_ts = 2000;
    let newer = routers.get_users_for_states(&states).await;
    assert_eq!(newer.sent_presence_to, vec!["@watcher:test", "@peer:test"]);
}
