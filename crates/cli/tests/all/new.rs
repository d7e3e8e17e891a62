//! `presence-router new`: each language's project, written into a
//! temporary directory, put through the commands its README gives (its
//! `setup.sh`, which must find everything; its `build.sh`; `presence-router
//! test` with its cases, `presence-router check` with its routers.yaml),
//! which must pass. And every example router is what `new` writes.
//!
//! Nothing is installed here: `bash scripts/setup.sh` installs the
//! toolchains into `target/toolchains`, and the projects find them through
//! PRESENCE_ROUTER_TOOLCHAINS, a directory of links to them; a project whose
//! toolchain is missing fails its test, naming that command. Rust projects
//! build in `target/guests-new`, shared between runs, so wit-bindgen and
//! serde are compiled once (not `target/guests`, where every .wasm is taken
//! for a test guest). Each test prints how long each step took
//! (`--nocapture` shows it).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use presence_router_tests::guests;
use presence_router_tests::second_user::{
    ATTACKER, attacker_does, second_user_available, temp_dir_with_mode,
};

const BIN: &str = env!("CARGO_BIN_EXE_presence-router");

/// The repository.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/cli/ is in the repository")
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

/// A directory of links to the toolchains `bash scripts/setup.sh`
/// installed for the repository's example routers, laid out as the
/// projects' scripts expect them.
fn shared_toolchains(dir: &Path) -> PathBuf {
    let toolchains = dir.join("toolchains");
    std::fs::create_dir(&toolchains).expect("a fresh temporary directory");
    let repo = root().join("target/toolchains");
    for name in [
        "componentize-js",
        "componentize-py",
        "zig",
        "zig-cache",
        "go",
        "go-cache",
    ] {
        // One that is not there is missing for the project too: its
        // `setup.sh --check` says so (the caches are made by builds).
        if repo.join(name).exists() {
            std::os::unix::fs::symlink(repo.join(name), toolchains.join(name)).expect("a link");
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
    assert_eq!(commands.len(), 4, "setup, build, test, load: {commands:?}");
    assert_eq!(commands[..2], ["./setup.sh", "./build.sh"]);

    // This binary first on PATH, as the README asks: the C, C++, Zig and Go
    // builds run it for bindings and components, and every setup and build
    // with a toolchain directory has it check that directory.
    let bin_dir = Path::new(BIN).parent().expect("a directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let toolchains = shared_toolchains(temp.path());
    // The setup, only checking: with the repository's toolchains shared,
    // everything is there.
    let output = Command::new("bash")
        .arg(project.join("setup.sh"))
        .arg("--check")
        .env("PRESENCE_ROUTER_TOOLCHAINS", &toolchains)
        .env("PATH", &path)
        .env_remove("PRESENCE_ROUTER")
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "{lang}: setup.sh --check: the toolchain is missing (`bash scripts/setup.sh` installs \
         it): {}",
        describe(&output)
    );

    // The build, as a user runs it, with the toolchains shared.
    let built = Instant::now();
    let guests_new = target_dir().join("guests-new");
    let output = Command::new("bash")
        .arg(project.join("build.sh"))
        .current_dir(temp.path())
        .env("PRESENCE_ROUTER_TOOLCHAINS", &toolchains)
        .env("CARGO_TARGET_DIR", &guests_new)
        .env("PATH", &path)
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
    let mut times = Vec::new();
    for (command, success) in [(&commands[2], "\nall passed"), (&commands[3], "all loaded")] {
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

/// Each example router, `examples/routers/<lang>/`, is exactly the project
/// `new --lang <lang> --name example-router` writes: every file, byte for
/// byte, executable or not, and no other, what the project's .gitignore
/// names (builds, toolchains, node_modules) aside. `new` embeds the
/// examples' own files, so this holds the files every project shares
/// (`crates/cli/templates/`: README, lib.sh, ...) and the WIT in step:
/// `BLESS=1` writes `new`'s over the example's after a deliberate change.
/// A file of the example that `new` does not write is never removed: it
/// belongs in the language's list in `crates/cli/src/new.rs`.
#[test]
fn every_example_router_is_what_new_makes() {
    let temp = tempfile::tempdir().expect("a temporary directory");
    let bless = std::env::var_os("BLESS").is_some();
    let (mut differences, mut extra) = (Vec::new(), Vec::new());
    for lang in ["rust", "js", "python", "c", "cpp", "zig", "go"] {
        let made = temp.path().join(lang);
        let output = Command::new(BIN)
            .args(["new", "--lang", lang, "--name", "example-router"])
            .arg(&made)
            .output()
            .expect("the binary runs");
        assert!(output.status.success(), "new: {}", describe(&output));
        let example = root().join("examples/routers").join(lang);
        let made_files = project_files(&made, &[]);
        let ignored = ignored_names(&made.join(".gitignore"));
        let example_files = project_files(&example, &ignored);
        for file in made_files.union(&example_files) {
            let (ours, theirs) = (example.join(file), made.join(file));
            let read = |path: &Path| {
                std::fs::read(path)
                    .ok()
                    .zip(std::fs::metadata(path).ok())
                    .map(|(bytes, meta)| (bytes, meta.permissions().mode() & 0o111 != 0))
            };
            let (example_file, new_file) = (read(&ours), read(&theirs));
            let what = match (&example_file, &new_file) {
                _ if example_file == new_file => continue,
                (_, None) => {
                    extra.push(format!("examples/routers/{lang}/{}", file.display()));
                    continue;
                }
                (None, _) => "missing (new writes it)",
                (Some((a, _)), Some((b, _))) if a != b => "its text differs from new's",
                _ => "executable or not, unlike new's",
            };
            differences.push(format!(
                "examples/routers/{lang}/{}: {what}",
                file.display()
            ));
            if bless {
                if let Some(dir) = ours.parent() {
                    std::fs::create_dir_all(dir).expect("a directory");
                }
                // Its mode too.
                std::fs::copy(&theirs, &ours).expect("copied");
            }
        }
    }
    assert!(
        extra.is_empty(),
        "files of the example routers that `presence-router new` does not write (add them to \
         the language's files in crates/cli/src/new.rs, or remove them):\n{}",
        extra.join("\n")
    );
    assert!(
        differences.is_empty() || bless,
        "the example routers are not what `presence-router new` writes (run with BLESS=1 to \
         write new's files over them, if the templates changed on purpose):\n{}",
        differences.join("\n")
    );
}

/// The files under `dir`, relative to it, but those whose name is in
/// `ignored` (at any depth) and what is under them.
fn project_files(dir: &Path, ignored: &[String]) -> std::collections::BTreeSet<PathBuf> {
    let mut files = std::collections::BTreeSet::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(dir.join(&relative)).expect("a directory") {
            let entry = entry.expect("an entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if ignored.contains(&name) {
                continue;
            }
            let path = relative.join(&name);
            if entry.file_type().expect("a type").is_dir() {
                pending.push(path);
            } else {
                files.insert(path);
            }
        }
    }
    files
}

/// The names a project's .gitignore leaves out of it (`/build/`,
/// `__pycache__/`: what builds and toolchains make there).
fn ignored_names(gitignore: &Path) -> Vec<String> {
    std::fs::read_to_string(gitignore)
        .expect("a .gitignore")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.trim().trim_matches('/').to_owned())
        .collect()
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

// Another local user against `new` and the projects' build scripts
// (`presence_router_tests::second_user`, as for the runtime's cache).

/// `presence-router new --lang LANG DIR`.
fn new_project(lang: &str, dir: &Path) -> Output {
    Command::new(BIN)
        .args(["new", "--lang", lang])
        .arg(dir)
        .output()
        .expect("the binary runs")
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// `new` refused, on stderr, with every one of `words`.
fn assert_refused(output: &Output, words: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "not refused: {}",
        describe(output)
    );
    for word in words {
        assert!(
            stderr.contains(word),
            "no `{word}` in the refusal: {stderr}"
        );
    }
}

/// An empty directory someone else made (in a shared, sticky directory such
/// as /tmp, where anyone may make one): whoever owns it can change
/// `build.sh` between `new` and the victim running it.
#[test]
fn new_refuses_a_directory_another_user_owns() {
    if !second_user_available("new_refuses_a_directory_another_user_owns") {
        return;
    }
    let shared = temp_dir_with_mode(0o1777);
    let project = shared.path().join("my-router");
    attacker_does(r#"mkdir -m 755 "$1""#, &[project.as_os_str()]);
    let output = new_project("c", &project);
    assert_refused(
        &output,
        &[
            &project.display().to_string(),
            &format!("owned by uid {ATTACKER}"),
            "mode 755",
        ],
    );
    assert!(entries(&project).is_empty(), "nothing written into it");
}

/// An empty directory of ours that anyone can write: another user can swap
/// `build.sh` in it.
#[test]
fn new_refuses_a_directory_others_can_write() {
    let temp = tempfile::tempdir().expect("a temporary directory");
    for mode in [0o777, 0o775, 0o1777] {
        let project = temp.path().join(format!("open-{mode:o}"));
        std::fs::create_dir(&project).expect("a directory");
        std::fs::set_permissions(&project, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let output = new_project("rust", &project);
        assert_refused(
            &output,
            &[
                &project.display().to_string(),
                &format!("mode {mode:o}"),
                "chmod go-w",
            ],
        );
        assert!(entries(&project).is_empty(), "nothing written into it");
    }
}

/// A project directory to be made in a directory anyone can write (and not
/// sticky): another user could rename ours away between the mkdir and the
/// writes and put a link to anywhere in its place. Refused before anything
/// is made, whether the project's directory or one of its parents is missing.
#[test]
fn new_refuses_a_path_under_a_directory_others_can_write() {
    let open = temp_dir_with_mode(0o777);
    for project in [
        open.path().join("my-router"),
        open.path().join("nested/deeper/my-router"),
    ] {
        let output = new_project("rust", &project);
        assert_refused(
            &output,
            &[
                &open.path().display().to_string(),
                "mode 777",
                "without the sticky bit",
            ],
        );
    }
    assert!(entries(open.path()).is_empty(), "nothing made there");
}

/// A symlink named as the project is not followed, even to an empty
/// directory of ours.
#[test]
fn new_refuses_a_symlink_as_its_directory() {
    let temp = tempfile::tempdir().expect("a temporary directory");
    let target = temp.path().join("elsewhere");
    std::fs::create_dir(&target).expect("a directory");
    let link = temp.path().join("my-router");
    std::os::unix::fs::symlink(&target, &link).expect("a symlink");
    let output = new_project("rust", &link);
    assert_refused(&output, &[&link.display().to_string(), "symbolic link"]);
    assert!(entries(&target).is_empty(), "nothing written through it");
}

/// A toolchain directory (`PRESENCE_ROUTER_TOOLCHAINS`, or a virtualenv in
/// it) that another user owns: its programs would run as the one building.
/// The attacker's virtualenv is complete and up to date (its
/// `.requirements.txt` is the project's), so an unchecked build runs it.
#[test]
fn a_build_refuses_a_toolchain_another_user_owns() {
    if !second_user_available("a_build_refuses_a_toolchain_another_user_owns") {
        return;
    }
    let temp = tempfile::tempdir().expect("a temporary directory");
    let project = temp.path().join("my-router");
    let output = new_project("python", &project);
    assert!(output.status.success(), "new: {}", describe(&output));
    let shared = temp_dir_with_mode(0o1777);
    let ran = shared.path().join("ran-as-victim");
    // The attacker's toolchains: a virtualenv whose programs leave a mark.
    let attackers = shared.path().join("toolchains");
    attacker_does(
        r#"set -e
        venv="$1/componentize-py"
        mkdir -p "$venv/bin"
        cp "$2" "$venv/.requirements.txt"
        for program in python componentize-py; do
          printf '#!/bin/sh\ntouch "%s"\n' "$3" >"$venv/bin/$program"
          chmod 755 "$venv/bin/$program"
        done"#,
        &[
            attackers.as_os_str(),
            project.join("requirements.txt").as_os_str(),
            ran.as_os_str(),
        ],
    );
    let venv = attackers.join("componentize-py");
    // Ours, private, with the attacker's virtualenv linked into it (as the
    // shared toolchains of the tests above are linked).
    let ours = temp.path().join("toolchains");
    std::fs::create_dir(&ours).expect("a directory");
    std::os::unix::fs::symlink(&venv, ours.join("componentize-py")).expect("a link");
    for (toolchains, refused) in [(&attackers, &attackers), (&ours, &venv)] {
        let output = Command::new("bash")
            .arg(project.join("build.sh"))
            .current_dir(&project)
            .env("PRESENCE_ROUTER_TOOLCHAINS", toolchains)
            // The check of the toolchain directories: `trusted-dir`.
            .env("PRESENCE_ROUTER", BIN)
            .output()
            .expect("bash runs");
        assert!(
            !ran.exists(),
            "the build ran uid {ATTACKER}'s program from {}: {}",
            toolchains.display(),
            describe(&output)
        );
        assert_refused(
            &output,
            &[
                &refused.display().to_string(),
                &format!("owned by uid {ATTACKER}"),
            ],
        );
    }
}

/// Build scripts install nothing: the C and C++ projects' `build.sh`
/// (the examples' too), with Debian packages missing, never run apt-get,
/// even as root, but stop (status 3) naming what is missing and setup.sh;
/// so does `setup.sh --check`. `setup.sh` itself installs them, as root.
#[test]
fn build_scripts_install_no_packages() {
    let temp = tempfile::tempdir().expect("a temporary directory");
    // Stand-ins first on PATH: a dpkg-query that knows no package, an
    // apt-get that only leaves a mark.
    let bin = temp.path().join("bin");
    std::fs::create_dir(&bin).expect("a directory");
    let ran = temp.path().join("apt-get-ran");
    for (name, script) in [
        ("dpkg-query", "#!/bin/sh\nexit 1\n".to_owned()),
        (
            "apt-get",
            format!("#!/bin/sh\necho \"$@\" >>'{}'\n", ran.display()),
        ),
    ] {
        std::fs::write(bin.join(name), script).expect("a script");
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (lang, package) in [("c", "wasi-libc"), ("cpp", "libc++-19-dev-wasm32")] {
        let project = temp.path().join(lang);
        let output = new_project(lang, &project);
        assert!(output.status.success(), "new: {}", describe(&output));
        let _ = std::fs::remove_file(&ran);
        let run = |script: &str, args: &[&str]| {
            Command::new("bash")
                .arg(project.join(script))
                .args(args)
                .env("PATH", &path)
                .output()
                .expect("bash runs")
        };
        for (script, args, words) in [
            (
                "build.sh",
                &[][..],
                ["missing Debian packages: clang-19 ", package, "setup.sh"],
            ),
            (
                "setup.sh",
                &["--check"][..],
                ["missing: Debian's clang-19 ", package, ""],
            ),
        ] {
            let output = run(script, args);
            assert!(
                !ran.exists(),
                "{lang} {script}: apt-get ran: {}",
                describe(&output)
            );
            assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            for word in words {
                assert!(
                    said.contains(word),
                    "{lang} {script}: no `{word}` in {said}"
                );
            }
        }
        if second_user_available("build_scripts_install_no_packages") {
            // As root, setup.sh installs what is missing.
            let output = run("setup.sh", &[]);
            assert!(
                std::fs::read_to_string(&ran)
                    .is_ok_and(|args| args.contains("install") && args.contains(package)),
                "{lang}: setup.sh did not install {package}: {}",
                describe(&output)
            );
            assert!(
                String::from_utf8_lossy(&output.stdout).contains("installed: Debian's clang-19 "),
                "{}",
                describe(&output)
            );
        }
    }
}
