//! The compiled-component cache: a second load deserializes what the first
//! compiled; anything this cache did not write (tampered, foreign, renamed,
//! half-written) is refused and recompiled, never loaded.

use std::path::Path;
use std::sync::Arc;

use presence_router_runtime::{
    CacheBound, CacheSetting, CompileSource, InterestedUsers, LoadOptions, LoggingModuleApi,
    RouterSet, RouterSetConfig,
};
use presence_router_tests::{guests, with_guest_paths};
use wasm_encoder::{ComponentSection, CustomSection};

async fn load_in(cache: &Path, guest: &str) -> CompileSource {
    let yaml = with_guest_paths(&format!("routers: [{{component: ${guest}}}]"));
    let config =
        RouterSetConfig::from_yaml(&yaml, Path::new("routers.yaml"), Path::new(".")).unwrap();
    let options = LoadOptions {
        cache: CacheSetting::Dir(cache.to_owned()),
        ..LoadOptions::default()
    };
    let set = RouterSet::load_with(&config, Arc::new(LoggingModuleApi), &options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let info = set.routers().next().expect("one router");
    info.compiled_from
}

/// The artifact and MAC files of a cache, by extension.
fn files(cache: &Path, extension: &str) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn the_second_load_comes_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    assert_eq!(
        load_in(cache.path(), "EXAMPLE_ROUTER").await,
        CompileSource::Compiled
    );
    assert_eq!(files(cache.path(), "cwasm").len(), 1);
    assert_eq!(files(cache.path(), "mac").len(), 1);
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
    let artifact = &files(cache.path(), "cwasm")[0];
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
            &files(theirs.path(), extension)[0],
            &files(ours.path(), extension)[0],
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
    let example: Vec<_> = files(cache.path(), "cwasm");
    load_in(cache.path(), "SCRIPTED").await;
    let both = files(cache.path(), "cwasm");
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
    let mac = &files(cache.path(), "mac")[0];
    std::fs::write(mac, b"short").unwrap();
    assert_eq!(
        load_in(cache.path(), "EXAMPLE_ROUTER").await,
        CompileSource::Compiled
    );
    std::fs::remove_file(&files(cache.path(), "mac")[0]).unwrap();
    assert_eq!(
        load_in(cache.path(), "EXAMPLE_ROUTER").await,
        CompileSource::Compiled
    );
    // A half-written artifact (a crash between the two renames) likewise.
    let artifact = &files(cache.path(), "cwasm")[0];
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
        assert!(files(cache.path(), "cwasm").len() <= bound.max_artifacts);
        assert_eq!(
            files(cache.path(), "cwasm").len(),
            files(cache.path(), "mac").len()
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
