//! `presence-router-guest-build`: see the library's documentation.

fn main() -> std::process::ExitCode {
    presence_router_guest_build::cli::main(std::env::args_os()).into()
}
