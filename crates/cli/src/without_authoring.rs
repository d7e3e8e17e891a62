//! `new`, `bindgen` and `componentize` in a build without the `authoring`
//! feature (the binary that routes): still recognised, with any arguments,
//! and answered with the one command that installs a binary that has them,
//! where clap alone would say "unrecognized subcommand" and leave an author
//! (or a `new` project's build.sh) guessing.

use std::ffi::OsString;
use std::process::ExitCode;

/// Installs `presence-router` with the authoring commands, from a clone of
/// the repository (README.md gives it too).
pub const INSTALL: &str = "cargo install --locked --path crates/cli --features authoring";

/// The top-level help's last words in this build.
pub const AFTER_HELP: &str = "new, bindgen and componentize are not in this build, which routes \
    only: router authors install presence-router with them, from a clone of the repository, \
    with\n  cargo install --locked --path crates/cli --features authoring";

/// Whatever was given to a command this build lacks: never read.
#[derive(clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct NotBuilt {
    #[arg(num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true, hide = true)]
    args: Vec<OsString>,
}

/// Exits 2, as clap does for a command line it cannot take: this one can't
/// be done by this build.
pub fn refuse(command: &str) -> ExitCode {
    eprintln!(
        "error: `presence-router {command}` is not in this build, which routes only \
         (built without the `authoring` feature). Router authors install presence-router with \
         `new`, `bindgen` and `componentize`, from a clone of the repository, with\n  {INSTALL}"
    );
    ExitCode::from(2)
}
