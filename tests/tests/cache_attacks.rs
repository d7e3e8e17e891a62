//! The compiled-component cache against another local user: a cache holds
//! native code, so it is used only if the current user alone could have
//! written it. One test (or two) per attack that worked on the first
//! version of the cache:
//!
//! 1. a cache directory and key planted by someone else;
//! 2. swapping the artifact between its MAC check and its load;
//! 3. rewriting a loaded artifact in place (group-writable files);
//! 4. clobbering a file through a symlink at a predictable temporary name.
//!
//! As root (CI, containers), the attacker's steps run in a child process as
//! uid/gid 65534 ("nobody"), in directories an attacker-friendly operator
//! setup would give it. As anyone else there is no second user to be, and
//! the tests that need one print why and return.

#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use presence_router_runtime::{
    CacheSetting, CompileSource, InterestedUsers, LiveRouterSet, LoadOptions, LoggingModuleApi,
    RouterSet, RouterSetConfig,
};
use presence_router_tests::{guests, with_guest_paths};

/// The attacker: "nobody" on Debian, Ubuntu, Fedora and Alpine.
const ATTACKER: u32 = 65534;

/// These tests change the process's umask and race threads against loads:
/// one at a time, so none sees another's umask or files.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// `libc` is not a dependency of this crate; `umask` is in every Linux libc,
// takes and returns a `mode_t` (u32 on Linux) and cannot fail.
unsafe extern "C" {
    safe fn umask(mask: u32) -> u32;
}

/// A router whose answer shows it is the example router with this
/// configuration: `@a:x` is interested in everyone.
const EXAMPLE_YAML: &str =
    "routers: [{component: $EXAMPLE_ROUTER, config: {always_send_to_users: ['@a:x']}}]";

/// Loads a router set with its compiled-component cache in `cache`; the
/// error text if it does not load.
async fn load_with_cache(cache: &Path, yaml: &str) -> Result<(RouterSet, CompileSource), String> {
    let config = RouterSetConfig::from_yaml(
        &with_guest_paths(yaml),
        Path::new("routers.yaml"),
        Path::new("."),
    )
    .map_err(|e| e.to_string())?;
    let options = LoadOptions {
        cache: CacheSetting::Dir(cache.to_owned()),
        ..LoadOptions::default()
    };
    let set = RouterSet::load_with(&config, Arc::new(LoggingModuleApi), &options)
        .await
        .map_err(|e| e.to_string())?;
    let source = set.routers().next().expect("one router").compiled_from;
    Ok((set, source))
}

/// Loads the example router (which must load and route as configured) and
/// says where it came from.
async fn load_example(cache: &Path) -> CompileSource {
    let (set, source) = load_with_cache(cache, EXAMPLE_YAML)
        .await
        .unwrap_or_else(|e| panic!("the example router should load: {e}"));
    assert!(
        routes_as_the_example(&set).await,
        "the loaded router does not route like the example router"
    );
    source
}

async fn routes_as_the_example(set: &RouterSet) -> bool {
    set.get_interested_users("@a:x").await.answer == InterestedUsers::All
}

/// Whether this process can be the victim (root) of a second user; if not,
/// says so on stderr.
fn second_user_available(test: &str) -> bool {
    // The owner of a file this process creates is its effective uid.
    let probe = tempfile::tempfile().expect("a temporary file");
    let euid = probe.metadata().expect("fstat").uid();
    if euid != 0 {
        eprintln!(
            "{test}: skipped: running as uid {euid}, not root, so there is no second user \
             (uid {ATTACKER}) to play the attacker"
        );
        return false;
    }
    true
}

/// Runs `script` with `sh -c` as the attacker (uid and gid 65534, no
/// supplementary groups: std drops them when root sets a uid), `$1`... set
/// to `args`.
fn as_attacker(script: &str, args: &[&OsStr]) -> Output {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .uid(ATTACKER)
        .gid(ATTACKER)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        // `Permission denied`, whatever the machine's language.
        .env("LC_ALL", "C")
        .current_dir("/")
        .output()
        .expect("cannot run /bin/sh as the attacker")
}

/// Like [`as_attacker`], for a step that must succeed.
fn attacker_does(script: &str, args: &[&OsStr]) -> Output {
    let output = as_attacker(script, args);
    assert!(
        output.status.success(),
        "the attacker's step `{script}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A temporary directory with `mode`: the attacker-friendly part of an
/// operator's setup (tempfile makes its directories 0700).
fn temp_dir_with_mode(mode: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    set_mode(dir.path(), mode);
    dir
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// Every entry of a directory, by name, with its contents (a symlink's
/// target, for a symlink): to show a directory was neither read into a
/// load nor written.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let name = path
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            let metadata = std::fs::symlink_metadata(&path).expect("lstat");
            let contents = if metadata.is_symlink() {
                std::fs::read_link(&path)
                    .expect("readlink")
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                std::fs::read(&path).expect("read")
            };
            (name, contents)
        })
        .collect()
}

/// The one file of `dir` with this extension.
fn only_file(dir: &Path, extension: &str) -> PathBuf {
    let found: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    assert_eq!(found.len(), 1, "one .{extension} file in {}", dir.display());
    found.into_iter().next().expect("one")
}

/// A private cache of this user with the example router compiled into it.
async fn filled_private_cache() -> tempfile::TempDir {
    let cache = tempfile::tempdir().expect("a temporary directory");
    assert_eq!(load_example(cache.path()).await, CompileSource::Compiled);
    assert_eq!(load_example(cache.path()).await, CompileSource::Cache);
    cache
}

// 1. A planted cache: directory, key and artifacts that someone else wrote.

#[tokio::test]
async fn a_cache_directory_planted_by_another_user_is_refused() {
    let _serial = ONE_AT_A_TIME.lock().await;
    if !second_user_available("a_cache_directory_planted_by_another_user_is_refused") {
        return;
    }
    // The operator configured `cache: <shared>/cache` in a directory anyone
    // can write, and the victim has not run yet.
    let shared = temp_dir_with_mode(0o777);
    // What the attacker plants: a key it knows and an artifact with a valid
    // MAC under that key, named for the victim's component (it can compute
    // the name; here a cache made by the same runtime supplies it all).
    let source = filled_private_cache().await;
    set_mode(source.path(), 0o755);
    for entry in std::fs::read_dir(source.path()).expect("read_dir") {
        set_mode(&entry.expect("an entry").path(), 0o644);
    }
    for mode in ["0755", "0777"] {
        let planted = shared.path().join(format!("cache-{mode}"));
        attacker_does(
            r#"mkdir -m "$3" "$1" && cp "$2"/key "$2"/*.cwasm "$2"/*.mac "$1"/ && chmod 0644 "$1"/*"#,
            &[
                planted.as_os_str(),
                source.path().as_os_str(),
                OsStr::new(mode),
            ],
        );
        let before = snapshot(&planted);
        assert_eq!(before.len(), 3, "key, artifact and MAC planted");

        assert_eq!(
            load_example(&planted).await,
            CompileSource::Compiled,
            "the victim loaded native code from a cache directory uid {ATTACKER} made \
             (mode {mode}, with a key it knows)"
        );
        assert_eq!(
            snapshot(&planted),
            before,
            "the victim wrote into, or replaced files of, a directory uid {ATTACKER} owns"
        );
    }
}

#[tokio::test]
async fn a_cache_directory_that_is_a_symlink_is_refused() {
    let _serial = ONE_AT_A_TIME.lock().await;
    if !second_user_available("a_cache_directory_that_is_a_symlink_is_refused") {
        return;
    }
    // The victim's own cache, private and good: the attacker can't read it,
    // but a symlink needs no access to its target.
    let private = filled_private_cache().await;
    let before = snapshot(private.path());
    let shared = temp_dir_with_mode(0o777);
    let cache = shared.path().join("cache");
    attacker_does(
        r#"ln -s "$2" "$1""#,
        &[cache.as_os_str(), private.path().as_os_str()],
    );
    // Followed, the link could as well lead to a directory the attacker
    // controls next time; a cache directory must be the directory itself.
    assert_eq!(
        load_example(&cache).await,
        CompileSource::Compiled,
        "the victim used a cache directory reached through uid {ATTACKER}'s symlink"
    );
    assert_eq!(snapshot(private.path()), before);
}

#[tokio::test]
async fn a_key_others_can_write_or_own_is_refused() {
    let _serial = ONE_AT_A_TIME.lock().await;
    if !second_user_available("a_key_others_can_write_or_own_is_refused") {
        return;
    }
    // The victim's cache directory is its own and not writable by others,
    // but the key is: whoever can write the key can make MACs the victim
    // accepts.
    let cache = filled_private_cache().await;
    set_mode(cache.path(), 0o755);
    let key = cache.path().join("key");
    for mode in [0o666, 0o620, 0o602] {
        set_mode(&key, mode);
        if mode & 0o006 == 0o006 {
            // The attacker opens it for writing (without changing it) and
            // reads the key: from now on it could sign its own artifacts.
            let read = attacker_does(r#"exec 3<>"$1" && cat <&3"#, &[key.as_os_str()]);
            assert_eq!(read.stdout, std::fs::read(&key).expect("read the key"));
        }
        assert_eq!(
            load_example(cache.path()).await,
            CompileSource::Compiled,
            "the victim trusted a key of mode {mode:o}"
        );
    }
    // Owned by someone else (a careless `chown -R`), even with mode 0600.
    set_mode(&key, 0o600);
    std::os::unix::fs::chown(&key, Some(ATTACKER), Some(ATTACKER)).expect("chown the key");
    assert_eq!(
        load_example(cache.path()).await,
        CompileSource::Compiled,
        "the victim trusted a key owned by uid {ATTACKER}"
    );
    // The same key, the victim's own again: the cache is back.
    std::os::unix::fs::chown(&key, Some(0), Some(0)).expect("chown the key back");
    assert_eq!(load_example(cache.path()).await, CompileSource::Cache);
}

// 2. Check, then map: the artifact loaded must be the bytes whose MAC was
// checked.

#[tokio::test]
async fn a_loaded_component_is_a_private_copy_of_the_verified_bytes() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let cache = filled_private_cache().await;
    let (set, source) = load_with_cache(cache.path(), EXAMPLE_YAML)
        .await
        .expect("the example router loads");
    assert_eq!(source, CompileSource::Cache);
    let artifact = only_file(cache.path(), "cwasm")
        .canonicalize()
        .expect("canonical path");
    // Code mapped from the file would change with whatever is written to
    // it (or renamed over it before the mapping): a load must copy the
    // bytes it checked, and keep no mapping of the path.
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    let artifact_text = artifact.to_string_lossy();
    let mapped: Vec<_> = maps
        .lines()
        .filter(|line| line.contains(artifact_text.as_ref()))
        .collect();
    assert!(
        mapped.is_empty(),
        "the loaded component maps the artifact file itself:\n{}",
        mapped.join("\n")
    );
    // Junk renamed over the artifact changes nothing already loaded, and a
    // new load refuses it.
    let junk = cache.path().join("junk");
    std::fs::write(&junk, vec![0xcc; 4096]).expect("write junk");
    set_mode(&junk, 0o600);
    std::fs::rename(&junk, &artifact).expect("rename junk over the artifact");
    assert!(routes_as_the_example(&set).await);
    assert_eq!(load_example(cache.path()).await, CompileSource::Compiled);
}

#[tokio::test]
async fn racing_renames_never_get_another_artifact_loaded() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // A bounded number of loads; every load has many swaps to lose to.
    const LOADS: usize = 64;
    const MAX_SWAPS: usize = 10_000_000;

    let cache = filled_private_cache().await;
    let artifact = only_file(cache.path(), "cwasm");
    // The other artifact: valid, this cache's own, but another component's
    // (a router that refuses the example's configuration).
    load_with_cache(
        cache.path(),
        "routers: [{component: $SCRIPTED, config: {}}]",
    )
    .await
    .expect("the scripted router loads");
    let other = std::fs::read_dir(cache.path())
        .expect("read_dir")
        .map(|entry| entry.expect("an entry").path())
        .find(|path| path.extension().is_some_and(|e| e == "cwasm") && *path != artifact)
        .expect("the scripted router's artifact");
    let genuine = cache.path().join("race-genuine");
    let swapped_in = cache.path().join("race-other");
    std::fs::copy(&artifact, &genuine).expect("copy the genuine artifact");
    std::fs::copy(&other, &swapped_in).expect("copy the other artifact");

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let staging = cache.path().join("race-staging");
        let artifact = artifact.clone();
        std::thread::spawn(move || {
            let mut swaps = 0usize;
            'swapping: for _ in 0..MAX_SWAPS / 2 {
                for source in [&genuine, &swapped_in] {
                    if stop.load(Ordering::Relaxed) {
                        break 'swapping;
                    }
                    // A hard link and a rename: the artifact's name always
                    // exists, and is now one file, now the other.
                    let _ = std::fs::remove_file(&staging);
                    if std::fs::hard_link(source, &staging).is_ok()
                        && std::fs::rename(&staging, &artifact).is_ok()
                    {
                        swaps += 1;
                    }
                }
            }
            swaps
        })
    };
    let mut outcomes = BTreeMap::<String, usize>::new();
    for _ in 0..LOADS {
        let outcome = match load_with_cache(cache.path(), EXAMPLE_YAML).await {
            Ok((set, source)) if routes_as_the_example(&set).await => format!("{source:?}"),
            Ok((_, source)) => format!("{source:?}, routing like another router"),
            Err(e) => format!("another router's artifact loaded: {e}"),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().expect("the swapper thread");
    eprintln!("{LOADS} loads against {swaps} swaps: {outcomes:?}");
    assert!(swaps > 0, "the swapper never swapped");
    assert!(
        outcomes
            .keys()
            .all(|outcome| outcome == "Cache" || outcome == "Compiled"),
        "a load ran another artifact than the one whose MAC it checked: {outcomes:?}"
    );
}

// 3. In-place rewrite: cache files must be the owner's alone, whatever the
// umask.

#[tokio::test]
async fn cache_files_are_private_whatever_the_umask() {
    let _serial = ONE_AT_A_TIME.lock().await;
    if !second_user_available("cache_files_are_private_whatever_the_umask") {
        return;
    }
    // A shared directory of a group the attacker is in (setgid, so that
    // what is created in it gets that group), and a umask for sharing.
    let shared = temp_dir_with_mode(0o755);
    std::os::unix::fs::chown(shared.path(), Some(0), Some(ATTACKER)).expect("chown");
    set_mode(shared.path(), 0o2775);
    let cache = shared.path().join("cache");
    let previous_umask = umask(0o002);
    let first = load_example(&cache).await;
    let second = load_example(&cache).await;
    umask(previous_umask);
    assert_eq!(
        (first, second),
        (CompileSource::Compiled, CompileSource::Cache)
    );

    let mut modes = vec![(cache.clone(), mode_of(&cache) & 0o777, 0o700)];
    for entry in std::fs::read_dir(&cache).expect("read_dir") {
        let path = entry.expect("an entry").path();
        modes.push((path.clone(), mode_of(&path) & 0o777, 0o600));
    }
    assert_eq!(modes.len(), 4, "the directory, key, artifact and MAC");
    for (path, mode, private) in &modes {
        assert_eq!(
            mode,
            private,
            "{} has mode {mode:o}, not {private:o}",
            path.display()
        );
    }
    // The attacker, in the directory's group, cannot open an artifact to
    // rewrite it under a running process.
    let artifact = only_file(&cache, "cwasm");
    let before = std::fs::read(&artifact).expect("read the artifact");
    for file in [&artifact, &only_file(&cache, "mac"), &cache.join("key")] {
        let attempt = as_attacker(r#"exec 3<>"$1""#, &[file.as_os_str()]);
        let stderr = String::from_utf8_lossy(&attempt.stderr);
        assert!(
            !attempt.status.success() && stderr.contains("Permission denied"),
            "uid {ATTACKER} could open {} for writing (EACCES expected): {stderr}",
            file.display()
        );
    }
    assert_eq!(std::fs::read(&artifact).expect("read the artifact"), before);
    assert_eq!(load_example(&cache).await, CompileSource::Cache);
}

// 4. Symlinks at predictable temporary names.

/// How many thread ids the attacker covers: `ThreadId(1)` to
/// `ThreadId(n - 1)`, and past this thread's own (ids are given out in
/// order, and the loading threads are among the first few after it).
fn thread_ids_to_cover() -> u64 {
    let this_thread = format!("{:?}", std::thread::current().id());
    let number = this_thread
        .trim_start_matches("ThreadId(")
        .trim_end_matches(')')
        .parse::<u64>()
        .expect("ThreadId(<number>)");
    (number + 256).max(1024)
}

#[tokio::test]
async fn symlinks_at_predictable_temporary_names_clobber_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    if !second_user_available("symlinks_at_predictable_temporary_names_clobber_nothing") {
        return;
    }
    // The victim's file, outside the cache, where the attacker can't go.
    let outside = tempfile::tempdir().expect("a temporary directory");
    let precious = outside.path().join("precious");
    std::fs::write(&precious, b"the victim's own file\n").expect("write");
    // The attacker computes the artifact's name (the component's SHA-256
    // and the engine hash); a load into a private cache tells it here.
    let name = {
        let private = tempfile::tempdir().expect("a temporary directory");
        load_example(private.path()).await;
        let artifact = only_file(private.path(), "cwasm");
        artifact
            .file_stem()
            .expect("a name")
            .to_string_lossy()
            .into_owned()
    };
    let final_names = [
        "key".to_owned(),
        format!("{name}.cwasm"),
        format!("{name}.mac"),
    ];
    // The temporary names the first version of the cache used: the final
    // name, then `.tmp.<pid>.ThreadId(<n>)`.
    let pid = std::process::id().to_string();
    let threads = thread_ids_to_cover().to_string();
    let plant = r#"
        dir=$1 pid=$2 name=$3 target=$4 threads=$5 n=1
        while [ "$n" -lt "$threads" ]; do
            for file in key "$name.cwasm" "$name.mac"; do
                ln -s "$target" "$dir/$file.tmp.$pid.ThreadId($n)" || exit 1
            done
            n=$((n + 1))
        done
    "#;
    // A cache directory the attacker can write (an operator's `chmod 777`):
    // refused altogether, so nothing planted there is ever opened.
    let writable = temp_dir_with_mode(0o777);
    attacker_does(
        plant,
        &[
            writable.path().as_os_str(),
            OsStr::new(&pid),
            OsStr::new(&name),
            precious.as_os_str(),
            OsStr::new(&threads),
        ],
    );
    let planted = snapshot(writable.path());
    for _ in 0..2 {
        assert_eq!(
            load_example(writable.path()).await,
            CompileSource::Compiled,
            "the victim used a cache directory uid {ATTACKER} can write"
        );
        assert_eq!(
            std::fs::read(&precious).expect("read"),
            b"the victim's own file\n",
            "the victim wrote through uid {ATTACKER}'s symlink"
        );
    }
    assert_eq!(snapshot(writable.path()), planted);

    // The victim's own directory, with links at those names already there
    // (left by anyone who could once write it): temporary files are created
    // afresh under unpredictable names, never opened through a link.
    let own = tempfile::tempdir().expect("a temporary directory");
    for n in 1..thread_ids_to_cover() {
        for file in &final_names {
            let temporary = format!("{file}.tmp.{pid}.ThreadId({n})");
            std::os::unix::fs::symlink(&precious, own.path().join(temporary)).expect("symlink");
        }
    }
    assert_eq!(load_example(own.path()).await, CompileSource::Compiled);
    assert_eq!(load_example(own.path()).await, CompileSource::Cache);
    assert_eq!(
        std::fs::read(&precious).expect("read"),
        b"the victim's own file\n",
        "the victim wrote through a symlink at a temporary name"
    );
}

// Component files. A component is native code once compiled: a file another
// user can write or replace is their code in the homeserver, now within
// seconds of a hot reload (docs/synapse.md), not only at the next restart.

/// Loads the example router from `component` with no cache; the error text
/// if it does not load.
async fn load_component(component: &Path) -> Result<RouterSet, String> {
    let yaml = format!(
        "routers: [{{name: example, component: '{}', config: {{always_send_to_users: ['@a:x']}}}}]",
        component.display()
    );
    let config = RouterSetConfig::from_yaml(&yaml, Path::new("routers.yaml"), Path::new("."))
        .map_err(|e| e.to_string())?;
    let options = LoadOptions {
        cache: CacheSetting::Disabled,
        ..LoadOptions::default()
    };
    RouterSet::load_with(&config, Arc::new(LoggingModuleApi), &options)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_component_in_a_directory_others_can_write_is_refused() {
    let _one = ONE_AT_A_TIME.lock().await;
    // 0777 without the sticky bit: anyone can replace the file by rename.
    let shared = temp_dir_with_mode(0o777);
    let component = shared.path().join("example.wasm");
    std::fs::copy(guests::EXAMPLE_ROUTER, &component).expect("copied");
    let error = load_component(&component)
        .await
        .err()
        .expect("a component anyone can replace must not load");
    assert!(
        error.contains("writable by others") && error.contains("mode 777"),
        "{error}"
    );
    assert!(
        error.contains(&shared.path().display().to_string()),
        "{error}"
    );
    // With the sticky bit (as /tmp), only the file's owner can replace it.
    set_mode(shared.path(), 0o1777);
    load_component(&component)
        .await
        .unwrap_or_else(|e| panic!("a sticky directory keeps the file its owner's: {e}"));
}

#[tokio::test]
async fn a_component_anyone_can_write_is_refused() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let component = dir.path().join("example.wasm");
    std::fs::copy(guests::EXAMPLE_ROUTER, &component).expect("copied");
    set_mode(&component, 0o666);
    let error = load_component(&component)
        .await
        .err()
        .expect("a component anyone can write must not load");
    assert!(
        error.contains("writable by group or others (mode 666)")
            && error.contains(&component.display().to_string()),
        "{error}"
    );
}

#[tokio::test]
async fn a_component_another_user_owns_is_not_reloaded() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !second_user_available("a_component_another_user_owns_is_not_reloaded") {
        return;
    }
    let dir = temp_dir_with_mode(0o755);
    let component = dir.path().join("example.wasm");
    std::fs::copy(guests::EXAMPLE_ROUTER, &component).expect("copied");
    let live = LiveRouterSet::new(load_component(&component).await.expect("loads"));
    // A careless `chown`: the attacker now owns the file and rewrites it
    // in place with a router of their own.
    std::os::unix::fs::chown(&component, Some(ATTACKER), Some(ATTACKER)).expect("chown");
    attacker_does(
        "cat \"$1\" > \"$2\"",
        &[guests::HOSTILE_PANIC.as_ref(), component.as_os_str()],
    );
    let config = RouterSetConfig::from_yaml(
        &format!(
            "routers: [{{name: example, component: '{}', config: {{always_send_to_users: ['@a:x']}}}}]",
            component.display()
        ),
        Path::new("routers.yaml"),
        Path::new("."),
    )
    .expect("parses");
    let error = live
        .reload(
            &config,
            &LoadOptions {
                cache: CacheSetting::Disabled,
                ..LoadOptions::default()
            },
        )
        .await
        .expect_err("another user's file must not be loaded");
    let text = error.to_string();
    assert!(text.contains("owned by uid 65534"), "{text}");
    assert!(routes_as_the_example(&live.current()).await);
}
