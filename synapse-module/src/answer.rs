//! A call's answer as the module hands it to Python: typed objects, not
//! tuples, so that the Python side reads named fields and the stub
//! (`_native.pyi`) can say what each is.
//!
//! Building an answer is work the reactor does for the routers: every
//! route is a dict entry and every index a set member (hashing Synapse's
//! `UserPresenceState`, in Python). It is bounded by the routers' answer
//! entries (per router per call: the slice's on the reactor, its own bound
//! off it), and users routed the same states share one set.
//!
//! An answer with nothing but routes (or users) is handed over as the
//! callback's own answer to Synapse, already done ([`Done`]): the common
//! call then costs the callback no object to read. The user IDs are Python
//! `str`s made once and kept ([`user_id_string`]): a router names the same
//! users call after call, and a kept `str` also keeps its hash, which every
//! `dict` and `set` it goes into needs.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use presence_router_runtime::{InterestedUsers, UsersForStates};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySet, PyString};

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

/// An answer already done, as the callbacks return it to Synapse: awaiting
/// it gives `value` (the routes `dict`, or the users `set`) at once.
///
/// Not a coroutine, nor a Deferred: Synapse hands a module's coroutine to
/// `delay_cancellation`, which wraps it in Deferreds, several microseconds
/// on every call, and gives any other awaitable back to be awaited as it
/// is.
#[pyclass(frozen, get_all, module = "wasm_presence_router._native")]
pub(crate) struct Done {
    value: Py<PyAny>,
}

#[pymethods]
impl Done {
    #[new]
    fn new(value: Py<PyAny>) -> Self {
        Done { value }
    }

    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// The iterator `__await__` returns: done at its first step, which
    /// returns the value.
    fn __next__(&self, py: Python<'_>) -> PyResult<()> {
        // Made as an instance, not left to PyO3 to make from its arguments
        // when raised: half the instructions of awaiting it.
        let done = py
            .get_type::<pyo3::exceptions::PyStopIteration>()
            .call1((self.value.bind(py),))?;
        Err(PyErr::from_value(done))
    }
}

/// Either answer.
pub(crate) enum Answered<'py> {
    States(StatesAnswer),
    Interest(InterestAnswer),
    /// Nothing sent or reported: the routes `dict` or the users `set`
    /// alone, handed over [`Done`].
    Plain(Bound<'py, PyAny>),
}

impl<'py> Answered<'py> {
    pub(crate) fn into_py_any(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self {
            Answered::States(answer) => Bound::new(py, answer)?.into_any(),
            Answered::Interest(answer) => Bound::new(py, answer)?.into_any(),
            Answered::Plain(value) => Bound::new(
                py,
                Done {
                    value: value.unbind(),
                },
            )?
            .into_any(),
        })
    }

    /// A routed batch's answer: its routes alone when that is all it is.
    pub(crate) fn states(
        py: Python<'py>,
        routes: UsersForStates,
        sends: Vec<String>,
        objects: &[Bound<'py, PyAny>],
        from_batch: &[usize],
        events: Vec<Event>,
    ) -> PyResult<Answered<'py>> {
        if sends.is_empty() && events.is_empty() {
            return routes_to_py(py, routes, objects, from_batch)
                .map(|routes| Answered::Plain(routes.into_any()));
        }
        StatesAnswer::build(py, routes, sends, objects, from_batch, events).map(Answered::States)
    }

    /// An interest query's answer: its users alone when that is all it is.
    pub(crate) fn interest(
        py: Python<'py>,
        answer: InterestedUsers,
        sends: Vec<String>,
        events: Vec<Event>,
    ) -> PyResult<Answered<'py>> {
        match answer {
            InterestedUsers::Users(named) if sends.is_empty() && events.is_empty() => {
                users_to_py(py, named).map(|users| Answered::Plain(users.into_any()))
            }
            answer => InterestAnswer::build(py, answer, sends, events).map(Answered::Interest),
        }
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
        let (all_users, users) = match answer {
            InterestedUsers::All => (true, PySet::empty(py)?),
            InterestedUsers::Users(named) => (false, users_to_py(py, named)?),
        };
        Ok(InterestAnswer {
            all_users,
            users: users.unbind(),
            sends: PyList::new(py, sends)?.unbind(),
            events: PyList::new(py, events)?.unbind(),
        })
    }
}

/// The `set` of the users an interest query was answered with.
fn users_to_py<'py>(
    py: Python<'py>,
    users: impl IntoIterator<Item = String>,
) -> PyResult<Bound<'py, PySet>> {
    let set = PySet::empty(py)?;
    for user in users {
        set.add(user_id_string(py, &user))?;
    }
    Ok(set)
}

/// The Python `str` of each user ID the routers answered with lately, made
/// once (`None` until the first). Keyed with std's SipHash and a
/// per-process random key: the IDs are a guest's, chosen to collide if
/// they could be, and the cache serves every router.
static USER_ID_STRINGS: Mutex<Option<HashMap<Box<str>, Py<PyString>>>> = Mutex::new(None);

/// The IDs [`USER_ID_STRINGS`] holds at most before it starts again empty:
/// a router naming ever new users costs one lookup more per user than
/// without it, and no memory beyond the bound (user IDs are at most 255
/// bytes: a few MiB).
const USER_ID_STRINGS_HELD: usize = 4096;

/// `user_id` as a Python `str`, made once. The lock is held for no Python
/// call: a thread that ran Python code while holding it could let the GIL
/// go to one that then waits for it.
fn user_id_string<'py>(py: Python<'py>, user_id: &str) -> Bound<'py, PyString> {
    let lock = || {
        USER_ID_STRINGS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    };
    if let Some(string) = lock().as_ref().and_then(|strings| strings.get(user_id)) {
        return string.bind(py).clone();
    }
    let string = PyString::new(py, user_id);
    let mut cache = lock();
    let strings = cache.get_or_insert_with(HashMap::new);
    if strings.len() >= USER_ID_STRINGS_HELD {
        // Dropping the `str`s runs no Python code: a `str` has no
        // finalizer.
        strings.clear();
    }
    strings.insert(user_id.into(), string.clone().unbind());
    string
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
    let mut sets = SetsByStates::default();
    for (user_id, indices) in answer {
        let set = match sets.get(&indices) {
            Some(set) => set,
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
        routes.set_item(user_id_string(py, &user_id), set)?;
    }
    Ok(routes)
}

/// The sets made so far, by the states they hold: a few side by side (an
/// answer routes most users the same states, and a map costs more than it
/// saves until there are many), then a map.
enum SetsByStates<'py> {
    Few(Vec<(Vec<u32>, Bound<'py, PySet>)>),
    Many(HashMap<Vec<u32>, Bound<'py, PySet>>),
}

impl Default for SetsByStates<'_> {
    fn default() -> Self {
        SetsByStates::Few(Vec::new())
    }
}

impl<'py> SetsByStates<'py> {
    const FEW: usize = 8;

    fn get(&self, states: &[u32]) -> Option<Bound<'py, PySet>> {
        match self {
            SetsByStates::Few(few) => few
                .iter()
                .find(|(held, _)| held.as_slice() == states)
                .map(|(_, set)| set.clone()),
            SetsByStates::Many(many) => many.get(states).cloned(),
        }
    }

    fn insert(&mut self, states: Vec<u32>, set: Bound<'py, PySet>) {
        match self {
            SetsByStates::Few(few) if few.len() < Self::FEW => few.push((states, set)),
            SetsByStates::Few(few) => {
                let mut many: HashMap<_, _> = std::mem::take(few).into_iter().collect();
                many.insert(states, set);
                *self = SetsByStates::Many(many);
            }
            SetsByStates::Many(many) => {
                many.insert(states, set);
            }
        }
    }
}
