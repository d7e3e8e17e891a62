//! Canaries: a new version of a router tried in shadow on live calls, its
//! answers compared with the live version's, then promoted or rejected by
//! the configuration's criteria (or by the operator); divergent requests
//! recorded for `presence-router diff`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use presence_router_runtime::jsonl::{Request, parse_request};
use presence_router_runtime::{
    CanaryDecision, CanaryStats, LiveRouterSet, LoadOptions, Presence, RouterSet, RouterSetConfig,
    ShadowMode, UserPresenceState,
};
use presence_router_tests::slicer::thread_cpu;
use presence_router_tests::{
    RecordingModuleApi, batch, guests, test_load_options, with_guest_paths,
};

const LIVE_CONFIG: &str = r#"{always_send_to_users: ["@alice:example.com"], blacklisted_users: ["@mallory:example.com"]}"#;

fn options(shadow: ShadowMode) -> LoadOptions {
    LoadOptions {
        shadow,
        ..test_load_options()
    }
}

/// The example router live, with `canary` (YAML mapping entries) as its
/// canary; relative paths resolve against `dir`.
fn config(dir: &Path, canary: &str) -> RouterSetConfig {
    let yaml = with_guest_paths(&format!(
        "routers:\n  - name: example\n    component: $EXAMPLE_ROUTER\n    config: \
         {LIVE_CONFIG}\n    canary: {{{canary}}}\n"
    ));
    RouterSetConfig::from_yaml(&yaml, &dir.join("routers.yaml"), dir)
        .unwrap_or_else(|e| panic!("the configuration should parse: {e}"))
}

async fn live(
    config: &RouterSetConfig,
    shadow: ShadowMode,
) -> (LiveRouterSet, Arc<RecordingModuleApi>) {
    let api = Arc::new(RecordingModuleApi::default());
    match RouterSet::load_with(config, api.clone(), &options(shadow)).await {
        Ok(set) => (LiveRouterSet::new(set), api),
        Err(e) => panic!("the configuration should load: {e}"),
    }
}

fn from_mallory() -> Vec<UserPresenceState> {
    batch(&[
        ("@mallory:example.com", Presence::Online),
        ("@bob:example.com", Presence::Online),
    ])
}

fn clean() -> Vec<UserPresenceState> {
    batch(&[("@bob:example.com", Presence::Unavailable)])
}

fn only_canary(live: &LiveRouterSet) -> CanaryStats {
    let stats = live.current().canary_stats();
    assert_eq!(stats.len(), 1, "{stats:?}");
    stats.into_iter().next().expect("one canary")
}

/// A copy of the example router with a custom section added: other bytes,
/// the same behaviour (a rebuild that changed nothing that matters).
fn rebuilt_example(dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(guests::EXAMPLE_ROUTER).expect("the example router is built");
    let name = b"rebuilt-at";
    let payload = b"2026-12-07";
    bytes.push(0);
    bytes.push(u8::try_from(1 + name.len() + payload.len()).expect("small"));
    bytes.push(u8::try_from(name.len()).expect("small"));
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    let path = dir.join("example-rebuilt.wasm");
    std::fs::write(&path, bytes).expect("written");
    path
}

#[tokio::test]
async fn a_canary_that_diverges_is_rejected_with_exact_counts_and_its_divergent_requests_recorded()
{
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The example router without its blacklist: Mallory's updates routed.
    let config = config(
        dir.path(),
        r#"config: {always_send_to_users: ["@alice:example.com"]}, promote_after: 20,
           max_divergent: 2, record_divergent: divergent.jsonl"#,
    );
    let (live, api) = live(&config, ShadowMode::Inline).await;
    let mut live_answers = Vec::new();
    // Clean, Mallory, clean, Mallory, ...: the third divergent answer is
    // the sixth call's.
    for call in 0..8 {
        let states = if call % 2 == 0 {
            clean()
        } else {
            from_mallory()
        };
        let routed = live.current().get_users_for_states_blocking(&states);
        live_answers.push(routed.answer);
        let interest = live
            .current()
            .get_interested_users_blocking("@alice:example.com");
        assert!(interest.failures.is_empty());
        live.apply_canary_decisions(&options(ShadowMode::Inline))
            .await;
    }
    // The live version served throughout: Mallory's state went nowhere.
    for (call, answer) in live_answers.iter().enumerate() {
        let expected: Vec<u32> = if call % 2 == 0 { vec![0] } else { vec![1] };
        assert_eq!(
            answer.get("@alice:example.com"),
            Some(&expected),
            "call {call}"
        );
    }
    let stats = only_canary(&live);
    assert_eq!(
        (stats.calls, stats.agreed, stats.diverged, stats.failed),
        // Up to the sixth batch and its interest call; none after.
        (11, 8, 3, 0),
        "{stats:?}"
    );
    let (decision, why) = stats.decision.clone().expect("decided");
    assert_eq!(decision, CanaryDecision::Rejected);
    assert!(
        why.starts_with("3 divergent answer(s), more than the 2 allowed"),
        "{why}"
    );
    assert_eq!(stats.recorded, 3);
    // The live version is still the example router with its blacklist.
    let after = live
        .current()
        .get_users_for_states_blocking(&from_mallory());
    assert_eq!(
        after.answer.get("@alice:example.com"),
        Some(&vec![1]),
        "{after:?}"
    );
    let decisions = api.canary_decisions.lock().expect("not poisoned").clone();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert!(
        decisions[0].starts_with("canary of router `example` (")
            && decisions[0].contains(") rejected after 11 shadow call(s): 3 divergent")
            && decisions[0].contains("the live version goes on serving")
            && decisions[0].contains("3 divergent request(s) recorded in"),
        "{}",
        decisions[0]
    );
    // The divergent requests, in the request format `diff` replays: the
    // batches with Mallory's state.
    let recorded = std::fs::read_to_string(dir.path().join("divergent.jsonl")).expect("recorded");
    let requests: Vec<Request> = recorded
        .lines()
        .map(|line| parse_request(line).expect("a request"))
        .collect();
    let expected: Vec<Request> = (0..3)
        .map(|_| Request::GetUsersForStates(from_mallory()))
        .collect();
    assert_eq!(requests, expected);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("divergent.jsonl"))
            .expect("there")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "private: {mode:o}");
    }
}

#[tokio::test]
async fn a_behaviour_preserving_rebuild_is_promoted_after_n_agreeing_calls_and_then_serves() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rebuilt = rebuilt_example(dir.path());
    let config = config(
        dir.path(),
        &format!("component: {}, promote_after: 5", rebuilt.display()),
    );
    let (live, api) = live(&config, ShadowMode::Inline).await;
    let options = options(ShadowMode::Inline);
    for call in 0..4 {
        live.current()
            .get_users_for_states_blocking(&from_mallory());
        assert!(
            live.apply_canary_decisions(&options).await.is_empty(),
            "call {call}"
        );
    }
    live.current().get_users_for_states_blocking(&clean());
    let applied = live.apply_canary_decisions(&options).await;
    assert_eq!(applied.len(), 1);
    assert_eq!(
        applied[0].decision.as_ref().map(|d| d.0),
        Some(CanaryDecision::Promoted)
    );
    assert_eq!(
        (applied[0].calls, applied[0].agreed, applied[0].diverged),
        (5, 5, 0)
    );
    // The canary serves: its file, in the live router's place and figures.
    let current = live.current();
    let info: Vec<_> = current.routers().cloned().collect();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].component, rebuilt);
    let before = current.stats()[0]
        .callback(presence_router_runtime::Callback::GetUsersForStates)
        .calls;
    let routed = current.get_users_for_states_blocking(&from_mallory());
    assert_eq!(routed.answer.get("@alice:example.com"), Some(&vec![1]));
    assert_eq!(
        current.stats()[0]
            .callback(presence_router_runtime::Callback::GetUsersForStates)
            .calls,
        before + 1
    );
    assert_eq!(current.stats()[0].reloads, 1, "a promotion is a reload");
    let decisions = api.canary_decisions.lock().expect("not poisoned").clone();
    assert_eq!(decisions.len(), 1);
    assert!(
        decisions[0]
            .contains(") promoted after 5 shadow call(s): 5 agreeing, 0 divergent, 0 failed")
            && decisions[0].ends_with("; it is the live version now"),
        "{}",
        decisions[0]
    );
    // Reloading the configuration that still names the canary keeps it
    // serving: no rollback, and no second trial.
    let report = live.reload(&config, &options).await.expect("reloads");
    assert_eq!(report.kept, ["example"]);
    assert!(!report.changed());
    assert_eq!(
        live.current().routers().next().map(|r| r.component.clone()),
        Some(rebuilt.clone())
    );
    assert_eq!(
        only_canary(&live).decision.map(|d| d.0),
        Some(CanaryDecision::Promoted)
    );
    // Nor does writing the promoted version in as the live one.
    let promoted = RouterSetConfig::from_yaml(
        &format!(
            "routers:\n  - name: example\n    component: {}\n    config: {LIVE_CONFIG}\n",
            rebuilt.display()
        ),
        &dir.path().join("routers.yaml"),
        dir.path(),
    )
    .expect("parses");
    let report = live.reload(&promoted, &options).await.expect("reloads");
    assert_eq!(report.kept, ["example"]);
    assert!(live.current().canary_stats().is_empty());
}

#[tokio::test]
async fn a_canary_that_spins_is_rejected_and_the_live_answers_do_not_change() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = config(
        dir.path(),
        "component: $HOSTILE_SPIN, config: {}, limits: {timeout: 50ms}, promote_after: 3",
    );
    let (live, api) = live(&config, ShadowMode::Inline).await;
    let without = RouterSet::load_with(
        &RouterSetConfig::from_yaml(
            &with_guest_paths(&format!(
                "routers:\n  - name: example\n    component: $EXAMPLE_ROUTER\n    config: {LIVE_CONFIG}\n"
            )),
            Path::new("routers.yaml"),
            Path::new("."),
        )
        .expect("parses"),
        Arc::new(RecordingModuleApi::default()),
        &test_load_options(),
    )
    .await
    .expect("loads");
    let routed = live
        .current()
        .get_users_for_states_blocking(&from_mallory());
    assert_eq!(
        routed.answer,
        without
            .get_users_for_states_blocking(&from_mallory())
            .answer
    );
    assert!(
        routed.failures.is_empty(),
        "the canary's failure is its own"
    );
    assert!(api.skipped.lock().expect("not poisoned").is_empty());
    let applied = live
        .apply_canary_decisions(&options(ShadowMode::Inline))
        .await;
    assert_eq!(applied.len(), 1);
    let (decision, why) = applied[0].decision.clone().expect("decided");
    assert_eq!(decision, CanaryDecision::Rejected);
    assert!(
        why.starts_with("1 failed call(s), more than the 0 allowed")
            && (why.contains("out_of_fuel") || why.contains("timeout")),
        "{why}"
    );
    let again = live
        .current()
        .get_users_for_states_blocking(&from_mallory());
    assert_eq!(again.answer, routed.answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_calls_run_on_the_canarys_own_thread_and_cost_the_caller_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // A canary that spins to its timeout on every call, sampled on every
    // call, while the live version answers at once.
    let config = config(
        dir.path(),
        "component: $HOSTILE_SPIN, config: {}, limits: {fuel: 1000000000000, timeout: 200ms}, \
         max_failures: 1000, promote_after: 1000",
    );
    let (live, _api) = live(&config, ShadowMode::Thread).await;
    let set = live.current();
    let calls = 5u64;
    let caller = std::thread::spawn(move || {
        let started = thread_cpu();
        for _ in 0..calls {
            let routed = set.get_users_for_states_blocking(&from_mallory());
            assert!(routed.failures.is_empty());
        }
        thread_cpu() - started
    });
    let spent = caller.join().expect("the caller finished");
    // Five spins of 200 ms of CPU each ran, but not on the caller's
    // thread: it spent what five calls of the example router cost.
    assert!(
        spent < Duration::from_millis(200),
        "the caller spent {spent:?} of CPU"
    );
    // The spins run on the canary's thread, one after another: wait for
    // them (CPU time, not luck: each is bounded by its timeout; the wait is
    // long because the canary's thread runs at a low priority, behind
    // whatever else keeps the machine busy).
    let mut stats = only_canary(&live);
    for _ in 0..3000 {
        if stats.failed + stats.skipped == calls {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        stats = only_canary(&live);
    }
    assert_eq!(stats.failed + stats.skipped, calls, "{stats:?}");
    assert!(stats.failed >= 1, "{stats:?}");
    assert_eq!(stats.decision, None);
    // Its figures are its own.
    let canary_routers = live.current().canary_router_stats();
    assert_eq!(canary_routers.len(), 1);
    assert_eq!(canary_routers[0].router, "example.canary");
    assert_eq!(
        live.current().stats()[0]
            .callback(presence_router_runtime::Callback::GetUsersForStates)
            .failures_total(),
        0
    );
}

#[tokio::test]
async fn a_sample_draws_calls_evenly_and_the_operator_decides_at_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rebuilt = rebuilt_example(dir.path());
    let config = config(
        dir.path(),
        &format!(
            "component: {}, sample: 0.25, promote_after: 100",
            rebuilt.display()
        ),
    );
    let (live, api) = live(&config, ShadowMode::Inline).await;
    for _ in 0..8 {
        live.current().get_users_for_states_blocking(&clean());
    }
    let stats = only_canary(&live);
    assert_eq!((stats.calls, stats.agreed), (2, 2), "every fourth call");
    // The operator promotes now.
    assert!(
        live.current()
            .decide_canary("example", CanaryDecision::Promoted)
    );
    assert!(
        !live
            .current()
            .decide_canary("nobody", CanaryDecision::Promoted)
    );
    let applied = live
        .apply_canary_decisions(&options(ShadowMode::Inline))
        .await;
    assert_eq!(applied.len(), 1);
    assert_eq!(
        applied[0].decision,
        Some((
            CanaryDecision::Promoted,
            "the operator's decision".to_owned()
        ))
    );
    assert_eq!(
        live.current().routers().next().map(|r| r.component.clone()),
        Some(rebuilt.clone())
    );
    assert_eq!(api.canary_decisions.lock().expect("not poisoned").len(), 1);
    // `decision: reject` in the configuration: the trial ends at load.
    let config = self::config(
        dir.path(),
        &format!("component: {}, decision: reject", rebuilt.display()),
    );
    let (rejecting, _api) = self::live(&config, ShadowMode::Inline).await;
    let applied = rejecting
        .apply_canary_decisions(&options(ShadowMode::Inline))
        .await;
    assert_eq!(
        applied[0].decision.as_ref().map(|d| d.0),
        Some(CanaryDecision::Rejected)
    );
    assert_eq!(
        rejecting
            .current()
            .routers()
            .next()
            .map(|r| r.component.clone()),
        Some(PathBuf::from(guests::EXAMPLE_ROUTER))
    );
}

#[tokio::test]
async fn a_canary_that_cannot_load_fails_the_load_naming_its_key() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = config(dir.path(), "component: missing.wasm");
    let error = RouterSet::load_with(
        &config,
        Arc::new(RecordingModuleApi::default()),
        &test_load_options(),
    )
    .await
    .err()
    .expect("refused");
    let text = error.to_string();
    assert!(
        text.contains("routers[0].canary.component (router `example`)")
            && text.contains("missing.wasm"),
        "{text}"
    );
    // A recording that can't be made is named too.
    let config = self::config(
        dir.path(),
        "config: {}, record_divergent: no-such-dir/divergent.jsonl",
    );
    let error = RouterSet::load_with(
        &config,
        Arc::new(RecordingModuleApi::default()),
        &test_load_options(),
    )
    .await
    .err()
    .expect("refused");
    let text = error.to_string();
    assert!(
        text.contains("routers[0].canary.record_divergent (router `example`)"),
        "{text}"
    );
}

#[tokio::test]
async fn a_changed_canary_records_on_and_a_canary_that_cannot_load_fails_no_reload() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let trial = |sample: &str| {
        config(
            dir.path(),
            &format!(
                r#"config: {{always_send_to_users: ["@alice:example.com"]}}, sample: {sample},
                   promote_after: 1000, max_divergent: 1000, record_divergent: divergent.jsonl"#
            ),
        )
    };
    let options = options(ShadowMode::Inline);
    let (live, _api) = live(&trial("1"), ShadowMode::Inline).await;
    live.current()
        .get_users_for_states_blocking(&from_mallory());
    // A changed canary recording to the same file: the same recorder goes
    // on (a file is locked by one), and the trial starts again.
    let report = live.reload(&trial("0.5"), &options).await.expect("reloads");
    assert_eq!(report.canaries, ["example"]);
    assert_eq!(report.kept, ["example"]);
    for _ in 0..2 {
        live.current()
            .get_users_for_states_blocking(&from_mallory());
    }
    let stats = only_canary(&live);
    assert_eq!(
        (stats.calls, stats.diverged, stats.recorded),
        (1, 1, 1),
        "{stats:?}"
    );
    assert!(
        live.current()
            .flush_canary_recordings(Duration::from_secs(60))
    );
    let recorded = std::fs::read_to_string(dir.path().join("divergent.jsonl")).expect("there");
    assert_eq!(recorded.lines().count(), 2);
    // A canary that can't load fails no reload: the router goes on, with
    // no canary, and the report says why.
    let missing = config(dir.path(), "component: missing.wasm");
    let report = live.reload(&missing, &options).await.expect("reloads");
    assert_eq!(report.kept, ["example"]);
    assert_eq!(report.canaries, ["example"]);
    assert_eq!(report.canaries_refused.len(), 1, "{report:?}");
    assert!(
        report.canaries_refused[0]
            .1
            .contains("routers[0].canary.component")
            && report.canaries_refused[0].1.contains("missing.wasm"),
        "{report:?}"
    );
    assert!(live.current().canary_stats().is_empty());
    let routed = live
        .current()
        .get_users_for_states_blocking(&from_mallory());
    assert_eq!(routed.answer.get("@alice:example.com"), Some(&vec![1]));
}
