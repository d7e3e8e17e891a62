//! `presence-router new DIR --lang LANG`: a ready router project, built into
//! the binary, so it works away from this repository.
//!
//! A project is exactly the repository's example router of that language,
//! `examples/routers/<lang>/`, named after the project: the example *is*
//! what `new --lang <lang> --name example-router` writes (a test proves it
//! byte for byte), so each language's recipe (`setup.sh`, `build.sh`, its
//! manifests) exists once. Its files are embedded as they are, and the few
//! that carry the example's name (`example-router`, `example_router`: the
//! manifests and `build.sh`'s component) get the project's.
//!
//! What every language's project has in common lives in
//! `crates/cli/templates/`, rendered for the project and copied into each
//! example like any project: the README (with a section per language,
//! `templates/readme/<lang>.md`), `routers.yaml`, `.gitignore`, the case
//! file's header above the conformance suite's cases (`cases.yaml`), and
//! `lib.sh`, the shell `setup.sh` and `build.sh` share. Every project gets
//! the WIT too.
//!
//! A project's scripts run as whoever builds it, so `new` writes only into
//! a directory that nobody but this user and root can change (see
//! [`open_project_dir`]), and makes every file relative to that directory's
//! descriptor, following no link.
//!
//! Templates name values `{{like_this}}`.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write as _;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};
use presence_router_ownership::{Policy, Reason, Refusal, Stat};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

#[derive(clap::Args)]
pub struct NewArgs {
    /// The project's directory: made, or an empty one. Its last component
    /// names the project (made a valid Cargo, npm and file name) unless
    /// --name does.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The language of the router.
    #[arg(long, value_enum)]
    lang: Language,
    /// The project's name, as it is (lowercase ASCII letters, digits and
    /// single hyphens, starting with a letter): its Cargo or npm package,
    /// its router's name, its component's file name.
    #[arg(long)]
    name: Option<String>,
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

/// The name of the example routers: a project of this name is the example.
pub const EXAMPLE_NAME: &str = "example-router";

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
    /// Whether its build.sh runs presence-router (bindings, componentizing).
    runs_presence_router: bool,
    /// Its own files, from its example's directory.
    files: &'static [File],
}

/// A file of a project's own, from its example's directory: its path in
/// the project (and in the example) and its text.
struct File {
    path: &'static str,
    text: &'static str,
    /// Whether the example's name in it is the project's (see [`named`]).
    named: bool,
}

/// A file of a project, at `$path` in it, from `$source` (an example's
/// file under `templates/`).
macro_rules! project_file {
    ($path:literal, $source:expr, named: $named:literal) => {
        File {
            path: $path,
            text: include_str!($source),
            named: $named,
        }
    };
}

/// A file of `examples/routers/$lang/`, as it is (the macro keeps the path
/// `include_str!` reads the one the project gets). The Rust example's
/// files come `from` `templates/rust/`: a package leaves out a directory
/// with a `Cargo.toml` (there, `Cargo.toml.in`).
macro_rules! example {
    ($lang:literal, $path:literal) => {
        project_file!($path, concat!("../templates/examples/", $lang, "/", $path), named: false)
    };
    ($path:literal, from $template:literal) => {
        project_file!($path, concat!("../templates/rust/", $template), named: false)
    };
}

/// A file of `examples/routers/$lang/` that carries the example's name.
macro_rules! named {
    ($lang:literal, $path:literal) => {
        project_file!($path, concat!("../templates/examples/", $lang, "/", $path), named: true)
    };
    ($path:literal, from $template:literal) => {
        project_file!($path, concat!("../templates/rust/", $template), named: true)
    };
}

/// The interface, shared by every project.
const WIT: &str = include_str!("../templates/presence-router.wit");
/// The example router's conformance suite: every project's `cases.yaml`.
const CONFORMANCE: &str = include_str!("../templates/conformance.yaml");
const README: &str = include_str!("../templates/README.md");
const ROUTERS_YAML: &str = include_str!("../templates/routers.yaml");
const CASES_HEADER: &str = include_str!("../templates/cases-header.yaml");
const GITIGNORE: &str = include_str!("../templates/gitignore");
/// The shell `setup.sh` and `build.sh` share, the same in every project.
const LIB_SH: &str = include_str!("../templates/lib.sh");

static RUST: Spec = Spec {
    display: "Rust",
    main_file: "`src/lib.rs`",
    readme: include_str!("../templates/readme/rust.md"),
    gitignore: "/target/\n",
    runs_presence_router: false,
    files: &[
        named!("Cargo.toml", from "Cargo.toml.in"),
        named!("Cargo.lock", from "Cargo.lock"),
        example!("src/lib.rs", from "src/lib.rs"),
        example!("src/call_arena.rs", from "src/call_arena.rs"),
        example!("setup.sh", from "setup.sh"),
        named!("build.sh", from "build.sh"),
    ],
};

static JS: Spec = Spec {
    display: "JavaScript",
    main_file: "`router.js`",
    readme: include_str!("../templates/readme/js.md"),
    gitignore: "/node_modules\n",
    runs_presence_router: false,
    files: &[
        example!("js", "router.js"),
        example!("js", "build.mjs"),
        named!("js", "package.json"),
        named!("js", "package-lock.json"),
        example!("js", "setup.sh"),
        named!("js", "build.sh"),
    ],
};

static PYTHON: Spec = Spec {
    display: "Python",
    main_file: "`src/app.py`",
    readme: include_str!("../templates/readme/python.md"),
    gitignore: "__pycache__/\n",
    runs_presence_router: false,
    files: &[
        example!("python", "src/app.py"),
        example!("python", "requirements.txt"),
        example!("python", "setup.sh"),
        named!("python", "build.sh"),
    ],
};

static C: Spec = Spec {
    display: "C",
    main_file: "`src/router.c`",
    readme: include_str!("../templates/readme/c.md"),
    gitignore: "",
    runs_presence_router: true,
    files: &[
        example!("c", "src/router.c"),
        example!("c", "src/config.c"),
        example!("c", "src/config.h"),
        example!("c", "setup.sh"),
        named!("c", "build.sh"),
    ],
};

static CPP: Spec = Spec {
    display: "C++",
    main_file: "`src/router.cpp`",
    readme: include_str!("../templates/readme/cpp.md"),
    gitignore: "",
    runs_presence_router: true,
    files: &[
        example!("cpp", "src/router.cpp"),
        example!("cpp", "src/config.cpp"),
        example!("cpp", "src/config.hpp"),
        example!("cpp", "src/post_return_fix.cpp"),
        example!("cpp", "setup.sh"),
        named!("cpp", "build.sh"),
    ],
};

static ZIG: Spec = Spec {
    display: "Zig",
    main_file: "`router.zig`",
    readme: include_str!("../templates/readme/zig.md"),
    gitignore: "",
    runs_presence_router: true,
    files: &[
        example!("zig", "router.zig"),
        example!("zig", "requirements.txt"),
        example!("zig", "setup.sh"),
        named!("zig", "build.sh"),
    ],
};

static GO: Spec = Spec {
    display: "Go",
    main_file: "`export_wit_world/router.go`",
    readme: include_str!("../templates/readme/go.md"),
    gitignore: "",
    runs_presence_router: true,
    files: &[
        example!("go", "go.mod"),
        example!("go", "export_wit_world/router.go"),
        example!("go", "witpkg/go.mod"),
        example!("go", "witpkg/doc.go"),
        example!("go", "witpkg/wit/types/types.go"),
        example!("go", "witpkg/wit/runtime/runtime.go"),
        example!("go", "witpkg/wit/runtime/empty.s"),
        example!("go", "requirements.txt"),
        example!("go", "setup.sh"),
        named!("go", "build.sh"),
    ],
};

/// The `{{name}}`s of a project and what they stand for.
pub struct Values(Vec<(&'static str, String)>);

impl Values {
    fn new(language: Language, name: &str) -> Self {
        let spec = language.spec();
        let snake = name.replace('-', "_");
        Values(vec![
            ("language_section", spec.readme.trim_end().to_owned()),
            ("gitignore_extra", spec.gitignore.to_owned()),
            ("name", name.to_owned()),
            ("component", format!("{snake}.wasm")),
            ("snake", snake),
            ("language", spec.display.to_owned()),
            ("main_file", spec.main_file.to_owned()),
            ("config_json", example_config_json().to_owned()),
        ])
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

/// The configuration the conformance suite runs with, as its header gives
/// it (`--config-json '...'`): the README's and `routers.yaml`'s.
pub fn example_config_json() -> &'static str {
    CONFORMANCE
        .split_once("--config-json '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map_or("{}", |(json, _)| json)
}

/// An example's file with the project's name for the example's: its
/// package name (`example-router`) and its component's (`example_router`).
/// Only files whose every such word is the name are [`File::named`]; a
/// source's `example_router` (the C++ router's namespace) is left alone.
fn named(text: &str, name: &str) -> String {
    text.replace(EXAMPLE_NAME, name)
        .replace(&EXAMPLE_NAME.replace('-', "_"), &name.replace('-', "_"))
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
) -> Result<Vec<(&'static str, String, bool)>, String> {
    let spec = language.spec();
    let values = Values::new(language, name);
    let in_step = |path: &str, why: String| {
        format!(
            "the built-in {} project's {path} cannot be made: {why} (a bug of this \
             presence-router build)",
            spec.display
        )
    };
    let render =
        |path: &str, template: &str| values.render(template).map_err(|why| in_step(path, why));
    let mut files = vec![
        ("wit/presence-router.wit", WIT.to_owned(), false),
        ("README.md", render("README.md", README)?, false),
        (
            "cases.yaml",
            cases_yaml(&values).map_err(|why| in_step("cases.yaml", why))?,
            false,
        ),
        ("routers.yaml", render("routers.yaml", ROUTERS_YAML)?, false),
        (".gitignore", render(".gitignore", GITIGNORE)?, false),
        ("lib.sh", LIB_SH.to_owned(), false),
    ];
    for file in spec.files {
        let text = if file.named {
            named(file.text, name)
        } else {
            file.text.to_owned()
        };
        // The scripts one runs; lib.sh is only sourced.
        files.push((file.path, text, file.path.ends_with(".sh")));
    }
    Ok(files)
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
/// `StrictModes` rule, as for component files: [`Policy::PROJECT_DIR`]).
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
    let opened = Stat {
        owner: stat.st_uid,
        mode: stat.st_mode,
    };
    if let Err(Refusal {
        owner,
        mode,
        euid,
        reason,
        ..
    }) = Policy::PROJECT_DIR.check(dir, opened)
    {
        match reason {
            Reason::Owner => bail!(
                "{}: refused: the directory is owned by uid {owner} (mode {mode:o}), not by you \
                 (uid {euid}) or root: its owner {RISK}; use a directory of your own, or a new \
                 one (`new` makes it)",
                dir.display()
            ),
            // `NotPrivate` never comes: a project need not be private.
            Reason::WritableByOthers | Reason::NotPrivate => bail!(
                "{}: refused: the directory is writable by group or others (mode {mode:o}): \
                 another user {RISK}; `chmod go-w {}` first, or use another directory",
                dir.display(),
                dir.display()
            ),
        }
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
    let untrusted = Policy::PROJECT_DIR
        .check_above(above)
        .with_context(|| format!("cannot examine the directories above {}", dir.display()))?;
    let Some(Refusal {
        path,
        owner,
        mode,
        euid,
        reason,
        ..
    }) = untrusted
    else {
        return Ok(());
    };
    let (dir, path) = (dir.display(), path.display());
    match reason {
        Reason::Owner => bail!(
            "{dir}: refused: it is in {path}, owned by uid {owner} (mode {mode:o}), not by you \
             (uid {euid}) or root: its owner could replace the project with one of their own, \
             whose build.sh you would run; make it in a directory only you and root can write"
        ),
        // Directories above are never asked to be private.
        Reason::WritableByOthers | Reason::NotPrivate => bail!(
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
    let name = match args.name {
        Some(name) => {
            let valid = project_name(&name);
            if valid != name {
                bail!(
                    "--name {name}: not a project name (lowercase ASCII letters, digits and \
                     single hyphens, starting with a letter; not a Rust keyword): `{valid}` is"
                );
            }
            name
        }
        None => project_name(&dir_name(&args.dir)),
    };
    let spec = args.lang.spec();
    let files = project_files(args.lang, &name).map_err(|message| anyhow::anyhow!(message))?;
    let dir = open_project_dir(&args.dir)?;
    write_files(&dir, &files)?;
    let dir = args.dir.display();
    let component = format!("build/{}.wasm", name.replace('-', "_"));
    println!(
        "{dir}: a {} router project, `{name}`, from the example router ({} files)",
        spec.display,
        files.len()
    );
    println!("\nnext (README.md says more):\n");
    println!("  cd {dir}");
    // The C, C++, Zig and Go builds run presence-router, the one on PATH
    // unless PRESENCE_ROUTER names another: a project names no path of
    // this machine.
    if spec.runs_presence_router
        && let Some(this) = std::env::current_exe()
            .ok()
            .filter(|this| !first_on_path(this))
    {
        println!(
            "  export PRESENCE_ROUTER={}   # build.sh runs presence-router: this one, not on PATH",
            shell_quote(&this.to_string_lossy())
        );
    }
    println!("  ./setup.sh");
    println!("  ./build.sh");
    println!(
        "  presence-router test --component {component} --cases cases.yaml --config-json '{}'",
        example_config_json()
    );
    println!("  presence-router check --config routers.yaml");
    Ok(())
}

/// Whether `presence-router` on PATH is `this` binary.
fn first_on_path(this: &Path) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    let on_path = std::env::split_paths(&path)
        .map(|dir| dir.join("presence-router"))
        .find(|candidate| candidate.is_file());
    match (
        on_path.and_then(|p| fs::canonicalize(p).ok()),
        fs::canonicalize(this),
    ) {
        (Some(found), Ok(this)) => found == this,
        _ => false,
    }
}

/// `text` as one word for the shell, quoted.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
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

    /// Every template renders completely, for every language, and the
    /// project's name replaces the example's wherever it stands for it.
    #[test]
    fn every_language_renders() {
        for language in Language::ALL {
            let files = project_files(language, "my-router")
                .unwrap_or_else(|e| panic!("{language:?}: {e}"));
            let own = |path: &str| language.spec().files.iter().find(|f| f.path == path);
            for (path, text, _) in &files {
                // The example's sources are not rendered: `{{` is theirs.
                if own(path).is_none_or(|file| file.named) {
                    assert_eq!(leftover_placeholder(text), None, "{language:?} {path}");
                    assert!(
                        !text.contains(EXAMPLE_NAME) && !text.contains("example_router"),
                        "{language:?} {path}: the example's name left in it"
                    );
                }
            }
            let file = |path: &str| {
                let (_, text, executable) = files
                    .iter()
                    .find(|(p, _, _)| *p == path)
                    .unwrap_or_else(|| panic!("{language:?}: no {path}"));
                (text.as_str(), *executable)
            };
            for script in ["setup.sh", "build.sh"] {
                let (text, executable) = file(script);
                assert!(text.starts_with("#!/usr/bin/env bash\n"), "{language:?}");
                assert!(
                    text.contains("\nsource \"$(dirname \"$0\")/lib.sh\"\n"),
                    "{language:?} {script}: the shared shell"
                );
                assert!(executable, "{language:?} {script}");
            }
            assert!(
                file("build.sh").0.contains("\ncomponent=my_router.wasm\n"),
                "{language:?}: the component's name"
            );
            assert!(!file("lib.sh").1, "sourced, not run");
            assert!(
                file("README.md").0.contains("build/my_router.wasm"),
                "{language:?}"
            );
        }
    }

    #[test]
    fn manifests_carry_the_project_name() {
        let files = project_files(Language::Rust, "my-router").expect("renders");
        let file = |path: &str| {
            files
                .iter()
                .find(|(p, _, _)| *p == path)
                .map(|(_, text, _)| text.clone())
                .expect("the file")
        };
        let manifest = file("Cargo.toml");
        assert!(manifest.starts_with("[package]\nname = \"my-router\"\n"));
        assert!(file("Cargo.lock").contains("name = \"my-router\""));
        assert!(file("src/lib.rs").contains("path: \"wit\""));

        let files = project_files(Language::Js, "my-router").expect("renders");
        let json = |path: &str| -> serde_json::Value {
            let text = &files
                .iter()
                .find(|(p, _, _)| *p == path)
                .expect("the file")
                .1;
            serde_json::from_str(text).expect("JSON")
        };
        assert_eq!(json("package.json")["name"], "my-router");
        let lock = json("package-lock.json");
        assert_eq!(lock["name"], "my-router");
        assert_eq!(lock["packages"][""]["name"], "my-router");
    }

    /// A source's `example_router` is not the project's name (the C++
    /// router's namespace): only named files get the project's.
    #[test]
    fn sources_keep_their_words() {
        let files = project_files(Language::Cpp, "my-router").expect("renders");
        let config = &files
            .iter()
            .find(|(p, _, _)| *p == "src/config.hpp")
            .expect("the file")
            .1;
        assert!(config.contains("namespace example_router"), "{config}");
    }

    #[test]
    fn the_example_configuration_is_a_json_object() {
        let config: serde_json::Value = serde_json::from_str(example_config_json()).expect("JSON");
        assert!(config["always_send_to_users"].is_array(), "{config}");
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
}
