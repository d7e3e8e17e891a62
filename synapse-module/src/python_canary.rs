//! A canary beside a Python presence router: the live version is a Python
//! class the module runs itself (migrating to a wasm port), and the port is
//! tried in shadow on the calls it draws (`_migration.py` hands it the
//! Python router's answers), in the runtime's [`ExternalCanary`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use presence_router_runtime::{
    Callback, CanaryDecision, CanaryStats, ExternalCanary, InterestedUsers, LoadError,
    RouterSetConfig,
};
use pyo3::prelude::*;

use crate::batch::Batch;
use crate::events::EventQueue;
use crate::load::{block_on_load, load_error, load_options};

/// The wasm port of a Python presence router, on trial.
#[pyclass(frozen, name = "PythonCanary", module = "wasm_presence_router._native")]
pub(crate) struct PyPythonCanary {
    pub(crate) canary: ExternalCanary,
    events: Arc<EventQueue>,
}

#[pymethods]
impl PyPythonCanary {
    /// Loads the port `document_json` describes: `{"canary": {...},
    /// "signed_by": ..., "trusted_keys": {...}, "require_signatures": ...}`
    /// (router `name`'s `canary:` and `signed_by`, written at `key`
    /// (`routers[0]`), and the module's keys); relative paths resolve
    /// against `base_dir`. Raises `RouterLoadError` as `RouterSet.load`
    /// does.
    #[staticmethod]
    #[pyo3(signature = (name, document_json, *, key, source, base_dir, cache_dir=None, cache=true, compile_on_calling_thread=false))]
    #[allow(clippy::too_many_arguments)]
    fn load(
        py: Python<'_>,
        name: &str,
        document_json: &str,
        key: &str,
        source: &str,
        base_dir: PathBuf,
        cache_dir: Option<PathBuf>,
        cache: bool,
        compile_on_calling_thread: bool,
    ) -> PyResult<Self> {
        let value: serde_json::Value = serde_json::from_str(document_json).map_err(|e| {
            crate::RouterLoadError::new_err((format!("not JSON: {e}"), crate::load::NO_PATH))
        })?;
        let source = PathBuf::from(source);
        let (config, trusted_keys) =
            RouterSetConfig::external_canary(value, name, key, &source, &base_dir)
                .map_err(|e| load_error(LoadError::Config(e)))?;
        let options = load_options(cache, cache_dir, compile_on_calling_thread);
        let canary = py.detach(|| {
            block_on_load(ExternalCanary::load(
                &config,
                &source,
                &trusted_keys,
                &options,
            ))
        })?;
        Ok(PyPythonCanary {
            canary,
            events: Arc::new(EventQueue::new()),
        })
    }

    /// Whether the call of `callback` (`get_users_for_states` or
    /// `get_interested_users`) that just ended, of `size` states and answer
    /// entries, is to be tried on the canary.
    fn draw(&self, callback: &str, size: usize) -> bool {
        let callback = match callback {
            "get_users_for_states" => Callback::GetUsersForStates,
            _ => Callback::GetInterestedUsers,
        };
        self.canary.draw(callback, size)
    }

    /// A drawn `get_users_for_states` call: Synapse's states, and the
    /// Python router's answer as the positions in `states` routed to each
    /// user. A batch with a state that can't be read is not compared
    /// (skipped).
    fn shadow_states<'py>(
        &self,
        py: Python<'py>,
        states: Vec<Bound<'py, PyAny>>,
        answer: BTreeMap<String, Vec<u32>>,
    ) {
        let read = Batch::read(py, &states, &self.events);
        if read.states.len() != states.len() {
            self.canary.skip();
            return;
        }
        self.canary.shadow_states(read.states, &answer);
    }

    /// A drawn `get_interested_users` call and the Python router's answer:
    /// the users, or `None` for all users.
    fn shadow_interest(&self, user_id: &str, answer: Option<Vec<String>>) {
        let live = match answer {
            None => InterestedUsers::All,
            Some(users) => InterestedUsers::Users(users.into_iter().collect()),
        };
        self.canary.shadow_interest(user_id, &live);
    }

    /// A drawn call the Python router answered with something that can't be
    /// compared (a state not of the batch), or failed.
    fn skip(&self) {
        self.canary.skip();
    }

    /// The operator's decision: `promote` or `reject`.
    fn decide(&self, decision: &str) -> PyResult<()> {
        self.canary.decide(operator_decision(decision)?);
        Ok(())
    }

    /// `promoted`, `rejected`, or `None` while on trial.
    fn decision(&self) -> Option<&'static str> {
        self.canary
            .stats()
            .decision
            .map(|(decision, _)| decision.as_str())
    }

    /// The decision's one log line, once decided.
    fn decision_line(&self) -> Option<String> {
        self.canary
            .flush_recording(std::time::Duration::from_secs(1));
        self.canary.stats().decision_line()
    }

    /// What `RouterSet.canaries()` gives for each canary (`CanaryRow`).
    fn stats(&self) -> CanaryRow {
        canary_row(self.canary.stats())
    }

    /// What reading drawn calls reported (a state that could not be read),
    /// for Python's `logging`.
    fn take_events(&self) -> Vec<crate::events::Event> {
        self.events.drain()
    }

    /// Its component file, for the file watch.
    fn component(&self) -> PathBuf {
        self.canary.router_config().component.clone()
    }
}

/// A canary for Python: `(router, component, calls, agreed, diverged,
/// failed, skipped, decision, why)`; `decision` is `on_trial`, `promoted`
/// or `rejected`.
pub(crate) type CanaryRow = (String, PathBuf, u64, u64, u64, u64, u64, String, String);

pub(crate) fn canary_row(canary: CanaryStats) -> CanaryRow {
    let (decision, why) = match canary.decision {
        Some((decision, why)) => (decision.as_str().to_owned(), why),
        None => ("on_trial".to_owned(), String::new()),
    };
    (
        canary.router,
        canary.component,
        canary.calls,
        canary.agreed,
        canary.diverged,
        canary.failed,
        canary.skipped,
        decision,
        why,
    )
}

/// An operator's decision as Python gives it: `promote` or `reject`.
pub(crate) fn operator_decision(decision: &str) -> PyResult<CanaryDecision> {
    match decision {
        "promote" => Ok(CanaryDecision::Promoted),
        "reject" => Ok(CanaryDecision::Rejected),
        other => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "expected `promote` or `reject`, found `{}`",
            presence_router_runtime::text::escape_control(other)
        ))),
    }
}
