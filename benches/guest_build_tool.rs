//! `presence-router-guest-build`, built as this package's binary for the
//! example routers' builds (see `[[bin]]` in Cargo.toml).

fn main() -> std::process::ExitCode {
    presence_router_guest_build::cli::main(std::env::args_os()).into()
}
