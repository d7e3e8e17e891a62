//! The sandbox: a router finds no file, directory, environment variable,
//! argument, socket or input to read, and looking is no failure.

use presence_router_runtime::Presence;
use presence_router_tests::{batch, beside_example};

#[tokio::test]
async fn snoop_finds_no_way_out() {
    let (routers, api) = beside_example("hostile", "HOSTILE_SNOOP", "{}", "{}").await;
    let routed = routers
        .get_users_for_states(&batch(&[("@a:x", Presence::Online)]))
        .await;
    assert_eq!(
        routed.failures,
        vec![],
        "looking is not a crime, and it found nothing"
    );
    assert!(routed.answer.contains_key("@snoop:example.com") && routed.answer.contains_key("@w:x"));
    assert_eq!(
        api.logs_of("hostile"),
        vec![
            "file: Err(NotFound)",
            "dir: Err(NotFound)",
            "env: []",
            "args: []",
            "tcp: Err(PermissionDenied)",
            "udp: Err(PermissionDenied)",
            "stdin: Ok(0)",
        ]
    );
}
