//! `presence-router check`: every router with its limits and where its
//! component came from, and the file, the key and what was expected when
//! a configuration is wrong.

use std::path::Path;

use crate::support::{TWO_ROUTERS, config_dir, run};

#[test]
fn check_lists_every_router_with_its_limits() {
    let dir = config_dir(TWO_ROUTERS);
    // Run from elsewhere: component paths are relative to the config file.
    let cache = dir.path().join("cache");
    let config = dir.path().join("routers.yaml");
    let args = [
        "check",
        "--config",
        &config.to_string_lossy(),
        "--cache-dir",
        &cache.to_string_lossy(),
    ];
    let output = run(&args, Path::new("/"), "");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{stdout}");
    assert!(
        lines[0].ends_with("routers.yaml: 2 router(s), all loaded"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("1. example (")
            && lines[1].contains("routers/example.wasm, compiled in "),
        "{stdout}"
    );
    assert!(
        lines[2].contains("fuel 10000000 + 200000 per state, memory 64MiB, timeout 100ms"),
        "{stdout}"
    );
    assert_eq!(
        lines[3],
        "   failures: suspended after 5 failures in a row, for 1s doubling up to 5m"
    );
    assert!(lines[4].starts_with("2. scripted ("), "{stdout}");
    assert!(
        lines[5].contains("fuel 2000000 + 1000 per state, memory 16MiB, timeout 250ms"),
        "{stdout}"
    );
    assert_eq!(lines[6], "   failures: never suspended");

    // The second time, both components come from the cache.
    let output = run(&args, Path::new("/"), "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[1].contains("example.wasm, from the cache in "),
        "{stdout}"
    );
    assert!(
        lines[4].contains("scripted.wasm, from the cache in "),
        "{stdout}"
    );
    // And never with --no-cache.
    let output = run(
        &["check", "--config", &config.to_string_lossy(), "--no-cache"],
        Path::new("/"),
        "",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains(", compiled in ")),
        "{stdout}"
    );
}

#[test]
fn check_fails_with_the_file_the_key_and_what_was_expected() {
    let dir =
        config_dir("routers:\n  - component: routers/example.wasm\n    limits: {memory: lots}\n");
    let output = run(&["check", "--config", "routers.yaml"], dir.path(), "");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "error: routers.yaml: routers[0].limits.memory (router `example`): expected a size such as `64MiB` or `512KiB`, \
         or a number of bytes, found `lots` (line 3, column 22)"
    );
    assert!(output.stdout.is_empty());

    let output = run(&["route", "--config", "missing.yaml"], dir.path(), "");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .starts_with("error: missing.yaml: cannot read the configuration: ")
    );
}
