//! The test kit for router authors: runs one presence-router component
//! through the runtime against built-in cases and the author's own, checks
//! that its `get-users-for-states` and `get-interested-users` agree, and
//! says what each call used against the default limits, and whether it
//! leaks memory from call to call (`leaks.rs`); and runs two routers (a
//! port and what it replaces, a Python router among them) on the same
//! requests, reporting the first difference shrunk (`differential.rs`).
//!
//! It is what `presence-router test` runs, and what the conformance suite
//! runs against the example router in every language.

pub mod budgets;
pub mod cases;
pub mod consistency;
pub mod differential;
pub mod leaks;
mod python_router;
mod router_answer;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use presence_router_runtime::{
    CallStats, FailureKind, FailurePolicy, InterestedUsers, Limits, LoadOptions, LoggingModuleApi,
    Presence, Routed, RouterConfig, RouterFailure, RouterSet, RouterSetConfig, UserPresenceState,
    format_bytes,
};

pub use budgets::Budgets;
pub use cases::{
    Case, CaseCall, CaseFileError, parse_size, read_case_file, read_case_file_with_budgets,
};
pub use consistency::{Mismatch, check_consistency};
pub use leaks::{
    ExportLift, Growth, GrowthPlan, InspectError, LiftVerdict, inspect_exports, measure_growth,
};

/// A one-router configuration for a component given on the command line
/// (`presence-router test` and `run`): no file, the given limits, and no
/// suspension (a tool run wants every call made).
pub fn single_router(component: &Path, config_json: &str, limits: Limits) -> RouterSetConfig {
    let name = component
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "router".to_owned());
    RouterSetConfig {
        source: PathBuf::from("--config-json"),
        routers: vec![RouterConfig {
            name,
            component: component.to_owned(),
            config_json: config_json.to_owned(),
            limits,
            failure_policy: FailurePolicy {
                suspend_after: 0,
                ..FailurePolicy::DEFAULT
            },
            signed_by: None,
            canary: None,
            key: "router".to_owned(),
        }],
        trusted_keys: Vec::new(),
    }
}

/// How one case went.
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    /// Why it failed (a diff, or the router's failure), one line each.
    pub details: Vec<String>,
    /// What the call used, where it answered.
    pub stats: Option<CallStats>,
    /// States in the case's batch (1 for `get-interested-users`): what its
    /// fuel budget was computed from.
    pub states: usize,
}

/// Everything `presence-router test` checks, for one component.
pub struct TestRun {
    pub builtin: Vec<CaseResult>,
    /// The author's cases, in file order.
    pub cases: Vec<CaseResult>,
    /// The consistency check: mismatches and what was checked, or why it
    /// could not run.
    pub consistency: Result<(Vec<Mismatch>, String), String>,
    /// Each callback's memory growth over many calls on one instance.
    pub growth: Vec<Growth>,
    /// Each exported function's lift, from the component binary, or why it
    /// could not be read.
    pub exports: Result<Vec<ExportLift>, String>,
}

impl TestRun {
    /// How many checks failed: cases, and the consistency check as one.
    pub fn failed(&self) -> usize {
        let cases = self
            .builtin
            .iter()
            .chain(&self.cases)
            .filter(|result| !result.passed)
            .count();
        let consistent = matches!(&self.consistency, Ok((mismatches, _)) if mismatches.is_empty());
        cases + usize::from(!consistent)
    }

    /// What the leak checks flagged, one line each: growth per call (with
    /// when it exhausts `memory_limit`), and exports that return an
    /// allocation with no post-return to free it.
    ///
    /// Warnings, not failures: the runtime contains a leak (the memory limit
    /// stops the instance, the next call gets a fresh one), so it costs one
    /// failed call every so many, which the line says; and the cause may be
    /// out of the author's hands (componentize-js 0.23 leaks on every call,
    /// whatever the router does).
    pub fn warnings(&self, memory_limit: u64) -> Vec<String> {
        let growth = self
            .growth
            .iter()
            .filter(|growth| growth.flagged())
            .map(|growth| growth.summary(memory_limit));
        let lifts = self
            .exports
            .iter()
            .flatten()
            .filter(|lift| lift.leaks_its_result())
            .map(ExportLift::warning);
        growth.chain(lifts).collect()
    }
}

/// One component under test, loaded once per configuration its cases use.
pub struct TestKit {
    component: PathBuf,
    config_json: String,
    options: LoadOptions,
    limits: Limits,
    loaded: HashMap<(String, bool), Result<Arc<RouterSet>, String>>,
}

/// Limits for measuring what a router needs when the defaults are not
/// enough: far beyond any sane router, still bounded.
const MEASURING_LIMITS: Limits = Limits {
    fuel: 100_000_000_000,
    fuel_per_state: 0,
    memory: 4 << 30,
    timeout: Duration::from_secs(30),
    ..Limits::DEFAULT
};

impl TestKit {
    /// `config_json` is the configuration for cases that have none of their
    /// own; calls run under `limits` (the defaults, for `presence-router
    /// test`).
    pub fn new(component: &Path, config_json: &str, options: LoadOptions, limits: Limits) -> Self {
        TestKit {
            component: component.to_owned(),
            config_json: config_json.to_owned(),
            options,
            limits,
            loaded: HashMap::new(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The calls the growth measurement makes.
    pub fn growth_plan(&self) -> GrowthPlan {
        GrowthPlan::DEFAULT
    }

    /// The router under `config_json` (`measuring`: with limits high enough
    /// to see what it needs), loaded on first use.
    pub async fn router_set(
        &mut self,
        config_json: &str,
        measuring: bool,
    ) -> Result<Arc<RouterSet>, String> {
        let key = (config_json.to_owned(), measuring);
        if let Some(loaded) = self.loaded.get(&key) {
            return loaded.clone();
        }
        let limits = if measuring {
            MEASURING_LIMITS
        } else {
            // One instance: the kit's calls are one after another anyway,
            // and the growth measurement follows one instance's memory.
            Limits {
                max_instances: 1,
                ..self.limits.clone()
            }
        };
        let config = single_router(&self.component, config_json, limits);
        let loaded = RouterSet::load_with(&config, Arc::new(LoggingModuleApi), &self.options)
            .await
            .map(Arc::new)
            .map_err(|e| e.to_string());
        self.loaded.insert(key, loaded.clone());
        loaded
    }

    /// Runs the built-in cases, `cases`, and the consistency check. `Err`
    /// if the router can't start under the kit's configuration (every check
    /// would fail for that one reason).
    pub async fn run_all(&mut self, cases: &[Case]) -> Result<TestRun, String> {
        let config_json = self.config_json.clone();
        let routers = self.router_set(&config_json, false).await?;
        let mut builtin = Vec::new();
        for (name, call) in self.builtin_cases() {
            builtin.push(self.run_builtin(&name, &call).await);
        }
        let mut results = Vec::with_capacity(cases.len());
        for case in cases {
            results.push(self.run_case(case).await);
        }
        let consistency = check_consistency(&routers, &config_json).await;
        // Last: the calls before it are part of its warm-up, and a leak
        // that exhausts the instance's memory can't fail a case.
        let growth = measure_growth(&routers, &config_json, self.growth_plan()).await;
        Ok(TestRun {
            builtin,
            cases: results,
            consistency,
            growth,
            exports: self.inspect_exports(),
        })
    }

    /// [`inspect_exports`] on the component file.
    pub fn inspect_exports(&self) -> Result<Vec<ExportLift>, String> {
        let bytes = std::fs::read(&self.component)
            .map_err(|e| format!("{}: cannot read it: {e}", self.component.display()))?;
        inspect_exports(&bytes).map_err(|e| format!("{}: {e}", self.component.display()))
    }

    /// The cases every router must pass, whatever it routes: they check
    /// that it answers, within the limits, for batches it will meet.
    pub fn builtin_cases(&self) -> Vec<(String, BuiltinCall)> {
        let varied: Vec<UserPresenceState> = [
            Presence::Online,
            Presence::Unavailable,
            Presence::Offline,
            Presence::Busy,
            Presence::Other("org.example.custom".into()),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, presence)| {
            let mut state = UserPresenceState::new(format!("@user{i}:example.com"), presence);
            state.status_msg = Some(format!("status ✓ {i}"));
            state.last_active_ts = 1_700_000_000_000 + i as u64;
            state.currently_active = i % 2 == 0;
            state
        })
        .collect();
        vec![
            (
                "answers an empty batch".into(),
                BuiltinCall::UsersForStates(Vec::new()),
            ),
            (
                "answers one state of each presence, with status messages".into(),
                BuiltinCall::UsersForStates(varied),
            ),
            (
                "answers a batch of 1,000 states within the limits".into(),
                BuiltinCall::UsersForStates(generated_batch(1_000)),
            ),
            (
                "answers get-interested-users for a user it never saw".into(),
                BuiltinCall::InterestedUsers("@stranger:elsewhere.example.org".into()),
            ),
        ]
    }

    /// Runs a built-in case: it passes if the router answers.
    pub async fn run_builtin(&mut self, name: &str, call: &BuiltinCall) -> CaseResult {
        let config_json = self.config_json.clone();
        let states = call.states();
        match self.call(&config_json, call).await {
            Ok((_, stats)) => CaseResult::pass(name, stats, states),
            Err(details) => CaseResult::fail(name, details, None, states),
        }
    }

    /// Runs one of the author's cases.
    pub async fn run_case(&mut self, case: &Case) -> CaseResult {
        let config_json = case
            .config_json
            .clone()
            .unwrap_or_else(|| self.config_json.clone());
        let name = case.name.as_str();
        let states = case.states();
        let (call, expected) = match &case.call {
            CaseCall::ConfigError { contains } => {
                return match self.router_set(&config_json, false).await {
                    Ok(_) => CaseResult::fail(
                        name,
                        vec![format!(
                            "the configuration was accepted; expected it refused with \
                             a message containing {contains:?}"
                        )],
                        None,
                        states,
                    ),
                    Err(message) if message.contains(contains.as_str()) => {
                        CaseResult::pass(name, None, states)
                    }
                    Err(message) => CaseResult::fail(
                        name,
                        vec![
                            format!("expected a refusal containing {contains:?}"),
                            format!("got: {message}"),
                        ],
                        None,
                        states,
                    ),
                };
            }
            CaseCall::UsersForStates { batch, expect } => (
                BuiltinCall::UsersForStates(batch.clone()),
                Answer::Routes(expect.clone()),
            ),
            CaseCall::InterestedUsers { user_id, expect } => (
                BuiltinCall::InterestedUsers(user_id.clone()),
                Answer::Interest(expect.clone()),
            ),
        };
        match self.call(&config_json, &call).await {
            Ok((answer, stats)) => {
                let diff = diff(&expected, &answer, &call);
                if diff.is_empty() {
                    CaseResult::pass(name, stats, states)
                } else {
                    CaseResult::fail(name, diff, stats, states)
                }
            }
            Err(details) => CaseResult::fail(name, details, None, states),
        }
    }

    /// Makes the call; a failure is explained, and when a limit stopped
    /// the router, measured again without it to say what it needs.
    async fn call(
        &mut self,
        config_json: &str,
        call: &BuiltinCall,
    ) -> Result<(Answer, Option<CallStats>), Vec<String>> {
        let routers = self
            .router_set(config_json, false)
            .await
            .map_err(|e| vec![e])?;
        let (answer, failures, stats) = make_call(&routers, call).await;
        let Some(failure) = failures.into_iter().next() else {
            return Ok((answer, stats));
        };
        let mut details = vec![format!("{}: {}", failure.kind, failure.message)];
        if matches!(
            failure.kind,
            FailureKind::OutOfFuel | FailureKind::Memory | FailureKind::Timeout
        ) {
            details.push(self.what_it_needs(config_json, call).await);
        }
        Err(details)
    }

    async fn what_it_needs(&mut self, config_json: &str, call: &BuiltinCall) -> String {
        let Ok(routers) = self.router_set(config_json, true).await else {
            return "it also fails to load with limits raised far beyond the defaults".into();
        };
        let (_, failures, stats) = make_call(&routers, call).await;
        let (Some(stats), true) = (stats, failures.is_empty()) else {
            return "it fails even with limits raised far beyond the defaults \
                    (fuel 100,000,000,000, memory 4 GiB, timeout 30 s)"
                .into();
        };
        let limits = &self.limits;
        let states = call.states();
        format!(
            "with the limits raised, it needs fuel {} (the budget for {states} state(s) is {} = \
             limits.fuel {} + limits.fuel_per_state {} × {states}), memory {} \
             (limits.memory {}), {} (limits.timeout {}): raise those limits in the router's \
             configuration",
            stats.fuel_used,
            limits.fuel_for_batch(states),
            limits.fuel,
            limits.fuel_per_state,
            format_bytes(stats.memory_bytes),
            format_bytes(limits.memory),
            humantime::format_duration(round_to_micros(stats.elapsed)),
            humantime::format_duration(limits.timeout),
        )
    }
}

/// A call the kit makes.
#[derive(Clone, Debug)]
pub enum BuiltinCall {
    UsersForStates(Vec<UserPresenceState>),
    InterestedUsers(String),
}

impl BuiltinCall {
    /// States in the call's batch (1 for `get-interested-users`).
    pub fn states(&self) -> usize {
        match self {
            BuiltinCall::UsersForStates(batch) => batch.len(),
            BuiltinCall::InterestedUsers(_) => 1,
        }
    }
}

/// An answer, in the shape cases compare.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Routes(BTreeMap<String, BTreeSet<u32>>),
    /// `None` is `all-users`.
    Interest(Option<BTreeSet<String>>),
}

async fn make_call(
    routers: &RouterSet,
    call: &BuiltinCall,
) -> (Answer, Vec<RouterFailure>, Option<CallStats>) {
    fn parts<T>(routed: Routed<T>) -> (T, Vec<RouterFailure>, Option<CallStats>) {
        (
            routed.answer,
            routed.failures,
            routed.stats.into_iter().next(),
        )
    }
    match call {
        BuiltinCall::UsersForStates(batch) => {
            let (answer, failures, stats) = parts(routers.get_users_for_states(batch).await);
            let routes = answer
                .into_iter()
                .filter(|(_, indices)| !indices.is_empty())
                .map(|(user, indices)| (user, indices.into_iter().collect()))
                .collect();
            (Answer::Routes(routes), failures, stats)
        }
        BuiltinCall::InterestedUsers(user_id) => {
            let (answer, failures, stats) = parts(routers.get_interested_users(user_id).await);
            let interest = match answer {
                InterestedUsers::All => None,
                InterestedUsers::Users(users) => Some(users),
            };
            (Answer::Interest(interest), failures, stats)
        }
    }
}

/// What differs between the expected and the actual answer, one line per
/// user, naming the states by their senders.
fn diff(expected: &Answer, actual: &Answer, call: &BuiltinCall) -> Vec<String> {
    let sender = |i: &u32| match call {
        BuiltinCall::UsersForStates(batch) => batch
            .get(*i as usize)
            .map_or_else(|| i.to_string(), |s| format!("{i} ({})", s.user_id)),
        BuiltinCall::InterestedUsers(_) => i.to_string(),
    };
    let list = |indices: &BTreeSet<u32>| {
        let shown: Vec<String> = indices.iter().map(sender).collect();
        format!("[{}]", shown.join(", "))
    };
    let interest = |interest: &Option<BTreeSet<String>>| match interest {
        None => "all-users".to_owned(),
        Some(users) => format!("{users:?}"),
    };
    match (expected, actual) {
        (Answer::Routes(expected), Answer::Routes(actual)) => {
            let empty = BTreeSet::new();
            let users: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
            users
                .into_iter()
                .filter_map(|user| {
                    let want = expected.get(user).unwrap_or(&empty);
                    let got = actual.get(user).unwrap_or(&empty);
                    (want != got).then(|| {
                        let missing: BTreeSet<u32> = want.difference(got).copied().collect();
                        let extra: BTreeSet<u32> = got.difference(want).copied().collect();
                        let mut line =
                            format!("{user}: expected {}, got {}", list(want), list(got));
                        if !missing.is_empty() {
                            line.push_str(&format!("; missing {}", list(&missing)));
                        }
                        if !extra.is_empty() {
                            line.push_str(&format!("; unexpected {}", list(&extra)));
                        }
                        line
                    })
                })
                .collect()
        }
        (Answer::Interest(expected), Answer::Interest(actual)) if expected != actual => {
            vec![format!(
                "expected {}, got {}",
                interest(expected),
                interest(actual)
            )]
        }
        _ => Vec::new(),
    }
}

impl CaseResult {
    fn pass(name: &str, stats: Option<CallStats>, states: usize) -> Self {
        CaseResult {
            name: name.to_owned(),
            passed: true,
            details: Vec::new(),
            stats,
            states,
        }
    }

    fn fail(name: &str, details: Vec<String>, stats: Option<CallStats>, states: usize) -> Self {
        CaseResult {
            name: name.to_owned(),
            passed: false,
            details,
            stats,
            states,
        }
    }

    /// `fuel 12,345 of 10,200,000 (0.1%) · memory 1.1 MiB of 64 MiB · ...`,
    /// each against `limits`.
    pub fn usage(&self, limits: &Limits) -> Option<String> {
        let stats = self.stats.as_ref()?;
        let states = self.states;
        let percent = |used: f64, of: f64| if of > 0.0 { 100.0 * used / of } else { 0.0 };
        Some(format!(
            "fuel {} of {} ({:.1}%) · memory {} of {} · answer {} of {} entries · {} of {}",
            thousands(stats.fuel_used),
            thousands(limits.fuel_for_batch(states)),
            percent(stats.fuel_used as f64, limits.fuel_for_batch(states) as f64),
            format_bytes(stats.memory_bytes),
            format_bytes(limits.memory),
            thousands(stats.answer_entries as u64),
            thousands(limits.answer_entries_for_batch(states) as u64),
            humantime::format_duration(round_to_micros(stats.elapsed)),
            humantime::format_duration(limits.timeout),
        ))
    }
}

fn round_to_micros(duration: Duration) -> Duration {
    Duration::from_micros(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX))
}

/// 1234567 as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `n` states from `n` different users, mostly online, some with a status.
pub fn generated_batch(n: usize) -> Vec<UserPresenceState> {
    (0..n)
        .map(|i| {
            let presence = match i % 4 {
                0 | 1 => Presence::Online,
                2 => Presence::Unavailable,
                _ => Presence::Offline,
            };
            let mut state = UserPresenceState::new(format!("@user{i}:example.com"), presence);
            if i % 3 == 0 {
                state.status_msg = Some("busy busy".into());
            }
            state
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(10_200_000), "10,200,000");
    }

    #[test]
    fn a_routes_diff_names_each_user_and_the_states_by_sender() {
        let batch = generated_batch(3);
        let expected = Answer::Routes(BTreeMap::from([
            ("@a:x".to_owned(), BTreeSet::from([0, 1])),
            ("@b:x".to_owned(), BTreeSet::from([2])),
        ]));
        let actual = Answer::Routes(BTreeMap::from([
            ("@a:x".to_owned(), BTreeSet::from([0, 2])),
            ("@b:x".to_owned(), BTreeSet::from([2])),
            ("@c:x".to_owned(), BTreeSet::from([1])),
        ]));
        assert_eq!(
            diff(&expected, &actual, &BuiltinCall::UsersForStates(batch)),
            vec![
                "@a:x: expected [0 (@user0:example.com), 1 (@user1:example.com)], got \
                 [0 (@user0:example.com), 2 (@user2:example.com)]; missing \
                 [1 (@user1:example.com)]; unexpected [2 (@user2:example.com)]",
                "@c:x: expected [], got [1 (@user1:example.com)]; unexpected \
                 [1 (@user1:example.com)]",
            ]
        );
        let interest = |users: Option<&[&str]>| {
            Answer::Interest(users.map(|u| u.iter().map(|s| s.to_string()).collect()))
        };
        assert_eq!(
            diff(
                &interest(None),
                &interest(Some(&["@a:x"])),
                &BuiltinCall::InterestedUsers("@u:x".into())
            ),
            vec![r#"expected all-users, got {"@a:x"}"#]
        );
        assert!(
            diff(
                &interest(None),
                &interest(None),
                &BuiltinCall::InterestedUsers("@u:x".into())
            )
            .is_empty()
        );
    }
}
