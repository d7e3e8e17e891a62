//! How the module loads its routers: its options, and load errors as
//! Synapse's `ConfigError` wants them (a message and the path of config
//! keys at fault).

use presence_router_runtime::LoadError;
use presence_router_runtime::text::escape_control;
use pyo3::{PyErr, PyResult};

use crate::RouterLoadError;

/// The path of an error no config key is at fault for.
pub(crate) const NO_PATH: [&str; 0] = [];

fn no_tokio(e: std::io::Error) -> PyErr {
    RouterLoadError::new_err((format!("cannot start tokio: {e}"), NO_PATH))
}

/// A load error as `RouterLoadError((message, path))`.
pub(crate) fn load_error(error: LoadError) -> PyErr {
    let (key, message) = match &error {
        LoadError::Config(e) => (
            e.key.as_str(),
            match &e.router {
                Some(router) => format!("router `{router}`: {}", e.message),
                None => e.message.clone(),
            },
        ),
        LoadError::Component { at, path, message } => (
            at.key.as_str(),
            format!(
                "router `{}`: cannot load {}: {message}",
                at.router,
                shown(path)
            ),
        ),
        LoadError::Signature { at, path, refusal } => (
            at.key.as_str(),
            format!("router `{}`: {} {refusal}", at.router, shown(path)),
        ),
        LoadError::TrustedKey { error, .. } => (
            error.key.as_str(),
            format!("{}: {}", shown(&error.path), escape_control(&error.message)),
        ),
        LoadError::ConfigRefused { at, message } => (
            at.key.as_str(),
            format!(
                "router `{}` refused its configuration: {message}",
                at.router
            ),
        ),
        LoadError::Failed { at, kind, message } => (
            at.key.as_str(),
            format!(
                "router `{}` failed while starting ({kind}): {message}",
                at.router
            ),
        ),
        LoadError::Recording { at, message } => (
            at.key.as_str(),
            format!("router `{}`: {message}", at.router),
        ),
        LoadError::Engine(message) => (".", message.clone()),
    };
    RouterLoadError::new_err((message, synapse_config_path(key)))
}

/// A path in a message, control characters escaped: file names are anyone's.
fn shown(path: &std::path::Path) -> String {
    escape_control(&path.display().to_string())
}

/// `routers[1].limits.memory` as Synapse writes config paths:
/// `("routers", "<item 1>", "limits", "memory")`.
fn synapse_config_path(key: &str) -> Vec<String> {
    let mut path = Vec::new();
    for part in key.split('.').filter(|part| !part.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            path.push(rest[..open].to_owned());
            rest = &rest[open..];
            while let Some(index) = rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
                path.push(format!("<item {}>", index.0));
                rest = index.1;
            }
        } else {
            path.push(rest.to_owned());
        }
    }
    path.retain(|part| !part.is_empty());
    path
}

/// How the module loads: its `cache` and `cache_dir` keys, and whether to
/// compile on the calling thread (after a fork).
pub(crate) fn load_options(
    cache: bool,
    cache_dir: Option<std::path::PathBuf>,
    compile_on_calling_thread: bool,
) -> presence_router_runtime::LoadOptions {
    use presence_router_runtime::{CacheSetting, LoadOptions};
    LoadOptions {
        cache: match (cache, cache_dir) {
            (false, _) => CacheSetting::Disabled,
            (true, Some(dir)) => CacheSetting::Dir(dir),
            (true, None) => CacheSetting::UserCacheDir,
        },
        compile_on_calling_thread,
        ..LoadOptions::default()
    }
}

/// Runs `work` on a runtime of its own: loading reads files on tokio's
/// blocking threads, and this runtime, with those threads, ends with it.
pub(crate) fn block_on<T>(work: impl std::future::Future<Output = T>) -> PyResult<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(no_tokio)?
        .block_on(work))
}

/// [`block_on`] for a load, its error as Synapse's `ConfigError` wants it.
pub(crate) fn block_on_load<T>(
    load: impl std::future::Future<Output = Result<T, LoadError>>,
) -> PyResult<T> {
    block_on(load)?.map_err(load_error)
}
