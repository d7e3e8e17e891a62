//! `profile`: a router's fuel by stack, as an SVG flame graph and a Firefox
//! Profiler profile. The hot-function guest spends nearly all its fuel in
//! one function: the profile must say so, the same way every time, and the
//! answers must be the ones `run` gives.

use std::collections::BTreeMap;
use std::path::Path;

use presence_router_tests::guests;
use serde_json::Value;

use crate::support::{config_dir, run};

/// Each frame of the SVG with its fuel, from inferno's titles
/// (`NAME (1,234 fuel, 56.78%)`), the widest of each name.
fn svg_frames(svg: &str) -> BTreeMap<String, u64> {
    let mut frames = BTreeMap::new();
    for title in svg.split("<title>").skip(1) {
        let title = &title[..title.find("</title>").expect("a closed title")];
        let Some(open) = title.rfind(" (") else {
            continue;
        };
        let (name, figures) = (&title[..open], &title[open + 2..]);
        let Some(fuel) = figures
            .strip_suffix(')')
            .and_then(|f| f.split(" fuel").next())
        else {
            continue;
        };
        let Ok(fuel) = fuel.replace(',', "").parse::<u64>() else {
            continue;
        };
        let name = name
            .replace('\u{a0}', " ")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        let widest = frames.entry(name).or_insert(0);
        *widest = (*widest).max(fuel);
    }
    frames
}

/// Fuel by function in the Firefox profile: (self, inclusive), from its
/// samples' stacks.
fn firefox_fuel(profile: &Value) -> BTreeMap<String, (u64, u64)> {
    let thread = &profile["threads"][0];
    let strings = thread["stringArray"].as_array().expect("strings");
    let name_of_frame = |frame: usize| -> String {
        let func = thread["frameTable"]["func"][frame]
            .as_u64()
            .expect("a func") as usize;
        let name = thread["funcTable"]["name"][func].as_u64().expect("a name") as usize;
        strings[name].as_str().expect("a string").to_owned()
    };
    let samples = &thread["samples"];
    let mut fuel: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let stacks = samples["stack"].as_array().expect("stacks");
    for (i, stack) in stacks.iter().enumerate() {
        let weight = samples["weight"][i].as_u64().expect("a weight");
        let mut stack = stack.as_u64().map(|s| s as usize);
        let mut leaf = true;
        let mut seen = std::collections::BTreeSet::new();
        while let Some(s) = stack {
            let frame = thread["stackTable"]["frame"][s].as_u64().expect("a frame") as usize;
            let name = name_of_frame(frame);
            let entry = fuel.entry(name.clone()).or_default();
            if leaf {
                entry.0 += weight;
                leaf = false;
            }
            if seen.insert(name) {
                entry.1 += weight;
            }
            stack = thread["stackTable"]["prefix"][s]
                .as_u64()
                .map(|p| p as usize);
        }
    }
    fuel
}

/// `profile` of the hot-function guest with `args`, which must succeed.
fn profile_generated(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec![
        "profile",
        "--component",
        guests::HOT_FUNCTION,
        "--cache-dir",
        guests::COMPONENT_CACHE_DIR,
    ];
    all.extend_from_slice(args);
    let output = run(&all, dir, "");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn profile_hot_function(dir: &Path, svg: &str, json: &str) -> std::process::Output {
    let mut requests = String::new();
    for i in 0..10 {
        requests.push_str(&format!(
            "{{\"get_users_for_states\": [{{\"user_id\": \"@u{i}:example.com\", \"state\": \"online\"}}, {{\"user_id\": \"@v:example.com\", \"state\": \"offline\"}}]}}\n"
        ));
    }
    requests.push_str("{\"get_interested_users\": \"@alice:example.com\"}\n");
    run(
        &[
            "profile",
            "--component",
            guests::HOT_FUNCTION,
            "--output",
            svg,
            "--firefox",
            json,
            "--cache-dir",
            guests::COMPONENT_CACHE_DIR,
        ],
        dir,
        &requests,
    )
}

#[test]
fn the_hot_function_is_the_widest_frame_under_its_export_and_the_profile_repeats() {
    let dir = config_dir("routers: []\n");
    let output = profile_hot_function(dir.path(), "hot.svg", "hot.json");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    let svg = std::fs::read_to_string(dir.path().join("hot.svg")).expect("an SVG");
    assert!(
        svg.starts_with("<?xml") && svg.contains("<svg"),
        "{svg:.200}"
    );
    let frames = svg_frames(&svg);
    let export = frames["export get-users-for-states"];
    let hot = frames["hot_function::the_hot_function"];
    let cool = frames["hot_function::a_cool_function"];
    // 20,000 rounds against 2,000: nine tenths of the export's fuel, and
    // ten times the cool one's.
    assert!(hot * 10 >= export * 8, "{hot} of {export}: {frames:?}");
    assert!(
        hot >= cool * 8 && cool > 0,
        "{hot} against {cool}: {frames:?}"
    );
    assert!(
        frames["export get-interested-users"] >= frames["hot_function::the_interest_function"]
            && frames["hot_function::the_interest_function"] > 0,
        "{frames:?}"
    );
    // The hottest function says so on stderr too.
    let hottest = stderr
        .lines()
        .skip_while(|line| !line.starts_with("hottest functions"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        hottest.ends_with("hot_function::the_hot_function"),
        "{stderr}"
    );

    let profile: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("hot.json")).expect("a profile"),
    )
    .expect("the Firefox profile is JSON");
    let fuel = firefox_fuel(&profile);
    let (hot_self, hot_total) = fuel["hot_function::the_hot_function"];
    let most_self = fuel
        .iter()
        .max_by_key(|(_, (own, _))| *own)
        .map(|(name, _)| name.as_str());
    assert_eq!(
        most_self,
        Some("hot_function::the_hot_function"),
        "{fuel:?}"
    );
    assert!(
        hot_total * 10 >= fuel["export get-users-for-states"].1 * 8,
        "{fuel:?}"
    );
    assert_eq!(hot_self, hot_total, "it calls nothing: {fuel:?}");
    // The SVG and the profile count the same fuel.
    assert_eq!(hot_total, hot);

    // By fuel, not by time: a second run draws the very same picture.
    let again = profile_hot_function(dir.path(), "again.svg", "again.json");
    assert!(again.status.success());
    assert_eq!(
        std::fs::read(dir.path().join("again.svg")).expect("an SVG"),
        svg.as_bytes()
    );
    assert_eq!(
        std::fs::read(dir.path().join("again.json")).expect("a profile"),
        std::fs::read(dir.path().join("hot.json")).expect("a profile")
    );
    assert_eq!(again.stdout, output.stdout);
}

#[test]
fn a_sample_every_few_checks_still_finds_the_hot_function() {
    let dir = config_dir("routers: []\n");
    profile_generated(
        dir.path(),
        &[
            "--output",
            "sparse.svg",
            "--interval",
            "7",
            "--generate",
            "5",
            "--batch-size",
            "2",
        ],
    );
    let svg = std::fs::read_to_string(dir.path().join("sparse.svg")).expect("an SVG");
    let frames = svg_frames(&svg);
    let export = frames["export get-users-for-states"];
    let hot = frames["hot_function::the_hot_function"];
    let cool = frames["hot_function::a_cool_function"];
    assert!(hot * 10 >= export * 8 && cool > 0, "{frames:?}");
}

#[test]
fn profiling_answers_as_run_does() {
    let dir = config_dir("routers: []\n");
    let requests = "{\"get_users_for_states\": [{\"user_id\": \"@mallory:example.com\", \"state\": \"online\"}, {\"user_id\": \"@bob:example.com\", \"state\": \"online\", \"status_msg\": \"🙂\"}]}\n{\"get_interested_users\": \"@alice:example.com\"}\n{\"get_interested_users\": \"@bob:example.com\"}\nnot json\n";
    let config = crate::support::EXAMPLE_CONFIG_JSON;
    let common = [
        "--component",
        "routers/example.wasm",
        "--config-json",
        config,
    ];
    let profiled = run(
        &[
            &["profile"],
            &common[..],
            &["--output", "example.svg", "--no-cache"],
        ]
        .concat(),
        dir.path(),
        requests,
    );
    assert!(
        profiled.status.success(),
        "{}",
        String::from_utf8_lossy(&profiled.stderr)
    );
    let unprofiled = run(
        &[&["run"], &common[..], &["--no-cache"]].concat(),
        dir.path(),
        requests,
    );
    assert!(unprofiled.status.success());
    assert_eq!(
        String::from_utf8_lossy(&profiled.stdout),
        String::from_utf8_lossy(&unprofiled.stdout)
    );
    // The example router's own code, by name (it keeps its name section:
    // `strip = "debuginfo"`): with LTO, its callbacks are compiled into the
    // functions wit-bindgen names after the exports.
    let svg = std::fs::read_to_string(dir.path().join("example.svg")).expect("an SVG");
    let frames = svg_frames(&svg);
    assert!(
        frames.contains_key("get-users-for-states")
            && frames.keys().any(|name| name.contains("serde_json::")),
        "{frames:?}"
    );
    assert!(frames.contains_key("export parse-config"), "{frames:?}");
}

#[test]
fn profile_generates_batches_of_the_size_asked() {
    let dir = config_dir("routers: []\n");
    let output = profile_generated(
        dir.path(),
        &[
            "--output",
            "generated.svg",
            "--generate",
            "3",
            "--batch-size",
            "4",
        ],
    );
    let answers = crate::support::json_lines(&output);
    assert_eq!(answers.len(), 3);
    for answer in &answers {
        let routes = answer["users_for_states"].as_object().expect("routes");
        let states: usize = routes
            .values()
            .map(|v| v.as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(states, 4, "{answer}");
    }
}

#[test]
fn profile_replays_the_cases_file() {
    let dir = config_dir("routers: []\n");
    let cases =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/example-router.yaml");
    let output = run(
        &[
            "profile",
            "--component",
            "routers/example.wasm",
            "--config-json",
            presence_router_tests::CONFORMANCE_CONFIG,
            "--cases",
            &cases.to_string_lossy(),
            "--output",
            "cases.svg",
            "--no-cache",
        ],
        dir.path(),
        "",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // One answer per case that makes a call with the given configuration.
    let cases = presence_router_testkit::read_case_file(&cases).expect("the cases parse");
    let calls = presence_router_testkit::differential::case_requests(&cases).len();
    let answers = crate::support::json_lines(&output);
    assert!(
        calls >= 5 && answers.len() == calls,
        "{calls} calls: {answers:?}"
    );
    assert!(
        answers.iter().all(|a| a.get("error").is_none()),
        "{answers:?}"
    );
    let frames = svg_frames(&std::fs::read_to_string(dir.path().join("cases.svg")).expect("SVG"));
    assert!(
        frames.contains_key("export get-interested-users"),
        "{frames:?}"
    );
}
