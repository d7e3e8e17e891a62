//! `presence-router new`: each language's project, written into a
//! temporary directory, built by its own `build.sh`, then put through the
//! commands its README gives (`presence-router test` with its cases,
//! `presence-router check` with its routers.yaml), which must pass.
//!
//! Toolchains are not installed again: the tests crate's build script has
//! installed them for the repository's example routers (its dev-dependency
//! builds them first), and the projects find them through
//! PRESENCE_ROUTER_TOOLCHAINS, a directory of links to them. Rust projects
//! build in `target/guests-new`, shared between runs, so wit-bindgen and
//! serde are compiled once (not `target/guests`, where every .wasm is taken
//! for a test guest). Each test prints how long each step took
//! (`--nocapture` shows it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use presence_router_tests::guests;

const BIN: &str = env!("CARGO_BIN_EXE_presence-router");

/// The repository.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ is in the repository")
        .to_owned()
}

/// The workspace's target directory: the guests' cache is in it.
fn target_dir() -> PathBuf {
    Path::new(guests::COMPONENT_CACHE_DIR)
        .ancestors()
        .nth(2)
        .expect("target/guests/component-cache")
        .to_owned()
}

/// A directory of links to the toolchains the repository's example routers
/// were built with, laid out as the projects' build.sh expect them.
fn shared_toolchains(dir: &Path) -> PathBuf {
    let toolchains = dir.join("toolchains");
    std::fs::create_dir(&toolchains).expect("a fresh temporary directory");
    let repo = root().join("target/toolchains");
    // The JavaScript example installs its toolchain in place; only its
    // node_modules is shared, so that nothing here ever writes over the
    // example's package.json.
    std::fs::create_dir(toolchains.join("componentize-js")).expect("a directory");
    let links = [
        (
            "componentize-js/node_modules",
            root().join("guest-example-js/node_modules"),
        ),
        ("componentize-py", repo.join("componentize-py")),
        ("zig", repo.join("zig")),
        ("zig-cache", repo.join("zig-cache")),
        ("go", repo.join("go")),
        ("go-cache", repo.join("go-cache")),
    ];
    for (name, target) in links {
        // A toolchain that is not there is installed by the project itself
        // (slowly, but correctly).
        if target.exists() {
            std::os::unix::fs::symlink(&target, toolchains.join(name)).expect("a link");
        }
    }
    toolchains
}

fn describe(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The commands under the README's "Next steps", one a line.
fn readme_commands(readme: &str) -> Vec<String> {
    readme
        .split_once("## Next steps\n\n```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block.lines().map(str::to_owned).collect())
        .expect("README.md has a Next steps block")
}

fn check_language(lang: &str) {
    let started = Instant::now();
    let temp = tempfile::tempdir().expect("a temporary directory");
    let project = temp.path().join("my-router");
    let output = Command::new(BIN)
        .args(["new", "--lang", lang])
        .arg(&project)
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "new: {}", describe(&output));
    let readme = std::fs::read_to_string(project.join("README.md")).expect("a README");
    let commands = readme_commands(&readme);
    assert_eq!(commands.len(), 3, "build, test, load: {commands:?}");
    assert_eq!(commands[0], "./build.sh");

    // The build, as a user runs it, with the toolchains shared. It runs this
    // binary for bindings and components: the path `new` wrote in it.
    let built = Instant::now();
    let guests_new = target_dir().join("guests-new");
    let output = Command::new("bash")
        .arg(project.join("build.sh"))
        .current_dir(temp.path())
        .env("PRESENCE_ROUTER_TOOLCHAINS", shared_toolchains(temp.path()))
        .env("CARGO_TARGET_DIR", &guests_new)
        .env_remove("PRESENCE_ROUTER")
        // The outer build's flags and wrappers are for host code.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "{lang}: build.sh: {}",
        describe(&output)
    );
    let build_time = built.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let component = stdout
        .lines()
        .last()
        .expect("build.sh prints the component");
    assert_eq!(
        Path::new(component),
        project.join("build/my_router.wasm"),
        "{lang}: the last line is the component's path: {}",
        describe(&output)
    );
    assert!(Path::new(component).is_file(), "{lang}: {component}");

    // The README's next two commands, as written, with this binary first on
    // PATH and a compiled-component cache of their own (a JavaScript or
    // Python build differs every time: it could never be found in a shared
    // one, only fill it up).
    let bin_dir = Path::new(BIN).parent().expect("a directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut times = Vec::new();
    for (command, success) in [(&commands[1], "\nall passed"), (&commands[2], "all loaded")] {
        let started = Instant::now();
        let output = Command::new("bash")
            .args(["-c", command])
            .current_dir(&project)
            .env("PATH", &path)
            .env("XDG_CACHE_HOME", temp.path().join("cache"))
            .env("RUST_LOG", "warn")
            .output()
            .expect("bash runs");
        assert!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).contains(success),
            "{lang}: `{command}`: {}",
            describe(&output)
        );
        times.push(started.elapsed());
    }
    eprintln!(
        "{lang}: build.sh {:.1?}, presence-router test {:.1?}, check {:.1?}; {:.1?} in all",
        build_time,
        times[0],
        times[1],
        started.elapsed()
    );
}

#[test]
fn a_new_rust_router_builds_and_passes_its_tests() {
    check_language("rust");
}

#[test]
fn a_new_javascript_router_builds_and_passes_its_tests() {
    check_language("js");
}

#[test]
fn a_new_python_router_builds_and_passes_its_tests() {
    check_language("python");
}

#[test]
fn a_new_c_router_builds_and_passes_its_tests() {
    check_language("c");
}

#[test]
fn a_new_cpp_router_builds_and_passes_its_tests() {
    check_language("cpp");
}

#[test]
fn a_new_zig_router_builds_and_passes_its_tests() {
    check_language("zig");
}

#[test]
fn a_new_go_router_builds_and_passes_its_tests() {
    check_language("go");
}

#[test]
fn new_writes_only_into_a_new_or_empty_directory() {
    let temp = tempfile::tempdir().expect("a temporary directory");
    let project = temp.path().join("taken");
    std::fs::create_dir(&project).expect("a directory");
    std::fs::write(project.join("notes.txt"), "mine").expect("a file");
    let output = Command::new(BIN)
        .args(["new", "--lang", "c"])
        .arg(&project)
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        stderr.contains(&format!(
            "{}: the directory is not empty (it holds `notes.txt`)",
            project.display()
        )),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&project)
        .expect("still there")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    assert_eq!(left, ["notes.txt"], "nothing written beside it");

    let file = temp.path().join("a-file");
    std::fs::write(&file, "").expect("a file");
    let output = Command::new(BIN)
        .args(["new", "--lang", "go"])
        .arg(&file)
        .output()
        .expect("the binary runs");
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains(&format!("{}: not a directory", file.display())),
        "{}",
        describe(&output)
    );

    // An empty directory is fine, and names the project.
    let empty = temp.path().join("My Router");
    std::fs::create_dir(&empty).expect("a directory");
    let output = Command::new(BIN)
        .args(["new", "--lang", "rust"])
        .arg(&empty)
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{}", describe(&output));
    let manifest = std::fs::read_to_string(empty.join("Cargo.toml")).expect("Cargo.toml");
    assert!(manifest.contains("name = \"my-router\""), "{manifest}");
    let build = empty.join("build.sh");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&build).expect("build.sh").permissions(),
    );
    assert_eq!(mode & 0o777, 0o755, "build.sh is executable");
}

#[test]
fn componentize_names_the_module_it_cannot_use() {
    let temp = tempfile::tempdir().expect("a temporary directory");
    let module = temp.path().join("not-a-module.wasm");
    std::fs::write(&module, "hello").expect("a file");
    let out = temp.path().join("out.wasm");
    let output = Command::new(BIN)
        .args(["componentize", "--module"])
        .arg(&module)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("the binary runs");
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}: not a WebAssembly module", module.display())),
        "{stderr}"
    );
    assert!(!out.exists(), "no component written");
}
