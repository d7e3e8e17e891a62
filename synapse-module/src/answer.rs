//! A call's answer as the module hands it to Python: typed objects, not
//! tuples, so that the Python side reads named fields and the stub
//! (`_native.pyi`) can say what each is.
//!
//! Building an answer is work the reactor does for the routers: every
//! route is a dict entry and every index a set member (hashing Synapse's
//! `UserPresenceState`, in Python). It is bounded by the routers' answer
//! entries (per router per call: the slice's on the reactor, its own bound
//! off it), and users routed the same states share one set.

use std::collections::HashMap;

use presence_router_runtime::{InterestedUsers, UsersForStates};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySet};

use crate::events::Event;

/// A routed batch: `routes` maps each user to the `set` of the batch's own
/// state objects they should receive; `sends` is who the routers asked
/// `send_local_online_presence_to` for; `events` what the call reported,
/// `(level, message)`.
#[pyclass(frozen, get_all, module = "wasm_presence_router._native")]
pub(crate) struct StatesAnswer {
    routes: Py<PyDict>,
    sends: Py<PyList>,
    events: Py<PyList>,
}

/// An answered interest query: `all_users`, else `users`; `sends` and
/// `events` as in [`StatesAnswer`].
#[pyclass(frozen, get_all, module = "wasm_presence_router._native")]
pub(crate) struct InterestAnswer {
    all_users: bool,
    users: Py<PySet>,
    sends: Py<PyList>,
    events: Py<PyList>,
}

/// A call the reactor could not answer in its slices: `job` is finished by
/// the module's worker threads (`submit`, then `take_finished`) or on a
/// thread of Synapse's (`run_job`).
#[pyclass(frozen, get_all, module = "wasm_presence_router._native")]
pub(crate) struct Pending {
    job: u64,
}

impl Pending {
    pub(crate) fn new(job: u64) -> Self {
        Pending { job }
    }
}

/// Either answer.
pub(crate) enum Answered {
    States(StatesAnswer),
    Interest(InterestAnswer),
}

impl Answered {
    pub(crate) fn into_py_any(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        Ok(match self {
            Answered::States(answer) => Bound::new(py, answer)?.into_any(),
            Answered::Interest(answer) => Bound::new(py, answer)?.into_any(),
        })
    }
}

impl StatesAnswer {
    /// The answer of a routed batch, its sets built from `objects`, the
    /// batch Synapse gave (`from_batch[i]` is where the routers' state `i`
    /// came from).
    pub(crate) fn build(
        py: Python<'_>,
        routes: UsersForStates,
        sends: Vec<String>,
        objects: &[Bound<'_, PyAny>],
        from_batch: &[usize],
        events: Vec<Event>,
    ) -> PyResult<StatesAnswer> {
        Ok(StatesAnswer {
            routes: routes_to_py(py, routes, objects, from_batch)?.unbind(),
            sends: PyList::new(py, sends)?.unbind(),
            events: PyList::new(py, events)?.unbind(),
        })
    }
}

impl InterestAnswer {
    pub(crate) fn build(
        py: Python<'_>,
        answer: InterestedUsers,
        sends: Vec<String>,
        events: Vec<Event>,
    ) -> PyResult<InterestAnswer> {
        let users = PySet::empty(py)?;
        let all_users = match answer {
            InterestedUsers::All => true,
            InterestedUsers::Users(named) => {
                for user in named {
                    users.add(user)?;
                }
                false
            }
        };
        Ok(InterestAnswer {
            all_users,
            users: users.unbind(),
            sends: PyList::new(py, sends)?.unbind(),
            events: PyList::new(py, events)?.unbind(),
        })
    }
}

/// The batch size from which a set of most of the batch is made from the
/// whole batch's set: below it, hashing each state is as cheap as copying.
const FROM_WHOLE_BATCH_AT: usize = 16;

/// The routers' answer as Synapse wants it: each user mapped to the `set`
/// of the batch's own state objects they should receive. Users routed the
/// same states (every `always_send_to_users` user of the example router)
/// share one set: Synapse copies what it is given and never changes it.
///
/// Adding an object to a set hashes it, in Python (Synapse's
/// `UserPresenceState` hashes all its fields: ~170 ns each). A set of most
/// of a large batch is made from one set of the whole batch, hashed once
/// per call, less what it leaves out: copying a set reuses the hashes it
/// holds. So an answer of many users each routed most of a batch costs the
/// reactor a copy per user, not a hash per entry. (What is left to hash,
/// the fewer of the states a set names and those it leaves out, is the
/// cost the runtime charges each router for its answer.)
fn routes_to_py<'py>(
    py: Python<'py>,
    answer: UsersForStates,
    objects: &[Bound<'py, PyAny>],
    from_batch: &[usize],
) -> PyResult<Bound<'py, PyDict>> {
    let routes = PyDict::new(py);
    // The routers' state `i` is Synapse's object `from_batch[i]`.
    let batch_len = from_batch.len();
    let state = |i: usize| {
        from_batch
            .get(i)
            .and_then(|&position| objects.get(position))
    };
    let mut whole_batch: Option<Bound<'py, PySet>> = None;
    let mut distinct_states = false;
    let mut sets: HashMap<Vec<u32>, Bound<'py, PySet>> = HashMap::new();
    for (user_id, indices) in answer {
        let set = match sets.get(&indices) {
            Some(set) => set.clone(),
            None => {
                let from_whole = batch_len >= FROM_WHOLE_BATCH_AT && indices.len() * 2 > batch_len;
                if from_whole && whole_batch.is_none() {
                    let whole = PySet::new(py, (0..batch_len).filter_map(state))?;
                    // States equal to one another (never two of one user
                    // in Synapse's batches) would be one member: left
                    // out by value, a routed one could go with it.
                    distinct_states = whole.len() == batch_len;
                    whole_batch = Some(whole);
                }
                let set = if let (true, Some(whole)) = (distinct_states && from_whole, &whole_batch)
                {
                    // The runtime sorted and de-duplicated the indices, and
                    // checked each against the batch.
                    let mut left_out = Vec::with_capacity(batch_len.saturating_sub(indices.len()));
                    let mut routed = indices.iter().peekable();
                    for i in 0..batch_len {
                        if routed.next_if(|&&index| index as usize == i).is_none() {
                            left_out.extend(state(i));
                        }
                    }
                    whole
                        .call_method1(intern!(py, "difference"), (PyList::new(py, left_out)?,))?
                        .cast_into::<PySet>()?
                } else {
                    let set = PySet::empty(py)?;
                    for &index in &indices {
                        if let Some(state) = usize::try_from(index).ok().and_then(state) {
                            set.add(state)?;
                        }
                    }
                    set
                };
                sets.insert(indices, set.clone());
                set
            }
        };
        routes.set_item(user_id, set)?;
    }
    Ok(routes)
}
