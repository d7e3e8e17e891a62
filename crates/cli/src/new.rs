//! `presence-router new DIR --lang LANG`: a ready router project, from
//! templates built into the binary, so it works away from this repository.
//!
//! A project is the example router of that language, taken from the
//! repository's example directory as it is (`examples/routers/c/src/router.c`
//! and so on: the files the conformance suite tests), or with the one
//! change that moving it needs (the Rust one's path to the WIT). Only what
//! belongs to a project lives in `crates/cli/templates/`: its `build.sh`, README,
//! manifests named after it, and the case file's header. Every project gets
//! the WIT, a `routers.yaml` and a `cases.yaml` (the conformance suite).
//!
//! A project's `build.sh` runs as whoever builds it, so `new` writes only
//! into a directory that nobody but this user and root can change (see
//! [`open_project_dir`]), and makes every file relative to that directory's
//! descriptor, following no link.
//!
//! Templates name values `{{like_this}}`; fragments (`{{prelude}}`, the
//! shell shared by the build scripts) are expanded before the values they
//! hold.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write as _;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};
use presence_router_runtime::strict_modes::{self, Untrusted, UntrustedDir};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde_json::Value;

#[derive(clap::Args)]
pub struct NewArgs {
    /// The project's directory: made, or an empty one. Its last component
    /// names the project (made a valid Cargo, npm and file name).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The language of the router.
    #[arg(long, value_enum)]
    lang: Language,
}

/// The languages a project can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    #[value(alias = "javascript")]
    Js,
    #[value(alias = "py")]
    Python,
    C,
    #[value(alias = "c++")]
    Cpp,
    Zig,
    Go,
}

impl Language {
    #[cfg(test)]
    const ALL: [Language; 7] = [
        Language::Rust,
        Language::Js,
        Language::Python,
        Language::C,
        Language::Cpp,
        Language::Zig,
        Language::Go,
    ];

    fn spec(self) -> &'static Spec {
        match self {
            Language::Rust => &RUST,
            Language::Js => &JS,
            Language::Python => &PYTHON,
            Language::C => &C,
            Language::Cpp => &CPP,
            Language::Zig => &ZIG,
            Language::Go => &GO,
        }
    }
}

/// One language's project.
struct Spec {
    /// For people: "Rust", "C++".
    display: &'static str,
    /// Where the router is, for the README.
    main_file: &'static str,
    /// The README's section on this language.
    readme: &'static str,
    /// `.gitignore` lines beyond build/ and .toolchain/.
    gitignore: &'static str,
    files: &'static [File],
}

/// A file of a project: its path in the project and where its text comes
/// from.
struct File {
    path: &'static str,
    content: Content,
}

enum Content {
    /// A file of the example router, as it is.
    Example(&'static str),
    /// A file of the example router with each `(text, replacement)` made;
    /// each text must be there exactly once, and replacements are rendered.
    Patched(&'static str, &'static [(&'static str, &'static str)]),
    /// A template of `crates/cli/templates/`, rendered.
    Template(&'static str),
    /// Made in code, from the example's files.
    Derived(fn(&Values) -> Result<String, String>),
}

/// A built-in file, with the example's directory it belongs to (the macro
/// keeps the path the one `include_str!` reads).
macro_rules! example {
    ($path:literal, $dir:literal / $file:literal) => {
        File {
            path: $path,
            content: Content::Example(include_str!(concat!("../../../", $dir, "/", $file))),
        }
    };
}

macro_rules! template {
    ($path:literal, $template:literal) => {
        File {
            path: $path,
            content: Content::Template(include_str!(concat!("../templates/", $template))),
        }
    };
}

/// The interface, shared by every project.
const WIT: &str = include_str!("../../../wit/presence-router.wit");
/// The example router's conformance suite: every project's `cases.yaml`.
const CONFORMANCE: &str = include_str!("../../../tests/conformance/example-router.yaml");
const README: &str = include_str!("../templates/README.md");
const ROUTERS_YAML: &str = include_str!("../templates/routers.yaml");
const CASES_HEADER: &str = include_str!("../templates/cases-header.yaml");
const GITIGNORE: &str = include_str!("../templates/gitignore");

/// Fragments of the build scripts, expanded first.
const FRAGMENTS: &[(&str, &str)] = &[
    ("prelude", include_str!("../templates/prelude.sh")),
    ("toolchains", include_str!("../templates/toolchains.sh")),
    // After `toolchains`, which holds it. The repository's example routers
    // source the same file.
    (
        "trusted_dir",
        include_str!("../../guest-build/trusted-dir.sh"),
    ),
    ("venv", include_str!("../templates/venv.sh")),
    (
        "debian_packages",
        include_str!("../templates/debian-packages.sh"),
    ),
    (
        "presence_router_tool",
        include_str!("../templates/presence-router-tool.sh"),
    ),
];

const GUEST_EXAMPLE_CARGO_TOML: &str = include_str!("../../../examples/routers/rust/Cargo.toml");
const GUEST_EXAMPLE_JS_PACKAGE: &str = include_str!("../../../examples/routers/js/package.json");
const GUEST_EXAMPLE_JS_LOCK: &str = include_str!("../../../examples/routers/js/package-lock.json");

static RUST: Spec = Spec {
    display: "Rust",
    main_file: "`src/lib.rs`",
    readme: include_str!("../templates/rust/README.md"),
    gitignore: "/target/\n",
    files: &[
        File {
            path: "Cargo.toml",
            content: Content::Derived(rust_manifest),
        },
        File {
            path: "Cargo.lock",
            content: Content::Patched(
                include_str!("../../../examples/routers/rust/Cargo.lock"),
                &[("name = \"example-router\"", "name = \"{{name}}\"")],
            ),
        },
        File {
            path: "src/lib.rs",
            content: Content::Patched(
                include_str!("../../../examples/routers/rust/src/lib.rs"),
                &[("path: \"../../../wit\"", "path: \"wit\"")],
            ),
        },
        template!("build.sh", "rust/build.sh"),
    ],
};

static JS: Spec = Spec {
    display: "JavaScript",
    main_file: "`router.js`",
    readme: include_str!("../templates/js/README.md"),
    gitignore: "/node_modules\n",
    files: &[
        example!("router.js", "examples/routers/js" / "router.js"),
        template!("build.mjs", "js/build.mjs"),
        File {
            path: "package.json",
            content: Content::Derived(js_package_json),
        },
        File {
            path: "package-lock.json",
            content: Content::Derived(js_package_lock),
        },
        template!("build.sh", "js/build.sh"),
    ],
};

static PYTHON: Spec = Spec {
    display: "Python",
    main_file: "`src/app.py`",
    readme: include_str!("../templates/python/README.md"),
    gitignore: "__pycache__/\n",
    files: &[
        example!("src/app.py", "examples/routers/python" / "app.py"),
        example!(
            "requirements.txt",
            "examples/routers/python" / "requirements.txt"
        ),
        template!("build.sh", "python/build.sh"),
    ],
};

static C: Spec = Spec {
    display: "C",
    main_file: "`src/router.c`",
    readme: include_str!("../templates/c/README.md"),
    gitignore: "",
    files: &[
        example!("src/router.c", "examples/routers/c" / "src/router.c"),
        example!("src/config.c", "examples/routers/c" / "src/config.c"),
        example!("src/config.h", "examples/routers/c" / "src/config.h"),
        template!("build.sh", "c/build.sh"),
    ],
};

static CPP: Spec = Spec {
    display: "C++",
    main_file: "`src/router.cpp`",
    readme: include_str!("../templates/cpp/README.md"),
    gitignore: "",
    files: &[
        example!("src/router.cpp", "examples/routers/cpp" / "src/router.cpp"),
        example!("src/config.cpp", "examples/routers/cpp" / "src/config.cpp"),
        example!("src/config.hpp", "examples/routers/cpp" / "src/config.hpp"),
        example!(
            "src/post_return_fix.cpp",
            "examples/routers/cpp" / "src/post_return_fix.cpp"
        ),
        template!("build.sh", "cpp/build.sh"),
    ],
};

static ZIG: Spec = Spec {
    display: "Zig",
    main_file: "`router.zig`",
    readme: include_str!("../templates/zig/README.md"),
    gitignore: "",
    files: &[
        example!("router.zig", "examples/routers/zig" / "router.zig"),
        example!(
            "requirements.txt",
            "examples/routers/zig" / "requirements.txt"
        ),
        template!("build.sh", "zig/build.sh"),
    ],
};

static GO: Spec = Spec {
    display: "Go",
    main_file: "`export_wit_world/router.go`",
    readme: include_str!("../templates/go/README.md"),
    gitignore: "",
    files: &[
        example!("go.mod", "examples/routers/go" / "go.mod"),
        example!(
            "export_wit_world/router.go",
            "examples/routers/go" / "export_wit_world/router.go"
        ),
        example!("witpkg/go.mod", "examples/routers/go" / "witpkg/go.mod"),
        example!("witpkg/doc.go", "examples/routers/go" / "witpkg/doc.go"),
        example!(
            "witpkg/wit/types/types.go",
            "examples/routers/go" / "witpkg/wit/types/types.go"
        ),
        example!(
            "witpkg/wit/runtime/runtime.go",
            "examples/routers/go" / "witpkg/wit/runtime/runtime.go"
        ),
        example!(
            "witpkg/wit/runtime/empty.s",
            "examples/routers/go" / "witpkg/wit/runtime/empty.s"
        ),
        example!(
            "requirements.txt",
            "examples/routers/go" / "requirements.txt"
        ),
        template!("build.sh", "go/build.sh"),
    ],
};

/// The `{{name}}`s of a project and what they stand for, fragments first.
pub struct Values(Vec<(&'static str, String)>);

impl Values {
    fn new(language: Language, name: &str, presence_router: Option<&Path>) -> Self {
        let spec = language.spec();
        let snake = name.replace('-', "_");
        let mut values: Vec<(&'static str, String)> = FRAGMENTS
            .iter()
            .map(|(key, text)| (*key, text.trim_end().to_owned()))
            .collect();
        values.extend([
            ("language_section", spec.readme.trim_end().to_owned()),
            ("gitignore_extra", spec.gitignore.to_owned()),
            ("name", name.to_owned()),
            ("snake", snake.clone()),
            ("component", format!("{snake}.wasm")),
            ("language", spec.display.to_owned()),
            ("main_file", spec.main_file.to_owned()),
            ("config_json", example_config_json().to_owned()),
            (
                "presence_router",
                presence_router
                    .and_then(Path::to_str)
                    .map_or_else(|| "presence-router".to_owned(), shell_quote),
            ),
            (
                "presence_router_display",
                presence_router.map_or_else(
                    || "presence-router".to_owned(),
                    |path| path.display().to_string(),
                ),
            ),
        ]);
        Values(values)
    }

    fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// `template` with every `{{key}}` replaced; an unknown one is an error.
    fn render(&self, template: &str) -> Result<String, String> {
        let mut text = template.to_owned();
        for (key, value) in &self.0 {
            text = text.replace(&format!("{{{{{key}}}}}"), value);
        }
        match leftover_placeholder(&text) {
            Some(key) => Err(format!("no value for `{{{{{key}}}}}`")),
            None => Ok(text),
        }
    }
}

/// The first `{{identifier}}` left in `text`.
fn leftover_placeholder(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        if let Some(end) = after.find("}}") {
            let key = &after[..end];
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                return Some(key);
            }
        }
        rest = after;
    }
    None
}

/// `text` as one word for the shell, quoted.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The configuration the conformance suite runs with, as its header gives
/// it (`--config-json '...'`): the README's and `routers.yaml`'s.
pub fn example_config_json() -> &'static str {
    CONFORMANCE
        .split_once("--config-json '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map_or("{}", |(json, _)| json)
}

/// Cargo.toml: the project's `[package]`, then the example's dependencies
/// and profile as they are.
fn rust_manifest(values: &Values) -> Result<String, String> {
    let head = values.render(include_str!("../templates/rust/Cargo.toml"))?;
    let (_, tail) = GUEST_EXAMPLE_CARGO_TOML
        .split_once("\n[dependencies]\n")
        .ok_or("examples/routers/rust/Cargo.toml has no [dependencies]")?;
    Ok(format!("{head}[dependencies]\n{tail}"))
}

/// package.json: the example's, named after the project.
fn js_package_json(values: &Values) -> Result<String, String> {
    let mut package: Value = serde_json::from_str(GUEST_EXAMPLE_JS_PACKAGE)
        .map_err(|e| format!("examples/routers/js/package.json: {e}"))?;
    package["name"] = Value::from(values.get("name"));
    pretty_json(&package)
}

/// package-lock.json: the example's (the pinned toolchain), named after
/// the project.
fn js_package_lock(values: &Values) -> Result<String, String> {
    let mut lock: Value = serde_json::from_str(GUEST_EXAMPLE_JS_LOCK)
        .map_err(|e| format!("examples/routers/js/package-lock.json: {e}"))?;
    let name = Value::from(values.get("name"));
    lock["name"] = name.clone();
    match lock.pointer_mut("/packages/") {
        Some(root) => root["name"] = name,
        None => return Err("examples/routers/js/package-lock.json has no packages[\"\"]".into()),
    }
    pretty_json(&lock)
}

/// JSON as npm writes it: two spaces, a newline at the end.
fn pretty_json(value: &Value) -> Result<String, String> {
    serde_json::to_string_pretty(value)
        .map(|text| text + "\n")
        .map_err(|e| e.to_string())
}

/// cases.yaml: the conformance suite's cases under a header for the project.
fn cases_yaml(values: &Values) -> Result<String, String> {
    let body = CONFORMANCE
        .find("\ncases:")
        .map(|at| &CONFORMANCE[at + 1..])
        .ok_or("tests/conformance/example-router.yaml has no `cases:`")?;
    Ok(format!(
        "{}\n{body}",
        values.render(CASES_HEADER)?.trim_end()
    ))
}

/// Every file of a `language` project named `name`, with its text and
/// whether it is executable.
pub fn project_files(
    language: Language,
    name: &str,
    presence_router: Option<&Path>,
) -> Result<Vec<(&'static str, String, bool)>, String> {
    let spec = language.spec();
    let values = Values::new(language, name, presence_router);
    let in_step = |path: &str, why: String| {
        format!(
            "the built-in {} template's {path} is out of step with its example router: {why} \
             (a bug of this presence-router build)",
            spec.display
        )
    };
    let mut files = vec![
        ("wit/presence-router.wit", WIT.to_owned(), false),
        (
            "README.md",
            values
                .render(README)
                .map_err(|why| in_step("README.md", why))?,
            false,
        ),
        (
            "cases.yaml",
            cases_yaml(&values).map_err(|why| in_step("cases.yaml", why))?,
            false,
        ),
        (
            "routers.yaml",
            values
                .render(ROUTERS_YAML)
                .map_err(|why| in_step("routers.yaml", why))?,
            false,
        ),
        (
            ".gitignore",
            values
                .render(GITIGNORE)
                .map_err(|why| in_step(".gitignore", why))?,
            false,
        ),
    ];
    for file in spec.files {
        let text = match &file.content {
            Content::Example(text) => Ok((*text).to_owned()),
            Content::Patched(text, patches) => patch(text, patches, &values),
            Content::Template(template) => values.render(template),
            Content::Derived(make) => make(&values),
        }
        .map_err(|why| in_step(file.path, why))?;
        files.push((file.path, text, file.path.ends_with(".sh")));
    }
    Ok(files)
}

fn patch(text: &str, patches: &[(&str, &str)], values: &Values) -> Result<String, String> {
    let mut text = text.to_owned();
    for (from, to) in patches {
        if text.matches(from).count() != 1 {
            return Err(format!("`{from}` is not there exactly once"));
        }
        text = text.replacen(from, &values.render(to)?, 1);
    }
    Ok(text)
}

/// A name for the project from its directory's: lowercase ASCII letters,
/// digits and single hyphens, starting with a letter, at most 64 bytes,
/// and none that Cargo or Rust reserve. That makes a Cargo package and npm
/// name, a router name and (hyphens made underscores) a file name.
pub fn project_name(dir_name: &str) -> String {
    const RESERVED: &[&str] = &[
        // Rust's keywords (Cargo refuses them), its own crates, the
        // directories of Cargo's target/.
        "abstract",
        "as",
        "async",
        "await",
        "become",
        "box",
        "break",
        "const",
        "continue",
        "crate",
        "do",
        "dyn",
        "else",
        "enum",
        "extern",
        "false",
        "final",
        "fn",
        "for",
        "gen",
        "if",
        "impl",
        "in",
        "let",
        "loop",
        "macro",
        "match",
        "mod",
        "move",
        "mut",
        "override",
        "priv",
        "pub",
        "ref",
        "return",
        "self",
        "static",
        "struct",
        "super",
        "trait",
        "true",
        "try",
        "type",
        "typeof",
        "unsafe",
        "unsized",
        "use",
        "virtual",
        "where",
        "while",
        "yield",
        "alloc",
        "core",
        "proc-macro",
        "std",
        "test",
        "build",
        "deps",
        "examples",
        "incremental",
    ];
    let mut name = String::new();
    for c in dir_name.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, "router-");
    }
    name.truncate(64);
    let name = name.trim_end_matches('-');
    if name.is_empty() {
        "router".to_owned()
    } else if RESERVED.contains(&name) {
        format!("{name}-router")
    } else {
        name.to_owned()
    }
}

/// The last component of `dir`, resolving `.` and `..` where it exists.
fn dir_name(dir: &Path) -> String {
    match dir.components().next_back() {
        Some(Component::Normal(name)) => name.to_string_lossy().into_owned(),
        _ => fs::canonicalize(dir)
            .ok()
            .and_then(|dir| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default(),
    }
}

/// What another user could do with a project they can change: its
/// `build.sh` runs as whoever builds it.
const RISK: &str = "could change the project's files, build.sh among them, before you run it";

/// Write permission for the group or for others.
const WRITABLE_BY_OTHERS: u32 = 0o022;

/// Subdirectories of a project, and the project's directory when `new`
/// makes it, before the umask.
const DIR_MODE: u32 = 0o755;

/// The directory a project is written into, held open: every subdirectory
/// and file is made relative to it, never through its path looked up again,
/// so a directory renamed away or a link put in its place after the checks
/// is never written through.
struct ProjectDir {
    fd: OwnedFd,
    /// As the user named it, for messages only.
    path: PathBuf,
}

/// Opens the directory a project goes into: made now, or an existing empty
/// one. Refused before anything is written when another local user could
/// change what `new` writes (the project's `build.sh` runs as whoever
/// builds it): the directory is a symbolic link, belongs to neither this
/// user nor root, or others can write it; or a directory above it belongs
/// to someone else, or others can write it and it is not sticky (OpenSSH's
/// `StrictModes` rule, as for component files).
fn open_project_dir(dir: &Path) -> anyhow::Result<ProjectDir> {
    let (parent, name) = parent_and_name(dir)?;
    make_parents(dir, &parent)?;
    // Checked and opened without links, so what is checked is what is
    // opened: only trusted users can change a trusted directory's entries.
    let parent =
        fs::canonicalize(&parent).with_context(|| format!("cannot find {}", parent.display()))?;
    refuse_untrusted_ancestors(dir, &parent)?;
    let parent_fd = rustix::fs::open(
        &parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", parent.display()))?;
    // Made now (0755 at most, whatever the umask), or there already: the
    // open and the checks below decide either way.
    match rustix::fs::mkdirat(&parent_fd, &name, Mode::from_raw_mode(DIR_MODE)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot make {}", dir.display())),
    }
    let fd = open_dir_at(parent_fd.as_fd(), &name, dir)?;
    let stat =
        rustix::fs::fstat(&fd).with_context(|| format!("cannot examine {}", dir.display()))?;
    let (owner, mode) = (stat.st_uid, stat.st_mode & 0o7777);
    if !strict_modes::trusted_owner(owner) {
        bail!(
            "{}: refused: the directory is owned by uid {owner} (mode {mode:o}), not by you \
             (uid {}) or root: its owner {RISK}; use a directory of your own, or a new one \
             (`new` makes it)",
            dir.display(),
            rustix::process::geteuid().as_raw()
        );
    }
    if mode & WRITABLE_BY_OTHERS != 0 {
        bail!(
            "{}: refused: the directory is writable by group or others (mode {mode:o}): \
             another user {RISK}; `chmod go-w {}` first, or use another directory",
            dir.display(),
            dir.display()
        );
    }
    let entry =
        first_entry(fd.as_fd()).with_context(|| format!("cannot read {}", dir.display()))?;
    if let Some(entry) = entry {
        bail!(
            "{}: the directory is not empty (it holds `{}`): `new` writes a project only into \
             a new or an empty directory",
            dir.display(),
            entry.to_string_lossy()
        );
    }
    Ok(ProjectDir {
        fd,
        path: dir.to_owned(),
    })
}

/// The directory `dir` is in, and its name there. A path ending in `.` or
/// `..` (or `/`) names an existing directory, resolved.
fn parent_and_name(dir: &Path) -> anyhow::Result<(PathBuf, OsString)> {
    if let Some(Component::Normal(name)) = dir.components().next_back() {
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        return Ok((parent.to_owned(), name.to_owned()));
    }
    let resolved =
        fs::canonicalize(dir).with_context(|| format!("cannot find {}", dir.display()))?;
    match (resolved.parent(), resolved.file_name()) {
        (Some(parent), Some(name)) => Ok((parent.to_owned(), name.to_owned())),
        _ => bail!(
            "{}: the directory is not empty: `new` writes a project only into a new or an \
             empty directory",
            dir.display()
        ),
    }
}

/// Makes the missing directories above the project's, once the nearest one
/// that exists is trusted (in a directory others can write, they could
/// swap what is made for a link to anywhere).
fn make_parents(dir: &Path, parent: &Path) -> anyhow::Result<()> {
    if parent.exists() {
        return Ok(());
    }
    let nearest = parent
        .ancestors()
        .skip(1)
        .map(|above| {
            if above.as_os_str().is_empty() {
                Path::new(".")
            } else {
                above
            }
        })
        .find(|above| above.exists())
        .unwrap_or(Path::new("/"));
    refuse_untrusted_ancestors(dir, nearest)?;
    fs::create_dir_all(parent).with_context(|| format!("cannot make {}", parent.display()))
}

/// Refuses to make a project under `above` when another user could replace
/// `above` or anything under it (see [`open_project_dir`]).
fn refuse_untrusted_ancestors(dir: &Path, above: &Path) -> anyhow::Result<()> {
    let untrusted = strict_modes::first_untrusted_dir(above)
        .with_context(|| format!("cannot examine the directories above {}", dir.display()))?;
    let Some(UntrustedDir {
        path,
        owner,
        mode,
        euid,
        why,
    }) = untrusted
    else {
        return Ok(());
    };
    let (dir, path) = (dir.display(), path.display());
    match why {
        Untrusted::Owner => bail!(
            "{dir}: refused: it is in {path}, owned by uid {owner} (mode {mode:o}), not by you \
             (uid {euid}) or root: its owner could replace the project with one of their own, \
             whose build.sh you would run; make it in a directory only you and root can write"
        ),
        Untrusted::WritableByOthers => bail!(
            "{dir}: refused: it is in {path}, writable by others (mode {mode:o}) without the \
             sticky bit: another user could replace the project with one of their own, whose \
             build.sh you would run; make it in a directory only you and root can write"
        ),
    }
}

/// Opens the directory `name` in `parent` without following a link; `path`
/// names it in messages.
fn open_dir_at(parent: BorrowedFd<'_>, name: &OsStr, path: &Path) -> anyhow::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(parent, name, flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        // O_NOFOLLOW refuses a link: Linux says ENOTDIR (because of
        // O_DIRECTORY), others may say ELOOP; an lstat chooses the message.
        Err(Errno::LOOP | Errno::NOTDIR) => {
            let is_link = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Symlink);
            if is_link {
                bail!(
                    "{}: refused: a symbolic link, which `new` does not follow (another user \
                     could point it elsewhere); name the directory itself",
                    path.display()
                )
            }
            bail!(
                "{}: not a directory: `new` writes a project into a new or an empty directory",
                path.display()
            )
        }
        Err(e) => Err(e).with_context(|| format!("cannot open {}", path.display())),
    }
}

/// The name of an entry of the directory open as `dir`, other than `.` and
/// `..`, if it has one.
fn first_entry(dir: BorrowedFd<'_>) -> Result<Option<OsString>, Errno> {
    for entry in rustix::fs::Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            return Ok(Some(std::os::unix::ffi::OsStringExt::from_vec(name)));
        }
    }
    Ok(None)
}

/// Writes `files` (their paths relative to the project, `/`-separated)
/// into the project's directory: each subdirectory made (0755 before the
/// umask) and opened relative to the one above it, each file created
/// exclusively (never over one that appeared meanwhile), neither through a
/// link: a link under a subdirectory's name is refused, not followed.
fn write_files(dir: &ProjectDir, files: &[(&str, String, bool)]) -> anyhow::Result<()> {
    for (relative, text, executable) in files {
        let path = dir.path.join(relative);
        let mut components: Vec<&str> = relative.split('/').collect();
        let file_name = components.pop().unwrap_or_default();
        if (components.iter().chain([&file_name])).any(|c| matches!(*c, "" | "." | "..")) {
            bail!("{relative}: not a plain relative path (a bug of this presence-router build)");
        }
        let mut subdirs: Vec<OwnedFd> = Vec::new();
        let mut at = dir.path.clone();
        for component in components {
            at.push(component);
            let above = subdirs.last().map_or(dir.fd.as_fd(), |fd| fd.as_fd());
            match rustix::fs::mkdirat(above, component, Mode::from_raw_mode(DIR_MODE)) {
                // Made for an earlier file, or not a directory: the open says.
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e).with_context(|| format!("cannot make {}", at.display())),
            }
            let subdir = open_dir_at(above, OsStr::new(component), &at)?;
            subdirs.push(subdir);
        }
        let above = subdirs.last().map_or(dir.fd.as_fd(), |fd| fd.as_fd());
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::NOCTTY
            | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(if *executable { 0o755 } else { 0o644 });
        rustix::fs::openat(above, file_name, flags, mode)
            .map_err(std::io::Error::from)
            .and_then(|fd| fs::File::from(fd).write_all(text.as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

pub fn new(args: NewArgs) -> anyhow::Result<()> {
    let name = project_name(&dir_name(&args.dir));
    // The build scripts of C, C++, Zig and Go run this binary (bindings,
    // componentizing) by default, and the README names it.
    let this_binary = std::env::current_exe().ok();
    let files = project_files(args.lang, &name, this_binary.as_deref())
        .map_err(|message| anyhow::anyhow!(message))?;
    let dir = open_project_dir(&args.dir)?;
    write_files(&dir, &files)?;
    let dir = args.dir.display();
    let component = format!("build/{}.wasm", name.replace('-', "_"));
    println!(
        "{dir}: a {} router project, `{name}`, from the example router ({} files)",
        args.lang.spec().display,
        files.len()
    );
    println!("\nnext (README.md says more):\n");
    println!("  cd {dir}");
    println!("  ./build.sh");
    println!(
        "  presence-router test --component {component} --cases cases.yaml --config-json '{}'",
        example_config_json()
    );
    println!("  presence-router check --config routers.yaml");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_valid_everywhere() {
        for (dir, name) in [
            ("my-router", "my-router"),
            ("My Router!", "my-router"),
            ("__presence__router__", "presence-router"),
            ("routeur_présence", "routeur-pr-sence"),
            ("2fast", "router-2fast"),
            ("test", "test-router"),
            ("std", "std-router"),
            ("", "router"),
            ("---", "router"),
        ] {
            assert_eq!(project_name(dir), name, "from {dir:?}");
        }
        let long = project_name(&"a-".repeat(100));
        assert!(long.len() <= 64 && !long.ends_with('-'), "{long}");
    }

    #[test]
    fn the_last_component_names_the_project() {
        assert_eq!(dir_name(Path::new("/tmp/x/my-router")), "my-router");
        assert_eq!(dir_name(Path::new("my-router/")), "my-router");
        let here = std::env::current_dir().expect("a current directory");
        assert_eq!(
            dir_name(Path::new(".")),
            here.file_name().expect("not the root").to_string_lossy()
        );
    }

    /// Every template renders completely, every patch finds its text: the
    /// example routers and the templates are in step.
    #[test]
    fn every_language_renders() {
        let binary = Path::new("/opt/it's here/presence-router");
        for language in Language::ALL {
            let files = project_files(language, "my-router", Some(binary))
                .unwrap_or_else(|e| panic!("{language:?}: {e}"));
            // The example's own files are not rendered: `{{` is theirs.
            let examples: Vec<&str> = (language.spec().files.iter())
                .filter(|file| matches!(file.content, Content::Example(_)))
                .map(|file| file.path)
                .collect();
            for (path, text, _) in files.iter().filter(|(p, _, _)| !examples.contains(p)) {
                assert_eq!(leftover_placeholder(text), None, "{language:?} {path}");
            }
            let build = &files
                .iter()
                .find(|(path, _, _)| *path == "build.sh")
                .expect("a build.sh")
                .1;
            assert!(build.starts_with("#!/usr/bin/env bash\n"), "{language:?}");
            assert!(
                build.contains("my_router.wasm"),
                "{language:?}: the component's name"
            );
            if build.contains("PRESENCE_ROUTER=") {
                assert!(
                    build.contains(r"PRESENCE_ROUTER='/opt/it'\''s here/presence-router'"),
                    "{language:?}: the binary's path, quoted"
                );
            }
        }
    }

    #[test]
    fn manifests_carry_the_project_name_and_the_examples_pins() {
        let files = project_files(Language::Rust, "my-router", None).expect("renders");
        let file = |path: &str| {
            files
                .iter()
                .find(|(p, _, _)| *p == path)
                .map(|(_, text, _)| text.clone())
                .expect("the file")
        };
        let manifest = file("Cargo.toml");
        assert!(manifest.starts_with("[package]\nname = \"my-router\"\n"));
        assert!(manifest.contains("\n[dependencies]\nwit-bindgen = "));
        assert!(manifest.contains("crate-type = [\"cdylib\"]"));
        assert!(file("Cargo.lock").contains("name = \"my-router\""));
        assert!(file("src/lib.rs").contains("path: \"wit\""));

        let files = project_files(Language::Js, "my-router", None).expect("renders");
        let json = |path: &str| -> Value {
            let text = &files
                .iter()
                .find(|(p, _, _)| *p == path)
                .expect("the file")
                .1;
            serde_json::from_str(text).expect("JSON")
        };
        let example: Value = serde_json::from_str(GUEST_EXAMPLE_JS_PACKAGE).expect("JSON");
        let package = json("package.json");
        assert_eq!(package["name"], "my-router");
        assert_eq!(package["devDependencies"], example["devDependencies"]);
        let lock = json("package-lock.json");
        assert_eq!(lock["name"], "my-router");
        assert_eq!(lock["packages"][""]["name"], "my-router");
    }

    #[test]
    fn the_example_configuration_is_a_json_object() {
        let config: Value = serde_json::from_str(example_config_json()).expect("JSON");
        assert!(config["always_send_to_users"].is_array(), "{config}");
    }

    /// The files of each example's directory that a project leaves out, on
    /// purpose; any other file there must be in the template (a new source
    /// file of an example would otherwise be missing from its projects).
    #[test]
    fn every_example_source_is_in_its_template() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let examples: &[(Language, &str, &[&str])] = &[
            (Language::Rust, "examples/routers/rust", &["Cargo.toml"]),
            (
                Language::Js,
                "examples/routers/js",
                &[
                    "build.sh",
                    "build.mjs",
                    "README.md",
                    "package.json",
                    "package-lock.json",
                ],
            ),
            (
                Language::Python,
                "examples/routers/python",
                &["build.sh", "README.md"],
            ),
            (
                Language::C,
                "examples/routers/c",
                &["build.sh", "README.md"],
            ),
            (
                Language::Cpp,
                "examples/routers/cpp",
                &["build.sh", "README.md"],
            ),
            (
                Language::Zig,
                "examples/routers/zig",
                &["build.sh", "README.md"],
            ),
            (
                Language::Go,
                "examples/routers/go",
                &["build.sh", "README.md"],
            ),
        ];
        for (language, dir, left_out) in examples {
            let embedded: Vec<&str> = language
                .spec()
                .files
                .iter()
                .filter_map(|file| match file.content {
                    Content::Example(text) | Content::Patched(text, _) => Some(text),
                    _ => None,
                })
                .collect();
            for path in files_under(&root.join(dir)) {
                let relative = path
                    .strip_prefix(root.join(dir))
                    .expect("under the example")
                    .to_string_lossy()
                    .into_owned();
                if left_out.contains(&relative.as_str()) {
                    continue;
                }
                let text = fs::read_to_string(&path).unwrap_or_default();
                assert!(
                    embedded.contains(&text.as_str()),
                    "{dir}/{relative} is not in the {language:?} template (crates/cli/src/new.rs)"
                );
            }
        }
    }

    /// The Debian packages the C and C++ projects need are the ones the
    /// repository's example routers are built with, and they are asked for
    /// (and installed only when PRESENCE_ROUTER_INSTALL_PACKAGES=1 says so)
    /// the same way.
    #[test]
    fn the_debian_packages_are_the_examples() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let read = |path: &str| fs::read_to_string(root.join(path)).expect(path);
        let fragment = FRAGMENTS
            .iter()
            .find(|(key, _)| *key == "debian_packages")
            .expect("the fragment")
            .1;
        let line = |text: &str, start: &str| {
            text.lines()
                .find(|line| line.starts_with(start))
                .map(str::to_owned)
                .unwrap_or_else(|| panic!("no line starting with {start}"))
        };
        let wasi_clang = read("crates/guest-build/wasi-clang.sh");
        for start in ["WASI_CLANG_PACKAGES=", "WASI_CLANG_CXX_PACKAGES="] {
            assert_eq!(line(fragment, start), line(&wasi_clang, start));
        }
        let function = |text: &str| {
            let start = text
                .find("\nneed_debian_packages() {\n")
                .expect("need_debian_packages");
            let length = text[start..].find("\n}\n").expect("its end");
            text[start..start + length].to_owned()
        };
        assert_eq!(function(fragment), function(&wasi_clang));
        assert_eq!(
            line(
                include_str!("../templates/cpp/build.sh"),
                "need_debian_packages"
            ),
            line(
                &read("examples/routers/cpp/build.sh"),
                "need_debian_packages"
            )
        );
    }

    /// A link where a subdirectory of the project goes (put there after
    /// the checks, by whoever could) is not followed: nothing is written
    /// where it points, and the refusal names it.
    #[test]
    fn the_writer_follows_no_link_at_a_subdirectory() {
        let temp = std::env::temp_dir().join(format!("presence-router-new-{}", std::process::id()));
        let _ = fs::remove_dir_all(&temp);
        let project = temp.join("project");
        let elsewhere = temp.join("elsewhere");
        fs::create_dir_all(&project).expect("a directory");
        fs::create_dir_all(&elsewhere).expect("a directory");
        std::os::unix::fs::symlink(&elsewhere, project.join("src")).expect("a link");
        let dir = ProjectDir {
            fd: rustix::fs::open(&project, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                .expect("opened"),
            path: project.clone(),
        };
        let files = [
            ("README.md", "# mine".to_owned(), false),
            ("src/lib.rs", "// mine".to_owned(), false),
        ];
        let written = write_files(&dir, &files);
        let leaked: Vec<_> = (fs::read_dir(&elsewhere).expect("there").flatten())
            .map(|entry| entry.file_name())
            .collect();
        let readme = fs::read_to_string(project.join("README.md"));
        let _ = fs::remove_dir_all(&temp);
        assert!(leaked.is_empty(), "written through the link: {leaked:?}");
        let refusal = format!("{:#}", written.expect_err("refused"));
        assert_eq!(
            refusal,
            format!(
                "{}: refused: a symbolic link, which `new` does not follow (another user could \
                 point it elsewhere); name the directory itself",
                project.join("src").display()
            )
        );
        assert_eq!(
            readme.ok().as_deref(),
            Some("# mine"),
            "the files before it"
        );
    }

    /// The files of an example, without what its builds and toolchains
    /// leave there.
    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir)
            .expect("the example's directory")
            .flatten()
        {
            let path = entry.path();
            let name = entry.file_name();
            if matches!(
                name.to_str(),
                Some("target" | "node_modules" | "__pycache__" | "dist" | ".zig-cache")
            ) {
                continue;
            }
            if path.is_dir() {
                files.extend(files_under(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
