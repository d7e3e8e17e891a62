//! `presence-router-guest-build trusted-dir DIR...`: whether only this user
//! and root can change a toolchain directory, for the build scripts that run
//! programs from one (a virtualenv, `node_modules`, a project's
//! `.toolchain/`). `presence-router trusted-dir` is the same command: both
//! are [`presence_router_ownership::check_toolchain_dir`], the rule the
//! runtime applies to component files ([`Policy::TOOLCHAIN_DIR`], OpenSSH's
//! `StrictModes`).
//!
//! [`Policy::TOOLCHAIN_DIR`]: presence_router_ownership::Policy::TOOLCHAIN_DIR

use std::path::Path;

/// Refuses `dir` unless only this user and root can change it and what is
/// in it; the error names `dir` (and what it resolves to) and why.
pub fn check(dir: &Path) -> anyhow::Result<()> {
    presence_router_ownership::check_toolchain_dir(dir).map_err(anyhow::Error::msg)
}
