//! `presence-router new DIR --lang LANG`: a ready router project, from
//! templates built into the binary, so it works away from this repository.
//!
//! A project is the example router of that language, taken from the
//! repository's example directory as it is (`guest-example-c/src/router.c`
//! and so on: the files the conformance suite tests), or with the one
//! change that moving it needs (the Rust one's path to the WIT). Only what
//! belongs to a project lives in `cli/templates/`: its `build.sh`, README,
//! manifests named after it, and the case file's header. Every project gets
//! the WIT, a `routers.yaml` and a `cases.yaml` (the conformance suite).
//!
//! Templates name values `{{like_this}}`; fragments (`{{prelude}}`, the
//! shell shared by the build scripts) are expanded before the values they
//! hold.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};
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
    /// A template of `cli/templates/`, rendered.
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
            content: Content::Example(include_str!(concat!("../../", $dir, "/", $file))),
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
const WIT: &str = include_str!("../../wit/presence-router.wit");
/// The example router's conformance suite: every project's `cases.yaml`.
const CONFORMANCE: &str = include_str!("../../tests/conformance/example-router.yaml");
const README: &str = include_str!("../templates/README.md");
const ROUTERS_YAML: &str = include_str!("../templates/routers.yaml");
const CASES_HEADER: &str = include_str!("../templates/cases-header.yaml");
const GITIGNORE: &str = include_str!("../templates/gitignore");

/// Fragments of the build scripts, expanded first.
const FRAGMENTS: &[(&str, &str)] = &[
    ("prelude", include_str!("../templates/prelude.sh")),
    ("toolchains", include_str!("../templates/toolchains.sh")),
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

const GUEST_EXAMPLE_CARGO_TOML: &str = include_str!("../../guest-example/Cargo.toml");
const GUEST_EXAMPLE_JS_PACKAGE: &str = include_str!("../../guest-example-js/package.json");
const GUEST_EXAMPLE_JS_LOCK: &str = include_str!("../../guest-example-js/package-lock.json");

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
                include_str!("../../guest-example/Cargo.lock"),
                &[("name = \"example-router\"", "name = \"{{name}}\"")],
            ),
        },
        File {
            path: "src/lib.rs",
            content: Content::Patched(
                include_str!("../../guest-example/src/lib.rs"),
                &[("path: \"../wit\"", "path: \"wit\"")],
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
        example!("router.js", "guest-example-js" / "router.js"),
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
        example!("src/app.py", "guest-example-python" / "app.py"),
        example!(
            "requirements.txt",
            "guest-example-python" / "requirements.txt"
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
        example!("src/router.c", "guest-example-c" / "src/router.c"),
        example!("src/config.c", "guest-example-c" / "src/config.c"),
        example!("src/config.h", "guest-example-c" / "src/config.h"),
        template!("build.sh", "c/build.sh"),
    ],
};

static CPP: Spec = Spec {
    display: "C++",
    main_file: "`src/router.cpp`",
    readme: include_str!("../templates/cpp/README.md"),
    gitignore: "",
    files: &[
        example!("src/router.cpp", "guest-example-cpp" / "src/router.cpp"),
        example!("src/config.cpp", "guest-example-cpp" / "src/config.cpp"),
        example!("src/config.hpp", "guest-example-cpp" / "src/config.hpp"),
        example!(
            "src/post_return_fix.cpp",
            "guest-example-cpp" / "src/post_return_fix.cpp"
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
        example!("router.zig", "guest-example-zig" / "router.zig"),
        example!("requirements.txt", "guest-example-zig" / "requirements.txt"),
        template!("build.sh", "zig/build.sh"),
    ],
};

static GO: Spec = Spec {
    display: "Go",
    main_file: "`export_wit_world/router.go`",
    readme: include_str!("../templates/go/README.md"),
    gitignore: "",
    files: &[
        example!("go.mod", "guest-example-go" / "go.mod"),
        example!(
            "export_wit_world/router.go",
            "guest-example-go" / "export_wit_world/router.go"
        ),
        example!("witpkg/go.mod", "guest-example-go" / "witpkg/go.mod"),
        example!("witpkg/doc.go", "guest-example-go" / "witpkg/doc.go"),
        example!(
            "witpkg/wit/types/types.go",
            "guest-example-go" / "witpkg/wit/types/types.go"
        ),
        example!(
            "witpkg/wit/runtime/runtime.go",
            "guest-example-go" / "witpkg/wit/runtime/runtime.go"
        ),
        example!(
            "witpkg/wit/runtime/empty.s",
            "guest-example-go" / "witpkg/wit/runtime/empty.s"
        ),
        example!("requirements.txt", "guest-example-go" / "requirements.txt"),
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
        .ok_or("guest-example/Cargo.toml has no [dependencies]")?;
    Ok(format!("{head}[dependencies]\n{tail}"))
}

/// package.json: the example's, named after the project.
fn js_package_json(values: &Values) -> Result<String, String> {
    let mut package: Value = serde_json::from_str(GUEST_EXAMPLE_JS_PACKAGE)
        .map_err(|e| format!("guest-example-js/package.json: {e}"))?;
    package["name"] = Value::from(values.get("name"));
    pretty_json(&package)
}

/// package-lock.json: the example's (the pinned toolchain), named after
/// the project.
fn js_package_lock(values: &Values) -> Result<String, String> {
    let mut lock: Value = serde_json::from_str(GUEST_EXAMPLE_JS_LOCK)
        .map_err(|e| format!("guest-example-js/package-lock.json: {e}"))?;
    let name = Value::from(values.get("name"));
    lock["name"] = name.clone();
    match lock.pointer_mut("/packages/") {
        Some(root) => root["name"] = name,
        None => return Err("guest-example-js/package-lock.json has no packages[\"\"]".into()),
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

/// Makes `dir`, or checks that it is an empty directory.
fn make_empty_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(entry) => {
                let first = entry
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .unwrap_or_else(|_| "?".to_owned());
                bail!(
                    "{}: the directory is not empty (it holds `{first}`): `new` writes a \
                     project only into a new or an empty directory",
                    dir.display()
                )
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))
        }
        Err(_) if dir.exists() && !dir.is_dir() => bail!(
            "{}: not a directory: `new` writes a project into a new or an empty directory",
            dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

pub fn new(args: NewArgs) -> anyhow::Result<()> {
    let name = project_name(&dir_name(&args.dir));
    // The build scripts of C, C++, Zig and Go run this binary (bindings,
    // componentizing) by default, and the README names it.
    let this_binary = std::env::current_exe().ok();
    let files = project_files(args.lang, &name, this_binary.as_deref())
        .map_err(|message| anyhow::anyhow!(message))?;
    make_empty_dir(&args.dir)?;
    for (path, text, executable) in &files {
        let path = args.dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot make {}", parent.display()))?;
        }
        // create_new: never writes over a file that appeared meanwhile.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if *executable { 0o755 } else { 0o644 })
            .open(&path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
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
            (Language::Rust, "guest-example", &["Cargo.toml"]),
            (
                Language::Js,
                "guest-example-js",
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
                "guest-example-python",
                &["build.sh", "README.md"],
            ),
            (Language::C, "guest-example-c", &["build.sh", "README.md"]),
            (
                Language::Cpp,
                "guest-example-cpp",
                &["build.sh", "README.md"],
            ),
            (
                Language::Zig,
                "guest-example-zig",
                &["build.sh", "README.md"],
            ),
            (Language::Go, "guest-example-go", &["build.sh", "README.md"]),
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
                    "{dir}/{relative} is not in the {language:?} template (cli/src/new.rs)"
                );
            }
        }
    }

    /// The Debian packages the C and C++ projects install are the ones the
    /// repository's example routers are built with.
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
        assert_eq!(
            line(fragment, "WASI_CLANG_PACKAGES="),
            line(
                &read("tools/guest-build/wasi-clang.sh"),
                "WASI_CLANG_PACKAGES="
            )
        );
        assert_eq!(
            line(
                include_str!("../templates/cpp/build.sh"),
                "need_debian_packages"
            ),
            line(&read("guest-example-cpp/build.sh"), "need_debian_packages")
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
