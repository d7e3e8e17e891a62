//! The YAML configuration loader, on arbitrary text: it must return a
//! configuration or an error, never panic; and what it accepts must hold
//! what the loader promises.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use presence_router_model::{FailurePolicy, Limits, RouterSetConfig};

fuzz_target!(|text: &str| {
    let config = match RouterSetConfig::from_yaml(text, Path::new("fuzz.yaml"), Path::new("/base"))
    {
        Ok(config) => config,
        Err(error) => {
            // What it quotes from the configuration can't reach a terminal raw.
            assert!(!error.to_string().chars().any(char::is_control));
            return;
        }
    };
    for (i, router) in config.routers.iter().enumerate() {
        assert!(!router.name.is_empty());
        assert!(!router.name.chars().any(char::is_control));
        assert!(
            config.routers[..i]
                .iter()
                .all(|other| other.name != router.name)
        );
        // Every value accepted is within its documented range.
        let limits = &router.limits;
        assert!((1..=Limits::MAX_FUEL).contains(&limits.fuel));
        assert!(limits.fuel_per_state <= Limits::MAX_FUEL_PER_STATE);
        assert!((Limits::MIN_MEMORY..=Limits::MAX_MEMORY).contains(&limits.memory));
        assert!((Limits::MIN_TIMEOUT..=Limits::MAX_TIMEOUT).contains(&limits.timeout));
        assert!((1..=Limits::MAX_ANSWER_ENTRIES).contains(&limits.max_answer_entries));
        assert!((1..=Limits::MAX_INSTANCES).contains(&limits.max_instances));
        assert!(limits.max_send_calls <= Limits::MAX_SEND_CALLS);
        assert!(limits.max_log_lines <= Limits::MAX_LOG_LINES);
        let policy = &router.failure_policy;
        assert!(!policy.backoff.is_zero());
        assert!(policy.max_backoff >= policy.backoff);
        assert!(policy.max_backoff <= FailurePolicy::LONGEST_BACKOFF);
        // So the runtime's clock arithmetic on them can't overflow.
        let now = std::time::Instant::now();
        assert!(now.checked_add(limits.timeout).is_some());
        assert!(now.checked_add(policy.backoff_for(u32::MAX)).is_some());
        // The router's config reaches it as a JSON object.
        let json: serde_json::Value =
            serde_json::from_str(&router.config_json).expect("valid JSON");
        assert!(json.is_object());
    }
});
