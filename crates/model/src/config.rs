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
//!     signed_by: [ops]              # optional: a signature by one of these keys (or one key name) is required
//! trusted_keys:                     # optional: name -> public key file (OpenSSH or wasmsign2's)
//!   ops: keys/ops.pub
//! require_signatures: true          # optional: every router needs a signature by a trusted key
//! ```
//!
//! Every error names the file, the key path (`routers[1].limits.memory`) and
//! what was expected; unknown keys are errors, because a misspelt limit
//! silently falling back to its default is how a sandbox quietly weakens.
//! Every number and duration has a range (see [`Limits`] and
//! [`FailurePolicy`]), so that whatever is accepted is safe to use.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::canary::{CanaryConfig, CanaryCriteria, CanaryDecision, DivergentRecord};
use crate::limits::{FailurePolicy, Limits, format_bytes};
use crate::text::escape_control;

/// The routers to load, in the order Synapse would call them.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterSetConfig {
    /// Where the configuration came from, for error messages.
    pub source: PathBuf,
    pub routers: Vec<RouterConfig>,
    /// The public keys a router's signature may be checked against, by
    /// name, in the order of their names.
    pub trusted_keys: Vec<TrustedKey>,
}

/// A public key the configuration trusts to sign routers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    /// The name routers' `signed_by` lists use.
    pub name: String,
    /// The key file (resolved against the configuration's directory): an
    /// OpenSSH `ssh-ed25519` public key, or one in the wasmsign2 tool's
    /// formats.
    pub file: PathBuf,
    /// Where it was written, `trusted_keys.<name>`, for error messages.
    pub key: String,
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
    /// The names of the trusted keys one of which must have signed the
    /// component (`signed_by`, or every trusted key under
    /// `require_signatures`); `None` where no signature is required.
    pub signed_by: Option<Vec<String>>,
    /// A new version to try in shadow before it serves.
    pub canary: Option<Box<CanaryConfig>>,
    /// Where this router was written, `routers[i]`, for error messages.
    pub key: String,
}

/// A configuration that can't be used, with where and why.
///
/// The key path, router name and message can quote the configuration (an
/// unknown key, a bad name, a value), which whoever wrote it controls, and
/// they end up in terminals and logs: so they hold control characters
/// escaped ([`escape_control`]), and so does the file name when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The configuration file (or other source) at fault, as given.
    pub file: PathBuf,
    /// The path of the bad key, such as `routers[1].limits.memory`, or `.`
    /// for the document itself; escaped.
    pub key: String,
    /// The router the key belongs to, where it can be told; escaped.
    pub router: Option<String>,
    /// What was wrong and what was expected; escaped.
    pub message: String,
    /// Line and column in the file, where the YAML parser knows them.
    pub location: Option<(usize, usize)>,
}

impl ConfigError {
    /// An error with its texts escaped, safe to show as they are.
    fn new(
        file: &Path,
        key: &str,
        router: Option<&str>,
        message: &str,
        location: Option<(usize, usize)>,
    ) -> Self {
        ConfigError {
            file: file.to_owned(),
            key: escape_control(key),
            router: router.map(escape_control),
            message: escape_control(message),
            location,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the file is left to escape: the other fields were escaped
        // when the error was made.
        write!(f, "{}: ", escape_control(&self.file.display().to_string()))?;
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
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                path,
                ".",
                None,
                &format!("cannot read the configuration: {e}"),
                None,
            )
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
            ConfigError::new(
                source,
                &key,
                router.as_deref(),
                &yaml_message(e.inner(), &key),
                e.inner().location().map(|l| (l.line(), l.column())),
            )
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
        let raw: RawConfig = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::new(
                source,
                &key,
                router_of(&key).as_deref(),
                &e.inner().to_string(),
                None,
            )
        })?;
        Self::from_raw(raw, source, base_dir)
    }

    /// A canary whose live version is not a component (a Python presence
    /// router the Synapse module runs itself), with the trusted keys it may
    /// be checked against. `document` is `{"canary": {...}, "signed_by":
    /// ..., "trusted_keys": {...}, "require_signatures": ...}`: router
    /// `name`'s `canary:` mapping (written at `ROUTER_KEY.canary`), its
    /// `signed_by`, and the configuration's keys, as in a configuration.
    /// The canary's `component` is required; its `config` and `limits`
    /// default to `{}` and the defaults. An error names the key.
    pub fn external_canary(
        document: serde_json::Value,
        name: &str,
        router_key: &str,
        source: &Path,
        base_dir: &Path,
    ) -> Result<(CanaryConfig, Vec<TrustedKey>), ConfigError> {
        let error =
            |at: String, message: String| ConfigError::new(source, &at, Some(name), &message, None);
        check_router_name(name).map_err(|why| error(format!("{router_key}.name"), why))?;
        let raw: RawExternal = serde_path_to_error::deserialize(document).map_err(|e| {
            let path = e.path().to_string();
            let at = match path.as_str() {
                "." => router_key.to_owned(),
                _ if path.starts_with("trusted_keys") || path.starts_with("require_signatures") => {
                    path
                }
                _ => format!("{router_key}.{path}"),
            };
            error(at, e.inner().to_string())
        })?;
        let trusted_keys =
            trusted_keys(raw.trusted_keys, base_dir).map_err(|(at, message)| error(at, message))?;
        let require_signatures = raw.require_signatures.unwrap_or(false);
        let signed_by = signed_by(
            raw.signed_by.map(KeyNames::into_vec),
            &trusted_keys,
            require_signatures,
            router_key,
        )
        .map_err(|(at, message)| error(at, message))?;
        let key = format!("{router_key}.canary");
        if raw.canary.component.is_none() {
            return Err(error(
                format!("{key}.component"),
                "the component that is to replace the live version is required".to_owned(),
            ));
        }
        // The live version's stand-in: what the canary's defaults are.
        let live = RouterConfig {
            name: name.to_owned(),
            component: PathBuf::new(),
            config_json: "{}".to_owned(),
            limits: Limits::DEFAULT,
            failure_policy: FailurePolicy::DEFAULT,
            signed_by,
            canary: None,
            key: router_key.to_owned(),
        };
        let canary = raw
            .canary
            .into_canary(&live, base_dir)
            .map_err(|(at, message)| error(at, message))?;
        Ok((canary, trusted_keys))
    }

    fn from_raw(raw: RawConfig, source: &Path, base_dir: &Path) -> Result<Self, ConfigError> {
        let error = |key: String, router: Option<&str>, message: String| {
            ConfigError::new(source, &key, router, &message, None)
        };
        let trusted_keys = trusted_keys(raw.trusted_keys, base_dir)
            .map_err(|(key, message)| error(key, None, message))?;
        let require_signatures = raw.require_signatures.unwrap_or(false);
        if require_signatures && trusted_keys.is_empty() {
            return Err(error(
                "require_signatures".to_owned(),
                None,
                "needs `trusted_keys`: the public keys a router may be signed by".to_owned(),
            ));
        }
        let mut routers: Vec<RouterConfig> = Vec::with_capacity(raw.routers.len());
        for (i, raw) in raw.routers.into_iter().enumerate() {
            let key = format!("routers[{i}]");
            let named = raw.name.is_some();
            let name = match raw.name {
                Some(name) => name,
                None => raw
                    .component
                    .file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            };
            check_router_name(&name).map_err(|why| {
                let why = if named {
                    why
                } else {
                    format!("{why} (the name comes from the component's file name: give the router a `name`)")
                };
                error(format!("{key}.name"), None, why)
            })?;
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
            let config_json = router_config_json(raw.config, &format!("{key}.config"))
                .map_err(|(key, message)| error(key, Some(&name), message))?
                .unwrap_or_else(|| "{}".to_owned());
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
            let signed_by = signed_by(
                raw.signed_by.map(KeyNames::into_vec),
                &trusted_keys,
                require_signatures,
                &key,
            )
            .map_err(|(key, message)| error(key, Some(&name), message))?;
            let mut router = RouterConfig {
                name,
                component: base_dir.join(&raw.component),
                config_json,
                limits,
                failure_policy,
                signed_by,
                canary: None,
                key,
            };
            if let Some(canary) = raw.canary {
                router.canary =
                    Some(Box::new(canary.into_canary(&router, base_dir).map_err(
                        |(key, message)| error(key, Some(&router.name), message),
                    )?));
            }
            routers.push(router);
        }
        check_canaries(&routers)
            .map_err(|(key, router, message)| error(key, Some(router), message))?;
        Ok(RouterSetConfig {
            source: source.to_owned(),
            routers,
            trusted_keys,
        })
    }
}

/// What canaries may not share: `NAME.canary` names the figures of router
/// `NAME`'s canary, so no router may be called that; and two canaries
/// can't record to one file. An error is `(key, router, message)`.
fn check_canaries(routers: &[RouterConfig]) -> Result<(), (String, &str, String)> {
    let mut recordings: Vec<(&Path, &str)> = Vec::new();
    for router in routers {
        let Some(canary) = router.canary.as_deref() else {
            continue;
        };
        let reserved = format!("{}.canary", router.name);
        if let Some(clash) = routers.iter().find(|r| r.name == reserved) {
            return Err((
                format!("{}.name", clash.key),
                &clash.name,
                format!(
                    "`{reserved}` names the figures of router `{}`'s canary: give this router \
                     another name",
                    router.name
                ),
            ));
        }
        if let Some(record) = &canary.record_divergent {
            if let Some((_, other)) = recordings.iter().find(|(path, _)| *path == record.path) {
                return Err((
                    format!("{}.record_divergent", canary.router.key),
                    &router.name,
                    format!(
                        "{} is already where router `{other}`'s canary records: give each \
                         canary a file of its own",
                        escape_control(&record.path.display().to_string())
                    ),
                ));
            }
            recordings.push((&record.path, &router.name));
        }
    }
    Ok(())
}

/// The `trusted_keys` mapping, checked: plain names, key files resolved
/// against `base_dir`. An error is `(key, message)`.
fn trusted_keys(
    raw: Option<std::collections::BTreeMap<String, PathBuf>>,
    base_dir: &Path,
) -> Result<Vec<TrustedKey>, (String, String)> {
    raw.unwrap_or_default()
        .into_iter()
        .map(|(name, file)| {
            let key = format!("trusted_keys.{name}");
            check_plain_name(&name, "key").map_err(|why| (key.clone(), why))?;
            if file.as_os_str().is_empty() {
                return Err((key, "expected the path of a public key file".to_owned()));
            }
            Ok(TrustedKey {
                name,
                file: base_dir.join(file),
                key,
            })
        })
        .collect()
}

/// A router's `signed_by`, checked against the trusted keys: each name one
/// of them, at least one name. Without one, every trusted key under
/// `require_signatures`, else no signature required. An error is `(key,
/// message)`.
fn signed_by(
    raw: Option<Vec<String>>,
    trusted: &[TrustedKey],
    required: bool,
    router_key: &str,
) -> Result<Option<Vec<String>>, (String, String)> {
    let Some(names) = raw else {
        return Ok(required.then(|| trusted.iter().map(|k| k.name.clone()).collect()));
    };
    let key = format!("{router_key}.signed_by");
    if names.is_empty() {
        return Err((
            key,
            "name at least one key of `trusted_keys` (or leave `signed_by` out)".to_owned(),
        ));
    }
    for (j, name) in names.iter().enumerate() {
        if !trusted.iter().any(|k| &k.name == name) {
            let known = if trusted.is_empty() {
                "there are no `trusted_keys`".to_owned()
            } else {
                let names: Vec<_> = trusted.iter().map(|k| format!("`{}`", k.name)).collect();
                format!("the trusted keys are {}", names.join(", "))
            };
            return Err((
                format!("{key}[{j}]"),
                format!("`{name}` is not a key of `trusted_keys`: {known}"),
            ));
        }
    }
    Ok(Some(names))
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

/// Router names tag log lines and failure reports, so they are kept plain:
/// no control character (a forged log line, a terminal escape), no space,
/// nothing a log reader could misparse.
fn check_router_name(name: &str) -> Result<(), String> {
    check_plain_name(name, "router")
}

/// A name that is `kind`'s: 1 to 64 letters, digits, `-`, `_` or `.`.
fn check_plain_name(name: &str, kind: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
        return Err(format!(
            "`{name}` is not a {kind} name: use 1 to 64 letters, digits, `-`, `_` or `.`"
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
    #[serde(default)]
    trusted_keys: Option<std::collections::BTreeMap<String, PathBuf>>,
    #[serde(default)]
    require_signatures: Option<bool>,
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
    #[serde(default)]
    signed_by: Option<KeyNames>,
    #[serde(default)]
    canary: Option<RawCanary>,
}

/// What [`RouterSetConfig::external_canary`] reads.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExternal {
    canary: RawCanary,
    #[serde(default)]
    signed_by: Option<KeyNames>,
    #[serde(default)]
    trusted_keys: Option<std::collections::BTreeMap<String, PathBuf>>,
    #[serde(default)]
    require_signatures: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCanary {
    #[serde(default)]
    component: Option<PathBuf>,
    #[serde(default)]
    config: Option<serde_yaml::Value>,
    #[serde(default)]
    limits: Option<RawLimits>,
    #[serde(default)]
    sample: Option<f64>,
    #[serde(default)]
    promote_after: Option<u64>,
    #[serde(default)]
    max_divergent: Option<u64>,
    #[serde(default)]
    max_failures: Option<u64>,
    #[serde(default)]
    max_fuel_ratio: Option<f64>,
    #[serde(default)]
    record_divergent: Option<RawDivergentRecord>,
    #[serde(default)]
    decision: Option<RawDecision>,
}

/// `record_divergent`: a path, or `{path, max_bytes, keep}`.
enum RawDivergentRecord {
    Path(PathBuf),
    Settings(RawDivergentSettings),
}

impl<'de> Deserialize<'de> for RawDivergentRecord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RecordVisitor;
        impl<'de> Visitor<'de> for RecordVisitor {
            type Value = RawDivergentRecord;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a file's path, or a mapping with `path`, `max_bytes` and `keep`")
            }
            fn visit_str<E: de::Error>(self, path: &str) -> Result<RawDivergentRecord, E> {
                Ok(RawDivergentRecord::Path(PathBuf::from(path)))
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawDivergentRecord, A::Error> {
                Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawDivergentRecord::Settings)
            }
        }
        deserializer.deserialize_any(RecordVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDivergentSettings {
    path: PathBuf,
    #[serde(default)]
    max_bytes: Option<ByteSize>,
    #[serde(default)]
    keep: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawDecision {
    Promote,
    Reject,
}

/// The most rotated files of divergent requests.
const MAX_DIVERGENT_KEEP: u32 = 100;

impl RawCanary {
    /// The canary of `live`, its defaults taken from `live`; an error is
    /// `(key, message)`.
    fn into_canary(
        self,
        live: &RouterConfig,
        base_dir: &Path,
    ) -> Result<CanaryConfig, (String, String)> {
        let key = format!("{}.canary", live.key);
        let component = match self.component {
            Some(component) if component.as_os_str().is_empty() => {
                return Err((
                    format!("{key}.component"),
                    "expected the path of a component file".to_owned(),
                ));
            }
            Some(component) => base_dir.join(component),
            None => live.component.clone(),
        };
        let config_json = router_config_json(self.config, &format!("{key}.config"))?
            .unwrap_or_else(|| live.config_json.clone());
        let limits = match self.limits {
            Some(limits) => limits.into_limits(&format!("{key}.limits"))?,
            None => live.limits.clone(),
        };
        if component == live.component && config_json == live.config_json && limits == live.limits {
            return Err((
                key,
                "is the live version itself: give it a `component`, `config` or `limits` of \
                 its own"
                    .to_owned(),
            ));
        }
        let sample = self.sample.unwrap_or(1.0);
        // Written so that NaN fails too.
        if !(sample > 0.0 && sample <= 1.0) {
            return Err((
                format!("{key}.sample"),
                format!("expected a share of calls above 0 and at most 1, found {sample}"),
            ));
        }
        let promote_after = self
            .promote_after
            .unwrap_or(CanaryCriteria::DEFAULT_PROMOTE_AFTER);
        if promote_after == 0 {
            return Err((
                format!("{key}.promote_after"),
                "must be at least 1: a canary is promoted on agreeing answers".to_owned(),
            ));
        }
        if let Some(ratio) = self.max_fuel_ratio
            && !(ratio.is_finite() && ratio > 0.0)
        {
            return Err((
                format!("{key}.max_fuel_ratio"),
                format!("expected a ratio above 0, found {ratio}"),
            ));
        }
        let record_divergent = match self.record_divergent {
            None => None,
            Some(raw) => Some(raw.into_record(base_dir, &format!("{key}.record_divergent"))?),
        };
        Ok(CanaryConfig {
            router: RouterConfig {
                name: live.name.clone(),
                component,
                config_json,
                limits,
                failure_policy: live.failure_policy.clone(),
                signed_by: live.signed_by.clone(),
                canary: None,
                key,
            },
            sample,
            criteria: CanaryCriteria {
                promote_after,
                max_divergent: self.max_divergent.unwrap_or(0),
                max_failures: self.max_failures.unwrap_or(0),
                max_fuel_ratio: self.max_fuel_ratio,
            },
            record_divergent,
            decision: self.decision.map(|decision| match decision {
                RawDecision::Promote => CanaryDecision::Promoted,
                RawDecision::Reject => CanaryDecision::Rejected,
            }),
        })
    }
}

impl RawDivergentRecord {
    fn into_record(self, base_dir: &Path, key: &str) -> Result<DivergentRecord, (String, String)> {
        let (path, max_bytes, keep, path_key) = match self {
            RawDivergentRecord::Path(path) => (path, None, None, key.to_owned()),
            RawDivergentRecord::Settings(settings) => (
                settings.path,
                settings.max_bytes.map(|b| b.0),
                settings.keep,
                format!("{key}.path"),
            ),
        };
        if path.as_os_str().is_empty() || path.file_name().is_none() {
            return Err((path_key, "expected the path of a file".to_owned()));
        }
        let max_bytes = max_bytes.unwrap_or(DivergentRecord::DEFAULT_MAX_BYTES);
        check_number(max_bytes, 1, 1 << 40, format_bytes)
            .map_err(|why| (format!("{key}.max_bytes"), why))?;
        let keep = keep.unwrap_or(DivergentRecord::DEFAULT_KEEP);
        check_number(u64::from(keep), 0, u64::from(MAX_DIVERGENT_KEEP), |n| {
            n.to_string()
        })
        .map_err(|why| (format!("{key}.keep"), why))?;
        Ok(DivergentRecord {
            path: base_dir.join(path),
            max_bytes,
            keep,
        })
    }
}

/// A router's `config:` as the JSON text `parse-config` receives; `None`
/// when it is not given. An error is `(key, message)`.
fn router_config_json(
    raw: Option<serde_yaml::Value>,
    key: &str,
) -> Result<Option<String>, (String, String)> {
    match raw {
        None | Some(serde_yaml::Value::Null) => Ok(None),
        Some(value @ serde_yaml::Value::Mapping(_)) => {
            serde_json::to_string(&value).map(Some).map_err(|e| {
                (
                    key.to_owned(),
                    format!("cannot be passed to the router as JSON: {e}"),
                )
            })
        }
        Some(other) => Err((
            key.to_owned(),
            format!("expected a mapping, found {}", yaml_kind(&other)),
        )),
    }
}

/// `signed_by`: one key name, or a list of them.
enum KeyNames {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for KeyNames {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyNamesVisitor;
        impl<'de> Visitor<'de> for KeyNamesVisitor {
            type Value = KeyNames;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key name or a list of key names")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<KeyNames, E> {
                Ok(KeyNames::One(name.to_owned()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<KeyNames, A::Error> {
                Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(KeyNames::Many)
            }
        }
        deserializer.deserialize_any(KeyNamesVisitor)
    }
}

impl KeyNames {
    fn into_vec(self) -> Vec<String> {
        match self {
            KeyNames::One(name) => vec![name],
            KeyNames::Many(names) => names,
        }
    }
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
        let longest = FailurePolicy::LONGEST_BACKOFF;
        let backoff = self.backoff.map_or(d.backoff, |b| b.0);
        let max_backoff = self.max_backoff.map_or(d.max_backoff, |b| b.0);
        check_duration(backoff, Duration::ZERO, longest)
            .map_err(|why| (format!("{key}.backoff"), why))?;
        check_duration(max_backoff, Duration::ZERO, longest)
            .map_err(|why| (format!("{key}.max_backoff"), why))?;
        let policy = FailurePolicy {
            // Any count is safe: the count of failures saturates.
            suspend_after: self.suspend_after.unwrap_or(d.suspend_after),
            backoff,
            max_backoff,
        };
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
    answer_entries_per_state: Option<usize>,
    max_instances: Option<usize>,
    max_send_calls: Option<usize>,
    max_send_users: Option<usize>,
    send_users_per_second: Option<u32>,
    max_log_lines: Option<usize>,
    log_bytes_per_second: Option<ByteSize>,
}

impl RawLimits {
    /// Fills in defaults and checks ranges (see [`Limits`] for each and
    /// why); an error is `(key, message)`.
    fn into_limits(self, key: &str) -> Result<Limits, (String, String)> {
        let d = Limits::DEFAULT;
        let at = |name: &'static str| move |why: String| (format!("{key}.{name}"), why);
        let plain = |n: u64| n.to_string();
        let count = |value: Option<usize>, default: usize, min: usize, max: usize| {
            let widen = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
            check_number(
                value.map(widen).unwrap_or(widen(default)),
                widen(min),
                widen(max),
                plain,
            )
            // In range, so no wider than `max`, a `usize`.
            .map(|n| usize::try_from(n).unwrap_or(max))
        };
        let memory = self.memory.map_or(d.memory, |m| m.0);
        if memory != 0 && memory < Limits::MIN_MEMORY {
            return Err(at("memory")(format!(
                "{memory} bytes is less than one {} wasm page",
                format_bytes(Limits::MIN_MEMORY)
            )));
        }
        Ok(Limits {
            fuel: check_number(self.fuel.unwrap_or(d.fuel), 1, Limits::MAX_FUEL, plain)
                .map_err(at("fuel"))?,
            fuel_per_state: check_number(
                self.fuel_per_state.unwrap_or(d.fuel_per_state),
                0,
                Limits::MAX_FUEL_PER_STATE,
                plain,
            )
            .map_err(at("fuel_per_state"))?,
            memory: check_number(memory, Limits::MIN_MEMORY, Limits::MAX_MEMORY, format_bytes)
                .map_err(at("memory"))?,
            timeout: check_duration(
                self.timeout.map_or(d.timeout, |t| t.0),
                Limits::MIN_TIMEOUT,
                Limits::MAX_TIMEOUT,
            )
            .map_err(at("timeout"))?,
            max_answer_entries: count(
                self.max_answer_entries,
                d.max_answer_entries,
                1,
                Limits::MAX_ANSWER_ENTRIES,
            )
            .map_err(at("max_answer_entries"))?,
            answer_entries_per_state: count(
                self.answer_entries_per_state,
                d.answer_entries_per_state,
                0,
                Limits::MAX_ANSWER_ENTRIES,
            )
            .map_err(at("answer_entries_per_state"))?,
            max_instances: count(
                self.max_instances,
                d.max_instances,
                1,
                Limits::MAX_INSTANCES,
            )
            .map_err(at("max_instances"))?,
            // Zero send calls or log lines: the router may not use them.
            max_send_calls: count(
                self.max_send_calls,
                d.max_send_calls,
                0,
                Limits::MAX_SEND_CALLS,
            )
            .map_err(at("max_send_calls"))?,
            max_send_users: count(
                self.max_send_users,
                d.max_send_users,
                0,
                Limits::MAX_SEND_USERS,
            )
            .map_err(at("max_send_users"))?,
            send_users_per_second: check_number(
                self.send_users_per_second
                    .map_or(u64::from(d.send_users_per_second), u64::from),
                1,
                Limits::MAX_SEND_USERS as u64,
                plain,
            )
            // In range, so no wider than MAX_SEND_USERS.
            .map(|n| u32::try_from(n).unwrap_or(d.send_users_per_second))
            .map_err(at("send_users_per_second"))?,
            max_log_lines: count(
                self.max_log_lines,
                d.max_log_lines,
                0,
                Limits::MAX_LOG_LINES,
            )
            .map_err(at("max_log_lines"))?,
            log_bytes_per_second: check_number(
                self.log_bytes_per_second
                    .map_or(d.log_bytes_per_second, |b| b.0),
                Limits::MIN_LOG_BYTES_PER_SECOND,
                Limits::MAX_LOG_BYTES_PER_SECOND,
                format_bytes,
            )
            .map_err(at("log_bytes_per_second"))?,
        })
    }
}

/// `value` if it is from `min` to `max`, else why not; `show` writes a
/// value the way the configuration does.
fn check_number(value: u64, min: u64, max: u64, show: fn(u64) -> String) -> Result<u64, String> {
    if value < min {
        return Err(if value == 0 {
            "must be greater than 0".to_owned()
        } else {
            format!("{} is less than the {} allowed", show(value), show(min))
        });
    }
    if value > max {
        return Err(format!(
            "{} is more than the {} allowed",
            show(value),
            show(max)
        ));
    }
    Ok(value)
}

/// `value` if it is longer than 0, at least `min` and at most `max`, else
/// why not.
fn check_duration(value: Duration, min: Duration, max: Duration) -> Result<Duration, String> {
    let show = humantime::format_duration;
    if value.is_zero() {
        return Err("must be longer than 0".to_owned());
    }
    if value < min {
        return Err(format!(
            "{} is shorter than the {} allowed",
            show(value),
            show(min)
        ));
    }
    if value > max {
        return Err(format!(
            "{} is longer than the {} allowed",
            show(value),
            show(max)
        ));
    }
    Ok(value)
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

    /// The error text of one router's configuration (a YAML flow mapping).
    fn error_of(router: &str) -> String {
        RouterSetConfig::from_yaml(
            &format!("routers: [{router}]"),
            Path::new("r.yaml"),
            Path::new("."),
        )
        .expect_err("the configuration is refused")
        .to_string()
    }

    fn limits_of(limits: &str) -> Result<Limits, String> {
        RouterSetConfig::from_yaml(
            &format!("routers: [{{component: a.wasm, limits: {limits}}}]"),
            Path::new("r.yaml"),
            Path::new("."),
        )
        .map(|config| config.routers[0].limits.clone())
        .map_err(|e| e.to_string())
    }

    fn policy_of(policy: &str) -> Result<FailurePolicy, String> {
        RouterSetConfig::from_yaml(
            &format!("routers: [{{component: a.wasm, failure_policy: {policy}}}]"),
            Path::new("r.yaml"),
            Path::new("."),
        )
        .map(|config| config.routers[0].failure_policy.clone())
        .map_err(|e| e.to_string())
    }

    #[test]
    fn every_limit_is_accepted_up_to_its_maximum_and_refused_beyond_it() {
        let at_most = limits_of(
            "{fuel: 1000000000000000, fuel_per_state: 1000000000, memory: 4GiB, timeout: 1m, \
             max_answer_entries: 10000000, answer_entries_per_state: 10000000, \
             max_instances: 1024, max_send_calls: 10000, max_send_users: 1000, \
             send_users_per_second: 1000, max_log_lines: 10000, log_bytes_per_second: 64KiB}",
        );
        assert_eq!(
            at_most,
            Ok(Limits {
                fuel: Limits::MAX_FUEL,
                fuel_per_state: Limits::MAX_FUEL_PER_STATE,
                memory: Limits::MAX_MEMORY,
                timeout: Limits::MAX_TIMEOUT,
                max_answer_entries: Limits::MAX_ANSWER_ENTRIES,
                answer_entries_per_state: Limits::MAX_ANSWER_ENTRIES,
                max_instances: Limits::MAX_INSTANCES,
                max_send_calls: Limits::MAX_SEND_CALLS,
                max_send_users: Limits::MAX_SEND_USERS,
                send_users_per_second: Limits::MAX_SEND_USERS as u32,
                max_log_lines: Limits::MAX_LOG_LINES,
                log_bytes_per_second: Limits::MAX_LOG_BYTES_PER_SECOND,
            })
        );
        let prefix = "r.yaml: routers[0].limits.";
        let router = " (router `a`): ";
        for (limits, key, message) in [
            (
                "{fuel: 1000000000000001}",
                "fuel",
                "1000000000000001 is more than the 1000000000000000 allowed",
            ),
            (
                "{fuel: 18446744073709551615}",
                "fuel",
                "18446744073709551615 is more than the 1000000000000000 allowed",
            ),
            (
                "{fuel_per_state: 1000000001}",
                "fuel_per_state",
                "1000000001 is more than the 1000000000 allowed",
            ),
            (
                "{memory: 4294967297}",
                "memory",
                "4294967297 bytes is more than the 4GiB allowed",
            ),
            (
                "{memory: 1TiB}",
                "memory",
                "1024GiB is more than the 4GiB allowed",
            ),
            ("{memory: 0}", "memory", "must be greater than 0"),
            (
                "{timeout: 400000000000y}",
                "timeout",
                "400000000000years is longer than the 1m allowed",
            ),
            (
                "{timeout: 61s}",
                "timeout",
                "1m 1s is longer than the 1m allowed",
            ),
            (
                "{timeout: 999us}",
                "timeout",
                "999us is shorter than the 1ms allowed",
            ),
            ("{timeout: 0s}", "timeout", "must be longer than 0"),
            (
                "{max_answer_entries: 10000001}",
                "max_answer_entries",
                "10000001 is more than the 10000000 allowed",
            ),
            (
                "{max_answer_entries: 0}",
                "max_answer_entries",
                "must be greater than 0",
            ),
            (
                "{max_instances: 0}",
                "max_instances",
                "must be greater than 0",
            ),
            (
                "{max_send_calls: 10001}",
                "max_send_calls",
                "10001 is more than the 10000 allowed",
            ),
            (
                "{max_log_lines: 18446744073709551615}",
                "max_log_lines",
                "18446744073709551615 is more than the 10000 allowed",
            ),
            (
                "{answer_entries_per_state: 10000001}",
                "answer_entries_per_state",
                "10000001 is more than the 10000000 allowed",
            ),
            (
                "{max_send_users: 1001}",
                "max_send_users",
                "1001 is more than the 1000 allowed",
            ),
            (
                "{send_users_per_second: 0}",
                "send_users_per_second",
                "must be greater than 0",
            ),
            (
                "{log_bytes_per_second: 65537}",
                "log_bytes_per_second",
                "65537 bytes is more than the 64KiB allowed",
            ),
            (
                "{log_bytes_per_second: 1000}",
                "log_bytes_per_second",
                "1000 bytes is less than the 1KiB allowed",
            ),
        ] {
            assert_eq!(
                limits_of(limits),
                Err(format!("{prefix}{key}{router}{message}")),
                "{limits}"
            );
        }
    }

    #[test]
    fn zero_fuel_per_state_send_calls_and_log_lines_are_choices_not_mistakes() {
        let limits = limits_of("{fuel_per_state: 0, max_send_calls: 0, max_log_lines: 0}")
            .expect("accepted");
        assert_eq!(
            (
                limits.fuel_per_state,
                limits.max_send_calls,
                limits.max_log_lines
            ),
            (0, 0, 0)
        );
    }

    #[test]
    fn backoffs_are_accepted_up_to_a_day_and_refused_beyond_it() {
        assert_eq!(
            policy_of("{suspend_after: 4294967295, backoff: 1d, max_backoff: 24h}"),
            Ok(FailurePolicy {
                suspend_after: u32::MAX,
                backoff: FailurePolicy::LONGEST_BACKOFF,
                max_backoff: FailurePolicy::LONGEST_BACKOFF,
            })
        );
        let prefix = "r.yaml: routers[0].failure_policy.";
        let router = " (router `a`): ";
        for (policy, key, message) in [
            (
                "{backoff: 400000000000y, max_backoff: 400000000000y}",
                "backoff",
                "400000000000years is longer than the 1day allowed",
            ),
            (
                "{backoff: 1s, max_backoff: 400000000000y}",
                "max_backoff",
                "400000000000years is longer than the 1day allowed",
            ),
            // The backoff's own bound is named, not `max_backoff`'s default
            // being shorter.
            (
                "{backoff: 2d}",
                "backoff",
                "2days is longer than the 1day allowed",
            ),
            ("{backoff: 0s}", "backoff", "must be longer than 0"),
            ("{max_backoff: 0s}", "max_backoff", "must be longer than 0"),
            (
                "{backoff: 10s, max_backoff: 1s}",
                "max_backoff",
                "must be at least `backoff` (10s)",
            ),
        ] {
            assert_eq!(
                policy_of(policy),
                Err(format!("{prefix}{key}{router}{message}")),
                "{policy}"
            );
        }
    }

    #[test]
    fn a_router_name_with_a_control_character_is_refused_and_shown_escaped() {
        assert_eq!(
            error_of(r#"{name: "ok\e[2J\nINFO forged", component: a.wasm}"#),
            "r.yaml: routers[0].name: `ok\\u{1b}[2J\\nINFO forged` is not a router name: use 1 \
             to 64 letters, digits, `-`, `_` or `.`"
        );
        // A name taken from the component's file name says so.
        assert_eq!(
            error_of(r#"{component: "dir/a\tb.wasm"}"#),
            "r.yaml: routers[0].name: `a\\tb` is not a router name: use 1 to 64 letters, \
             digits, `-`, `_` or `.` (the name comes from the component's file name: give the \
             router a `name`)"
        );
    }

    #[test]
    fn what_an_error_quotes_from_the_configuration_is_escaped() {
        // An unknown key, and the router's name as read for the report.
        let error = error_of(r#"{name: "a\rb", component: a.wasm, limits: {"cpu\e[31m": 1}}"#);
        assert!(
            error.starts_with(
                "r.yaml: routers[0].limits.cpu\\u{1b}[31m (router `a\\rb`): unknown field \
                 `cpu\\u{1b}[31m`, expected one of"
            ),
            "{error}"
        );
        // A value quoted in the message.
        let error = error_of(r#"{component: a.wasm, limits: {timeout: "1\u009b2J"}}"#);
        assert!(
            error.contains("found `1\\u{9b}2J`") && !error.chars().any(char::is_control),
            "{error}"
        );
        // The file name, when displayed.
        let error =
            RouterSetConfig::from_yaml("routers: 3", Path::new("conf\x1b[2J.yaml"), Path::new("."))
                .expect_err("refused");
        assert!(
            error
                .to_string()
                .starts_with("conf\\u{1b}[2J.yaml: routers: "),
            "{error}"
        );
        // A JSON configuration (the Synapse module's) too.
        let value = serde_json::json!({"routers": [{"component": "a.wasm", "\u{7}": 1}]});
        let error = RouterSetConfig::from_json_value(value, Path::new("hs.yaml"), Path::new("."))
            .expect_err("refused");
        assert_eq!(error.key, "routers[0].\\u{7}");
        assert!(!error.to_string().chars().any(char::is_control), "{error}");
    }

    fn document_error(yaml: &str) -> String {
        RouterSetConfig::from_yaml(yaml, Path::new("r.yaml"), Path::new("/etc/pr"))
            .expect_err("the configuration is refused")
            .to_string()
    }

    #[test]
    fn signatures_are_configured_by_trusted_keys_and_signed_by() {
        let config = RouterSetConfig::from_yaml(
            "trusted_keys: {ops: keys/ops.pub, dev: /k/dev.pub}\nrouters:\n  - {name: a, \
             component: a.wasm, signed_by: [ops]}\n  - {name: b, component: b.wasm}",
            Path::new("r.yaml"),
            Path::new("/etc/pr"),
        )
        .expect("parses");
        // By name, files resolved against the configuration's directory.
        assert_eq!(
            config.trusted_keys,
            [
                TrustedKey {
                    name: "dev".into(),
                    file: "/k/dev.pub".into(),
                    key: "trusted_keys.dev".into()
                },
                TrustedKey {
                    name: "ops".into(),
                    file: "/etc/pr/keys/ops.pub".into(),
                    key: "trusted_keys.ops".into()
                },
            ]
        );
        assert_eq!(config.routers[0].signed_by, Some(vec!["ops".to_owned()]));
        // Trusting keys requires nothing by itself.
        assert_eq!(config.routers[1].signed_by, None);
        // `require_signatures`: any trusted key, unless `signed_by` narrows.
        let config = RouterSetConfig::from_yaml(
            "trusted_keys: {ops: o.pub, dev: d.pub}\nrequire_signatures: true\nrouters: \
             [{name: a, component: a.wasm}, {name: b, component: b.wasm, signed_by: [dev]}]",
            Path::new("r.yaml"),
            Path::new("."),
        )
        .expect("parses");
        assert_eq!(
            config.routers[0].signed_by,
            Some(vec!["dev".to_owned(), "ops".to_owned()])
        );
        assert_eq!(config.routers[1].signed_by, Some(vec!["dev".to_owned()]));
        // One key name on its own is a list of one.
        let config = RouterSetConfig::from_yaml(
            "trusted_keys: {ops: o.pub}\nrouters: [{name: a, component: a.wasm, signed_by: ops}]",
            Path::new("r.yaml"),
            Path::new("."),
        )
        .expect("parses");
        assert_eq!(config.routers[0].signed_by, Some(vec!["ops".to_owned()]));
        let error = document_error(
            "trusted_keys: {ops: o.pub}\nrouters: [{name: a, component: a.wasm, signed_by: 3}]",
        );
        assert!(error.contains("routers[0].signed_by"), "{error}");
        assert!(
            error.contains("a key name or a list of key names"),
            "{error}"
        );
    }

    #[test]
    fn a_canary_takes_the_live_versions_settings_unless_it_has_its_own() {
        let config = RouterSetConfig::from_yaml(
            "trusted_keys: {ops: o.pub}\nrouters:\n  - name: a\n    component: a.wasm\n    \
             config: {x: 1}\n    signed_by: ops\n    canary:\n      component: a2.wasm\n      \
             sample: 0.25\n      promote_after: 50\n      max_divergent: 2\n      \
             max_fuel_ratio: 1.5\n      record_divergent: {path: d/div.jsonl, keep: 3}\n",
            Path::new("r.yaml"),
            Path::new("/etc/pr"),
        )
        .expect("parses");
        let live = &config.routers[0];
        let canary = live.canary.as_deref().expect("a canary");
        assert_eq!(canary.router.name, "a");
        assert_eq!(canary.router.key, "routers[0].canary");
        assert_eq!(canary.router.component, Path::new("/etc/pr/a2.wasm"));
        assert_eq!(canary.router.config_json, live.config_json);
        assert_eq!(canary.router.limits, live.limits);
        // It must be signed as the live version must.
        assert_eq!(canary.router.signed_by, Some(vec!["ops".to_owned()]));
        assert_eq!(canary.sample, 0.25);
        assert_eq!(
            canary.criteria,
            CanaryCriteria {
                promote_after: 50,
                max_divergent: 2,
                max_failures: 0,
                max_fuel_ratio: Some(1.5),
            }
        );
        assert_eq!(
            canary.record_divergent,
            Some(DivergentRecord {
                path: "/etc/pr/d/div.jsonl".into(),
                max_bytes: DivergentRecord::DEFAULT_MAX_BYTES,
                keep: 3,
            })
        );
        assert_eq!(canary.decision, None);
        // A new configuration alone is a canary; a path alone records.
        let config = RouterSetConfig::from_yaml(
            "routers: [{name: a, component: a.wasm, canary: {config: {x: 2}, decision: reject, \
             record_divergent: div.jsonl}}]",
            Path::new("r.yaml"),
            Path::new("/etc/pr"),
        )
        .expect("parses");
        let canary = config.routers[0].canary.as_deref().expect("a canary");
        assert_eq!(canary.router.component, Path::new("/etc/pr/a.wasm"));
        assert_eq!(canary.router.config_json, r#"{"x":2}"#);
        assert_eq!(canary.sample, 1.0);
        assert_eq!(
            canary.criteria.promote_after,
            CanaryCriteria::DEFAULT_PROMOTE_AFTER
        );
        assert_eq!(canary.decision, Some(CanaryDecision::Rejected));
        assert_eq!(
            canary.record_divergent.as_ref().map(|r| r.path.clone()),
            Some("/etc/pr/div.jsonl".into())
        );
    }

    #[test]
    fn a_canary_of_a_live_version_elsewhere_needs_its_component() {
        let external = |document: serde_json::Value| {
            RouterSetConfig::external_canary(
                document,
                "example",
                "routers[0]",
                Path::new("hs.yaml"),
                Path::new("/etc/pr"),
            )
        };
        let (canary, keys) = external(serde_json::json!({
            "canary": {"component": "new.wasm", "promote_after": 7},
            "trusted_keys": {"ops": "ops.pub"},
            "require_signatures": true,
        }))
        .expect("parses");
        assert_eq!(canary.router.component, Path::new("/etc/pr/new.wasm"));
        assert_eq!(canary.router.config_json, "{}");
        assert_eq!(canary.router.key, "routers[0].canary");
        assert_eq!(canary.criteria.promote_after, 7);
        // Signed as any router of the configuration must be.
        assert_eq!(canary.router.signed_by, Some(vec!["ops".to_owned()]));
        assert_eq!(keys[0].file, Path::new("/etc/pr/ops.pub"));
        let error =
            external(serde_json::json!({"canary": {"promote_after": 7}})).expect_err("refused");
        assert_eq!(error.key, "routers[0].canary.component");
        let error = external(serde_json::json!({"canary": {"component": "n.wasm", "sampel": 1}}))
            .expect_err("refused");
        assert!(error.key.starts_with("routers[0].canary"), "{error}");
        assert!(error.message.contains("sampel"), "{error}");
        let error = external(serde_json::json!({
            "canary": {"component": "n.wasm"}, "signed_by": "dev",
        }))
        .expect_err("refused");
        assert_eq!(error.key, "routers[0].signed_by[0]");
    }

    #[test]
    fn a_bad_canary_setting_names_its_key() {
        let canary = |settings: &str| {
            document_error(&format!(
                "routers: [{{name: a, component: a.wasm, canary: {{{settings}}}}}]"
            ))
        };
        assert_eq!(
            canary("sample: 0.5"),
            "r.yaml: routers[0].canary (router `a`): is the live version itself: give it a \
             `component`, `config` or `limits` of its own"
        );
        assert_eq!(
            canary("component: b.wasm, sample: 1.5"),
            "r.yaml: routers[0].canary.sample (router `a`): expected a share of calls above 0 \
             and at most 1, found 1.5"
        );
        assert_eq!(
            canary("component: b.wasm, promote_after: 0"),
            "r.yaml: routers[0].canary.promote_after (router `a`): must be at least 1: a canary \
             is promoted on agreeing answers"
        );
        assert_eq!(
            canary("component: b.wasm, max_fuel_ratio: -1"),
            "r.yaml: routers[0].canary.max_fuel_ratio (router `a`): expected a ratio above 0, \
             found -1"
        );
        assert!(
            canary("component: b.wasm, record_divergent: {path: d.jsonl, keep: 1000}")
                .starts_with("r.yaml: routers[0].canary.record_divergent.keep (router `a`): "),
        );
        let error = canary("component: b.wasm, record_divergent: 3");
        assert!(
            error.contains("routers[0].canary.record_divergent")
                && error.contains("a file's path, or a mapping"),
            "{error}"
        );
        let error = canary("component: b.wasm, decision: maybe");
        assert!(error.contains("routers[0].canary.decision"), "{error}");
        let error = canary("component: b.wasm, sampel: 1");
        assert!(error.contains("routers[0].canary"), "{error}");
        assert!(error.contains("sampel"), "{error}");
        assert_eq!(
            document_error(
                "routers: [{name: a, component: a.wasm, canary: {component: b.wasm}}, \
                 {name: a.canary, component: c.wasm}]"
            ),
            "r.yaml: routers[1].name (router `a.canary`): `a.canary` names the figures of router \
             `a`'s canary: give this router another name"
        );
        assert_eq!(
            document_error(
                "routers: [{name: a, component: a.wasm, canary: {component: b.wasm, \
                 record_divergent: d.jsonl}}, {name: b, component: c.wasm, canary: {component: \
                 d.wasm, record_divergent: d.jsonl}}]"
            ),
            "r.yaml: routers[1].canary.record_divergent (router `b`): /etc/pr/d.jsonl is already \
             where router `a`'s canary records: give each canary a file of its own"
        );
    }

    #[test]
    fn a_bad_signature_setting_names_its_key() {
        assert_eq!(
            document_error(
                "trusted_keys: {ops: o.pub}\nrouters: [{name: a, component: a.wasm, signed_by: \
                 [ops, nobody]}]"
            ),
            "r.yaml: routers[0].signed_by[1] (router `a`): `nobody` is not a key of \
             `trusted_keys`: the trusted keys are `ops`"
        );
        assert_eq!(
            document_error("routers: [{name: a, component: a.wasm, signed_by: [ops]}]"),
            "r.yaml: routers[0].signed_by[0] (router `a`): `ops` is not a key of \
             `trusted_keys`: there are no `trusted_keys`"
        );
        assert_eq!(
            document_error(
                "trusted_keys: {ops: o.pub}\nrouters: [{name: a, component: a.wasm, signed_by: []}]"
            ),
            "r.yaml: routers[0].signed_by (router `a`): name at least one key of \
             `trusted_keys` (or leave `signed_by` out)"
        );
        assert_eq!(
            document_error("require_signatures: true\nrouters: [{component: a.wasm}]"),
            "r.yaml: require_signatures: needs `trusted_keys`: the public keys a router may be \
             signed by"
        );
        assert_eq!(
            document_error("trusted_keys: {\"o p\": o.pub}\nrouters: []"),
            "r.yaml: trusted_keys.o p: `o p` is not a key name: use 1 to 64 letters, digits, \
             `-`, `_` or `.`"
        );
        assert!(
            document_error(
                "trusted_keys: {ops: o.pub}\nrequire_signatures: yes please\nrouters: []"
            )
            .starts_with("r.yaml: require_signatures: invalid type"),
        );
    }
}
