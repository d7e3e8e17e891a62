//! The YAML configuration: which routers to load, in which order, with
//! which router config and limits.
//!
//! ```yaml
//! routers:
//!   - name: example                 # optional; default: the component file's stem
//!     component: routers/example.wasm   # relative to the config file
//!     config: { always_send_to_users: ["@alice:example.com"] }
//!     limits: { fuel: 5000000, fuel_per_state: 50000, memory: 64MiB, timeout: 100ms }
//!     failure_policy: { suspend_after: 5, backoff: 1s, max_backoff: 5m }
//! ```
//!
//! Every error names the file, the key path (`routers[1].limits.memory`) and
//! what was expected; unknown keys are errors, because a misspelt limit
//! silently falling back to its default is how a sandbox quietly weakens.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::limits::{FailurePolicy, Limits};

/// The routers to load, in the order Synapse would call them.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterSetConfig {
    /// Where the configuration came from, for error messages.
    pub source: PathBuf,
    pub routers: Vec<RouterConfig>,
}

/// One router of the configuration, with its defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterConfig {
    /// Names the router in logs and failure reports; unique in a set.
    pub name: String,
    /// The component file (resolved against the configuration's directory).
    pub component: PathBuf,
    /// The router's own `config:` mapping, as the JSON text `parse-config`
    /// receives.
    pub config_json: String,
    pub limits: Limits,
    pub failure_policy: FailurePolicy,
    /// Where this router was written, `routers[i]`, for error messages.
    pub key: String,
}

/// A configuration that can't be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The configuration file (or other source) at fault.
    pub file: PathBuf,
    /// The path of the bad key, such as `routers[1].limits.memory`, or `.`
    /// for the document itself.
    pub key: String,
    /// The router the key belongs to, where it can be told.
    pub router: Option<String>,
    /// What was wrong and what was expected.
    pub message: String,
    /// Line and column in the file, where the YAML parser knows them.
    pub location: Option<(usize, usize)>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if self.key != "." {
            write!(f, "{}", self.key)?;
            if let Some(router) = &self.router {
                write!(f, " (router `{router}`)")?;
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.message)?;
        if let Some((line, column)) = self.location {
            write!(f, " (line {line}, column {column})")?;
        }
        Ok(())
    }
}

impl RouterSetConfig {
    /// Reads and checks a configuration file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: ".".into(),
            router: None,
            message: format!("cannot read the configuration: {e}"),
            location: None,
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        Self::from_yaml(&text, path, base_dir)
    }

    /// Parses configuration text. `source` names it in errors; relative
    /// component paths are resolved against `base_dir`.
    pub fn from_yaml(text: &str, source: &Path, base_dir: &Path) -> Result<Self, ConfigError> {
        let document = serde_yaml::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(document).map_err(|e| {
            let key = e.path().to_string();
            // A second, lenient read, only to name the router at fault.
            let router = serde_yaml::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|document| router_named_by(&document, &key));
            ConfigError {
                file: source.to_owned(),
                message: yaml_message(e.inner(), &key),
                location: e.inner().location().map(|l| (l.line(), l.column())),
                key,
                router,
            }
        })?;
        Self::from_raw(raw, source, base_dir)
    }

    /// Checks a configuration that was already parsed into a JSON value (how
    /// an embedder such as the Synapse module receives it).
    pub fn from_json_value(
        value: serde_json::Value,
        source: &Path,
        base_dir: &Path,
    ) -> Result<Self, ConfigError> {
        let router_of = |key: &str| router_named_by(&value, key);
        let raw: RawConfig =
            serde_path_to_error::deserialize(value.clone()).map_err(|e| ConfigError {
                file: source.to_owned(),
                key: e.path().to_string(),
                router: router_of(&e.path().to_string()),
                message: e.inner().to_string(),
                location: None,
            })?;
        Self::from_raw(raw, source, base_dir)
    }

    fn from_raw(raw: RawConfig, source: &Path, base_dir: &Path) -> Result<Self, ConfigError> {
        let error = |key: String, router: Option<&str>, message: String| ConfigError {
            file: source.to_owned(),
            key,
            router: router.map(str::to_owned),
            message,
            location: None,
        };
        let mut routers: Vec<RouterConfig> = Vec::with_capacity(raw.routers.len());
        for (i, raw) in raw.routers.into_iter().enumerate() {
            let key = format!("routers[{i}]");
            let name = match raw.name {
                Some(name) => name,
                None => raw
                    .component
                    .file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            };
            check_router_name(&name).map_err(|why| error(format!("{key}.name"), None, why))?;
            if let Some(first) = routers.iter().find(|r| r.name == name) {
                return Err(error(
                    format!("{key}.name"),
                    None,
                    format!(
                        "the name `{name}` is already used by {}: give each router a unique `name`",
                        first.key
                    ),
                ));
            }
            let config_json = match raw.config {
                None | Some(serde_yaml::Value::Null) => "{}".to_owned(),
                Some(value @ serde_yaml::Value::Mapping(_)) => serde_json::to_string(&value)
                    .map_err(|e| {
                        error(
                            format!("{key}.config"),
                            Some(&name),
                            format!("cannot be passed to the router as JSON: {e}"),
                        )
                    })?,
                Some(other) => {
                    return Err(error(
                        format!("{key}.config"),
                        Some(&name),
                        format!("expected a mapping, found {}", yaml_kind(&other)),
                    ));
                }
            };
            let limits = raw
                .limits
                .unwrap_or_default()
                .into_limits(&format!("{key}.limits"))
                .map_err(|(key, message)| error(key, Some(&name), message))?;
            let failure_policy = raw
                .failure_policy
                .unwrap_or_default()
                .into_policy(&format!("{key}.failure_policy"))
                .map_err(|(key, message)| error(key, Some(&name), message))?;
            routers.push(RouterConfig {
                name,
                component: base_dir.join(&raw.component),
                config_json,
                limits,
                failure_policy,
                key,
            });
        }
        Ok(RouterSetConfig {
            source: source.to_owned(),
            routers,
        })
    }
}

/// The name of the router that `key` (`routers[1].limits.memory`) is in,
/// read leniently from the raw document: its `name`, or its component's
/// file stem.
fn router_named_by(document: &serde_json::Value, key: &str) -> Option<String> {
    let index: usize = key
        .strip_prefix("routers[")?
        .split(']')
        .next()?
        .parse()
        .ok()?;
    let router = document.get("routers")?.get(index)?;
    if let Some(name) = router.get("name").and_then(|name| name.as_str()) {
        return Some(name.to_owned());
    }
    let component = router.get("component")?.as_str()?;
    Some(
        Path::new(component)
            .file_stem()?
            .to_string_lossy()
            .into_owned(),
    )
}

/// Router names tag log lines and failure reports, so they are kept plain.
fn check_router_name(name: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
        return Err(format!(
            "`{name}` is not a router name: use 1 to 64 letters, digits, `-`, `_` or `.`"
        ));
    }
    Ok(())
}

/// serde_yaml's message without the location (reported separately) and
/// without its own copy of the key path (serde_path_to_error's is used).
fn yaml_message(error: &serde_yaml::Error, key: &str) -> String {
    let mut message = error.to_string();
    if let Some(location) = error.location() {
        let mark = format!(" at line {} column {}", location.line(), location.column());
        message = message.replacen(&mark, "", 1);
    }
    // serde_yaml names the innermost map it knows, which may stop short of
    // the key serde_path_to_error found (`routers[0].limits` for
    // `routers[0].limits.cpu`).
    match message.split_once(": ") {
        Some((path, rest)) if key.starts_with(path) => rest.to_owned(),
        _ => message,
    }
}

fn yaml_kind(value: &serde_yaml::Value) -> &'static str {
    match value {
        serde_yaml::Value::Null => "nothing",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    routers: Vec<RawRouter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouter {
    #[serde(default)]
    name: Option<String>,
    component: PathBuf,
    #[serde(default)]
    config: Option<serde_yaml::Value>,
    #[serde(default)]
    limits: Option<RawLimits>,
    #[serde(default)]
    failure_policy: Option<RawFailurePolicy>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFailurePolicy {
    suspend_after: Option<u32>,
    backoff: Option<HumanDuration>,
    max_backoff: Option<HumanDuration>,
}

impl RawFailurePolicy {
    fn into_policy(self, key: &str) -> Result<FailurePolicy, (String, String)> {
        let d = FailurePolicy::DEFAULT;
        let policy = FailurePolicy {
            suspend_after: self.suspend_after.unwrap_or(d.suspend_after),
            backoff: self.backoff.map_or(d.backoff, |b| b.0),
            max_backoff: self.max_backoff.map_or(d.max_backoff, |b| b.0),
        };
        if policy.backoff.is_zero() {
            return Err((format!("{key}.backoff"), "must be longer than 0".to_owned()));
        }
        if policy.max_backoff < policy.backoff {
            return Err((
                format!("{key}.max_backoff"),
                format!(
                    "must be at least `backoff` ({})",
                    humantime::format_duration(policy.backoff)
                ),
            ));
        }
        Ok(policy)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    fuel: Option<u64>,
    fuel_per_state: Option<u64>,
    memory: Option<ByteSize>,
    timeout: Option<HumanDuration>,
    max_answer_entries: Option<usize>,
    max_instances: Option<usize>,
    max_send_calls: Option<usize>,
    max_log_lines: Option<usize>,
}

impl RawLimits {
    /// Fills in defaults and checks ranges; an error is `(key, message)`.
    fn into_limits(self, key: &str) -> Result<Limits, (String, String)> {
        let d = Limits::DEFAULT;
        let positive = |name: &str, value: Option<u64>, default: u64| match value {
            Some(0) => Err((format!("{key}.{name}"), "must be greater than 0".to_owned())),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let count = |name: &str, value: Option<usize>, default: usize| {
            positive(name, value.map(|v| v as u64), default as u64).map(|v| v as usize)
        };
        let memory = positive("memory", self.memory.map(|m| m.0), d.memory)?;
        // The smallest guest has one 64 KiB page; less can only be a typo.
        if memory < 64 * 1024 {
            return Err((
                format!("{key}.memory"),
                format!("{memory} bytes is less than one 64KiB wasm page"),
            ));
        }
        let timeout = self.timeout.map_or(d.timeout, |t| t.0);
        if timeout.is_zero() {
            return Err((format!("{key}.timeout"), "must be longer than 0".to_owned()));
        }
        Ok(Limits {
            fuel: positive("fuel", self.fuel, d.fuel)?,
            // Zero fuel per state is a valid choice: a flat budget.
            fuel_per_state: self.fuel_per_state.unwrap_or(d.fuel_per_state),
            memory,
            timeout,
            max_answer_entries: count(
                "max_answer_entries",
                self.max_answer_entries,
                d.max_answer_entries,
            )?,
            max_instances: match count("max_instances", self.max_instances, d.max_instances)? {
                // Each instance reserves a pooling-allocator slot (address
                // space, and up to a few MiB kept resident once used).
                n if n > Limits::MAX_INSTANCES => {
                    return Err((
                        format!("{key}.max_instances"),
                        format!("{n} is more than the {} allowed", Limits::MAX_INSTANCES),
                    ));
                }
                n => n,
            },
            // Zero send calls or log lines: the router may not use them.
            max_send_calls: self.max_send_calls.unwrap_or(d.max_send_calls),
            max_log_lines: self.max_log_lines.unwrap_or(d.max_log_lines),
        })
    }
}

/// A size in bytes: an integer, or a string such as `64MiB`.
struct ByteSize(u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as `64MiB` or `512KiB`, or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(bytes))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
                bytesize::ByteSize::from_str(text.trim())
                    .map(|size| ByteSize(size.as_u64()))
                    .map_err(|_| {
                        E::custom(format!(
                            "expected a size such as `64MiB` or `512KiB`, or a number of bytes, found `{text}`"
                        ))
                    })
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A duration written for humans: `100ms`, `2s`, `1m 30s`.
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as `100ms` or `2s`")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(text.trim())
                    .map(HumanDuration)
                    .map_err(|e| {
                        E::custom(format!(
                            "expected a duration such as `100ms` or `2s`, found `{text}` ({e})"
                        ))
                    })
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_in_defaults_and_resolves_components_against_the_config_directory() {
        let config = RouterSetConfig::from_yaml(
            "routers:\n  - component: routers/example.wasm\n    limits: {memory: 16MiB, timeout: 2s}\n",
            Path::new("/etc/hs/routers.yaml"),
            Path::new("/etc/hs"),
        )
        .unwrap();
        let router = &config.routers[0];
        assert_eq!(router.name, "example");
        assert_eq!(router.failure_policy, FailurePolicy::DEFAULT);
        assert_eq!(router.component, Path::new("/etc/hs/routers/example.wasm"));
        assert_eq!(router.config_json, "{}");
        assert_eq!(router.key, "routers[0]");
        assert_eq!(
            router.limits,
            Limits {
                memory: 16 * 1024 * 1024,
                timeout: Duration::from_secs(2),
                ..Limits::DEFAULT
            }
        );
    }

    #[test]
    fn passes_the_router_config_on_as_json() {
        let config = RouterSetConfig::from_yaml(
            "routers: [{component: a.wasm, config: {always_send_to_users: ['@a:x'], n: 1}}]",
            Path::new("r.yaml"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            config.routers[0].config_json,
            r#"{"always_send_to_users":["@a:x"],"n":1}"#
        );
    }

    #[test]
    fn a_json_config_gets_the_same_checks_and_names_the_router() {
        let value = serde_json::json!({"routers": [
            {"component": "a.wasm"},
            {"name": "second", "component": "b.wasm", "limits": {"memory": "lots"}},
        ]});
        let error =
            RouterSetConfig::from_json_value(value, Path::new("homeserver.yaml"), Path::new("."))
                .unwrap_err();
        assert_eq!(
            error.to_string(),
            "homeserver.yaml: routers[1].limits.memory (router `second`): expected a size such as \
             `64MiB` or `512KiB`, or a number of bytes, found `lots`"
        );
    }
}
