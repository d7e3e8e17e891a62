//! Builds every guest component for wasm32-wasip2 before the tests compile,
//! as wasmtime's `test-programs/artifacts` does, so that `cargo test` always
//! runs against components built from the sources in this checkout.
//!
//! The guests get their own target directory (`target/guests`): a nested
//! cargo in the outer build's directory would wait on its lock forever.
//!
//! Only the Rust guests: the example router in other languages is built by
//! its own `build.sh` when a test first asks for it (`example_router!`), so
//! that a missing toolchain fails the tests of that language alone. Nothing
//! here installs anything (`bash scripts/setup.sh` does).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest workspaces, relative to the repository root.
const GUEST_WORKSPACES: &[&str] = &["examples/routers/rust", "tests/guests"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guests");

    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    for workspace in GUEST_WORKSPACES {
        let dir = root.join(workspace);
        // Only what exists: cargo reruns a build script for ever when a
        // watched path is missing (`tests/guests` has no `src`).
        for watched in ["Cargo.toml", "Cargo.lock", "src", "wit"] {
            let path = dir.join(watched);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
        for member in members(&dir) {
            for watched in ["Cargo.toml", "src", "wit"] {
                println!("cargo:rerun-if-changed={}", member.join(watched).display());
            }
        }
        let status = Command::new(&cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            // The outer build's flags and wrappers (clippy, coverage) are
            // for host code, not for the guests.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("cannot run cargo to build the guests");
        assert!(
            status.success(),
            "building the guests of {workspace} failed; is Rust's wasm32-wasip2 target \
             installed? `bash scripts/setup.sh` installs it"
        );
    }

    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    let mut constants = String::new();
    let mut all =
        String::from("/// Every guest: (name, path).\npub const ALL: &[(&str, &str)] = &[\n");
    for entry in std::fs::read_dir(&wasm_dir).expect("the guests were built") {
        let path = entry.expect("readable directory").path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let stem = path
                .file_stem()
                .expect("a file name")
                .to_string_lossy()
                .to_uppercase();
            constants.push_str(&format!(
                "/// The `{stem}` guest component, freshly built.\npub const {stem}: &str = {:?};\n",
                path.display().to_string()
            ));
            all.push_str(&format!("    ({stem:?}, {stem}),\n"));
        }
    }
    all.push_str("];\n");
    constants.push_str(&all);
    constants.push_str(&format!(
        "/// Where the guests are built (each language's example router in a\n/// directory of its own).\npub const GUESTS_DIR: &str = {:?};\n",
        target_dir.display().to_string()
    ));
    constants.push_str(&format!(
        "/// A compiled-component cache for the tests, beside the guests.\npub const COMPONENT_CACHE_DIR: &str = {:?};\n",
        target_dir.join("component-cache").display().to_string()
    ));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("guests.rs");
    std::fs::write(out, constants).expect("OUT_DIR is writable");
}

/// The member directories of a guest workspace (or none, for a single crate).
fn members(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("Cargo.toml").is_file())
                .collect()
        })
        .unwrap_or_default()
}
