//! The example router in languages other than Rust, each built by its
//! project's own `build.sh` (`examples/routers/<language>/`) the first time
//! a test asks for it, once per process; the script skips the build when
//! none of its inputs changed since the last one.
//!
//! Not in `build.rs`: there a missing toolchain would fail every test (and
//! `cargo clippy`). Here it fails the tests of that language alone, with a
//! message naming `bash scripts/setup.sh`, which installs every toolchain.
//! Nothing here installs anything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use presence_router_guest_build::componentize::{PostReturns, componentize};

use crate::guests;

/// The example router in a language other than Rust, built from
/// `examples/routers/<language>/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    Js,
    Python,
    C,
    Cpp,
    /// The C++ router with wit-bindgen-cpp's leaks left in, for the leak
    /// checks: built from the C++ build's objects (below), not by a project.
    CppLeaky,
    Zig,
    Go,
}

impl Language {
    /// For people.
    fn display(self) -> &'static str {
        match self {
            Language::Js => "JavaScript",
            Language::Python => "Python",
            Language::C => "C",
            Language::Cpp => "C++",
            Language::CppLeaky => "leaky C++",
            Language::Zig => "Zig",
            Language::Go => "Go",
        }
    }

    /// Its directory under `examples/routers/`, and under the guests' one.
    fn dir(self) -> &'static str {
        match self {
            Language::Js => "js",
            Language::Python => "python",
            Language::C => "c",
            Language::Cpp => "cpp",
            Language::CppLeaky => "cpp-leaky",
            Language::Zig => "zig",
            Language::Go => "go",
        }
    }

    /// Whether the guest-build tool makes its component (bindings,
    /// componentizing), so that the component depends on the tool. Every
    /// build runs the tool, to check its toolchain directories
    /// (`trusted-dir`).
    fn needs_tool(self) -> bool {
        !matches!(self, Language::Js | Language::Python)
    }
}

/// The path of the example router's component in `language` (a `&'static
/// str`), built first if this process has not yet:
/// `example_router!(Language::Go)`.
///
/// A macro, because the builds run the guest-build tool (the C, C++, Zig
/// and Go ones to make the component, all of them to check their toolchain
/// directories), an executable of the calling test's own package, which
/// only that package's integration tests and benchmarks know the path of
/// (`CARGO_BIN_EXE_<name>`): `presence-router-tests-guest-build` here,
/// `presence-router-benches-guest-build` in `benches/`, the
/// `presence-router` CLI (whose `bindgen`, `componentize` and
/// `trusted-dir` are the same commands) in its own tests.
///
/// Panics, naming the language, when it cannot be built: with what is
/// missing and `bash scripts/setup.sh` when its toolchain is not installed.
#[macro_export]
macro_rules! example_router {
    ($language:expr) => {
        $crate::example_routers::built(
            $language,
            ::std::option_env!("CARGO_BIN_EXE_presence-router-tests-guest-build")
                .or(::std::option_env!(
                    "CARGO_BIN_EXE_presence-router-benches-guest-build"
                ))
                .or(::std::option_env!("CARGO_BIN_EXE_presence-router")),
        )
    };
}

/// What [`example_router!`] expands to: the component of `language`, built
/// with `tool` (the guest-build tool's path, if the caller's package has
/// one) once per process.
pub fn built(language: Language, tool: Option<&'static str>) -> &'static str {
    static BUILT: [OnceLock<Result<String, String>>; 7] = [const { OnceLock::new() }; 7];
    let built = BUILT[language as usize].get_or_init(|| {
        let component = match language {
            Language::CppLeaky => build_cpp_leaky(Path::new(built(Language::Cpp, tool)), tool),
            _ => build(language, tool),
        }?;
        // A path the tests put in YAML and compare with texts.
        component
            .into_os_string()
            .into_string()
            .map_err(|path| format!("{}: not UTF-8", Path::new(&path).display()))
    });
    match built {
        Ok(path) => path,
        Err(message) => panic!("{message}"),
    }
}

/// The repository.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
}

/// Where `bash scripts/setup.sh` installs the toolchains.
pub fn toolchains_dir() -> PathBuf {
    root().join("target/toolchains")
}

const SETUP: &str = "`bash scripts/setup.sh` installs every toolchain the tests need";

/// Where `language`'s router is built: `target/guests/<language>/`, or for
/// a component the tool makes, a directory of that tool's (each package
/// has its own, and the component depends on it: with one directory, the
/// tests of one package would rebuild what another's just built, and
/// could remove its intermediate files while another reads them).
fn out_dir(language: Language, tool: Option<&str>) -> PathBuf {
    let guests = Path::new(guests::GUESTS_DIR);
    match tool.and_then(|tool| Path::new(tool).file_name()) {
        Some(tool) if language.needs_tool() => guests.join(tool).join(language.dir()),
        _ => guests.join(language.dir()),
    }
}

/// Runs `examples/routers/<language>/build.sh` into [`out_dir`].
fn build(language: Language, tool: Option<&str>) -> Result<PathBuf, String> {
    let name = language.display();
    let project = root().join("examples/routers").join(language.dir());
    let out_dir = out_dir(language, tool);
    let mut command = Command::new("bash");
    command
        .arg(project.join("build.sh"))
        .arg(&out_dir)
        .env("PRESENCE_ROUTER_TOOLCHAINS", toolchains_dir());
    let tool = tool.ok_or_else(|| {
        format!(
            "the {name} example router's build runs the guest-build tool, and this \
             package has no binary of it (`presence-router-tests-guest-build` or \
             `presence-router-benches-guest-build`): call example_router! from an \
             integration test or benchmark of a package that has one"
        )
    })?;
    command.env("PRESENCE_ROUTER", tool);
    let output = command
        .output()
        .map_err(|e| format!("cannot run bash to build the {name} example router: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(3) {
        // build.sh's status for "not installed"; its last line says what.
        let what = stderr.trim_end().lines().last().unwrap_or_default();
        return Err(format!(
            "the {name} example router cannot be built: its toolchain is missing ({what}); \
             {SETUP}"
        ));
    }
    if !output.status.success() {
        return Err(format!(
            "building the {name} example router failed ({}, {}):\n{stderr}",
            project.join("build.sh").display(),
            output.status
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let component = PathBuf::from(stdout.trim_end().lines().last().unwrap_or_default());
    if !component.is_file() {
        return Err(format!(
            "the {name} example router's build.sh printed no component: {stdout}{stderr}"
        ));
    }
    Ok(component)
}

/// The C++ router as wit-bindgen-cpp 0.60's bindings make it, with neither
/// fix of the project's build.sh: its post-return functions misnamed (so
/// missing) and the states' array never freed. Linked from the C++ build's
/// own objects and the bindings it generated, as generated; then made a
/// component although its post-returns are missing (which the project's
/// build refuses). Kept beside it: `leaky.wasm`, the core module.
fn build_cpp_leaky(cpp: &Path, tool: Option<&str>) -> Result<PathBuf, String> {
    let fail = |what: &str, why: String| format!("building the leaky C++ router: {what}: {why}");
    let work = cpp.with_file_name("example_router.d");
    let out_dir = out_dir(Language::CppLeaky, tool);
    std::fs::create_dir_all(&out_dir).map_err(|e| fail("its directory", e.to_string()))?;
    let component = out_dir.join("example_router_cpp_leaky.wasm");
    let module = out_dir.join("leaky.wasm");
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    if modified(&component).is_some() && modified(&component) >= modified(cpp) {
        return Ok(component);
    }
    // The C++ project's build.sh compiles with these flags.
    let cxx = |args: &[&std::ffi::OsStr]| -> Result<(), String> {
        let output = Command::new("clang++-19")
            .args([
                "--target=wasm32-wasi",
                "-O2",
                "-std=c++23",
                "-fno-exceptions",
                "-fno-rtti",
            ])
            .args(args)
            .output()
            .map_err(|e| fail("clang++-19", e.to_string()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(fail(
                "clang++-19",
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ))
        }
    };
    let bindings = work.join("bindings");
    let bindings_object = out_dir.join("bindings.o");
    cxx(&[
        "-I".as_ref(),
        bindings.as_os_str(),
        "-c".as_ref(),
        bindings.join("presence_router.cpp").as_os_str(),
        "-o".as_ref(),
        bindings_object.as_os_str(),
    ])?;
    cxx(&[
        "-mexec-model=reactor".as_ref(),
        "-Wl,--strip-debug".as_ref(),
        "-o".as_ref(),
        module.as_os_str(),
        work.join("router.o").as_os_str(),
        work.join("config.o").as_os_str(),
        bindings
            .join("presence_router_component_type.o")
            .as_os_str(),
        bindings_object.as_os_str(),
    ])?;
    let bytes = std::fs::read(&module).map_err(|e| fail("its module", e.to_string()))?;
    let built = componentize(&bytes, None, PostReturns::Allow)
        .map_err(|e| fail("componentize", format!("{e:#}")))?;
    // Renamed into place: another test process may be reading it.
    let partial = out_dir.join(format!("{}.partial", std::process::id()));
    std::fs::write(&partial, &built.component)
        .and_then(|()| std::fs::rename(&partial, &component))
        .map_err(|e| fail("its component", e.to_string()))?;
    Ok(component)
}
