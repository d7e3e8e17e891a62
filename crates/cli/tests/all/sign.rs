//! `sign` and `verify`, and `check` of a configuration that requires a
//! signature: with an OpenSSH key as `ssh-keygen` writes one.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{config_dir, run};

fn ssh_keygen(dir: &Path, name: &str) {
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join(name))
        .status()
        .expect("ssh-keygen runs (Debian's openssh-client)");
    assert!(made.success());
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_signed_component_verifies_and_checks_and_an_unsigned_one_is_refused_with_why() {
    let dir = config_dir(
        "trusted_keys: {ops: ops.pub}\nrouters:\n  - {name: example, component: signed.wasm, signed_by: [ops]}\n",
    );
    let cwd = dir.path();
    ssh_keygen(cwd, "ops");
    ssh_keygen(cwd, "dev");

    let signed = run(
        &[
            "sign",
            "--component",
            "routers/example.wasm",
            "--key",
            "ops",
            "--output",
            "signed.wasm",
        ],
        cwd,
        "",
    );
    assert!(signed.status.success(), "{}", text(&signed));
    assert_eq!(
        String::from_utf8_lossy(&signed.stdout),
        "signed.wasm: signed with ops\n"
    );

    let verified = run(
        &["verify", "--component", "signed.wasm", "--key", "ops.pub"],
        cwd,
        "",
    );
    assert!(verified.status.success(), "{}", text(&verified));
    assert_eq!(
        String::from_utf8_lossy(&verified.stdout),
        "signed.wasm: signed by ops.pub\n"
    );
    let checked = run(
        &["check", "--config", "routers.yaml", "--no-cache"],
        cwd,
        "",
    );
    assert!(checked.status.success(), "{}", text(&checked));

    // Another key's verify says whose it is not; an unsigned file, that it
    // is not signed; `check` refuses it, naming the router and the key.
    let other = run(
        &["verify", "--component", "signed.wasm", "--key", "dev.pub"],
        cwd,
        "",
    );
    assert_eq!(other.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&other.stderr),
        "error: signed.wasm: is signed by a key this configuration does not trust, not by `dev` \
         (dev.pub) as required\n"
    );
    std::fs::copy(cwd.join("routers/example.wasm"), cwd.join("signed.wasm")).expect("copied");
    let unsigned = run(
        &["verify", "--component", "signed.wasm", "--key", "ops.pub"],
        cwd,
        "",
    );
    assert_eq!(unsigned.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unsigned.stderr).contains("signed.wasm: is not signed"),
        "{}",
        text(&unsigned)
    );
    let refused = run(
        &["check", "--config", "routers.yaml", "--no-cache"],
        cwd,
        "",
    );
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        "error: routers.yaml: routers[0].component (router `example`): signed.wasm: is not \
         signed; a signature by `ops` (ops.pub) is required\n"
    );
}

#[test]
fn sign_replaces_the_component_in_place_by_default_and_names_a_bad_key() {
    let dir = config_dir("routers: []\n");
    let cwd = dir.path();
    ssh_keygen(cwd, "ops");
    // The component as the operators' docs write it: last, positional.
    let signed = run(&["sign", "--key", "ops", "routers/example.wasm"], cwd, "");
    assert!(signed.status.success(), "{}", text(&signed));
    let verified = run(
        &["verify", "--key", "ops.pub", "routers/example.wasm"],
        cwd,
        "",
    );
    assert!(verified.status.success(), "{}", text(&verified));
    // A public key is no secret key.
    let bad = run(
        &[
            "sign",
            "--component",
            "routers/example.wasm",
            "--key",
            "ops.pub",
        ],
        cwd,
        "",
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .starts_with("error: ops.pub: not an Ed25519 secret key"),
        "{}",
        text(&bad)
    );
}
