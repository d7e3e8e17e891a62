//! Routers built by earlier releases (`tests/compat/<version>/`) still load
//! and pass the example router's conformance suite of their release (kept
//! beside them as `cases.yaml`, with its configuration, `config.json`) in
//! this runtime: the compatibility rule of docs/releases.md.

use std::path::{Path, PathBuf};

use crate::conformance::conformance_failures_of;

const RELEASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/compat");
/// The languages whose example router every release keeps.
const LANGUAGES: [&str; 4] = ["rust", "c", "cpp", "zig"];
/// A kept component's size at most: fixtures stay small enough to commit.
const MAX_FIXTURE_BYTES: u64 = 200 * 1024;

/// Every release's directory, oldest first (versions sort by their parts).
fn releases() -> Vec<(Vec<u64>, PathBuf)> {
    let mut releases: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(RELEASES)
        .expect("tests/compat is readable")
        .map(|entry| entry.expect("an entry of tests/compat").path())
        .filter(|path| path.is_dir())
        .map(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let version = name
                .split('.')
                .map(|part| {
                    part.parse()
                        .unwrap_or_else(|_| panic!("{name}: not a version"))
                })
                .collect();
            (version, path)
        })
        .collect();
    releases.sort();
    releases
}

#[test]
fn every_release_keeps_its_four_example_routers_each_under_200_kb_and_its_cases() {
    let releases = releases();
    assert!(
        releases.iter().any(|(version, _)| version == &[0, 1, 0]),
        "0.1.0's routers are kept"
    );
    for (_, dir) in &releases {
        for kept in ["cases.yaml", "config.json"] {
            assert!(dir.join(kept).is_file(), "{}: {kept}", dir.display());
        }
        for language in LANGUAGES {
            let component = dir.join(format!("{language}.wasm"));
            let size = std::fs::metadata(&component)
                .unwrap_or_else(|e| panic!("{}: {e}", component.display()))
                .len();
            assert!(
                size <= MAX_FIXTURE_BYTES,
                "{}: {size} bytes",
                component.display()
            );
        }
    }
}

#[tokio::test]
async fn every_earlier_releases_routers_conform_to_their_release_in_this_runtime() {
    let mut checked = 0;
    for (_, dir) in releases() {
        let cases = dir.join("cases.yaml");
        let config = std::fs::read_to_string(dir.join("config.json"))
            .unwrap_or_else(|e| panic!("{}: config.json: {e}", dir.display()));
        for language in LANGUAGES {
            let component = dir.join(format!("{language}.wasm"));
            let failures = conformance_failures_of(path_str(&component), &cases, &config).await;
            assert_eq!(failures, Vec::<String>::new(), "{}", component.display());
            checked += 1;
        }
    }
    assert!(checked >= LANGUAGES.len());
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("tests/compat's paths are UTF-8")
}
