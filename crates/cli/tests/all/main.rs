//! The `presence-router` executable end to end, a module per subject. The
//! tests run the binary cargo built for this package
//! (`CARGO_BIN_EXE_presence-router`), so they live here rather than in
//! the tests package.
//!
//! `cargo test -p presence-router --test all -- diff::` runs one subject.

/// Routers load under an address-space limit (`ulimit -v`).
mod address_space;
/// `test --against`: differential testing of two routers.
mod against;
/// Canaries tried in shadow on recorded requests by `route` and `run`.
mod canary;
/// `check`'s report and its errors.
mod check;
/// `diff`: two configurations or components replayed side by side.
mod diff;
/// Guest text escaped and cut on the terminal and in the answers.
mod guest_text;
/// `test`'s leak report.
mod leaks;
/// `new`: each language's project builds and passes its tests; another
/// user can't take it over.
mod new;
/// `profile`: flame graphs and Firefox profiles, by fuel.
mod profile;
/// `route` and `run`: the JSON Lines contract.
mod route;
/// `route` and `run` as servers: `--stats`, reloading on SIGHUP.
mod serve;
/// `sign` and `verify`, and `check` requiring a signature.
mod sign;
/// What the modules share: running the binary, configurations.
mod support;
/// `test`: cases, the usage of limits, a failing case's diff.
mod test_command;
/// `trusted-dir`: the toolchain-directory check of the build scripts.
mod trusted_dir;
