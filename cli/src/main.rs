//! `presence-router`: load presence routers from a YAML configuration, check
//! them, and route presence batches given as JSON Lines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use presence_router_runtime::jsonl::{self as protocol, Request};
use presence_router_runtime::{
    CacheSetting, CompileSource, LoadOptions, ModuleApi, RouterSet, RouterSetConfig,
};

#[derive(Parser)]
#[command(version, about)]
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
    /// on stdout, in order.
    Route(LoadArgs),
}

#[derive(clap::Args)]
struct LoadArgs {
    /// The YAML configuration listing the routers.
    #[arg(long)]
    config: PathBuf,
    /// Keep compiled components here (default: the user's cache directory,
    /// ~/.cache/presence-router on Linux).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Compile every component at every start; read and write no cache.
    #[arg(long)]
    no_cache: bool,
}

impl LoadArgs {
    fn options(&self) -> LoadOptions {
        let cache = match (&self.cache_dir, self.no_cache) {
            (_, true) => CacheSetting::Disabled,
            (Some(dir), false) => CacheSetting::Dir(dir.clone()),
            (None, false) => CacheSetting::UserCacheDir,
        };
        LoadOptions { cache }
    }
}

/// The CLI reports sends in each answer line, so it only logs the rest.
struct CliModuleApi;

impl ModuleApi for CliModuleApi {
    fn send_local_online_presence_to(&self, _router: &str, _users: &[String]) {}
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr: stdout carries the JSON Lines answers.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check(args).await,
        Command::Route(args) => route(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn load(args: &LoadArgs) -> anyhow::Result<RouterSet> {
    let config = RouterSetConfig::from_file(&args.config)?;
    Ok(RouterSet::load_with(&config, Arc::new(CliModuleApi), &args.options()).await?)
}

async fn check(args: LoadArgs) -> anyhow::Result<()> {
    let routers = load(&args).await?;
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

async fn route(args: LoadArgs) -> anyhow::Result<()> {
    let routers = load(&args).await?;
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
        let answer = match std::str::from_utf8(&line) {
            Err(e) => protocol::error_answer(&format!("not valid UTF-8: {e}")),
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => match protocol::parse_request(text) {
                Err(message) => protocol::error_answer(&message),
                Ok(Request::GetUsersForStates(batch)) => {
                    let routed = routers.get_users_for_states(&batch).await;
                    protocol::users_for_states_answer(&batch, &routed)
                }
                Ok(Request::GetInterestedUsers(user_id)) => {
                    protocol::interested_users_answer(&routers.get_interested_users(&user_id).await)
                }
            },
        };
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
