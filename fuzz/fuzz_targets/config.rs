//! The YAML configuration loader, on arbitrary text: it must return a
//! configuration or an error, never panic; and what it accepts must hold
//! what the loader promises.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use presence_router_model::RouterSetConfig;

fuzz_target!(|text: &str| {
    let Ok(config) = RouterSetConfig::from_yaml(text, Path::new("fuzz.yaml"), Path::new("/base"))
    else {
        return;
    };
    for (i, router) in config.routers.iter().enumerate() {
        assert!(!router.name.is_empty());
        assert!(config.routers[..i].iter().all(|other| other.name != router.name));
        assert!(router.limits.fuel > 0 && !router.limits.timeout.is_zero());
        assert!(router.limits.memory >= 64 * 1024);
        assert!(router.failure_policy.max_backoff >= router.failure_policy.backoff);
        // The router's config reaches it as a JSON object.
        let json: serde_json::Value = serde_json::from_str(&router.config_json).expect("valid JSON");
        assert!(json.is_object());
    }
});
