//! Signed routers: a configuration that names `trusted_keys` and a router's
//! `signed_by` (or `require_signatures`) loads a component only when one of
//! those keys signed it, in the wasmsign2 format, at load and at every
//! reload, before the compiled-component cache is asked. Refusals name the
//! file, the router, the key expected and what was found.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use presence_router_runtime::{
    CacheSetting, LiveRouterSet, LoadError, LoadOptions, Presence, RouterSet, RouterSetConfig,
    SignatureRefusal, parse_secret_key, sign,
};
use presence_router_tests::{RecordingModuleApi, batch, guests, write_file};

/// A fresh Ed25519 key pair, written as the wasmsign2 tool writes keys:
/// `(secret key file, public key file)` in `dir`, named `name`.
fn key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let pair = wasmsign2::KeyPair::generate();
    let secret = write_file(dir, &format!("{name}.key"), pair.sk.to_bytes());
    let public = write_file(dir, &format!("{name}.pub"), pair.pk.to_bytes());
    (secret, public)
}

/// The example router signed with the secret key in `secret`.
fn signed_example(secret: &Path) -> Vec<u8> {
    let key = parse_secret_key(&std::fs::read(secret).expect("the key")).expect("a secret key");
    let component = std::fs::read(guests::EXAMPLE_ROUTER).expect("the example router was built");
    sign(&component, &key).expect("signs")
}

/// A configuration of one router, `signed`, with the component at
/// `component`, trusting `keys` (name, public key file) and requiring
/// `signed_by` (a YAML list), or nothing if it is empty.
fn config(component: &Path, keys: &[(&str, &Path)], signed_by: &str) -> RouterSetConfig {
    let mut yaml = String::from("trusted_keys:\n");
    for (name, file) in keys {
        yaml.push_str(&format!("  {name}: {}\n", file.display()));
    }
    if keys.is_empty() {
        yaml = String::new();
    }
    yaml.push_str(&format!(
        "routers:\n  - name: signed\n    component: {}\n    config: {{always_send_to_users: [\"@w:x\"]}}\n",
        component.display()
    ));
    if !signed_by.is_empty() {
        yaml.push_str(&format!("    signed_by: {signed_by}\n"));
    }
    RouterSetConfig::from_yaml(&yaml, Path::new("routers.yaml"), Path::new("."))
        .unwrap_or_else(|e| panic!("the configuration should parse: {e}\n{yaml}"))
}

/// A cache of the test's own: what one test compiles, another must not
/// find (the cache test below counts on it).
fn options(dir: &Path) -> LoadOptions {
    LoadOptions {
        cache: CacheSetting::Dir(dir.join("cache")),
        ..LoadOptions::default()
    }
}

async fn load(config: &RouterSetConfig, dir: &Path) -> Result<RouterSet, LoadError> {
    RouterSet::load_with(
        config,
        Arc::new(RecordingModuleApi::default()),
        &options(dir),
    )
    .await
}

/// The refusal of a load that must be refused for its signature, and the
/// whole message.
async fn refusal(config: &RouterSetConfig, dir: &Path) -> (SignatureRefusal, String) {
    match load(config, dir).await {
        Ok(_) => panic!("a component loaded without the signature it needs"),
        Err(LoadError::Signature { refusal, at, path }) => {
            assert_eq!(at.key, "routers[0].component");
            assert_eq!(at.router, "signed");
            assert_eq!(path, config.routers[0].component);
            let message = LoadError::Signature {
                at,
                path,
                refusal: refusal.clone(),
            }
            .to_string();
            (*refusal, message)
        }
        Err(other) => panic!("refused for something else than its signature: {other}"),
    }
}

fn routes_for_w(set: &RouterSet) {
    let routed = set.get_users_for_states_blocking(&batch(&[("@u:x", Presence::Online)]));
    assert!(routed.failures.is_empty(), "{:?}", routed.failures);
    assert_eq!(routed.answer.get("@w:x"), Some(&vec![0]));
}

#[tokio::test]
async fn a_component_signed_by_the_key_named_loads_and_routes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (secret, public) = key_pair(dir.path(), "ops");
    let component = write_file(dir.path(), "router.wasm", signed_example(&secret));
    let set = load(
        &config(&component, &[("ops", &public)], "[ops]"),
        dir.path(),
    )
    .await
    .unwrap_or_else(|e| panic!("a signed router should load: {e}"));
    routes_for_w(&set);
}

#[tokio::test]
async fn one_flipped_byte_anywhere_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (secret, public) = key_pair(dir.path(), "ops");
    let signed = signed_example(&secret);
    // The header, the signature section (its id, size, name, signature
    // bytes), the first byte after it, the middle, the last byte.
    let mut places = vec![0, 4, 7, 8, 9, 12, 40, 80, 120];
    let after_signature =
        signed.len() - std::fs::read(guests::EXAMPLE_ROUTER).expect("built").len() + 8;
    places.extend([after_signature, signed.len() / 2, signed.len() - 1]);
    for at in places {
        let mut flipped = signed.clone();
        flipped[at] ^= 0x01;
        let component = write_file(dir.path(), &format!("flipped-{at}.wasm"), &flipped);
        let (_, message) = refusal(
            &config(&component, &[("ops", &public)], "[ops]"),
            dir.path(),
        )
        .await;
        assert!(
            message.starts_with(&format!(
                "routers.yaml: routers[0].component (router `signed`): {}: ",
                component.display()
            )) && message.contains(&format!("`ops` ({})", public.display())),
            "byte {at}: {message}"
        );
    }
}

#[tokio::test]
async fn a_change_after_signing_is_told_from_another_key() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (secret, public) = key_pair(dir.path(), "ops");
    let mut changed = signed_example(&secret);
    let last = changed.len() - 1;
    changed[last] ^= 0x01;
    let component = write_file(dir.path(), "changed.wasm", &changed);
    let (refusal, message) = refusal(
        &config(&component, &[("ops", &public)], "[ops]"),
        dir.path(),
    )
    .await;
    assert_eq!(refusal.reason(), "changed", "{message}");
    assert!(
        message.ends_with(&format!(
            "was changed after it was signed: its contents do not match the hash its signature \
             covers (a signature by `ops` ({}) is required)",
            public.display()
        )),
        "{message}"
    );
}

#[tokio::test]
async fn another_trusted_key_is_refused_naming_both() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (_, ops) = key_pair(dir.path(), "ops");
    let (dev_secret, dev) = key_pair(dir.path(), "dev");
    let component = write_file(dir.path(), "router.wasm", signed_example(&dev_secret));
    let (refusal, message) = refusal(
        &config(&component, &[("ops", &ops), ("dev", &dev)], "[ops]"),
        dir.path(),
    )
    .await;
    assert_eq!(refusal.reason(), "other_key");
    assert!(
        message.ends_with(&format!(
            "is signed by `dev`, not by `ops` ({}) as required",
            ops.display()
        )),
        "{message}"
    );
    // Either key will do where both are named.
    load(
        &config(&component, &[("ops", &ops), ("dev", &dev)], "[ops, dev]"),
        dir.path(),
    )
    .await
    .unwrap_or_else(|e| panic!("signed by one of the keys named: {e}"));
}

#[tokio::test]
async fn a_key_nobody_trusts_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (_, ops) = key_pair(dir.path(), "ops");
    let (stranger, _) = key_pair(dir.path(), "stranger");
    let component = write_file(dir.path(), "router.wasm", signed_example(&stranger));
    let (refusal, message) =
        refusal(&config(&component, &[("ops", &ops)], "[ops]"), dir.path()).await;
    assert_eq!(refusal.reason(), "unknown_key");
    assert!(
        message.ends_with(&format!(
            "is signed by a key this configuration does not trust, not by `ops` ({}) as \
             required",
            ops.display()
        )),
        "{message}"
    );
}

#[tokio::test]
async fn unsigned_is_refused_where_a_signature_is_required_and_loads_where_not() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (_, ops) = key_pair(dir.path(), "ops");
    let component = PathBuf::from(guests::EXAMPLE_ROUTER);
    let (refusal, message) =
        refusal(&config(&component, &[("ops", &ops)], "[ops]"), dir.path()).await;
    assert_eq!(refusal.reason(), "unsigned");
    assert!(
        message.ends_with(&format!(
            "is not signed; a signature by `ops` ({}) is required",
            ops.display()
        )),
        "{message}"
    );
    // Trusting a key requires nothing by itself.
    let set = load(&config(&component, &[("ops", &ops)], ""), dir.path())
        .await
        .unwrap_or_else(|e| panic!("no signature is required: {e}"));
    routes_for_w(&set);
}

#[tokio::test]
async fn require_signatures_asks_every_router_for_one_by_any_trusted_key() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ops_secret, ops) = key_pair(dir.path(), "ops");
    let (_, dev) = key_pair(dir.path(), "dev");
    let signed = write_file(dir.path(), "signed.wasm", signed_example(&ops_secret));
    let yaml = |component: &Path| {
        format!(
            "trusted_keys: {{ops: {}, dev: {}}}\nrequire_signatures: true\nrouters: [{{name: \
             signed, component: {}}}]",
            ops.display(),
            dev.display(),
            component.display()
        )
    };
    let parse = |component: &Path| {
        RouterSetConfig::from_yaml(&yaml(component), Path::new("routers.yaml"), Path::new("."))
            .expect("parses")
    };
    load(&parse(&signed), dir.path())
        .await
        .unwrap_or_else(|e| panic!("signed by a trusted key: {e}"));
    let (refusal, message) = refusal(&parse(Path::new(guests::EXAMPLE_ROUTER)), dir.path()).await;
    assert_eq!(refusal.reason(), "unsigned");
    assert!(
        message.contains("a signature by one of `dev` ("),
        "{message}"
    );
}

#[tokio::test]
async fn the_cache_is_no_way_around_the_signature() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (_, ops) = key_pair(dir.path(), "ops");
    let component = write_file(
        dir.path(),
        "router.wasm",
        std::fs::read(guests::EXAMPLE_ROUTER).expect("built"),
    );
    // Loaded once without a requirement: its compiled artifact is cached.
    let first = load(&config(&component, &[("ops", &ops)], ""), dir.path())
        .await
        .unwrap_or_else(|e| panic!("no signature is required: {e}"));
    assert_eq!(
        first.routers().next().map(|r| r.compiled_from),
        Some(presence_router_runtime::CompileSource::Compiled)
    );
    let again = load(&config(&component, &[("ops", &ops)], ""), dir.path())
        .await
        .unwrap_or_else(|e| panic!("loads: {e}"));
    assert_eq!(
        again.routers().next().map(|r| r.compiled_from),
        Some(presence_router_runtime::CompileSource::Cache),
        "the artifact is in the cache"
    );
    // Required now: the cached artifact does not let it in.
    let (refusal, _) = refusal(&config(&component, &[("ops", &ops)], "[ops]"), dir.path()).await;
    assert_eq!(refusal.reason(), "unsigned");
}

#[tokio::test]
async fn a_reload_of_an_unsigned_replacement_keeps_the_signed_version_serving_and_counts_why() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (secret, public) = key_pair(dir.path(), "ops");
    let component = write_file(dir.path(), "router.wasm", signed_example(&secret));
    let config = config(&component, &[("ops", &public)], "[ops]");
    let live = LiveRouterSet::new(load(&config, dir.path()).await.expect("signed, loads"));
    // The signed file replaced by the same router unsigned.
    write_file(
        dir.path(),
        "router.wasm",
        std::fs::read(guests::EXAMPLE_ROUTER).expect("built"),
    );
    match live.reload(&config, &options(dir.path())).await {
        Err(LoadError::Signature { refusal, .. }) => assert_eq!(refusal.reason(), "unsigned"),
        Err(other) => panic!("refused for something else: {other}"),
        Ok(report) => panic!("the unsigned replacement was loaded: {report:?}"),
    }
    routes_for_w(&live.current());
    let stats = live.current().stats();
    let router = &stats[0];
    assert_eq!(router.failed_reloads, 1);
    assert_eq!(
        router.signature_refusals,
        [
            ("unsigned", 1),
            ("changed", 0),
            ("other_key", 0),
            ("unknown_key", 0),
            ("unreadable", 0)
        ]
    );
    assert_eq!(live.reload_counts(), (0, 1));
}

#[tokio::test]
async fn a_replaced_key_takes_out_the_routers_only_it_signed_at_the_next_reload() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (secret, public) = key_pair(dir.path(), "ops");
    let component = write_file(dir.path(), "router.wasm", signed_example(&secret));
    // The signed router, and an unsigned one beside it that needs nothing.
    let yaml = format!(
        "trusted_keys: {{ops: {}}}\nrouters:\n  - {{name: signed, component: {}, signed_by: \
         [ops], config: {{always_send_to_users: [\"@w:x\"]}}}}\n  - {{name: plain, component: \
         {}, config: {{always_send_to_users: [\"@p:x\"]}}}}\n",
        public.display(),
        component.display(),
        guests::EXAMPLE_ROUTER
    );
    let config = RouterSetConfig::from_yaml(&yaml, Path::new("routers.yaml"), Path::new("."))
        .expect("parses");
    let live = LiveRouterSet::new(load(&config, dir.path()).await.expect("signed, loads"));
    routes_for_w(&live.current());
    // The key revoked: its file now holds another key. Same component, same
    // configuration: the router would be kept as it is, but it is checked
    // again, and taken out.
    let (_, other) = key_pair(dir.path(), "other");
    std::fs::copy(&other, &public).expect("copied");
    let report = live
        .reload(&config, &options(dir.path()))
        .await
        .unwrap_or_else(|e| panic!("the reload goes ahead without the revoked router: {e}"));
    assert_eq!(report.kept, ["plain"]);
    assert_eq!(report.revoked.len(), 1, "{report:?}");
    assert_eq!(report.revoked[0].0, "signed");
    assert!(
        report.revoked[0].1.contains(&format!(
            "{}: is signed by a key this configuration does not trust, not by `ops` ({}) as \
             required",
            component.display(),
            public.display()
        )),
        "{report:?}"
    );
    let routed = live
        .current()
        .get_users_for_states_blocking(&batch(&[("@u:x", Presence::Online)]));
    assert_eq!(
        routed.answer.get("@w:x"),
        None,
        "the revoked router still routes"
    );
    assert_eq!(routed.answer.get("@p:x"), Some(&vec![0]));
    assert_eq!(
        live.current()
            .routers()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>(),
        ["plain"]
    );
}

#[tokio::test]
async fn openssh_keys_sign_and_verify() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let secret = dir.path().join("id_ed25519");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ops@example", "-f"])
        .arg(&secret)
        .status()
        .expect("ssh-keygen runs (Debian's openssh-client)");
    assert!(made.success());
    let public = dir.path().join("id_ed25519.pub");
    let component = write_file(dir.path(), "router.wasm", signed_example(&secret));
    let set = load(
        &config(&component, &[("ops", &public)], "[ops]"),
        dir.path(),
    )
    .await
    .unwrap_or_else(|e| panic!("signed with an OpenSSH key: {e}"));
    routes_for_w(&set);
}

#[tokio::test]
async fn a_key_file_that_is_not_a_key_or_not_there_is_named() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let junk = write_file(dir.path(), "junk.pub", "not a key\n");
    let component = PathBuf::from(guests::EXAMPLE_ROUTER);
    for (file, expected) in [
        (junk.clone(), "not an Ed25519 public key"),
        (dir.path().join("missing.pub"), "cannot read the public key"),
    ] {
        match load(&config(&component, &[("ops", &file)], "[ops]"), dir.path()).await {
            Err(error @ LoadError::TrustedKey { .. }) => {
                let message = error.to_string();
                assert!(
                    message.starts_with(&format!(
                        "routers.yaml: trusted_keys.ops: {}: {expected}",
                        file.display()
                    )),
                    "{message}"
                );
            }
            Err(other) => panic!("refused for something else: {other}"),
            Ok(_) => panic!("loaded with a bad key file"),
        }
    }
}

/// Both directions with the wasmsign2 crate's own signing and checking, as
/// its command-line tool calls them (`wasmsign2 sign` is
/// `SecretKey::sign` then `Module::serialize`; `wasmsign2 verify` is
/// `PublicKey::verify`).
#[test]
fn signatures_are_wasmsign2s_both_ways() {
    let pair = wasmsign2::KeyPair::generate();
    let component = std::fs::read(guests::EXAMPLE_ROUTER).expect("built");
    // Ours, checked by wasmsign2.
    let ours = sign(
        &component,
        &parse_secret_key(&pair.sk.to_bytes()).expect("a secret key"),
    )
    .expect("signs");
    pair.pk
        .verify(&mut std::io::Cursor::new(&ours), None)
        .expect("wasmsign2 verifies what we signed");
    // wasmsign2's, checked by ours.
    let module =
        wasmsign2::Module::deserialize(&mut std::io::Cursor::new(&component)).expect("parses");
    let mut theirs = Vec::new();
    pair.sk
        .sign(module, None)
        .expect("signs")
        .serialize(&mut theirs)
        .expect("serializes");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let public = write_file(dir.path(), "ops.pub", pair.pk.to_bytes());
    let keys = read_key(&public);
    assert_eq!(
        keys.check(&["ops".to_owned()], &theirs),
        Ok("ops".to_owned())
    );
}

fn read_key(public: &Path) -> presence_router_runtime::TrustedKeys {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(presence_router_runtime::TrustedKeys::read(&[
            presence_router_runtime::TrustedKey {
                name: "ops".to_owned(),
                file: public.to_owned(),
                key: "trusted_keys.ops".to_owned(),
            },
        ]))
        .expect("reads")
}

#[tokio::test]
async fn a_canary_is_signed_as_its_router_and_a_promoted_one_is_revoked_with_its_key() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (secret, public) = key_pair(dir.path(), "ops");
    let component = write_file(dir.path(), "router.wasm", signed_example(&secret));
    let with_canary = |canary: &str| {
        let yaml = format!(
            "trusted_keys: {{ops: {}}}\nrouters:\n  - {{name: signed, component: {}, signed_by: \
             ops, config: {{always_send_to_users: [\"@w:x\"]}}, canary: {{{canary}}}}}\n",
            public.display(),
            component.display(),
        );
        RouterSetConfig::from_yaml(&yaml, Path::new("routers.yaml"), Path::new("."))
            .expect("parses")
    };
    // An unsigned canary of a router that must be signed does not load.
    let unsigned = with_canary(&format!("component: {}", guests::EXAMPLE_ROUTER));
    match load(&unsigned, dir.path()).await {
        Err(LoadError::Signature { at, .. }) => assert_eq!(at.key, "routers[0].canary.component"),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("an unsigned canary loaded"),
    }
    // A signed one, promoted by the operator, serves...
    let config = with_canary("config: {always_send_to_users: [\"@c:x\"]}, decision: promote");
    let options = LoadOptions {
        shadow: presence_router_runtime::ShadowMode::Inline,
        ..options(dir.path())
    };
    let live = LiveRouterSet::new(
        RouterSet::load_with(&config, Arc::new(RecordingModuleApi::default()), &options)
            .await
            .expect("loads"),
    );
    assert_eq!(live.apply_canary_decisions(&options).await.len(), 1);
    let states = batch(&[("@u:x", Presence::Online)]);
    let routed = live.current().get_users_for_states_blocking(&states);
    assert_eq!(routed.answer.get("@c:x"), Some(&vec![0]), "{routed:?}");
    // ...until its key is revoked: the next reload takes it out, as any
    // router only that key signed.
    let (_, other) = key_pair(dir.path(), "other");
    std::fs::copy(&other, &public).expect("copied");
    let report = live
        .reload(&config, &options)
        .await
        .unwrap_or_else(|e| panic!("the reload goes ahead without the revoked router: {e}"));
    assert_eq!(report.revoked.len(), 1, "{report:?}");
    assert_eq!(report.revoked[0].0, "signed");
    assert!(live.current().routers().next().is_none());
}
