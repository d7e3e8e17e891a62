//! Where the pooling allocator's address space can't be reserved (a
//! `ulimit -v`, as some operators set for their homeserver), instances are
//! allocated on demand, and that fallback must reserve only what a memory
//! uses: it used to reserve 4 GiB per memory, so even the example router
//! could not be instantiated.

use std::process::Command;

use presence_router_tests::{guests, write_file};

/// 1 GiB of address space, in the KiB `ulimit -v` takes: far below the pool
/// (tens of GiB of slots), well above what the process needs.
const ADDRESS_SPACE_KIB: u64 = 1 << 20;

#[test]
fn routers_load_and_route_under_an_address_space_limit() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    write_file(
        dir.path(),
        "routers.yaml",
        format!(
            "routers:\n  - name: example\n    component: {}\n    config: {{always_send_to_users: [\"@w:x\"]}}\n",
            guests::EXAMPLE_ROUTER
        ),
    );
    write_file(
        dir.path(),
        "batch.jsonl",
        r#"{"get_users_for_states": [{"user_id": "@a:x", "state": "online"}]}"#.to_owned() + "\n",
    );
    let script = format!(
        "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" route --no-cache --config routers.yaml < batch.jsonl"
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_presence-router"))
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stderr.contains("allocating instances on demand"),
        "the pool should not fit in {ADDRESS_SPACE_KIB} KiB: {stderr}"
    );
    let answer: serde_json::Value =
        serde_json::from_str(stdout.lines().next().unwrap_or("")).expect("a JSON answer");
    assert_eq!(
        answer["users_for_states"]["@w:x"][0]["user_id"], "@a:x",
        "{stdout}"
    );
}
