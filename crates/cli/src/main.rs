//! `presence-router`: load presence routers from a YAML configuration, check
//! them, and route presence batches given as JSON Lines; test one router
//! component (`test`) or route through it without a configuration (`run`);
//! compare two versions of the routers on recorded requests (`diff`);
//! start a router project (`new`) and build it (`bindgen`, `componentize`).
//!
//! The last three, for router authors, are built with the `authoring`
//! feature only: without it, they take any arguments and exit 2 naming the
//! command that installs them (without_authoring.rs).

mod against;
mod diff;
#[cfg(feature = "authoring")]
mod guest_build;
#[cfg(feature = "authoring")]
mod new;
mod profile;
mod sign;
mod stats;
#[cfg(not(feature = "authoring"))]
mod without_authoring;

// The authoring commands' arguments, or in a build without them a stand-in
// that takes any, so that the command line parses the same either way.
#[cfg(feature = "authoring")]
use guest_build::{BindgenArgs, ComponentizeArgs};
#[cfg(feature = "authoring")]
use new::NewArgs;
#[cfg(not(feature = "authoring"))]
use without_authoring::{
    NotBuilt as NewArgs, NotBuilt as BindgenArgs, NotBuilt as ComponentizeArgs,
};

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use presence_router_runtime::jsonl::{self as protocol, Request};
use presence_router_runtime::{
    CacheSetting, CompileSource, Limits, LiveRouterSet, LoadOptions, ModuleApi, RouterSet,
    RouterSetConfig, ShadowMode,
};
use presence_router_testkit::{
    Budgets, CaseResult, LiftVerdict, TestKit, read_case_file_with_budgets, single_router,
    thousands,
};

#[derive(Parser)]
#[command(version, about)]
#[cfg_attr(
    not(feature = "authoring"),
    command(after_help = without_authoring::AFTER_HELP)
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load every router of a configuration, print each with its limits, and
    /// exit non-zero on any error.
    Check(LoadArgs),
    /// Read JSON Lines requests on stdin and write one JSON answer per line
    /// on stdout, in order. SIGHUP reloads the configuration and the
    /// components (changed routers only; a version that fails to load
    /// leaves the running one serving).
    Route(RouteArgs),
    /// Test one component before an operator loads it: built-in cases, your
    /// own (--cases), and whether its two callbacks agree; each call's use
    /// of fuel, memory, answer size and time against the default limits.
    /// With --against, test it against another router instead (exit 0 if
    /// they agreed, 1 if they differed, 2 if the test could not run).
    Test(TestArgs),
    /// Like `route`, for one component and no configuration file: quick
    /// experiments. SIGHUP reloads the component.
    Run(RunArgs),
    /// Replay recorded JSON Lines requests (stdin) through two versions of
    /// the routers: one JSON line per request answered differently on
    /// stdout, a summary on stderr; exit 0 if nothing differed, 1 if
    /// something did, 2 if the diff could not run.
    Diff(diff::DiffArgs),
    /// Replay JSON Lines requests (stdin), or generated batches, through one
    /// component with its stacks sampled by fuel, and write where its fuel
    /// went: an SVG flame graph and, with --firefox, a profile for the
    /// Firefox Profiler. Answers go to stdout as `run` writes them.
    Profile(profile::ProfileArgs),
    /// Sign a component with an Ed25519 key: the signature goes inside it,
    /// in the wasmsign2 tool's format (configurations can require one with
    /// `trusted_keys` and `signed_by`).
    Sign(sign::SignArgs),
    /// Check that a component is signed by a key; exit 1 saying what was
    /// found (no signature, changed since signing, another key) if not.
    Verify(sign::VerifyArgs),
    /// Write a new router project into DIR: the example router in LANG, a
    /// setup.sh that installs its toolchain, a build.sh that builds it and
    /// prints the component's path last, test cases, a routers.yaml and a
    /// README.
    New(NewArgs),
    /// Write the guest bindings of a WIT world for C, C++ or Go (Zig uses
    /// C's): a step of the build.sh of `new` projects.
    Bindgen(BindgenArgs),
    /// Make a component of a wasip1 reactor module, with the preview1
    /// adapter; refuses a module whose exports would leak what they return
    /// (no post-return functions). A step of the build.sh of `new` projects.
    Componentize(ComponentizeArgs),
    /// Fails, naming the directory and why, unless only you and root can
    /// change each DIR and the directories above it (sticky ones aside):
    /// for the build scripts of `new` projects, which run programs from a
    /// toolchain directory. In every build, `authoring` or not.
    #[command(hide = true)]
    TrustedDir {
        #[arg(value_name = "DIR", required = true)]
        dirs: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ComponentArgs {
    /// The router component (.wasm).
    #[arg(long, value_name = "FILE")]
    component: PathBuf,
    /// The router's configuration, as the JSON object `parse-config` gets.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    config_json: String,
    #[command(flatten)]
    cache: CacheArgs,
}

impl ComponentArgs {
    /// The configuration, checked to be a JSON object.
    fn config_json(&self) -> anyhow::Result<String> {
        json_object("--config-json", &self.config_json)
    }
}

/// `text`, given as `flag`, checked to be a JSON object.
fn json_object(flag: &str, text: &str) -> anyhow::Result<String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value.to_string()),
        Ok(_) => anyhow::bail!("{flag}: must be a JSON object, such as '{{}}'"),
        Err(e) => anyhow::bail!("{flag}: not valid JSON: {e}"),
    }
}

#[derive(clap::Args)]
struct TestArgs {
    #[command(flatten)]
    component: ComponentArgs,
    /// Your own cases: a YAML or JSON file of batches and expected routes
    /// (see docs/writing-a-router.md), and `budgets:`.
    #[arg(long, value_name = "FILE")]
    cases: Option<PathBuf>,
    #[command(flatten)]
    budgets: BudgetArgs,
    #[command(flatten)]
    against: against::AgainstArgs,
}

/// Cost budgets a case's call must keep within (each also settable in the
/// case file's `budgets:`; these win).
#[derive(clap::Args)]
struct BudgetArgs {
    /// Fuel one call may use.
    #[arg(long, value_name = "FUEL")]
    max_fuel_per_call: Option<u64>,
    /// Fuel one call may use per state of its batch (an interest call
    /// counts as one state).
    #[arg(long, value_name = "FUEL")]
    max_fuel_per_state: Option<u64>,
    /// The instance's linear memory after a call, such as `2MiB`.
    #[arg(long, value_name = "SIZE", value_parser = presence_router_testkit::parse_size)]
    max_memory: Option<u64>,
    /// Entries of one answer (routes, indices, user IDs).
    #[arg(long, value_name = "ENTRIES")]
    max_answer_entries: Option<u64>,
}

impl BudgetArgs {
    fn budgets(&self) -> Budgets {
        Budgets {
            fuel_per_call: self.max_fuel_per_call,
            fuel_per_state: self.max_fuel_per_state,
            memory: self.max_memory,
            answer_entries: self.max_answer_entries,
        }
    }
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    component: ComponentArgs,
    /// A new version to try in shadow on the requests, with its criteria:
    /// the YAML mapping a configuration's `canary:` takes, such as
    /// '{component: new.wasm, promote_after: 100}'.
    #[arg(long, value_name = "YAML")]
    canary: Option<String>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args)]
struct RouteArgs {
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// On exit, print what each router's calls came to on stderr: calls,
    /// failures per kind, skips, suspensions, duration and fuel
    /// percentiles, answer entries, instances, reloads; and each canary's
    /// shadow calls, agreeing and divergent answers, failures and
    /// decision (`promoted`, `rejected` or `on trial`).
    #[arg(long)]
    stats: bool,
}

#[derive(clap::Args)]
struct LoadArgs {
    /// The YAML configuration listing the routers.
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(clap::Args)]
struct CacheArgs {
    /// Keep compiled components here (default: the user's cache directory,
    /// ~/.cache/presence-router on Linux).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Compile every component at every start; read and write no cache.
    #[arg(long)]
    no_cache: bool,
}

impl CacheArgs {
    fn options(&self) -> LoadOptions {
        let cache = match (&self.cache_dir, self.no_cache) {
            (_, true) => CacheSetting::Disabled,
            (Some(dir), false) => CacheSetting::Dir(dir.clone()),
            (None, false) => CacheSetting::UserCacheDir,
        };
        LoadOptions {
            cache,
            ..LoadOptions::default()
        }
    }
}

/// The CLI reports sends in each answer line, so it only logs the rest.
struct CliModuleApi;

impl ModuleApi for CliModuleApi {
    fn send_local_online_presence_to(&self, _router: &str, _users: &[String]) {}
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr: stdout carries the JSON Lines answers. Coloured
    // only on a terminal, and never with NO_COLOR set (no-color.org): a
    // file or a pipe gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check(args).await,
        Command::Route(args) => route(args).await,
        Command::Test(args) if args.against.against.is_some() => return against_test(args).await,
        Command::Test(args) => test(args).await,
        Command::Run(args) => run(args).await,
        Command::Diff(args) => return diff::diff(args).await,
        Command::Profile(args) => profile::profile(args).await,
        Command::Sign(args) => sign::sign(args),
        Command::Verify(args) => sign::verify(args).await,
        Command::TrustedDir { dirs } => dirs.iter().try_for_each(|dir| {
            presence_router_ownership::check_toolchain_dir(dir).map_err(anyhow::Error::msg)
        }),
        #[cfg(feature = "authoring")]
        Command::New(args) => new::new(args),
        #[cfg(feature = "authoring")]
        Command::Bindgen(args) => guest_build::bindgen(args),
        #[cfg(feature = "authoring")]
        Command::Componentize(args) => guest_build::componentize(args),
        #[cfg(not(feature = "authoring"))]
        Command::New(_) => return without_authoring::refuse("new"),
        #[cfg(not(feature = "authoring"))]
        Command::Bindgen(_) => return without_authoring::refuse("bindgen"),
        #[cfg(not(feature = "authoring"))]
        Command::Componentize(_) => return without_authoring::refuse("componentize"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn load(args: &LoadArgs, options: &LoadOptions) -> anyhow::Result<RouterSet> {
    let config = RouterSetConfig::from_file(&args.config)?;
    Ok(RouterSet::load_with(&config, Arc::new(CliModuleApi), options).await?)
}

/// How `route` and `run` load: canaries' shadow calls made in order, each
/// after its live call, so that a replay of recorded requests always comes
/// to the same decision.
fn serving_options(cache: &CacheArgs) -> LoadOptions {
    LoadOptions {
        shadow: ShadowMode::Inline,
        ..cache.options()
    }
}

async fn check(args: LoadArgs) -> anyhow::Result<()> {
    let routers = load(&args, &args.cache.options()).await?;
    println!(
        "{}: {} router(s), all loaded",
        args.config.display(),
        routers.routers().len()
    );
    for (i, router) in routers.routers().enumerate() {
        let how = match router.compiled_from {
            CompileSource::Compiled => "compiled",
            CompileSource::Cache => "from the cache",
        };
        println!(
            "{}. {} ({}, {how} in {:.1?})",
            i + 1,
            router.name,
            router.component.display(),
            router.load_time
        );
        println!("   limits: {}", router.limits);
        println!("   failures: {}", router.failure_policy);
    }
    Ok(())
}

async fn route(args: RouteArgs) -> anyhow::Result<()> {
    let options = serving_options(&args.load.cache);
    let routers = Arc::new(LiveRouterSet::new(load(&args.load, &options).await?));
    let path = args.load.config.clone();
    let reload = move || RouterSetConfig::from_file(&path);
    serve(routers, reload, options, &args.serve).await
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let component = &args.component;
    let config = match &args.canary {
        None => single_router(
            &component.component,
            &component.config_json()?,
            Limits::DEFAULT,
        ),
        Some(canary) => with_canary(&component.component, &component.config_json()?, canary)?,
    };
    let options = serving_options(&component.cache);
    let routers = Arc::new(LiveRouterSet::new(
        RouterSet::load_with(&config, Arc::new(CliModuleApi), &options).await?,
    ));
    serve(routers, move || Ok(config.clone()), options, &args.serve).await
}

/// `run`'s one router with `canary` (a YAML mapping) as its canary, as a
/// configuration file would give it; relative paths resolve against the
/// working directory.
fn with_canary(
    component: &Path,
    config_json: &str,
    canary: &str,
) -> anyhow::Result<RouterSetConfig> {
    let canary: serde_json::Value =
        serde_yaml::from_str(canary).context("--canary: not a YAML mapping")?;
    let config: serde_json::Value =
        serde_json::from_str(config_json).context("--config-json: not valid JSON")?;
    let single = single_router(component, "{}", Limits::DEFAULT);
    let name = single
        .routers
        .first()
        .map_or_else(|| "router".to_owned(), |r| r.name.clone());
    let document = serde_json::json!({
        "routers": [{
            "name": name,
            "component": component,
            "config": config,
            // A tool run wants every call made, as in `single_router`.
            "failure_policy": {"suspend_after": 0},
            "canary": canary,
        }]
    });
    Ok(RouterSetConfig::from_json_value(
        document,
        Path::new("--canary"),
        Path::new("."),
    )?)
}

/// Serves JSON Lines from stdin until it ends, reloading on SIGHUP; then
/// prints the figures if asked.
async fn serve(
    routers: Arc<LiveRouterSet>,
    config: impl Fn() -> Result<RouterSetConfig, presence_router_runtime::ConfigError> + Send + 'static,
    options: LoadOptions,
    args: &ServeArgs,
) -> anyhow::Result<()> {
    // Installed before the first request is read: a SIGHUP that arrives
    // once an answer is out never meets the default action (exit).
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("listening for SIGHUP")?;
    let reloading = routers.clone();
    let options_for_decisions = options.clone();
    let reloader = tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: loading the configuration and the components again");
            let outcome = match config() {
                Ok(config) => reloading.reload(&config, &options).await,
                Err(e) => {
                    reloading.count_failed_reload();
                    Err(e.into())
                }
            };
            match outcome {
                Ok(report) if report.changed() => {
                    for (router, why) in &report.revoked {
                        tracing::error!(
                            "router `{router}` taken out: its signature no longer verifies: {why}"
                        );
                    }
                    tracing::info!(
                        reloaded = ?report.reloaded,
                        added = ?report.added,
                        removed = ?report.removed,
                        kept = ?report.kept,
                        "reloaded the routers"
                    )
                }
                Ok(_) => tracing::info!("reloaded: no router changed"),
                Err(e) => {
                    tracing::error!("reloading failed; the running version goes on serving: {e}")
                }
            }
        }
    });
    let served = serve_json_lines(&routers, &options_for_decisions).await;
    reloader.abort();
    if args.stats {
        let current = routers.current();
        eprint!(
            "{}{}",
            stats::summary(&current.stats(), routers.reload_counts()),
            stats::canaries(&current.canary_stats())
        );
    }
    served
}

async fn test(args: TestArgs) -> anyhow::Result<()> {
    let component = &args.component;
    let config_json = component.config_json()?;
    let (cases, file_budgets) = match &args.cases {
        Some(path) => read_case_file_with_budgets(path)?,
        None => (Vec::new(), Budgets::default()),
    };
    let budgets = file_budgets.overridden_by(args.budgets.budgets());
    let mut kit = TestKit::new(
        &component.component,
        &config_json,
        component.cache.options(),
        Limits::DEFAULT,
    );
    // A router that can't start fails every check for the same reason: say
    // it once.
    let run = kit
        .run_all(&cases)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "{} with {config_json}, against the default limits ({})",
        component.component.display(),
        Limits::DEFAULT
    );
    println!("\nbuilt-in cases");
    for result in &run.builtin {
        print_case(result, kit.limits());
    }
    if let Some(path) = &args.cases {
        println!("\n{}", path.display());
        for result in &run.cases {
            print_case(result, kit.limits());
        }
    }
    println!("\nconsistency of get-users-for-states and get-interested-users");
    match &run.consistency {
        Ok((mismatches, summary)) if mismatches.is_empty() => {
            println!("  PASS  {summary}: they agree");
        }
        Ok((mismatches, summary)) => {
            println!("  FAIL  {summary}: {} mismatch(es)", mismatches.len());
            for mismatch in mismatches.iter().take(10) {
                println!("        {}", mismatch.what);
                println!("          smallest example: {}", mismatch.example);
            }
        }
        Err(message) => println!("  FAIL  could not check: {message}"),
    }
    let plan = kit.growth_plan();
    println!(
        "\nmemory across calls, on one instance: {} warm-up calls, then of each callback until \
         {} calls in a row leave it unchanged (at most {})",
        thousands(plan.warm_up as u64),
        thousands(plan.quiet as u64),
        thousands(plan.max_calls as u64)
    );
    for growth in &run.growth {
        let verdict = if growth.flagged() { "WARN" } else { "PASS" };
        println!("  {verdict}  {}", growth.summary(kit.limits().memory));
    }
    println!("\nfreeing what the exports return (post-return, from the component binary)");
    match &run.exports {
        Ok(lifts) => {
            for lift in lifts {
                let verdict = match lift.verdict() {
                    LiftVerdict::Leaks => "WARN",
                    LiftVerdict::NotFollowed => "SKIP",
                    _ => "PASS",
                };
                println!("  {verdict}  {}", lift.describe());
            }
        }
        Err(message) => println!("  SKIP  could not read its exports: {message}"),
    }
    let mut over_budget = 0;
    if !budgets.is_empty() {
        println!("\ncost budgets: {budgets}");
        for result in run.builtin.iter().chain(&run.cases) {
            let Some(stats) = &result.stats else {
                continue;
            };
            let overruns = budgets.overruns(stats, result.states);
            if overruns.is_empty() {
                println!("  PASS  {}", result.name);
            } else {
                over_budget += 1;
                println!("  FAIL  {}", result.name);
                for line in overruns {
                    println!("        {line}");
                }
            }
        }
    }
    let warnings = run.warnings(kit.limits().memory).len();
    match run.failed() + over_budget {
        0 if warnings == 0 => {
            println!("\nall passed");
            Ok(())
        }
        0 => {
            println!("\nall passed, with {warnings} warning(s) (WARN above)");
            Ok(())
        }
        failed => anyhow::bail!("{failed} check(s) failed"),
    }
}

/// `test --against`: the differential test.
async fn against_test(args: TestArgs) -> ExitCode {
    let config_json = match args.component.config_json() {
        Ok(json) => json,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    against::Differential {
        a: presence_router_testkit::differential::Contender::Component {
            path: args.component.component.clone(),
            config_json,
        },
        args: &args.against,
        cases: args.cases.clone(),
        options: args.component.cache.options(),
    }
    .run()
    .await
}

fn print_case(result: &CaseResult, limits: &Limits) {
    let verdict = if result.passed { "PASS" } else { "FAIL" };
    println!("  {verdict}  {}", result.name);
    if let Some(usage) = result.usage(limits) {
        println!("        {usage}");
    }
    for line in &result.details {
        println!("        {line}");
    }
}

/// The answer to one line of the JSON Lines contract (`None` for a blank
/// line), as `route`, `run` and `profile` write it.
async fn answer_line(routers: &RouterSet, line: &[u8]) -> Option<serde_json::Value> {
    Some(match std::str::from_utf8(line) {
        Err(e) => protocol::error_answer(&format!("not valid UTF-8: {e}")),
        Ok(text) if text.trim().is_empty() => return None,
        Ok(text) => match protocol::parse_request(text) {
            Err(message) => protocol::error_answer(&message),
            Ok(request) => answer(routers, request).await,
        },
    })
}

/// The answer to one request.
async fn answer(routers: &RouterSet, request: Request) -> serde_json::Value {
    match request {
        Request::GetUsersForStates(batch) => {
            let routed = routers.get_users_for_states(&batch).await;
            protocol::users_for_states_answer(&batch, &routed)
        }
        Request::GetInterestedUsers(user_id) => {
            protocol::interested_users_answer(&routers.get_interested_users(&user_id).await)
        }
    }
}

async fn serve_json_lines(live: &LiveRouterSet, options: &LoadOptions) -> anyhow::Result<()> {
    let mut input = BufReader::new(tokio::io::stdin());
    let mut output = tokio::io::stdout();
    let mut line = Vec::new();
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .await
            .context("reading stdin")?
            == 0
        {
            return Ok(());
        }
        let Some(answer) = answer_line(&live.current(), &line).await else {
            continue;
        };
        // A canary decided by this request is promoted or rejected before
        // the next one.
        live.apply_canary_decisions(options).await;
        let mut text = answer.to_string();
        text.push('\n');
        output
            .write_all(text.as_bytes())
            .await
            .context("writing stdout")?;
        // One answer per request, visible as soon as it is ready.
        output.flush().await.context("writing stdout")?;
    }
}
