//! The compiled-component cache: a second load deserializes what the first
//! compiled; anything this cache did not write (tampered, foreign, renamed,
//! half-written) is refused and recompiled, never loaded; a bounded cache
//! keeps the newest versions.
//!
//! A cache holds native code, so it is used only if the current user alone
//! could have written it. Then, against another local user, one test (or
//! two) per attack that worked on the first version of the cache:
//!
//! 1. a cache directory and key planted by someone else;
//! 2. swapping the artifact between its MAC check and its load;
//! 3. rewriting a loaded artifact in place (group-writable files: the
//!    test changes the umask, so it is in the `process_wide` test binary,
//!    `cache_umask.rs`);
//! 4. clobbering a file through a symlink at a predictable temporary name.
//!
//! As root (CI, containers), the attacker's steps run as another user
//! (`presence_router_tests::second_user`); as anyone else the tests that
//! need one print why and return.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use presence_router_runtime::{
    CacheBound, CacheSetting, CompileSource, InterestedUsers, LoadOptions, LoggingModuleApi,
    RouterSet, RouterSetConfig,
};
use presence_router_tests::cache::{
    EXAMPLE_YAML, cache_files, load_example, load_with_cache, only_file, routes_as_the_example,
};
use presence_router_tests::second_user::{
    ATTACKER, attacker_does, second_user_available, set_mode, temp_dir_with_mode,
};
use presence_router_tests::{guests, with_guest_paths};
use wasm_encoder::{ComponentSection, CustomSection};

async fn load_in(cache: &Path, guest: &str) -> CompileSource {
    let yaml = format!("routers: [{{component: ${guest}}}]");
    let (_set, source) = load_with_cache(cache, &yaml)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    source
}

#[tokio::test]
async fn the_second_load_comes_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    assert_eq!(
        load_in(cache.path(), "EXAMPLE_ROUTER").await,
        CompileSource::Compiled
    );
    assert_eq!(cache_files(cache.path(), "cwasm").len(), 1);
    assert_eq!(cache_files(cache.path(), "mac").len(), 1);
    assert_eq!(
        load_in(cache.path(), "EXAMPLE_ROUTER").await,
        CompileSource::Cache
    );
    // The key is the owner's alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cache.path().join("key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn a_tampered_artifact_is_refused_and_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    load_in(cache.path(), "EXAMPLE_ROUTER").await;
    let artifact = &cache_files(cache.path(), "cwasm")[0];
    let mut bytes = std::fs::read(artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(artifact, &bytes).unwrap();
    assert_eq!(
        load_in(cache.path(), "EXAMPLE_ROUTER").await,
        CompileSource::Compiled
    );
    // Rewritten by the recompilation: good again.
    assert_ne!(std::fs::read(artifact).unwrap(), bytes);
    assert_eq!(
        load_in(cache.path(), "EXAMPLE_ROUTER").await,
        CompileSource::Cache
    );
}

#[tokio::test]
async fn a_foreign_artifact_is_refused_even_with_its_own_mac() {
    // Another cache (another key) compiled the same component; its files are
    // copied in under the right names.
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    load_in(ours.path(), "EXAMPLE_ROUTER").await;
    load_in(theirs.path(), "EXAMPLE_ROUTER").await;
    for extension in ["cwasm", "mac"] {
        let (from, to) = (
            &cache_files(theirs.path(), extension)[0],
            &cache_files(ours.path(), extension)[0],
        );
        std::fs::copy(from, to).unwrap();
    }
    assert_eq!(
        load_in(ours.path(), "EXAMPLE_ROUTER").await,
        CompileSource::Compiled
    );
}

#[tokio::test]
async fn an_artifact_of_another_component_under_this_name_is_refused() {
    // Both artifacts are this cache's own, with valid MACs; one is swapped
    // for the other.
    let cache = tempfile::tempdir().unwrap();
    load_in(cache.path(), "EXAMPLE_ROUTER").await;
    let example: Vec<_> = cache_files(cache.path(), "cwasm");
    load_in(cache.path(), "SCRIPTED").await;
    let both = cache_files(cache.path(), "cwasm");
    let other = both.iter().find(|p| !example.contains(p)).unwrap();
    std::fs::copy(other, &example[0]).unwrap();
    std::fs::copy(
        other.with_extension("mac"),
        example[0].with_extension("mac"),
    )
    .unwrap();
    assert_eq!(
        load_in(cache.path(), "EXAMPLE_ROUTER").await,
        CompileSource::Compiled
    );
}

#[tokio::test]
async fn a_missing_or_truncated_mac_means_recompiling() {
    let cache = tempfile::tempdir().unwrap();
    load_in(cache.path(), "EXAMPLE_ROUTER").await;
    let mac = &cache_files(cache.path(), "mac")[0];
    std::fs::write(mac, b"short").unwrap();
    assert_eq!(
        load_in(cache.path(), "EXAMPLE_ROUTER").await,
        CompileSource::Compiled
    );
    std::fs::remove_file(&cache_files(cache.path(), "mac")[0]).unwrap();
    assert_eq!(
        load_in(cache.path(), "EXAMPLE_ROUTER").await,
        CompileSource::Compiled
    );
    // A half-written artifact (a crash between the two renames) likewise.
    let artifact = &cache_files(cache.path(), "cwasm")[0];
    let bytes = std::fs::read(artifact).unwrap();
    std::fs::write(artifact, &bytes[..bytes.len() / 3]).unwrap();
    assert_eq!(
        load_in(cache.path(), "EXAMPLE_ROUTER").await,
        CompileSource::Compiled
    );
    assert_eq!(
        load_in(cache.path(), "EXAMPLE_ROUTER").await,
        CompileSource::Cache
    );
}

#[tokio::test]
async fn a_disabled_cache_compiles_every_time_in_parallel_or_on_the_calling_thread() {
    let yaml = with_guest_paths(
        "routers: [{component: $EXAMPLE_ROUTER, config: {always_send_to_users: ['@a:x']}}]",
    );
    let config = RouterSetConfig::from_yaml(&yaml, Path::new("r.yaml"), Path::new(".")).unwrap();
    for compile_on_calling_thread in [false, true] {
        let options = LoadOptions {
            cache: CacheSetting::Disabled,
            compile_on_calling_thread,
            ..LoadOptions::default()
        };
        let set = RouterSet::load_with(&config, Arc::new(LoggingModuleApi), &options)
            .await
            .unwrap();
        assert_eq!(
            set.routers().next().unwrap().compiled_from,
            CompileSource::Compiled
        );
        // The component compiled either way really runs.
        assert_eq!(
            set.get_interested_users("@a:x").await.answer,
            InterestedUsers::All
        );
    }
}

/// The example router with a custom section naming `version` appended: the
/// same router, but another component (another SHA-256, so another
/// artifact), as each new build of a router is.
fn example_version(dir: &Path, version: u32) -> std::path::PathBuf {
    let mut bytes = std::fs::read(guests::EXAMPLE_ROUTER).unwrap();
    CustomSection {
        name: "version".into(),
        data: version.to_le_bytes().to_vec().into(),
    }
    .append_to_component(&mut bytes);
    let path = dir.join(format!("example-v{version}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Loads the component at `path` as the example router with its cache in
/// `cache`, within `bound`; checks that it routes as the example router.
async fn load_version(cache: &Path, bound: CacheBound, path: &Path) -> CompileSource {
    let yaml = format!(
        "routers: [{{component: '{}', config: {{always_send_to_users: ['@a:x']}}}}]",
        path.display()
    );
    let config = RouterSetConfig::from_yaml(&yaml, Path::new("r.yaml"), Path::new(".")).unwrap();
    let options = LoadOptions {
        cache: CacheSetting::BoundedDir {
            dir: cache.to_owned(),
            bound,
        },
        ..LoadOptions::default()
    };
    let set = RouterSet::load_with(&config, Arc::new(LoggingModuleApi), &options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        set.get_interested_users("@a:x").await.answer,
        InterestedUsers::All
    );
    set.routers().next().expect("one router").compiled_from
}

#[tokio::test]
async fn a_bounded_cache_keeps_the_newest_versions_and_recompiles_evicted_ones() {
    let cache = tempfile::tempdir().unwrap();
    let components = tempfile::tempdir().unwrap();
    let bound = CacheBound {
        max_bytes: u64::MAX,
        max_artifacts: 2,
    };
    let versions: Vec<_> = (0..4)
        .map(|version| example_version(components.path(), version))
        .collect();
    for (version, path) in versions.iter().enumerate() {
        assert_eq!(
            load_version(cache.path(), bound, path).await,
            CompileSource::Compiled,
            "version {version}"
        );
        assert!(cache_files(cache.path(), "cwasm").len() <= bound.max_artifacts);
        assert_eq!(
            cache_files(cache.path(), "cwasm").len(),
            cache_files(cache.path(), "mac").len()
        );
    }
    // The two newest are still cached...
    for path in &versions[2..] {
        assert_eq!(
            load_version(cache.path(), bound, path).await,
            CompileSource::Cache
        );
    }
    // ...the first was evicted: it compiles again, and routes as it did.
    assert_eq!(
        load_version(cache.path(), bound, &versions[0]).await,
        CompileSource::Compiled
    );
}

// Another local user against the cache.

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
