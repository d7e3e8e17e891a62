//! Test support: the freshly built guest components (see `build.rs`) and a
//! [`ModuleApi`] that records everything the runtime tells the homeserver.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use presence_router_runtime::{
    CacheSetting, FailureKind, LoadError, LoadOptions, LogLevel, LoggingModuleApi, ModuleApi,
    Presence, Routed, RouterFailure, RouterSet, RouterSetConfig, UserPresenceState,
};

pub mod cache;
pub mod components;
pub mod example_routers;
#[cfg(unix)]
pub mod second_user;
#[cfg(unix)]
pub mod slicer;

/// The example router in other languages: `example_router!(Language::C)`.
pub use example_routers::Language;

/// The example router's configuration the conformance cases
/// (`conformance/example-router.yaml`) are written for. Its routes go to
/// two users, so the example routers' answers allocate (what the leak
/// checks need).
pub const CONFORMANCE_CONFIG: &str = r#"{"always_send_to_users": ["@alice:example.com", "@watcher:remote.org"], "blacklisted_users": ["@mallory:example.com"]}"#;

/// A component with [`CONFORMANCE_CONFIG`], as one side of a differential
/// test.
pub fn conformance_contender(component: &str) -> presence_router_testkit::differential::Contender {
    presence_router_testkit::differential::Contender::Component {
        path: PathBuf::from(component),
        config_json: CONFORMANCE_CONFIG.to_owned(),
    }
}

/// The documentation's Python presence router
/// (`synapse-module/e2e/example_presence_router.py`, which the e2e tests
/// run in Synapse) with [`CONFORMANCE_CONFIG`], run by `python3` without
/// Synapse, as `test --against python:...` runs it.
pub fn docs_python_router() -> presence_router_testkit::differential::Contender {
    presence_router_testkit::differential::Contender::Python {
        python: presence_router_testkit::differential::default_python().to_owned(),
        class: "example_presence_router.ExamplePresenceRouter".to_owned(),
        config_json: CONFORMANCE_CONFIG.to_owned(),
        python_path: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../synapse-module/e2e")),
    }
}

/// Paths of the guest components, one constant per `.wasm` file
/// (`EXAMPLE_ROUTER`, `SCRIPTED`, `HOSTILE_SPIN`, ...), and [`guests::ALL`].
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// Everything the runtime handed to the homeserver, in order.
#[derive(Default)]
pub struct RecordingModuleApi {
    pub logs: Mutex<Vec<(String, LogLevel, String)>>,
    pub sends: Mutex<Vec<(String, Vec<String>)>>,
    pub skipped: Mutex<Vec<RouterFailure>>,
    pub warnings: Mutex<Vec<(String, String)>>,
    pub resumed: Mutex<Vec<String>>,
    /// The log line of each canary decision applied.
    pub canary_decisions: Mutex<Vec<String>>,
}

impl RecordingModuleApi {
    /// The log lines of one router.
    pub fn logs_of(&self, router: &str) -> Vec<String> {
        let logs = self.logs.lock().expect("not poisoned");
        logs.iter()
            .filter(|(r, _, _)| r == router)
            .map(|(_, _, m)| m.clone())
            .collect()
    }

    pub fn clear(&self) {
        self.logs.lock().expect("not poisoned").clear();
        self.sends.lock().expect("not poisoned").clear();
        self.skipped.lock().expect("not poisoned").clear();
        self.warnings.lock().expect("not poisoned").clear();
        self.resumed.lock().expect("not poisoned").clear();
        self.canary_decisions.lock().expect("not poisoned").clear();
    }
}

impl ModuleApi for RecordingModuleApi {
    fn send_local_online_presence_to(&self, router: &str, users: &[String]) {
        self.sends
            .lock()
            .expect("not poisoned")
            .push((router.to_owned(), users.to_vec()));
    }

    fn guest_log(&self, router: &str, level: LogLevel, message: &str) {
        self.logs.lock().expect("not poisoned").push((
            router.to_owned(),
            level,
            message.to_owned(),
        ));
    }

    fn router_skipped(&self, failure: &RouterFailure) {
        self.skipped
            .lock()
            .expect("not poisoned")
            .push(failure.clone());
    }

    fn router_resumed(&self, router: &str) {
        self.resumed
            .lock()
            .expect("not poisoned")
            .push(router.to_owned());
    }

    fn router_warning(&self, router: &str, message: &str) {
        self.warnings
            .lock()
            .expect("not poisoned")
            .push((router.to_owned(), message.to_owned()));
    }

    fn canary_decided(&self, canary: &presence_router_runtime::CanaryStats) {
        self.canary_decisions
            .lock()
            .expect("not poisoned")
            .extend(canary.decision_line());
    }
}

/// Replaces `$EXAMPLE_ROUTER`, `$SCRIPTED`, `$HOSTILE_SPIN`, ... (any name
/// in [`guests::ALL`]) in a YAML text with the guests' paths.
pub fn with_guest_paths(yaml: &str) -> String {
    // Longest names first, so that `$HOSTILE_SPIN` is not read as `$HOSTILE`.
    let mut names: Vec<_> = guests::ALL.to_vec();
    names.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    names.iter().fold(yaml.to_owned(), |text, (name, path)| {
        text.replace(&format!("${name}"), path)
    })
}

/// The reverse of [`with_guest_paths`], for comparing error texts.
pub fn with_guest_names(text: &str) -> String {
    guests::ALL
        .iter()
        .fold(text.to_owned(), |text, (name, path)| {
            text.replace(path, &format!("${name}"))
        })
}

/// Loads a router set from YAML text (guest placeholders allowed), with a
/// recording module API.
pub async fn load(yaml: &str) -> Result<(RouterSet, Arc<RecordingModuleApi>), LoadError> {
    let config = RouterSetConfig::from_yaml(
        &with_guest_paths(yaml),
        Path::new("routers.yaml"),
        Path::new("."),
    )?;
    let api = Arc::new(RecordingModuleApi::default());
    let set = RouterSet::load_with(&config, api.clone(), &test_load_options()).await?;
    Ok((set, api))
}

/// `component` alone, with [`CONFORMANCE_CONFIG`] and `limits`, profiled
/// into `profiler` if there is one; it must load.
pub async fn load_conformance(
    component: &str,
    profiler: Option<presence_router_runtime::FuelProfiler>,
    limits: presence_router_runtime::Limits,
) -> RouterSet {
    let options = LoadOptions {
        profiler,
        ..test_load_options()
    };
    let config =
        presence_router_testkit::single_router(Path::new(component), CONFORMANCE_CONFIG, limits);
    RouterSet::load_with(&config, Arc::new(LoggingModuleApi), &options)
        .await
        .expect("the router loads")
}

/// Loads a router set that must load, with a module API that keeps nothing
/// (for measuring the host's memory).
pub async fn load_forgetful(yaml: &str) -> RouterSet {
    let config = RouterSetConfig::from_yaml(
        &with_guest_paths(yaml),
        Path::new("routers.yaml"),
        Path::new("."),
    )
    .unwrap_or_else(|e| panic!("the configuration should parse: {e}"));
    match RouterSet::load_with(&config, Arc::new(LoggingModuleApi), &test_load_options()).await {
        Ok(set) => set,
        Err(e) => panic!("the configuration should load: {e}"),
    }
}

/// Tests share one compiled-component cache under `target/`, keyed by
/// each component's hash, so a rebuilt guest is never served stale.
pub fn test_load_options() -> LoadOptions {
    LoadOptions {
        cache: CacheSetting::Dir(PathBuf::from(guests::COMPONENT_CACHE_DIR)),
        ..LoadOptions::default()
    }
}

/// Like [`load`], for a configuration that must load.
pub async fn load_ok(yaml: &str) -> (RouterSet, Arc<RecordingModuleApi>) {
    match load(yaml).await {
        Ok(loaded) => loaded,
        Err(e) => panic!("the configuration should load: {e}"),
    }
}

/// A batch of states, one per `(user, presence)`.
pub fn batch(states: &[(&str, Presence)]) -> Vec<UserPresenceState> {
    states
        .iter()
        .map(|(user, presence)| UserPresenceState::new(*user, presence.clone()))
        .collect()
}

/// The example router's configuration in the benchmarks: two users who get
/// everything, two whose updates are never routed.
pub const BENCH_EXAMPLE_CONFIG: &str = r#"{always_send_to_users: ["@alice:example.com", "@bob:example.com"], blacklisted_users: ["@mallory:example.com", "@eve:example.org"]}"#;

/// The benchmarks' batch of `n` states; one in ten is from a blacklisted
/// user of [`BENCH_EXAMPLE_CONFIG`].
pub fn bench_batch(n: usize) -> Vec<UserPresenceState> {
    (0..n)
        .map(|i| {
            let user = match i % 10 {
                0 => "@mallory:example.com".to_owned(),
                _ => format!("@user{i}:example.com"),
            };
            let mut state = UserPresenceState::new(user, Presence::Online);
            state.last_active_ts = 1_700_000_000_000 + i as u64;
            state.currently_active = i % 2 == 0;
            state
        })
        .collect()
}

/// Who was skipped and why, in order: `[("router", kind), ...]`.
pub fn failure_kinds<T>(routed: &Routed<T>) -> Vec<(&str, FailureKind)> {
    routed
        .failures
        .iter()
        .map(|f| (f.router.as_str(), f.kind))
        .collect()
}

/// Writes a file into a directory and returns its path.
pub fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("the temporary directory is writable");
    path
}

/// A field of `/proc/self/status` in bytes (`"VmRSS:"`, resident now;
/// `"VmHWM:"`, the peak), or 0 where there is no such file.
pub fn proc_status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|value| {
                    value
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024)
}

/// The hostile-guest tests' set: `$guest` as router `name` (suspension off, so that every call
/// reaches it) beside the example router, which sends everything to `@w:x`.
pub async fn beside_example(
    name: &str,
    guest: &str,
    config: &str,
    limits: &str,
) -> (RouterSet, Arc<RecordingModuleApi>) {
    load_ok(&yaml_beside_example(name, guest, config, limits)).await
}

pub fn yaml_beside_example(name: &str, guest: &str, config: &str, limits: &str) -> String {
    format!(
        r#"
routers:
  - name: {name}
    component: ${guest}
    config: {config}
    limits: {limits}
    failure_policy: {{suspend_after: 0}}
  - name: example
    component: $EXAMPLE_ROUTER
    config: {{always_send_to_users: ["@w:x"]}}
"#
    )
}
