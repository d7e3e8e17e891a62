//! What the tests of several subjects share: a misbehaving router beside
//! the example router, and what to expect of the two.

use std::path::Path;
use std::sync::Arc;

use presence_router_runtime::{
    CacheSetting, FailureKind, LoadOptions, LoggingModuleApi, Presence, Routed, RouterSet,
    RouterSetConfig, UserPresenceState, UsersForStates,
};
use presence_router_tests::{RecordingModuleApi, batch, beside_example, failure_kinds, load_ok};

pub fn two_states() -> Vec<UserPresenceState> {
    batch(&[("@a:x", Presence::Online), ("@b:y", Presence::Unavailable)])
}

/// The example router's answer for [`two_states`], alone.
pub fn example_answered(routed: &Routed<UsersForStates>) -> bool {
    routed.answer.len() == 1 && routed.answer.get("@w:x") == Some(&vec![0, 1])
}

/// Asserts that `router` alone was skipped, as `kind` with `fragment` in its
/// message, and that the example router beside it answered.
pub fn assert_only_skipped(
    routed: &Routed<UsersForStates>,
    call: usize,
    router: &str,
    kind: FailureKind,
    fragment: &str,
) {
    assert_eq!(
        failure_kinds(routed),
        vec![(router, kind)],
        "call {call}: {:?}",
        routed.failures
    );
    assert!(
        routed.failures[0].message.contains(fragment),
        "call {call}: {}",
        routed.failures[0].message
    );
    assert!(example_answered(routed), "call {call}: {:?}", routed.answer);
}

/// Routes [`two_states`] twice through `guest` (as router `hostile`)
/// beside the example router; both times the hostile router must be
/// skipped as `kind` with a message containing `message`, and the example
/// router must route both states to `@w:x`.
pub async fn skipped_twice(
    guest: &str,
    config: &str,
    limits: &str,
    kind: FailureKind,
    message: &str,
) -> Vec<Routed<UsersForStates>> {
    let (routers, api) = beside_example("hostile", guest, config, limits).await;
    let states = two_states();
    let mut reports = Vec::new();
    for call in 1..=2 {
        let routed = routers.get_users_for_states(&states).await;
        assert_eq!(
            failure_kinds(&routed),
            vec![("hostile", kind)],
            "{guest}, call {call}"
        );
        assert!(
            routed.failures[0].message.contains(message),
            "{guest}, call {call}: {}",
            routed.failures[0].message
        );
        assert_eq!(
            routed.answer.len(),
            1,
            "{guest}: only the example router answered"
        );
        assert_eq!(routed.answer["@w:x"], vec![0, 1], "{guest}");
        reports.push(routed);
    }
    assert_eq!(
        api.skipped.lock().unwrap().len(),
        2,
        "{guest}: both failures were reported"
    );
    reports
}

/// A misbehaving scripted router (as router `hostile`, with `limits`)
/// beside the example router, which must keep answering.
pub async fn with_bystander(limits: &str) -> (RouterSet, Arc<RecordingModuleApi>) {
    load_ok(&format!(
        r#"
routers:
  - name: hostile
    component: $SCRIPTED
    config: {{routes: {{"@h:x": "all"}}, interested: {{"@asker:x": ["@h:x"]}}}}
    limits: {limits}
  - name: example
    component: $EXAMPLE_ROUTER
    config: {{always_send_to_users: ["@w:x"]}}
"#
    ))
    .await
}

/// Routes a batch containing `@<command>:test`, expects `hostile` to be
/// skipped with `kind` and `example` to answer; then routes a clean batch and
/// expects both to answer.
pub async fn skipped_then_recovers(limits: &str, command: &str, kind: FailureKind, message: &str) {
    let (routers, api) = with_bystander(limits).await;
    let poisoned = batch(&[("@u:x", Presence::Online), (command, Presence::Online)]);
    let routed = routers.get_users_for_states(&poisoned).await;
    assert_eq!(routed.failures.len(), 1, "{command}: {:?}", routed.failures);
    let failure = &routed.failures[0];
    assert_eq!(
        (failure.router.as_str(), failure.kind),
        ("hostile", kind),
        "{command}: {failure:?}"
    );
    assert!(
        failure.message.contains(message),
        "{command}: {}",
        failure.message
    );
    assert_eq!(routed.answer.len(), 1, "only the bystander answered");
    assert_eq!(routed.answer["@w:x"].len(), 2);
    assert_eq!(
        *api.skipped.lock().unwrap(),
        routed.failures,
        "reported to the homeserver too"
    );

    for _ in 0..2 {
        let clean = batch(&[("@u:x", Presence::Online)]);
        let routed = routers.get_users_for_states(&clean).await;
        assert_eq!(routed.failures, vec![], "{command}: the next call works");
        assert_eq!(
            routed.answer.keys().collect::<Vec<_>>(),
            vec!["@h:x", "@w:x"]
        );
    }
}

/// A batch the scripted router panics on.
pub fn panicking() -> Vec<UserPresenceState> {
    batch(&[("@panic:test", Presence::Online)])
}

/// A batch every test router answers.
pub fn clean() -> Vec<UserPresenceState> {
    batch(&[("@u:x", Presence::Online)])
}

/// How many times `router`, a scripted router configured with
/// `log_calls: true`, really ran `get-users-for-states` (it logs each call
/// it gets).
pub fn guest_calls(api: &RecordingModuleApi, router: &str) -> usize {
    api.logs_of(router)
        .iter()
        .filter(|line| line.starts_with("get-users-for-states"))
        .count()
}

/// Limits under which the aliaser can build its 40 MiB buffer.
pub const ALIASER_LIMITS: &str = "{memory: 64MiB, fuel: 1000000000000, timeout: 30s}";

/// Loads the example router from the file `component` with no cache; the
/// error text if it does not load.
pub async fn load_component(component: &Path) -> Result<RouterSet, String> {
    let yaml = format!(
        "routers: [{{name: example, component: '{}', config: {{always_send_to_users: ['@a:x']}}}}]",
        component.display()
    );
    let config = RouterSetConfig::from_yaml(&yaml, Path::new("routers.yaml"), Path::new("."))
        .map_err(|e| e.to_string())?;
    let options = LoadOptions {
        cache: CacheSetting::Disabled,
        ..LoadOptions::default()
    };
    RouterSet::load_with(&config, Arc::new(LoggingModuleApi), &options)
        .await
        .map_err(|e| e.to_string())
}
