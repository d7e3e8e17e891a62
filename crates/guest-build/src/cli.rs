//! The command line, in the library so that another program (the tests'
//! build script) can serve as the tool without a second build of it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand, builder::PossibleValuesParser};

use crate::componentize::{PostReturns, componentize};

/// Builds router components from C, C++ and other wasm32-wasi languages:
/// WIT bindings, and wasip1 reactor modules made components.
#[derive(Parser)]
#[command(name = "presence-router-guest-build", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the guest bindings of a WIT world for a language.
    Bindgen {
        #[arg(long, value_parser = PossibleValuesParser::new(crate::bindgen::language_names()))]
        lang: String,
        /// The WIT package directory (with its deps/).
        #[arg(long, value_name = "DIR")]
        wit: PathBuf,
        /// The world, when the package has more than one.
        #[arg(long)]
        world: Option<String>,
        /// Where to write the bindings (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Makes a component of a wasip1 reactor module, with the preview1
    /// reactor adapter; refuses a module that lacks a post-return function
    /// for an export returning an allocation (the component would leak).
    Componentize {
        /// The core module (.wasm), linked as a reactor.
        #[arg(long, value_name = "IN.wasm")]
        module: PathBuf,
        /// The component to write.
        #[arg(long, value_name = "OUT.wasm")]
        out: PathBuf,
        /// Embed this WIT package's world first (when the bindings did not).
        #[arg(long, value_name = "DIR")]
        wit: Option<PathBuf>,
        /// The world of --wit, when the package has more than one.
        #[arg(long, requires = "wit")]
        world: Option<String>,
        /// Build the component even so, with a warning: only to keep a
        /// leaking component for tests that must catch it.
        #[arg(long)]
        allow_missing_post_return: bool,
    },
    /// Fails, naming the directory and why, unless only you and root can
    /// change each DIR and the directories above it (sticky ones aside):
    /// for build scripts that run programs from a toolchain directory.
    #[command(hide = true)]
    TrustedDir {
        #[arg(value_name = "DIR", required = true)]
        dirs: Vec<PathBuf>,
    },
}

/// Runs the tool on `args` (the program name first); errors go to stderr.
/// Returns the exit status: 0, 1 for a failed build, 2 for a bad command
/// line.
pub fn main(args: impl IntoIterator<Item = OsString>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are "errors" that print to stdout and succeed.
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match run(cli.command) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("presence-router-guest-build: error: {e:#}");
            1
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Bindgen {
            lang,
            wit,
            world,
            out,
        } => {
            crate::bindgen::generate(&lang, &wit, world.as_deref(), &out)?;
        }
        Command::Componentize {
            module,
            out,
            wit,
            world,
            allow_missing_post_return,
        } => {
            let bytes = std::fs::read(&module)
                .with_context(|| format!("cannot read {}", module.display()))?;
            let policy = if allow_missing_post_return {
                PostReturns::Allow
            } else {
                PostReturns::Require
            };
            let built = componentize(
                &bytes,
                wit.as_deref().map(|dir| (dir, world.as_deref())),
                policy,
            )
            .with_context(|| format!("{}", module.display()))?;
            for missing in &built.missing_post_returns {
                eprintln!(
                    "presence-router-guest-build: WARNING: {}: {} (allowed by \
                     --allow-missing-post-return)",
                    module.display(),
                    crate::post_return::describe(std::slice::from_ref(missing))
                );
            }
            write_atomically(&out, &built.component)?;
        }
        Command::TrustedDir { dirs } => {
            for dir in &dirs {
                crate::trusted_dir::check(dir)?;
            }
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file beside it, so that a
/// failed or interrupted build never leaves half a component there.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("cannot write {}", path.display()))
}
