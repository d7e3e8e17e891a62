//! `presence-router profile`: replays requests through one router with
//! its stacks sampled by fuel (the runtime's `FuelProfiler`), and writes
//! where its fuel went as an SVG flame graph (inferno) and, if asked, a
//! profile for the Firefox Profiler. Answers go to stdout as `run` writes
//! them: sampling never changes them.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use presence_router_runtime::generate::{RequestGenerator, SeededRequests};
use presence_router_runtime::jsonl::Request;
use presence_router_runtime::text::escape_untrusted;
use presence_router_runtime::{FuelProfile, FuelProfiler, Limits, LoadOptions, RouterSet};
use presence_router_testkit::single_router;

#[derive(clap::Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    component: crate::ComponentArgs,
    /// Where to write the flame graph (SVG, for a browser).
    #[arg(long, value_name = "SVG")]
    output: PathBuf,
    /// Also write a profile for the Firefox Profiler here (JSON; open it at
    /// https://profiler.firefox.com).
    #[arg(long, value_name = "JSON")]
    firefox: Option<PathBuf>,
    /// Take a sample every CHECKS function entries and loop iterations
    /// (each sample is then weighted by the fuel it stands for). Every one
    /// by default: the most exact picture; a larger number is faster, for
    /// routers that run millions of loop iterations a call.
    #[arg(long, value_name = "CHECKS", default_value_t = 1)]
    interval: u64,
    /// Profile N generated `get-users-for-states` batches instead of the
    /// JSON Lines requests on stdin.
    #[arg(long, value_name = "N", conflicts_with = "cases")]
    generate: Option<usize>,
    /// Profile the calls of your cases file (`test --cases`: those without
    /// a configuration of their own) instead of stdin.
    #[arg(long, value_name = "FILE")]
    cases: Option<PathBuf>,
    /// The states in each generated batch (at most 100,000).
    #[arg(long, value_name = "STATES", default_value_t = 1, requires = "generate",
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    batch_size: u32,
    /// The seed of the generated batches.
    #[arg(long, default_value_t = 0, requires = "generate")]
    seed: u64,
}

pub async fn profile(args: ProfileArgs) -> anyhow::Result<()> {
    let component = &args.component;
    let config_json = component.config_json()?;
    let profiler = FuelProfiler::new(args.interval);
    let options = LoadOptions {
        profiler: Some(profiler.clone()),
        ..component.cache.options()
    };
    // The default limits, as `run`'s; a profiled call's time budget is not
    // enforced (sampling slows it, and must not change its answer).
    let config = single_router(&component.component, &config_json, Limits::DEFAULT);
    let routers = RouterSet::load_with(&config, Arc::new(crate::CliModuleApi), &options).await?;
    let mut out = std::io::stdout().lock();
    match (args.generate, &args.cases) {
        (None, Some(path)) => {
            let cases = presence_router_testkit::read_case_file(path)?;
            for (_, request) in presence_router_testkit::differential::case_requests(&cases) {
                let line = crate::answer(&routers, request).await;
                writeln!(out, "{line}").context("writing stdout")?;
            }
        }
        (Some(count), _) => {
            let generator = RequestGenerator::new(
                RequestGenerator::users_in_config(&config_json),
                args.batch_size as usize,
            );
            let mut requests = SeededRequests::new(generator, args.seed);
            for _ in 0..count {
                let batch = requests.next_batch_of(args.batch_size as usize);
                let line = crate::answer(&routers, Request::GetUsersForStates(batch)).await;
                writeln!(out, "{line}").context("writing stdout")?;
            }
        }
        (None, None) => {
            for line in std::io::stdin().lock().split(b'\n') {
                let line = line.context("reading stdin")?;
                if let Some(reply) = crate::answer_line(&routers, &line).await {
                    writeln!(out, "{reply}").context("writing stdout")?;
                }
            }
        }
    }
    out.flush().context("writing stdout")?;
    let profile = demangled(profiler.profile());
    let every = match profiler.interval() {
        1 => "at every function entry and loop iteration".to_owned(),
        n => format!("every {n} function entries and loop iterations"),
    };
    let title = format!(
        "{} — fuel by stack, sampled {every}",
        component
            .component
            .file_name()
            .map_or_else(|| "router".into(), |name| name.to_string_lossy()),
    );
    write_flame_graph(&profile, &title, &args.output)?;
    if let Some(path) = &args.firefox {
        write_firefox_profile(&profile, &title, path)?;
    }
    eprint!("{}", summary(&profile, &args));
    Ok(())
}

/// Rust's mangled names made readable (C++ names come demangled from
/// wasm-ld already).
fn demangled(mut profile: FuelProfile) -> FuelProfile {
    for name in &mut profile.names {
        if let Ok(readable) = rustc_demangle::try_demangle(name) {
            // Demangling makes text of the guest's again: escaped and cut
            // as the runtime does.
            *name = escape_untrusted(&format!("{readable:#}"), FuelProfile::MAX_NAME_BYTES);
        }
    }
    profile
}

/// Each distinct stack with all the fuel sampled in it, as inferno's
/// folded lines: `outer;inner fuel`. In a name, `;` would split a frame and
/// a space before the count would read as a second count: they become `:`
/// and no-break spaces.
pub fn folded_lines(profile: &FuelProfile) -> Vec<String> {
    let mut by_stack: BTreeMap<usize, u64> = BTreeMap::new();
    for &(stack, fuel) in &profile.samples {
        *by_stack.entry(stack).or_default() += fuel;
    }
    by_stack
        .into_iter()
        .filter(|&(_, fuel)| fuel > 0)
        .map(|(stack, fuel)| {
            let frames: Vec<String> = profile
                .stack(stack)
                .map(|frame| {
                    // XML has no U+FFFE or U+FFFF.
                    frame
                        .replace(';', ":")
                        .replace(' ', "\u{a0}")
                        .replace(['\u{fffe}', '\u{ffff}'], "\u{fffd}")
                })
                .collect();
            format!("{} {fuel}", frames.join(";"))
        })
        .collect()
}

fn write_flame_graph(profile: &FuelProfile, title: &str, path: &Path) -> anyhow::Result<()> {
    let lines = folded_lines(profile);
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_owned();
    options.count_name = "fuel".to_owned();
    // Colours by name, so that the same profile draws the same picture.
    options.deterministic = true;
    let file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    if lines.is_empty() {
        anyhow::bail!(
            "{}: nothing to draw: no call used fuel (were there any requests?)",
            path.display()
        );
    }
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut writer)
        .with_context(|| format!("writing the flame graph to {}", path.display()))?;
    writer
        .flush()
        .with_context(|| format!("writing {}", path.display()))
}

/// The Firefox Profiler's processed format: one thread, one sample per
/// entry of the profile, weighted by its fuel; the timeline counts fuel
/// too (one nanosecond per unit), so the same requests give the same file.
fn write_firefox_profile(profile: &FuelProfile, title: &str, path: &Path) -> anyhow::Result<()> {
    use fxprof_processed_profile::{
        CategoryHandle, CpuDelta, Frame, FrameFlags, FrameInfo, Profile, ReferenceTimestamp,
        SamplingInterval, Timestamp,
    };
    let mut firefox = Profile::new(
        title,
        ReferenceTimestamp::from_millis_since_unix_epoch(0.0),
        SamplingInterval::from_nanos(1),
    );
    let process = firefox.add_process(
        "presence-router",
        0,
        Timestamp::from_nanos_since_reference(0),
    );
    let thread = firefox.add_thread(process, 0, Timestamp::from_nanos_since_reference(0), true);
    let stacks: Vec<_> = (0..profile.stacks.len())
        .map(|stack| {
            let frames: Vec<FrameInfo> = profile
                .stack(stack)
                .map(|name| FrameInfo {
                    frame: Frame::Label(firefox.intern_string(name)),
                    category_pair: CategoryHandle::OTHER.into(),
                    flags: FrameFlags::empty(),
                })
                .collect();
            firefox.intern_stack_frames(thread, frames.into_iter())
        })
        .collect();
    let mut fuel_so_far: u64 = 0;
    for &(stack, fuel) in &profile.samples {
        // A sample's weight is an i32: more fuel is more samples.
        let mut left = fuel;
        while left > 0 {
            let weight = left.min(i32::MAX as u64);
            firefox.add_sample(
                thread,
                Timestamp::from_nanos_since_reference(fuel_so_far),
                stacks[stack],
                CpuDelta::ZERO,
                weight as i32,
            );
            fuel_so_far = fuel_so_far.saturating_add(weight);
            left -= weight;
        }
    }
    let file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    serde_json::to_writer(&mut writer, &firefox)
        .with_context(|| format!("writing the profile to {}", path.display()))?;
    writer
        .flush()
        .with_context(|| format!("writing {}", path.display()))
}

/// What was profiled, and the functions that used the most fuel
/// themselves (not counting what they called).
fn summary(profile: &FuelProfile, args: &ProfileArgs) -> String {
    let mut own: BTreeMap<&str, u64> = BTreeMap::new();
    let mut unnamed = 0u64;
    for &(stack, fuel) in &profile.samples {
        if let Some(leaf) = profile.stack(stack).last() {
            *own.entry(leaf).or_default() += fuel;
        }
        if profile.stacks[stack]
            .last()
            .is_some_and(|leaf| profile.unnamed.contains(leaf))
        {
            unnamed += fuel;
        }
    }
    let total = profile.total_fuel();
    let mut hottest: Vec<(&str, u64)> = own.into_iter().collect();
    hottest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut text = format!(
        "profiled {} call(s) (instantiations and parse-config included): {} fuel in {} samples; \
         flame graph: {}{}\n\
         hottest functions by their own fuel:\n",
        profile.calls,
        presence_router_testkit::thousands(total),
        profile.samples.len(),
        args.output.display(),
        match &args.firefox {
            Some(path) => format!("; Firefox profile: {}", path.display()),
            None => String::new(),
        }
    );
    for (name, fuel) in hottest.iter().take(10) {
        text.push_str(&format!(
            "  {:>5.1}%  {name}\n",
            100.0 * *fuel as f64 / total.max(1) as f64
        ));
    }
    if unnamed > 0 {
        // Said here, not only in the docs: the picture is honest about
        // what it can't name (an interpreter without a name section, a
        // stripped build).
        text.push_str(&format!(
            "{:.1}% of the fuel is in functions the component has no names for \
             (`module!wasm-function[N]`): it was built without a name section for \
             them (stripped, or an engine such as componentize-js's); see \
             docs/writing-a-router.md\n",
            100.0 * unnamed as f64 / total.max(1) as f64
        ));
    }
    text
}
