//! Files that are not presence router components are refused at load with a
//! message that names the file, the key and the router.

use presence_router_tests::{guests, load, write_file};

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
