//! `presence-router bindgen` and `componentize`: the two steps of building a
//! router from C, C++, Zig or Go, for the projects `presence-router new`
//! writes, which live away from this repository. The work is the
//! `presence-router-guest-build` library's (the repository's own example
//! routers are built with it too); these are its commands, in this binary.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::builder::PossibleValuesParser;
use presence_router_guest_build::componentize::PostReturns;

#[derive(clap::Args)]
pub struct BindgenArgs {
    /// The language of the bindings.
    #[arg(long, value_parser = PossibleValuesParser::new(presence_router_guest_build::bindgen::language_names()))]
    lang: String,
    /// The WIT package directory (with its deps/, if any).
    #[arg(long, value_name = "DIR")]
    wit: PathBuf,
    /// The world, when the package has more than one.
    #[arg(long)]
    world: Option<String>,
    /// Where to write the bindings (made if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct ComponentizeArgs {
    /// The core module (.wasm), linked as a wasip1 reactor.
    #[arg(long, value_name = "IN.wasm")]
    module: PathBuf,
    /// The component to write.
    #[arg(long, value_name = "OUT.wasm")]
    out: PathBuf,
    /// Embed this WIT package's world first (when the bindings did not, as
    /// Go's).
    #[arg(long, value_name = "DIR")]
    wit: Option<PathBuf>,
    /// The world of --wit, when the package has more than one.
    #[arg(long, requires = "wit")]
    world: Option<String>,
}

pub fn bindgen(args: BindgenArgs) -> anyhow::Result<()> {
    presence_router_guest_build::bindgen::generate(
        &args.lang,
        &args.wit,
        args.world.as_deref(),
        &args.out,
    )?;
    Ok(())
}

pub fn componentize(args: ComponentizeArgs) -> anyhow::Result<()> {
    let module = std::fs::read(&args.module)
        .with_context(|| format!("cannot read {}", args.module.display()))?;
    // A module whose exports return allocations without post-return
    // functions is refused: its component would leak on every call.
    let built = presence_router_guest_build::componentize::componentize(
        &module,
        args.wit.as_deref().map(|dir| (dir, args.world.as_deref())),
        PostReturns::Require,
    )
    .with_context(|| format!("{}", args.module.display()))?;
    write_atomically(&args.out, &built.component)
}

/// Writes `bytes` to `path` through a file beside it, renamed: a homeserver
/// watching `path` never loads half a component.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("cannot write {}", path.display()))
}
