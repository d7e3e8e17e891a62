//! What is refused at load, with a message that names the file, the key and
//! the router: files that are not presence router components; a component
//! another user could replace (a component is native code once compiled: a
//! file another user can write or replace is their code in the homeserver,
//! within seconds of a hot reload, docs/synapse.md); a router that refuses
//! its configuration. The first router that fails stops the whole set.

use presence_router_tests::second_user::{set_mode, temp_dir_with_mode};
use presence_router_tests::{guests, load, write_file};

use crate::support::load_component;

async fn load_error(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = write_file(dir.path(), "router.wasm", bytes);
    let yaml = format!("routers: [{{name: bad, component: {}}}]", path.display());
    match load(&yaml).await {
        Ok(_) => panic!("{} bytes loaded as a router", bytes.len()),
        Err(e) => e
            .to_string()
            .replace(&path.display().to_string(), "router.wasm"),
    }
}

const PREFIX: &str = "routers.yaml: routers[0].component (router `bad`): router.wasm: ";

#[tokio::test]
async fn random_bytes_are_not_a_component() {
    let error = load_error(b"\x13\x37 definitely not wasm \xff\xfe").await;
    assert!(
        error.starts_with(&format!("{PREFIX}not a valid WebAssembly component: ")),
        "{error}"
    );
}

#[tokio::test]
async fn an_empty_file_is_not_a_component() {
    let error = load_error(b"").await;
    assert!(
        error.starts_with(&format!("{PREFIX}not a valid WebAssembly component: ")),
        "{error}"
    );
}

#[tokio::test]
async fn a_core_module_is_not_a_component() {
    // `(module)`: the smallest valid core module.
    let error = load_error(b"\0asm\x01\0\0\0").await;
    assert_eq!(
        error,
        format!(
            "{PREFIX}{}",
            "this is a core WebAssembly module, not a component: build the router for wasm32-wasip2, or wrap the module with `wasm-tools component new`"
        )
    );
}

#[tokio::test]
async fn a_truncated_component_is_refused() {
    let whole = std::fs::read(guests::EXAMPLE_ROUTER).expect("the example router was built");
    let error = load_error(&whole[..whole.len() / 2]).await;
    assert!(
        error.starts_with(&format!("{PREFIX}not a valid WebAssembly component: ")),
        "{error}"
    );
}

#[tokio::test]
async fn the_first_router_that_fails_stops_the_whole_set() {
    let error = match load(
        "routers: [{component: $EXAMPLE_ROUTER}, {component: $WRONG_TYPES}, {component: /nonexistent.wasm}]",
    )
    .await
    {
        Ok(_) => panic!("a set with a bad router loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.starts_with("routers.yaml: routers[1].component (router `wrong_types`)"),
        "{error}"
    );
}

#[tokio::test]
async fn bad_config_refuses_the_whole_set_at_load() {
    let cases = [
        (
            "err",
            "routers[0].config (router `hostile`): the router refused its configuration: hostile refusal: `mode` is err",
        ),
        (
            "panic",
            "routers[0] (router `hostile`): the router failed while starting (trap): `parse-config` trapped",
        ),
        (
            "spin",
            "routers[0] (router `hostile`): the router failed while starting (timeout): `parse-config` used up its 50ms time budget",
        ),
    ];
    for (mode, expected) in cases {
        let yaml = format!(
            "routers: [{{name: hostile, component: $HOSTILE_BAD_CONFIG, config: {{mode: {mode}}}, limits: {{fuel: 1000000000000, timeout: 50ms}}}}, {{component: $EXAMPLE_ROUTER}}]"
        );
        let error = match load(&yaml).await {
            Ok(_) => panic!("{mode}: loaded"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.starts_with(&format!("routers.yaml: {expected}")),
            "{mode}: {error}"
        );
    }
}

#[tokio::test]
async fn a_component_in_a_directory_others_can_write_is_refused() {
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
