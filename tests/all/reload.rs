//! Hot reload: `LiveRouterSet` swaps a new version in while calls run.
//! Every call finishes on the version it started with, a version that fails
//! to load never serves, and a router whose bytes and configuration did not
//! change is kept as it was; a component file another user owns is not
//! loaded again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use presence_router_runtime::{CacheSetting, LoadOptions};
use presence_router_runtime::{
    LiveRouterSet, LoadError, Presence, RouterSet, RouterSetConfig, UsersForStates,
};
use presence_router_tests::cache::routes_as_the_example;
use presence_router_tests::second_user::{
    ATTACKER, attacker_does, second_user_available, temp_dir_with_mode,
};
use presence_router_tests::{
    RecordingModuleApi, batch, guests, test_load_options, with_guest_paths, write_file,
};

use crate::support::load_component;

/// Two routers whose answers name the version: a mixed answer would name
/// users of both.
fn two_routers(version: &str) -> String {
    with_guest_paths(&format!(
        r#"
routers:
  - name: first
    component: $EXAMPLE_ROUTER
    config: {{always_send_to_users: ["@{version}-first:x"]}}
  - name: second
    component: $EXAMPLE_ROUTER
    config: {{always_send_to_users: ["@{version}-second:x"]}}
"#
    ))
}

fn config(yaml: &str) -> RouterSetConfig {
    RouterSetConfig::from_yaml(yaml, Path::new("routers.yaml"), Path::new("."))
        .unwrap_or_else(|e| panic!("the configuration should parse: {e}"))
}

async fn live(yaml: &str) -> LiveRouterSet {
    let api = Arc::new(RecordingModuleApi::default());
    match RouterSet::load_with(&config(yaml), api, &test_load_options()).await {
        Ok(set) => LiveRouterSet::new(set),
        Err(e) => panic!("the configuration should load: {e}"),
    }
}

/// The whole answer of version `version` to a one-state batch.
fn answer_of(version: &str) -> UsersForStates {
    [
        (format!("@{version}-first:x"), vec![0]),
        (format!("@{version}-second:x"), vec![0]),
    ]
    .into_iter()
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_swaps_under_load_lose_no_answer_and_every_answer_is_one_version_whole() {
    let versions = [two_routers("a"), two_routers("b")];
    let configs = versions.each_ref().map(|yaml| config(yaml));
    let live = Arc::new(live(&versions[0]).await);
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let (live, stop, calls) = (live.clone(), stop.clone(), calls.clone());
            std::thread::spawn(move || {
                let states = batch(&[("@u:x", Presence::Online)]);
                let (whole_a, whole_b) = (answer_of("a"), answer_of("b"));
                let mut seen = [0usize; 2];
                while !stop.load(Ordering::Relaxed) {
                    let routed = live.current().get_users_for_states_blocking(&states);
                    assert!(routed.failures.is_empty(), "{:?}", routed.failures);
                    if routed.answer == whole_a {
                        seen[0] += 1;
                    } else if routed.answer == whole_b {
                        seen[1] += 1;
                    } else {
                        panic!("an answer from no one version: {:?}", routed.answer);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
                seen
            })
        })
        .collect();
    for swap in 1..=100 {
        let report = live
            .reload(&configs[swap % 2], &test_load_options())
            .await
            .unwrap_or_else(|e| panic!("swap {swap} should load: {e}"));
        assert_eq!(report.reloaded, ["first", "second"]);
        // Calls run between every two swaps: wait for some (however slowly
        // the machine runs them).
        let before = calls.load(Ordering::Relaxed);
        while calls.load(Ordering::Relaxed) < before + 3 {
            tokio::task::yield_now().await;
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = [0usize; 2];
    for caller in callers {
        let [a, b] = caller.join().expect("a caller failed");
        seen[0] += a;
        seen[1] += b;
    }
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both versions answered: {seen:?}"
    );
    assert_eq!(seen[0] + seen[1], calls.load(Ordering::Relaxed));
    assert_eq!(live.reload_counts(), (100, 0));
    // The figures went on across the versions: one per call per router.
    let stats = live.current().stats();
    assert_eq!(
        stats[0].get_users_for_states.calls as usize,
        calls.load(Ordering::Relaxed)
    );
    assert_eq!(stats[0].reloads, 100);
}

#[tokio::test]
async fn a_call_holding_the_old_version_finishes_on_it() {
    let live = live(&two_routers("a")).await;
    let held = live.current();
    live.reload(&config(&two_routers("b")), &test_load_options())
        .await
        .expect("version b loads");
    let states = batch(&[("@u:x", Presence::Online)]);
    assert_eq!(
        held.get_users_for_states_blocking(&states).answer,
        answer_of("a")
    );
    assert_eq!(
        live.current().get_users_for_states_blocking(&states).answer,
        answer_of("b")
    );
}

/// A copy of a guest in `dir`, for a test to overwrite.
fn copy_guest(dir: &Path, path: &str) -> PathBuf {
    let bytes = std::fs::read(path).expect("the guest was built");
    write_file(dir, "router.wasm", bytes)
}

#[tokio::test]
async fn a_version_that_fails_to_load_leaves_the_old_one_serving() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let component = copy_guest(dir.path(), guests::EXAMPLE_ROUTER);
    let yaml = format!(
        r#"
routers:
  - name: swapped
    component: {}
    config: {{always_send_to_users: ["@w:x"]}}
"#,
        component.display()
    );
    let live = live(&yaml).await;
    write_file(dir.path(), "router.wasm", b"\0asm junk, not a component");
    let error = live
        .reload(&config(&yaml), &test_load_options())
        .await
        .expect_err("junk can't load");
    assert!(matches!(error, LoadError::Component { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("routers[0].component") && text.contains("`swapped`"),
        "{text}"
    );
    assert!(text.contains(&component.display().to_string()), "{text}");
    let states = batch(&[("@u:x", Presence::Online)]);
    let routed = live.current().get_users_for_states_blocking(&states);
    assert_eq!(
        routed.answer,
        [("@w:x".to_owned(), vec![0])].into_iter().collect()
    );
    assert_eq!(live.reload_counts(), (0, 1));
    let stats = live.current().stats();
    assert_eq!((stats[0].reloads, stats[0].failed_reloads), (0, 1));
}

#[tokio::test]
async fn only_the_router_whose_file_changed_is_loaded_again() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let component = copy_guest(dir.path(), guests::EXAMPLE_ROUTER);
    let yaml = with_guest_paths(&format!(
        r#"
routers:
  - name: from-file
    component: {}
    config: {{always_send_to_users: ["@w:x"]}}
  - name: steady
    component: $EXAMPLE_ROUTER
    config: {{always_send_to_users: ["@s:x"]}}
"#,
        component.display()
    ));
    let live = live(&yaml).await;
    let before = live.current();

    // Nothing changed: the running set stays, the very same.
    let report = live
        .reload(&config(&yaml), &test_load_options())
        .await
        .expect("reloads");
    assert!(!report.changed());
    assert_eq!(report.kept, ["from-file", "steady"]);
    assert!(Arc::ptr_eq(&before, &live.current()));

    // A new build at the same path (here one that traps on every call):
    // its calls now run the new code.
    std::fs::copy(guests::HOSTILE_PANIC, &component).expect("copies");
    let report = live
        .reload(&config(&yaml), &test_load_options())
        .await
        .expect("the new build loads");
    assert_eq!(report.reloaded, ["from-file"]);
    assert_eq!(report.kept, ["steady"]);
    let states = batch(&[("@u:x", Presence::Online)]);
    let routed = live.current().get_users_for_states_blocking(&states);
    assert_eq!(
        routed.answer,
        [("@s:x".to_owned(), vec![0])].into_iter().collect()
    );
    assert_eq!(
        presence_router_tests::failure_kinds(&routed),
        [("from-file", presence_router_runtime::FailureKind::Trap)]
    );
    assert_eq!(live.current().stats()[0].reloads, 1);
}

#[tokio::test]
async fn one_router_can_be_replaced_or_added_alone() {
    let live = live(&two_routers("a")).await;
    let b = config(&two_routers("b"));
    let report = live
        .reload_router(
            &b.routers[1],
            &b.source,
            &b.trusted_keys,
            &test_load_options(),
        )
        .await
        .expect("loads");
    assert_eq!(report.reloaded, ["second"]);
    assert_eq!(report.kept, ["first"]);
    let states = batch(&[("@u:x", Presence::Online)]);
    let expected: UsersForStates = [
        ("@a-first:x".to_owned(), vec![0]),
        ("@b-second:x".to_owned(), vec![0]),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        live.current().get_users_for_states_blocking(&states).answer,
        expected
    );
}

/// Two routers, each from its own copy of a guest in `dir`.
fn two_files(dir: &Path, second_config: &str) -> String {
    format!(
        r#"
routers:
  - name: first
    component: {}
    config: {{always_send_to_users: ["@first:x"]}}
  - name: second
    component: {}
    config: {second_config}
    failure_policy: {{suspend_after: 1, backoff: 1h, max_backoff: 1h}}
"#,
        dir.join("first.wasm").display(),
        dir.join("second.wasm").display()
    )
}

#[tokio::test]
async fn a_reload_that_fails_on_a_later_router_counts_no_reload() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    write_file(
        dir.path(),
        "first.wasm",
        std::fs::read(guests::EXAMPLE_ROUTER).expect("built"),
    );
    write_file(
        dir.path(),
        "second.wasm",
        std::fs::read(guests::EXAMPLE_ROUTER).expect("built"),
    );
    let live = live(&two_files(dir.path(), "{}")).await;
    // The first router's new version loads; the second's is junk.
    write_file(
        dir.path(),
        "first.wasm",
        std::fs::read(guests::EXAMPLE_V2).expect("built"),
    );
    write_file(dir.path(), "second.wasm", b"junk");
    live.reload(&config(&two_files(dir.path(), "{}")), &test_load_options())
        .await
        .expect_err("the second router can't load");
    let stats = live.current().stats();
    assert_eq!((stats[0].reloads, stats[0].failed_reloads), (0, 0));
    assert_eq!((stats[1].reloads, stats[1].failed_reloads), (0, 1));
}

#[tokio::test]
async fn a_suspended_router_replaced_by_a_working_build_is_not_suspended() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    write_file(
        dir.path(),
        "first.wasm",
        std::fs::read(guests::EXAMPLE_ROUTER).expect("built"),
    );
    write_file(
        dir.path(),
        "second.wasm",
        std::fs::read(guests::HOSTILE_PANIC).expect("built"),
    );
    let yaml = two_files(dir.path(), r#"{always_send_to_users: ["@second:x"]}"#);
    let live = live(&yaml).await;
    let states = batch(&[("@u:x", Presence::Online)]);
    live.current().get_users_for_states_blocking(&states);
    assert!(live.current().stats()[1].suspended);

    write_file(
        dir.path(),
        "second.wasm",
        std::fs::read(guests::EXAMPLE_ROUTER).expect("built"),
    );
    let report = live
        .reload(&config(&yaml), &test_load_options())
        .await
        .expect("the fixed build loads");
    assert_eq!(report.reloaded, ["second"]);
    let stats = live.current().stats();
    assert!(!stats[1].suspended, "{stats:?}");
    assert_eq!(stats[1].suspensions, 1);
    let routed = live.current().get_users_for_states_blocking(&states);
    assert!(routed.answer.contains_key("@second:x"), "{routed:?}");
}

#[tokio::test]
async fn a_component_another_user_owns_is_not_reloaded() {
    if !second_user_available("a_component_another_user_owns_is_not_reloaded") {
        return;
    }
    let dir = temp_dir_with_mode(0o755);
    let component = dir.path().join("example.wasm");
    std::fs::copy(guests::EXAMPLE_ROUTER, &component).expect("copied");
    let live = LiveRouterSet::new(load_component(&component).await.expect("loads"));
    // A careless `chown`: the attacker now owns the file and rewrites it
    // in place with a router of their own.
    std::os::unix::fs::chown(&component, Some(ATTACKER), Some(ATTACKER)).expect("chown");
    attacker_does(
        "cat \"$1\" > \"$2\"",
        &[guests::HOSTILE_PANIC.as_ref(), component.as_os_str()],
    );
    let config = RouterSetConfig::from_yaml(
        &format!(
            "routers: [{{name: example, component: '{}', config: {{always_send_to_users: ['@a:x']}}}}]",
            component.display()
        ),
        Path::new("routers.yaml"),
        Path::new("."),
    )
    .expect("parses");
    let error = live
        .reload(
            &config,
            &LoadOptions {
                cache: CacheSetting::Disabled,
                ..LoadOptions::default()
            },
        )
        .await
        .expect_err("another user's file must not be loaded");
    let text = error.to_string();
    assert!(text.contains("owned by uid 65534"), "{text}");
    assert!(routes_as_the_example(&live.current()).await);
}
