//! `presence-router-guest-build trusted-dir DIR...`, as the build scripts
//! run it: exit status 0 when every DIR is trusted, else 1 with one line on
//! stderr naming the directory and why. The rule itself is tested in
//! presence-router-ownership; this is the command's interface.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Another user, for the directories given away (root only).
const OTHER: u32 = 65534;

/// A fresh directory (0755) under the system's temporary directory, which
/// is sticky or private, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "presence-router-trusted-dir-{}-{test}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the temporary directory is writable");
        chmod(&dir, 0o755);
        Scratch(std::fs::canonicalize(&dir).expect("there"))
    }

    /// A subdirectory, 0755.
    fn dir(&self, name: &str) -> PathBuf {
        let dir = self.0.join(name);
        std::fs::create_dir(&dir).expect("made");
        chmod(&dir, 0o755);
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The exit status and stderr of `trusted-dir` on `dirs`.
fn trusted_dir(dirs: &[&Path]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_presence-router-guest-build"))
        .arg("trusted-dir")
        .args(dirs)
        .output()
        .expect("the tool runs");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const PREFIX: &str = "presence-router-guest-build: error: ";

#[test]
fn trusted_directories_pass_silently() {
    let scratch = Scratch::new("trusted");
    let (venv, modules) = (scratch.dir("venv"), scratch.dir("node_modules"));
    assert_eq!(trusted_dir(&[&venv, &modules]), (Some(0), String::new()));
    // Sticky above is fine: only the directory's owner may rename it.
    chmod(&scratch.0, 0o1777);
    assert_eq!(trusted_dir(&[&venv]), (Some(0), String::new()));
}

#[test]
fn a_directory_others_can_write_is_refused_even_sticky() {
    let scratch = Scratch::new("writable");
    let (good, venv) = (scratch.dir("good"), scratch.dir("venv"));
    for mode in [0o775, 0o757, 0o1777] {
        chmod(&venv, mode);
        // Every DIR is checked: the second one stops the build.
        assert_eq!(
            trusted_dir(&[&good, &venv]),
            (
                Some(1),
                format!(
                    "{PREFIX}refused: the toolchain directory {venv} is writable by group or \
                     others (mode {mode:o}): another user could change the programs this build \
                     runs as you; `chmod -R go-w {venv}` if only you wrote it, or remove it\n",
                    venv = venv.display()
                )
            )
        );
    }
}

#[test]
fn a_directory_under_one_others_can_write_is_refused_naming_both() {
    let scratch = Scratch::new("above");
    let venv = scratch.dir("venv");
    let link = scratch.0.join("link");
    std::os::unix::fs::symlink(&venv, &link).expect("linked");
    chmod(&scratch.0, 0o777);
    assert_eq!(
        trusted_dir(&[&link]),
        (
            Some(1),
            format!(
                "{PREFIX}refused: the toolchain directory {link} (= {venv}) is in {above}, \
                 writable by others (mode 777) without the sticky bit: another user could \
                 replace the programs this build runs as you; keep toolchains under \
                 directories only you and root can write\n",
                link = link.display(),
                venv = venv.display(),
                above = scratch.0.display()
            )
        )
    );
}

#[test]
fn another_users_directory_is_refused_naming_its_owner() {
    // Giving a directory away takes root.
    if presence_router_ownership::euid() != 0 {
        return;
    }
    let scratch = Scratch::new("owner");
    let venv = scratch.dir("venv");
    std::os::unix::fs::chown(&venv, Some(OTHER), Some(OTHER)).expect("chown");
    assert_eq!(
        trusted_dir(&[&venv]),
        (
            Some(1),
            format!(
                "{PREFIX}refused: the toolchain directory {venv} is owned by uid {OTHER} (mode \
                 755), not by you (uid 0) or root: its owner could change the programs this \
                 build runs as you; remove it, or use a toolchain directory of your own\n",
                venv = venv.display()
            )
        )
    );
    std::os::unix::fs::chown(&venv, Some(0), Some(0)).expect("chown back");
    std::os::unix::fs::chown(&scratch.0, Some(OTHER), Some(OTHER)).expect("chown");
    assert_eq!(
        trusted_dir(&[&venv]),
        (
            Some(1),
            format!(
                "{PREFIX}refused: the toolchain directory {venv} is in {above}, owned by uid \
                 {OTHER} (mode 755), not by you (uid 0) or root: its owner could replace the \
                 programs this build runs as you; keep toolchains under directories only you \
                 and root can write\n",
                venv = venv.display(),
                above = scratch.0.display()
            )
        )
    );
}

#[test]
fn a_missing_directory_or_a_file_is_an_error_naming_it() {
    let scratch = Scratch::new("missing");
    let missing = scratch.0.join("none");
    let (status, stderr) = trusted_dir(&[&missing]);
    assert_eq!(status, Some(1));
    assert!(
        stderr.starts_with(&format!(
            "{PREFIX}cannot examine the toolchain directory {}: ",
            missing.display()
        )),
        "{stderr}"
    );
    let file = scratch.0.join("file");
    std::fs::write(&file, "").expect("written");
    assert_eq!(
        trusted_dir(&[&file]),
        (
            Some(1),
            format!(
                "{PREFIX}the toolchain directory {} is not a directory\n",
                file.display()
            )
        )
    );
}

#[test]
fn at_least_one_directory_is_named() {
    let (status, stderr) = trusted_dir(&[]);
    assert_eq!(status, Some(2), "{stderr}");
}
