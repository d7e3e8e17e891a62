//! Profiles of the example router in every language name the router's own
//! functions (or, for JavaScript and Python, the interpreter's), and
//! profiling changes no answer and no figure of fuel.

use presence_router_runtime::{FuelProfile, FuelProfiler, Limits, RouterSet};
use presence_router_tests::{Language, batch, example_router, guests, load_conformance};

/// The requests each profile replays: a batch with a listed, a
/// blacklisted and an unlisted sender, and each kind of interest; with each
/// call's fuel where `fuel`.
async fn replay(routers: &RouterSet, fuel: bool) -> Vec<String> {
    use presence_router_runtime::Presence::{Offline, Online};
    let states = batch(&[
        ("@alice:example.com", Online),
        ("@mallory:example.com", Online),
        ("@bob:example.com", Offline),
    ]);
    let mut answers = Vec::new();
    for _ in 0..3 {
        let routed = routers.get_users_for_states(&states).await;
        answers.push(format!("{:?} {:?}", routed.answer, routed.failures));
        if fuel {
            let fuel: Vec<u64> = routed.stats.iter().map(|s| s.fuel_used).collect();
            answers.push(format!("fuel {fuel:?}"));
        }
        for user in ["@alice:example.com", "@bob:example.com"] {
            let routed = routers.get_interested_users(user).await;
            answers.push(format!("{:?} {:?}", routed.answer, routed.failures));
        }
    }
    answers
}

async fn load(component: &str, profiler: Option<FuelProfiler>) -> RouterSet {
    load_conformance(component, profiler, Limits::DEFAULT).await
}

/// Whether a language's router uses the same fuel for the same call every
/// time: Go's, JavaScript's and Python's runtimes read the clock, and how
/// much they do depends on what it says.
fn fuel_repeats(component: &str) -> bool {
    ![
        example_router!(Language::Go),
        example_router!(Language::Js),
        example_router!(Language::Python),
    ]
    .contains(&component)
}

/// The profile of `component` on [`replay`], after checking that the
/// answers (and where it repeats, the fuel of each call) are those of an
/// unprofiled run.
async fn profile(component: &str) -> FuelProfile {
    let profiler = FuelProfiler::new(1);
    let fuel = fuel_repeats(component);
    let profiled = replay(&load(component, Some(profiler.clone())).await, fuel).await;
    let unprofiled = replay(&load(component, None).await, fuel).await;
    assert_eq!(
        profiled, unprofiled,
        "profiling changed an answer or its fuel"
    );
    profiler.profile()
}

/// Every function name in the profile.
fn names(profile: &FuelProfile) -> Vec<&str> {
    let mut names: Vec<&str> = profile.names.iter().map(String::as_str).collect();
    names.sort_unstable();
    names
}

/// Asserts that the profile names each of `own` somewhere under the
/// `get-users-for-states` export, and that it adds up.
async fn names_its_functions(component: &str, own: &[&str]) -> FuelProfile {
    let profile = profile(component).await;
    let under_export: Vec<&str> = (0..profile.stacks.len())
        .filter(|&stack| profile.stack(stack).next() == Some("export get-users-for-states"))
        .flat_map(|stack| profile.stack(stack))
        .collect();
    for name in own {
        assert!(
            under_export.iter().any(|frame| frame.contains(name)),
            "{name} is not under the export; the profile names {:?}",
            names(&profile)
        );
    }
    assert!(profile.total_fuel() > 0 && profile.calls >= 9);
    profile
}

#[tokio::test]
async fn a_profile_of_the_rust_example_names_its_code() {
    // LTO compiles its callbacks into the functions wit-bindgen names after
    // the exports; what they call keeps its own name.
    names_its_functions(
        guests::EXAMPLE_ROUTER,
        &["get-users-for-states", "hash_one"],
    )
    .await;
}

#[tokio::test]
async fn a_profile_of_the_c_example_names_its_functions() {
    names_its_functions(
        example_router!(Language::C),
        &["exports_presence_router_get_users_for_states"],
    )
    .await;
}

#[tokio::test]
async fn a_profile_of_the_cpp_example_names_its_functions() {
    names_its_functions(example_router!(Language::Cpp), &["get_users_for_states"]).await;
}

#[tokio::test]
async fn a_profile_of_the_zig_example_names_its_functions() {
    names_its_functions(
        example_router!(Language::Zig),
        &["exports_presence_router_get_users_for_states"],
    )
    .await;
}

#[tokio::test]
async fn a_profile_of_the_go_example_names_its_functions() {
    names_its_functions(
        example_router!(Language::Go),
        &["export_wit_world.GetUsersForStates"],
    )
    .await;
}

#[tokio::test]
async fn a_profile_of_the_javascript_example_shows_the_interpreter() {
    // StarlingMonkey, the JavaScript engine componentize-js builds in, comes
    // without a name section: under the export are its functions by index,
    // never the router's JavaScript functions.
    let profile = names_its_functions(
        example_router!(Language::Js),
        &["get-users-for-states", "module!wasm-function["],
    )
    .await;
    // And the profile knows which those are, to say so.
    assert!(profile.unnamed.len() > 10);
    assert!(
        profile
            .unnamed
            .iter()
            .all(|&id| profile.names[id as usize].contains("!wasm-function["))
    );
}

#[tokio::test]
async fn a_profile_of_the_python_example_shows_the_interpreter() {
    // CPython's own functions, by name: its evaluation loop runs the
    // router's Python code, which the profile does not see.
    names_its_functions(example_router!(Language::Python), &["_PyEval_EvalFrame"]).await;
}

#[tokio::test]
async fn a_deep_stack_is_cut_to_its_outer_and_inner_frames() {
    // Every 64th check: each sample walks the whole stack, tens of
    // thousands of frames at the end.
    let profiler = FuelProfiler::new(64);
    let routers = load(guests::HOSTILE_DEEP, Some(profiler.clone())).await;
    let states = batch(&[(
        "@alice:example.com",
        presence_router_runtime::Presence::Online,
    )]);
    let routed = routers.get_users_for_states(&states).await;
    assert_eq!(routed.failures.len(), 1, "it overflows its stack");
    let profile = profiler.profile();
    let cut: Vec<Vec<&str>> = (0..profile.stacks.len())
        .map(|stack| profile.stack(stack).collect::<Vec<_>>())
        .filter(|frames| frames.contains(&"… frames left out …"))
        .collect();
    assert!(
        cut.iter().all(|frames| frames.len() == 257),
        "the root and 256 frames"
    );
    // Up to 1,024 deep, the outermost 64 frames and the innermost 191; deeper,
    // where wasmtime keeps the innermost 1,024, the innermost 255.
    assert!(cut.iter().any(|frames| frames[65] == "… frames left out …"));
    assert!(cut.iter().any(|frames| frames[1] == "… frames left out …"));
    assert!(cut.iter().all(|frames| {
        frames[frames.len() - 100..]
            .iter()
            .all(|f| f.contains("deeper"))
    }));
    // Each name is kept once, however many samples name it, and stacks
    // that differ only in depth are one.
    assert!(profile.names.len() < 20, "{:?}", profile.names);
    assert!(profile.stacks.len() < 80, "{} stacks", profile.stacks.len());
}

#[tokio::test]
async fn a_call_that_ends_with_little_fuel_left_answers_profiled_too() {
    // A profiled call meets the host at every check, where the call hook
    // charges 100 fuel: with less than that left, the charge must not fail
    // a call that would answer unprofiled.
    let states = batch(&[(
        "@alice:example.com",
        presence_router_runtime::Presence::Online,
    )]);
    let limits = |fuel| Limits {
        fuel,
        fuel_per_state: 0,
        ..Limits::DEFAULT
    };
    let measured = load_conformance(guests::HOT_FUNCTION, None, limits(100_000_000)).await;
    let routed = measured.get_users_for_states(&states).await;
    let used = routed.stats[0].fuel_used;
    // Budgets around what the call used: the same outcome profiled as not,
    // whichever check falls in the last 100. (Fuel runs out only at a
    // check, so a call may end a little past its budget: unprofiled, this
    // one answers with up to 122 less than it used, and profiled it failed
    // at 122 less before the hook learned to owe the charge.)
    for budget in (used - 130..used - 100).chain(used - 5..used + 5) {
        let mut answers = Vec::new();
        for profiler in [None, Some(FuelProfiler::new(1))] {
            let routers = load_conformance(guests::HOT_FUNCTION, profiler, limits(budget)).await;
            let routed = routers.get_users_for_states(&states).await;
            answers.push(format!("{:?} {:?}", routed.answer, routed.failures));
        }
        assert_eq!(answers[0], answers[1], "a budget of {budget}, {used} used");
    }
}

#[tokio::test]
async fn each_calls_samples_add_up_to_the_fuel_it_used() {
    for component in [guests::HOT_FUNCTION, guests::EXAMPLE_ROUTER] {
        for interval in [1, 3, 64] {
            let profiler = FuelProfiler::new(interval);
            let routers = load(component, Some(profiler.clone())).await;
            let mut used = 0;
            for size in [0, 1, 2, 7] {
                let states: Vec<_> = (0..size)
                    .map(|i| {
                        presence_router_runtime::UserPresenceState::new(
                            format!("@u{i}:example.com"),
                            presence_router_runtime::Presence::Online,
                        )
                    })
                    .collect();
                let routed = routers.get_users_for_states(&states).await;
                assert!(routed.failures.is_empty(), "{:?}", routed.failures);
                used += routed.stats.iter().map(|s| s.fuel_used).sum::<u64>();
                let routed = routers.get_interested_users("@alice:example.com").await;
                used += routed.stats.iter().map(|s| s.fuel_used).sum::<u64>();
            }
            let profile = profiler.profile();
            let sampled: u64 = profile
                .samples
                .iter()
                .filter(|&&(stack, _)| {
                    profile
                        .stack(stack)
                        .next()
                        .is_some_and(|root| root.starts_with("export get-"))
                })
                .map(|&(_, fuel)| fuel)
                .sum();
            assert_eq!(
                sampled, used,
                "{component}, a sample every {interval} checks"
            );
        }
    }
}
