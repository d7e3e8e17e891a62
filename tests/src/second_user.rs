//! A second local user, to play the attacker against the files the runtime
//! and the CLI trust (a compiled-component cache, a component, a project
//! directory, a toolchain). As root (CI, containers), the attacker's steps
//! run in a child process as uid/gid 65534 ("nobody"), in directories an
//! attacker-friendly operator setup would give it. As anyone else there is
//! no second user to be, and the tests that need one print why and return.

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

/// The attacker: "nobody" on Debian, Ubuntu, Fedora and Alpine.
pub const ATTACKER: u32 = 65534;

/// Whether this process can be the victim (root) of a second user; if not,
/// says so on stderr.
pub fn second_user_available(test: &str) -> bool {
    // The owner of a file this process creates is its effective uid.
    let probe = tempfile::tempfile().expect("a temporary file");
    let euid = probe.metadata().expect("fstat").uid();
    if euid != 0 {
        eprintln!(
            "{test}: skipped: running as uid {euid}, not root, so there is no second user \
             (uid {ATTACKER}) to play the attacker"
        );
        return false;
    }
    true
}

/// Runs `script` with `sh -c` as the attacker (uid and gid 65534, no
/// supplementary groups: std drops them when root sets a uid), `$1`... set
/// to `args`.
pub fn as_attacker(script: &str, args: &[&OsStr]) -> Output {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .uid(ATTACKER)
        .gid(ATTACKER)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        // `Permission denied`, whatever the machine's language.
        .env("LC_ALL", "C")
        .current_dir("/")
        .output()
        .expect("cannot run /bin/sh as the attacker")
}

/// Like [`as_attacker`], for a step that must succeed.
pub fn attacker_does(script: &str, args: &[&OsStr]) -> Output {
    let output = as_attacker(script, args);
    assert!(
        output.status.success(),
        "the attacker's step `{script}` failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A temporary directory with `mode`: the attacker-friendly part of an
/// operator's setup (tempfile makes its directories 0700).
pub fn temp_dir_with_mode(mode: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    set_mode(dir.path(), mode);
    dir
}

pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// The permission bits of `path` itself (a symlink's own, not its
/// target's).
pub fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()))
        .mode()
        & 0o7777
}
