//! `presence-router trusted-dir DIR...`, the check the build scripts of
//! `new` projects run on their toolchain directories: in every build of
//! the binary, hidden from `--help`. The rule and its messages are tested
//! in presence-router-ownership.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn trusted_dir_refuses_a_group_writable_dir_and_accepts_a_private_one() {
    let temp = tempfile::tempdir().expect("a temporary directory");
    let venv = temp.path().join("venv");
    std::fs::create_dir(&venv).expect("a directory");
    let trusted_dir = |mode| {
        std::fs::set_permissions(&venv, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let output = Command::new(env!("CARGO_BIN_EXE_presence-router"))
            .arg("trusted-dir")
            .arg(&venv)
            .output()
            .expect("the binary runs");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert_eq!(trusted_dir(0o700), (Some(0), String::new()));
    let (status, stderr) = trusted_dir(0o770);
    assert_eq!(status, Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: refused: the toolchain directory {} is writable by group or others (mode \
             770)",
            venv.display()
        )) && stderr.ends_with("if only you wrote it, or remove it\n")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_presence-router"))
        .arg("--help")
        .output()
        .expect("the binary runs");
    assert!(help.status.success());
    assert!(!String::from_utf8_lossy(&help.stdout).contains("trusted-dir"));
}
