//! Loading through a compiled-component cache of a test's own (not the
//! shared one of [`crate::test_load_options`]), and finding what it wrote.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use presence_router_runtime::{
    CacheSetting, CompileSource, InterestedUsers, LoadOptions, LoggingModuleApi, RouterSet,
    RouterSetConfig,
};

use crate::with_guest_paths;

/// A router whose answer shows it is the example router with this
/// configuration: `@a:x` is interested in everyone.
pub const EXAMPLE_YAML: &str =
    "routers: [{component: $EXAMPLE_ROUTER, config: {always_send_to_users: ['@a:x']}}]";

/// Loads a router set (guest placeholders allowed) with its
/// compiled-component cache in `cache`; the error text if it does not load.
pub async fn load_with_cache(
    cache: &Path,
    yaml: &str,
) -> Result<(RouterSet, CompileSource), String> {
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

/// Loads [`EXAMPLE_YAML`] (which must load and route as configured) and
/// says where it came from.
pub async fn load_example(cache: &Path) -> CompileSource {
    let (set, source) = load_with_cache(cache, EXAMPLE_YAML)
        .await
        .unwrap_or_else(|e| panic!("the example router should load: {e}"));
    assert!(
        routes_as_the_example(&set).await,
        "the loaded router does not route like the example router"
    );
    source
}

/// Whether `set` answers as [`EXAMPLE_YAML`] does.
pub async fn routes_as_the_example(set: &RouterSet) -> bool {
    set.get_interested_users("@a:x").await.answer == InterestedUsers::All
}

/// The files of a cache with this extension (`cwasm`, the artifacts;
/// `mac`, their MACs), sorted.
pub fn cache_files(cache: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(cache)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", cache.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    found.sort();
    found
}

/// The one file of `dir` with this extension.
pub fn only_file(dir: &Path, extension: &str) -> PathBuf {
    let found = cache_files(dir, extension);
    assert_eq!(found.len(), 1, "one .{extension} file in {}", dir.display());
    found.into_iter().next().expect("one")
}
