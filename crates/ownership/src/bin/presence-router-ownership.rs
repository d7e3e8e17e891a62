//! `presence-router-ownership trusted-dir [--] DIR...`: the CLI's
//! `presence-router trusted-dir` alone, with nothing else compiled in, so
//! that `scripts/setup.sh` can hand it to the example routers' setup
//! scripts (as `PRESENCE_ROUTER`) before the CLI, and wasmtime with it, is
//! built. Exits 1 naming the first directory refused and why, 2 on a
//! usage error.

use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: presence-router-ownership trusted-dir [--] DIR...";

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let dirs = match args.split_first() {
        Some((command, rest)) if command == "trusted-dir" => match rest.split_first() {
            Some((dashes, dirs)) if dashes == "--" => dirs,
            _ => rest,
        },
        _ => &[][..],
    };
    if dirs.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    for dir in dirs {
        if let Err(refused) = presence_router_ownership::check_toolchain_dir(Path::new(dir)) {
            eprintln!("error: {refused}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
