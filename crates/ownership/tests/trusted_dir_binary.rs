//! `presence-router-ownership trusted-dir`, the stand-in for the CLI's
//! command that `scripts/setup.sh` hands the example routers' setup
//! scripts: the same answers, the same exit statuses.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output};

fn trusted_dir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_presence-router-ownership"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn a_private_directory_passes_and_one_others_can_write_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().to_str().expect("UTF-8");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let ok = trusted_dir(&["trusted-dir", "--", path]);
    assert!(ok.status.success(), "{ok:?}");

    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let refused = trusted_dir(&["trusted-dir", path]);
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.starts_with("error: refused: the toolchain directory ") && said.contains(path),
        "{said}"
    );
}

#[test]
fn anything_but_trusted_dir_with_directories_is_a_usage_error() {
    for args in [
        &[][..],
        &["trusted-dir"],
        &["trusted-dir", "--"],
        &["check", "/"],
    ] {
        let output = trusted_dir(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).starts_with("usage: "),
            "{args:?}"
        );
    }
}
