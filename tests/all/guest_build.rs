//! presence-router-guest-build's check of post-return functions, on the
//! core modules the C++ example router is linked into (kept beside the
//! components): wit-bindgen-cpp's bindings as generated, whose post-returns
//! are misnamed (the leaky build's `leaky.wasm`), and the fixed ones
//! (examples/routers/cpp/build.sh's `module.wasm`).

use std::path::{Path, PathBuf};

use presence_router_guest_build::Error;
use presence_router_guest_build::componentize::{PostReturns, componentize};
use presence_router_tests::{Language, example_router};

fn core_module(name: &str) -> Vec<u8> {
    let path: PathBuf = match name {
        "leaky.wasm" => Path::new(example_router!(Language::CppLeaky)).with_file_name(name),
        _ => Path::new(example_router!(Language::Cpp))
            .with_file_name("example_router.d")
            .join(name),
    };
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_module_with_misnamed_post_returns_is_refused_naming_them() {
    let module = core_module("leaky.wasm");
    let missing = match componentize(&module, None, PostReturns::Require) {
        Err(Error::MissingPostReturns(missing)) => missing,
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a leaking module was made a component"),
    };
    let found: Vec<_> = missing
        .iter()
        .map(|m| {
            (
                m.export.as_str(),
                m.expected.as_str(),
                m.misnamed.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "parse-config",
                "cabi_post_parse-config",
                Some("cabi_post_parse_config")
            ),
            (
                "get-users-for-states",
                "cabi_post_get-users-for-states",
                Some("cabi_post_get_users_for_states")
            ),
            (
                "get-interested-users",
                "cabi_post_get-interested-users",
                Some("cabi_post_get_interested_users")
            ),
        ]
    );
    let message = Error::MissingPostReturns(missing).to_string();
    assert!(message.contains("leak memory on every call"), "{message}");
}

#[test]
fn allowed_it_still_builds_and_says_what_is_missing() {
    let built = componentize(&core_module("leaky.wasm"), None, PostReturns::Allow)
        .expect("a component, on request");
    assert_eq!(built.missing_post_returns.len(), 3);
    assert!(wasmparser::Parser::is_component(&built.component));
}

#[test]
fn the_fixed_module_has_every_post_return() {
    let built = componentize(&core_module("module.wasm"), None, PostReturns::Require)
        .expect("the fixed module is accepted");
    assert!(built.missing_post_returns.is_empty());
    assert!(wasmparser::Parser::is_component(&built.component));
}

#[test]
fn a_command_module_is_refused() {
    // The smallest module that exports `_start`.
    let module = [
        0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, // magic, version
        1, 4, 1, 0x60, 0, 0, // type section: () -> ()
        3, 2, 1, 0, // function section: one function of type 0
        7, 10, 1, 6, b'_', b's', b't', b'a', b'r', b't', 0, 0, // export "_start"
        10, 4, 1, 2, 0, 0x0b, // code: an empty body
    ];
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    match componentize(&module, Some((&wit, None)), PostReturns::Require) {
        Err(Error::CommandModule) => {}
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a command module was made a component"),
    }
}
