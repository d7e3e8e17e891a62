//! Why a router set could not be loaded.

use std::fmt;
use std::path::PathBuf;

use presence_router_model::text::escape_control;
use presence_router_model::{ConfigError, FailureKind};

/// Where a router is configured: the file, the key path and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterAt {
    pub file: PathBuf,
    /// `routers[1].component`, `routers[1].config`, ...
    pub key: String,
    pub router: String,
}

impl fmt::Display for RouterAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths and names are the operator's, but shown on a terminal:
        // control characters in them are escaped like a guest's text.
        write!(
            f,
            "{}: {} (router `{}`)",
            escape_control(&self.file.display().to_string()),
            escape_control(&self.key),
            escape_control(&self.router)
        )
    }
}

/// A router set that can't start. Like Synapse refusing to start on a bad
/// module, one router that can't load stops the whole set from loading.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration itself is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The component file can't be read, isn't a component, or isn't a
    /// presence router.
    #[error("{at}: {}: {message}", escape_control(&path.display().to_string()))]
    Component {
        at: RouterAt,
        path: PathBuf,
        message: String,
    },
    /// The component is not signed as the configuration requires
    /// (`signed_by`, `require_signatures`).
    #[error("{at}: {}: {refusal}", escape_control(&path.display().to_string()))]
    Signature {
        at: RouterAt,
        path: PathBuf,
        refusal: Box<crate::signature::SignatureRefusal>,
    },
    /// A key of `trusted_keys` can't be read or is not a public key.
    #[error("{}: {error}", escape_control(&file.display().to_string()))]
    TrustedKey {
        /// The configuration.
        file: PathBuf,
        error: crate::signature::KeyFileError,
    },
    /// The router's `parse-config` answered `err`.
    #[error("{at}: the router refused its configuration: {message}")]
    ConfigRefused { at: RouterAt, message: String },
    /// The router failed while being instantiated or configured.
    #[error("{at}: the router failed while starting ({kind}): {message}")]
    Failed {
        at: RouterAt,
        kind: FailureKind,
        message: String,
    },
    /// A canary's `record_divergent` file can't be used.
    #[error("{at}: {message}")]
    Recording { at: RouterAt, message: String },
    /// wasmtime could not be set up on this machine.
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
}

impl LoadError {
    /// The router at fault, if one is.
    pub fn router(&self) -> Option<&str> {
        match self {
            LoadError::Component { at, .. }
            | LoadError::Signature { at, .. }
            | LoadError::ConfigRefused { at, .. }
            | LoadError::Recording { at, .. }
            | LoadError::Failed { at, .. } => Some(&at.router),
            LoadError::Config(e) => e.router.as_deref(),
            LoadError::Engine(_) | LoadError::TrustedKey { .. } => None,
        }
    }
}
