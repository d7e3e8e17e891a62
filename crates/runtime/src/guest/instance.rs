//! One live instance of a router, with its own store: making it (under the
//! call's budget), calling its exports, and telling which limit a failed
//! call hit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{
    ComponentExportIndex, ComponentNamedList, Func, Lift, Lower, ResourceTableError, TypedFunc,
};
use wasmtime::{CallHook, Store, Trap, UpdateDeadline};

use presence_router_model::{FailureKind, Limits, UserPresenceState, answer, format_bytes};

use super::bindings::matrix::presence_router::types::{
    InterestedUsers as RawInterestedUsers, Route as RawRoute,
};
use super::blocking::WouldWait;
use super::engine::{
    GET_INTERESTED_USERS, GET_USERS_FOR_STATES, GuestEngine, LoadedComponent, PARSE_CONFIG,
};
use super::failure::{Failure, error_text};
use super::profile::{FuelProfiler, INSTANTIATION};
use super::state::{
    BrokenRule, CallEffects, GuestState, HOST_CALL_FUEL, LiftBytes, MAX_GUEST_RESOURCES,
    SliceLimits, charge_fuel,
};
use super::time_budget::{BudgetUsedUp, TimeBudget};

/// Host bytes an answer entry may cost while wasmtime lifts it. wasmtime
/// charges what it lifts from a guest against the store's "hostcall fuel"
/// before it allocates it, so this times a call's answer entries bounds
/// what a flood can make the host allocate, and a flood of
/// routes is refused before it is copied; the exact entry count is checked
/// after. A route costs 48 bytes of `String` and `Vec` headers plus its user
/// ID, an index 4: an answer at the entry cap whose user IDs average over 80
/// bytes is refused as too large, which no real router comes near.
const HOST_BYTES_PER_ANSWER_ENTRY: usize = 128;

/// Host bytes an answer entry may cost while wasmtime lifts it in a slice:
/// a route's `String` and `Vec` headers. So a slice lifts at most its
/// entries in routes, or twelve times as many 4-byte indices, before the
/// exact count.
const HOST_BYTES_PER_SLICE_ENTRY: usize = 48;

/// Host bytes wasmtime charges per entry of a list of strings it checks
/// before a host function reads it lazily (a `send-local-online-presence-to`
/// list).
const HOST_BYTES_PER_SEND_ENTRY: usize = 32;

/// How wasmtime says the hostcall fuel ran out.
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// WASI resources an instance may keep across calls beyond what it held
/// once configured (a language runtime may open a stream lazily, once). An
/// instance that ends a call holding more is dropped after it, so that
/// nothing a call leaves behind accumulates from call to call.
const RESOURCE_SLACK: usize = 16;

/// How much a call may do before it is abandoned, per router: the smaller
/// of this and the router's own limits applies (see `crate::slice` for
/// what an abandoned call becomes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// Fuel (roughly, wasm instructions) a router may use.
    pub fuel: u64,
    /// Time a router's call may take, the clock waits it asked for
    /// included: waits are checked as they are made; should another call's
    /// watchdog tick while it runs, the wall time since it started is
    /// checked too (a call in a slice reads no CPU clock). Fuel, which host
    /// work is charged to as well, is what bounds a call in a slice; how
    /// long a call that answered took by the wall clock is the embedder's
    /// to weigh (`CallStats::elapsed`).
    pub time: Duration,
    /// Answer entries (routes, state indices, users) a router may answer:
    /// lifting an answer and, in an embedder, converting it are host work
    /// that fuel doesn't see. wasmtime lifts at most 48 bytes per entry
    /// (so at most this many routes, or 12 times as many 4-byte indices,
    /// are copied), and the entries are counted exactly before the answer
    /// is believed or handed on: an answer with more uses the slice up.
    pub answer_entries: usize,
}

impl Slice {
    /// What the Synapse module gives a call on the reactor: 0.2 to 0.4 ms
    /// of wasm at most, far more than a batch of 200 states needs with a
    /// compiled router (the example router uses 700 fuel per state), far
    /// less than anything a user would notice.
    pub const REACTOR: Slice = Slice {
        fuel: 200_000,
        time: Duration::from_millis(5),
        // Ten users routed a 200-state batch fit; turning 2,048 entries
        // into Synapse's Python sets takes a few hundred microseconds.
        answer_entries: 2048,
    };
}

/// One router's checked `get-users-for-states` answer: (user, indices)
/// pairs (what an [`Unfinished`](crate::Unfinished) call holds).
pub type CheckedRoutes = Vec<(String, Vec<u32>)>;

/// A checked `get-interested-users` answer: `None` is `all-users`.
pub type CheckedInterest = Option<Vec<String>>;

/// When a call's time budget started: as soon as it had an instance slot, so
/// a fresh instance, its `parse-config` and the call share one budget.
#[derive(Clone, Copy)]
pub(crate) struct CallStart(Instant);

impl CallStart {
    pub(crate) fn now() -> CallStart {
        CallStart(Instant::now())
    }

    pub(crate) fn instant(&self) -> Instant {
        self.0
    }
}

/// One live instance of a router, with its own store.
pub(crate) struct GuestInstance {
    store: Store<GuestState>,
    engine: Arc<GuestEngine>,
    get_users_for_states: Func,
    get_interested_users: Func,
    limits: Limits,
    /// WASI resources held once configured.
    resources_at_rest: usize,
}

/// What a successful call used.
#[derive(Clone, Copy)]
pub(crate) struct CallUsage {
    pub fuel_used: u64,
    pub fuel_budget: u64,
    pub elapsed: Duration,
}

/// Why an instance could not be made ready.
pub(crate) enum InstanceError {
    /// The guest failed (trap, limit) while being instantiated or configured.
    Failed(Failure),
    /// `parse-config` answered `err`: the router refuses its configuration
    /// (the text is escaped and capped).
    ConfigRefused(String),
    /// An export has the wrong type for the presence-router world.
    WrongType(String),
}

impl GuestInstance {
    /// Instantiates the component and runs `parse-config`, within the time
    /// budget that started at `start` (the call's, when a call needs a
    /// fresh instance) and a fuel budget each.
    pub(crate) fn new(
        engine: &Arc<GuestEngine>,
        component: &LoadedComponent,
        limits: &Limits,
        config_json: &str,
        start: CallStart,
    ) -> Result<Self, InstanceError> {
        let mut store = Store::new(&engine.engine, GuestState::new(limits));
        store.limiter(|state| &mut state.memory);
        // Component-model handles (a guest's own resources, borrows lent to
        // the host) live in wasmtime's tables, not in the WASI one: the same
        // cap for those.
        store.set_max_component_handles(MAX_GUEST_RESOURCES);
        // Instantiation lifts under the flat cap, as `parse-config` does.
        let flat = lift_bytes(limits.max_answer_entries);
        store.data_mut().lift = LiftBytes {
            imports: flat,
            answer: flat,
        };
        store.set_hostcall_fuel(flat);
        // Every call into the host costs fuel, so that no loop of host calls
        // is free (state.rs). wasmtime reads the hostcall fuel each time it
        // lifts: a host function's arguments (a log line, a send list,
        // charged by the host function as it reads them) may be as large as
        // the router's flat answer cap allows; the answer, lifted once its
        // export returns, only as large as the call's own bound.
        store.call_hook(|mut store, hook| match hook {
            CallHook::CallingHost => {
                let imports = store.data().lift.imports;
                store.set_hostcall_fuel(imports);
                // A profiled call meets this hook at every epoch check,
                // which an unprofiled one meets only at a watchdog tick:
                // with too little fuel left for the charge, it is owed,
                // and settled on the way back unless this was the check
                // (profile.rs), so that profiling fails no call.
                if let Some(sampler) = &store.data().sampler
                    && !sampler.owes_host_fuel
                    && store.get_fuel().unwrap_or(0) < HOST_CALL_FUEL
                {
                    if let Some(sampler) = &mut store.data_mut().sampler {
                        sampler.owes_host_fuel = true;
                    }
                    return Ok(());
                }
                charge_fuel(&mut store, HOST_CALL_FUEL)
            }
            CallHook::ReturningFromHost => {
                let answer = store.data().lift.answer;
                store.set_hostcall_fuel(answer);
                let owed = store
                    .data_mut()
                    .sampler
                    .as_mut()
                    .is_some_and(|sampler| std::mem::take(&mut sampler.owes_host_fuel));
                if owed {
                    let _ = store.set_fuel(0);
                    return Err(wasmtime::Error::new(Trap::OutOfFuel));
                }
                Ok(())
            }
            _ => Ok(()),
        });
        store.data_mut().sampler = engine.profiler.as_ref().map(FuelProfiler::sampler);
        store.epoch_deadline_callback(|mut store| {
            // A profiled call's deadline is always due (profile.rs).
            let mut next = 1;
            if let Some(mut sampler) = store.data_mut().sampler.take() {
                // The call hook charged this check as a host call (or owes
                // it, which the check settles); compiled code drops that
                // charge at its next write-back of the fuel count, so
                // giving it back here changes nothing but what the sampler
                // reads.
                let mut fuel_left = store.get_fuel().unwrap_or(0);
                if !std::mem::take(&mut sampler.owes_host_fuel) {
                    fuel_left = fuel_left.saturating_add(HOST_CALL_FUEL);
                    let _ = store.set_fuel(fuel_left);
                }
                sampler.check(&store, fuel_left);
                store.data_mut().sampler = Some(sampler);
                next = 0;
            }
            let state = store.data_mut();
            // A profiled call has no time budget: sampling slows it, and
            // must not change what it answers (profile.rs).
            if next == 1 && state.time_budget.on_tick(&state.waits) {
                state.budget_used_up = true;
                return Err(wasmtime::Error::new(BudgetUsedUp));
            }
            // No yield to the executor: a call runs to its end on one thread,
            // so that its thread's CPU time is its own (time_budget.rs).
            Ok(UpdateDeadline::Continue(next))
        });
        begin_budget(&mut store, limits, start, None);
        prepare_call(&mut store, limits.fuel, INSTANTIATION);
        let instantiated = {
            let _running = engine.watchdog.running();
            component.pre.instantiate(&mut store)
        };
        end_sampling(&mut store);
        let instance = match instantiated {
            Ok(instance) => instance,
            Err(e) => {
                return Err(InstanceError::Failed(classify(
                    &mut store,
                    limits,
                    &e,
                    "instantiation",
                )));
            }
        };
        let exports = component.exports;
        let func = |store: &mut Store<GuestState>, index: ComponentExportIndex, name: &str| {
            instance.get_func(&mut *store, index).ok_or_else(|| {
                InstanceError::WrongType(format!("the export `{name}` is not a function"))
            })
        };
        let parse_config = func(&mut store, exports.parse_config, PARSE_CONFIG)?;
        let get_users_for_states = func(
            &mut store,
            exports.get_users_for_states,
            GET_USERS_FOR_STATES,
        )?;
        let get_interested_users = func(
            &mut store,
            exports.get_interested_users,
            GET_INTERESTED_USERS,
        )?;
        // Type-check each export once; the calls then skip the check.
        let wrong_type = |name: &str, e: wasmtime::Error| {
            InstanceError::WrongType(format!(
                "the export `{name}` does not have the type of the presence-router world: {}",
                error_text(&e)
            ))
        };
        parse_config
            .typed::<(&str,), (Result<(), String>,)>(&store)
            .map_err(|e| wrong_type(PARSE_CONFIG, e))?;
        get_users_for_states
            .typed::<(&[UserPresenceState],), (Vec<RawRoute>,)>(&store)
            .map_err(|e| wrong_type(GET_USERS_FOR_STATES, e))?;
        get_interested_users
            .typed::<(&str,), (RawInterestedUsers,)>(&store)
            .map_err(|e| wrong_type(GET_INTERESTED_USERS, e))?;

        let mut instance = GuestInstance {
            store,
            engine: engine.clone(),
            get_users_for_states,
            get_interested_users,
            limits: limits.clone(),
            resources_at_rest: 0,
        };
        // Instantiation had its own fuel; parse-config gets a fresh budget
        // of fuel, and what is left of the time budget.
        // SAFETY: checked just above.
        let answer = unsafe {
            instance.call::<(&str,), (Result<(), String>,)>(
                parse_config,
                limits.fuel,
                None,
                (config_json,),
                PARSE_CONFIG,
            )
        };
        match answer {
            Ok(((Ok(()),), _)) => {
                instance.resources_at_rest = instance.store.data_mut().resources();
                Ok(instance)
            }
            Ok(((Err(message),), _)) => Err(InstanceError::ConfigRefused(
                presence_router_model::text::escape_untrusted(
                    &message,
                    presence_router_model::text::MAX_GUEST_TEXT_BYTES,
                ),
            )),
            Err(failure) => Err(InstanceError::Failed(failure)),
        }
    }

    /// Starts the time budget of a call on this (warm) instance, cut down
    /// to `slice` if there is one.
    pub(crate) fn begin(&mut self, start: CallStart, slice: Option<&Slice>) {
        begin_budget(&mut self.store, &self.limits, start, slice);
    }

    /// Calls `get-users-for-states` on a batch and checks the answer.
    pub(crate) fn get_users_for_states(
        &mut self,
        states: &[UserPresenceState],
    ) -> Result<(CheckedRoutes, CallUsage), Failure> {
        let fuel = self.limits.fuel_for_batch(states.len());
        let max_entries = self.limits.answer_entries_for_batch(states.len());
        // SAFETY: `GuestInstance::new` checked the export against exactly
        // these parameter and result types.
        let ((routes,), usage) = unsafe {
            self.call::<(&[UserPresenceState],), (Vec<RawRoute>,)>(
                self.get_users_for_states,
                fuel,
                Some(states.len()),
                (states,),
                GET_USERS_FOR_STATES,
            )
        }?;
        let entries = routes
            .iter()
            .map(|route| 1 + route.states.len())
            .fold(0usize, usize::saturating_add);
        self.check_slice_entries(entries)?;
        let routes: CheckedRoutes = routes.into_iter().map(|r| (r.user_id, r.states)).collect();
        answer::check_routes(&routes, states.len(), max_entries).map_err(|why| {
            Failure::invalid_answer(over_entries(why, &self.limits, states.len()))
        })?;
        Ok((routes, usage))
    }

    /// Calls `get-interested-users` for one user and checks the answer.
    pub(crate) fn get_interested_users(
        &mut self,
        user_id: &str,
    ) -> Result<(CheckedInterest, CallUsage), Failure> {
        let fuel = self.limits.fuel_for_batch(1);
        let max_entries = self.limits.answer_entries_for_batch(1);
        // SAFETY: as in `get_users_for_states`.
        let ((answer,), usage) = unsafe {
            self.call::<(&str,), (RawInterestedUsers,)>(
                self.get_interested_users,
                fuel,
                Some(1),
                (user_id,),
                GET_INTERESTED_USERS,
            )
        }?;
        match answer {
            RawInterestedUsers::AllUsers => Ok((None, usage)),
            RawInterestedUsers::Users(users) => {
                self.check_slice_entries(users.len())?;
                answer::check_users(&users, max_entries)
                    .map_err(|why| Failure::invalid_answer(over_entries(why, &self.limits, 1)))?;
                Ok((Some(users), usage))
            }
        }
    }

    /// An answer of `entries` entries, lifted in a slice that allows fewer
    /// than the router's own bound, uses the slice up: it is made again
    /// with the router's limits, and the embedder never has to convert
    /// more than the slice's entries on its tight thread.
    fn check_slice_entries(&self, entries: usize) -> Result<(), Failure> {
        match self.store.data().slice {
            Some(slice) if slice.answer_cut && entries > slice.answer_entries => {
                // wasmtime's call succeeded (its post-return ran): the
                // instance is sound.
                Err(Failure::slice_used_up(false))
            }
            _ => Ok(()),
        }
    }

    /// Calls an export with a fresh fuel budget, within the time budget
    /// begun for this call, and classifies a failure; an answer comes with
    /// what the call used. Its answer is bounded by the entries a batch of
    /// `batch` states may have; `None` (`parse-config`, whose answer is a
    /// refusal's text) by the flat `max_answer_entries`.
    ///
    /// # Safety
    ///
    /// `func` must have been type-checked against `Params` and `Return`
    /// (`Func::typed`): the check is skipped here because it costs as much as
    /// a small call.
    unsafe fn call<Params, Return>(
        &mut self,
        func: Func,
        fuel: u64,
        batch: Option<usize>,
        params: Params,
        export: &str,
    ) -> Result<(Return, CallUsage), Failure>
    where
        Params: ComponentNamedList + Lower,
        Return: ComponentNamedList + Lift + 'static,
    {
        let answer_entries = match batch {
            Some(batch) => self.limits.answer_entries_for_batch(batch),
            None => self.limits.max_answer_entries,
        };
        let own_answer_bytes = lift_bytes(answer_entries);
        let own_import_bytes = lift_bytes(self.limits.max_answer_entries);
        let (fuel, answer_bytes, import_bytes) = match self.store.data().slice {
            Some(slice) => {
                let cut = fuel.min(slice.fuel);
                let slice_bytes = slice
                    .answer_entries
                    .saturating_mul(HOST_BYTES_PER_SLICE_ENTRY);
                // Cut when the slice lifts fewer bytes or counts fewer
                // entries than the router's own bound would: running into
                // either is the slice's doing, not the router's.
                let answer_cut =
                    slice.answer_entries < answer_entries || slice_bytes < own_import_bytes;
                self.store.data_mut().slice = Some(SliceLimits {
                    fuel_cut: cut < fuel,
                    answer_cut,
                    ..slice
                });
                // What is lifted in a slice is the slice's, host function
                // arguments included: the rest is for the full call.
                (
                    cut,
                    own_answer_bytes.min(slice_bytes),
                    own_import_bytes.min(slice_bytes),
                )
            }
            None => (fuel, own_answer_bytes, own_import_bytes),
        };
        let state = self.store.data_mut();
        state.answer_batch = batch.unwrap_or(1);
        state.answer_entries = answer_entries;
        state.lift = LiftBytes {
            answer: answer_bytes,
            imports: import_bytes,
        };
        self.store.set_hostcall_fuel(answer_bytes);
        prepare_call(&mut self.store, fuel, export);
        // Named only when a failure needs it: a call allocates nothing more.
        let what = || format!("`{export}`");
        // SAFETY: the caller guarantees the types were checked.
        let typed = unsafe { TypedFunc::<Params, Return>::new_unchecked(func) };
        let ticks = self.engine.watchdog.ticks();
        let answered = {
            // A call in a slice is bounded by its slice's fuel, and wakes
            // no watchdog: waking a parked thread costs the caller a system
            // call and, on a virtual machine, an interrupt to another core
            // (6 to 10 µs measured here, several times a small call).
            let _running = self
                .store
                .data()
                .slice
                .is_none()
                .then(|| self.engine.watchdog.running());
            typed.call(&mut self.store, params)
        };
        end_sampling(&mut self.store);
        let answer = match answered {
            Ok(answer) => answer,
            Err(e) => return Err(classify(&mut self.store, &self.limits, &e, &what())),
        };
        let elapsed = self.store.data().time_budget.started().elapsed();
        let state = self.store.data_mut();
        if state.slice.is_some() {
            // Slept past the slice: used up. The instance ran the batch: a
            // fresh one runs it again. (How long the call took by the wall
            // clock is for the embedder to weigh: a thread the system left
            // waiting is no reason to throw an answer away.)
            if state.time_budget.waits_overspent(&state.waits) {
                return Err(Failure::slice_used_up(true));
            }
        } else if self.engine.watchdog.ticks() != ticks
            && state.sampler.is_none()
            && state.time_budget.on_tick(&state.waits)
        {
            // It spent its budget in a host call, after which no wasm ran to
            // notice the tick: the answer came too late all the same.
            let mut failure = budget_used_up(&self.limits, &what());
            failure.instance_lost = false;
            return Err(failure);
        }
        if state.time_budget.waits_overspent(&state.waits) {
            // It slept past its budget and answered before the watchdog's
            // next tick: the answer came too late all the same. wasmtime's
            // call succeeded, so the instance itself is sound.
            let mut failure = budget_used_up(&self.limits, &what());
            failure.instance_lost = false;
            return Err(failure);
        }
        let usage = CallUsage {
            fuel_used: fuel.saturating_sub(self.store.get_fuel().unwrap_or(0)),
            fuel_budget: fuel,
            // Since the budget started: a fresh instance's making counts.
            elapsed,
        };
        Ok((answer, usage))
    }

    /// Whether the instance may serve another call: false once a call left
    /// more WASI resources behind than it may keep.
    pub(crate) fn reusable(&mut self) -> bool {
        self.store.data_mut().resources() <= self.resources_at_rest + RESOURCE_SLACK
    }

    /// What the guest did besides answering during the last call (or since
    /// the instance was made), including its stdout and stderr lines.
    pub(crate) fn take_effects(&mut self) -> CallEffects {
        let state = self.store.data_mut();
        state.collect_output();
        std::mem::take(&mut state.effects)
    }

    /// Linear memory the instance holds, in bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.store.data().memory.used_bytes
    }
}

/// The bytes of answer the host lifts from a router at most, for an
/// answer of at most `entries` entries.
fn answer_bytes(entries: usize) -> usize {
    entries.saturating_mul(HOST_BYTES_PER_ANSWER_ENTRY)
}

/// The bytes the host lifts from a router in one call at most: its answer
/// and its sends' lists, each of at most `entries` entries.
fn lift_bytes(entries: usize) -> usize {
    answer_bytes(entries).saturating_add(entries.saturating_mul(HOST_BYTES_PER_SEND_ENTRY))
}

/// A failed entry count, with how the call's bound came to be.
fn over_entries(why: String, limits: &Limits, states: usize) -> String {
    match why.find("more than limits.max_answer_entries") {
        Some(at) => format!(
            "{}more than {}",
            &why[..at],
            limits.describe_answer_entries(states)
        ),
        None => why,
    }
}

/// Starts a time budget on a store, cut down to `slice` if there is one.
fn begin_budget(
    store: &mut Store<GuestState>,
    limits: &Limits,
    start: CallStart,
    slice: Option<&Slice>,
) {
    let state = store.data_mut();
    state.time_budget = match slice {
        Some(slice) => {
            state.slice = Some(SliceLimits {
                fuel: slice.fuel,
                fuel_cut: false,
                answer_entries: slice.answer_entries,
                // Set per call, against the call's own bound.
                answer_cut: false,
                // Always: a slice's time is wall time (it reads no CPU
                // clock), so running out of it says nothing of the router's
                // own budget, which the finished call measures.
                time_cut: true,
            });
            TimeBudget::in_slice(limits.timeout.min(slice.time), start.0, &state.waits)
        }
        None => {
            state.slice = None;
            TimeBudget::new(limits.timeout, start.0, &state.waits)
        }
    };
}

/// Resets the per-call state: a fresh fuel budget, the next epoch tick
/// checks the time budget, and nothing remembered from before.
fn prepare_call(store: &mut Store<GuestState>, fuel: u64, export: &str) {
    // Fuel is always enabled on this engine, so this cannot fail.
    let _ = store.set_fuel(fuel);
    match &mut store.data_mut().sampler {
        Some(sampler) => {
            sampler.begin(export, fuel);
            store.set_epoch_deadline(0);
        }
        None => store.set_epoch_deadline(1),
    }
    store.data_mut().start_call(fuel);
}

/// A profiled call's last stretch of fuel, after its last sample.
fn end_sampling(store: &mut Store<GuestState>) {
    if store.data().sampler.is_some() {
        let fuel_left = store.get_fuel().unwrap_or(0);
        if let Some(sampler) = &mut store.data_mut().sampler {
            sampler.end(fuel_left);
        }
    }
}

/// The failure of a call that waited on something that is never ready.
fn waited(what: &str) -> Failure {
    Failure {
        kind: FailureKind::Timeout,
        message: format!(
            "{what} waited on something other than a clock, which is never ready for a \
             router: a router may not wait"
        ),
        instance_lost: true,
        slice_used_up: false,
    }
}

/// The failure of a call that used its time budget up (the failure kind
/// `timeout`, as the configuration calls the budget).
fn budget_used_up(limits: &Limits, what: &str) -> Failure {
    Failure {
        kind: FailureKind::Timeout,
        message: format!(
            "{what} used up its {} time budget (its own CPU time plus the waits it asked for)",
            humantime::format_duration(limits.timeout)
        ),
        instance_lost: true,
        slice_used_up: false,
    }
}

/// Tells which limit (if any) a failed call ran into. `what` names the
/// call: "`get-users-for-states`", "instantiation".
fn classify(
    store: &mut Store<GuestState>,
    limits: &Limits,
    error: &wasmtime::Error,
    what: &str,
) -> Failure {
    let state = store.data_mut();
    state.collect_output();
    let broken_rule = error.chain().find_map(|e| e.downcast_ref::<BrokenRule>());
    let table_full = error.chain().any(|e| {
        matches!(
            e.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        )
    });
    // A call that had already overspent its budget through its waits used
    // its time budget up, whatever it did after.
    let overspent = state.time_budget.waits_overspent(&state.waits);
    let out_of_time = state.budget_used_up || overspent || error.is::<BudgetUsedUp>();
    let out_of_fuel = error.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel);
    // wasmtime's error type for this is private; its text is stable.
    let answer_too_big = error_text(error).contains(HOSTCALL_FUEL_EXHAUSTED);
    if let Some(slice) = state.slice
        && ((out_of_time && slice.time_cut)
            || (out_of_fuel && slice.fuel_cut)
            || (answer_too_big && slice.answer_cut))
    {
        return Failure::slice_used_up(true);
    }
    let (kind, message) = if out_of_time {
        return budget_used_up(limits, what);
    } else if error.is::<WouldWait>() {
        return waited(what);
    } else if let Some(BrokenRule(rule)) = broken_rule {
        (FailureKind::InvalidAnswer, format!("{what}: {rule}"))
    } else if out_of_fuel {
        (
            FailureKind::OutOfFuel,
            format!("{what} ran out of fuel (budget {})", state.fuel_budget),
        )
    } else if answer_too_big {
        (
            FailureKind::InvalidAnswer,
            format!(
                "{what} sent more data than {}{} (over {} bytes); refused before it was \
                 all copied",
                if state.answer_entries == limits.max_answer_entries {
                    format!("limits.max_answer_entries = {}", limits.max_answer_entries)
                } else {
                    limits.describe_answer_entries(state.answer_batch)
                },
                if state.answer_entries == limits.max_answer_entries {
                    " allows"
                } else {
                    ""
                },
                lift_bytes(state.answer_entries),
            ),
        )
    } else if table_full {
        (
            FailureKind::Memory,
            format!(
                "{what} held more than the {MAX_GUEST_RESOURCES} WASI resources an instance may \
                 hold at once (streams, pollables it never dropped)"
            ),
        )
    } else if state.memory.refused {
        (
            FailureKind::Memory,
            format!(
                "{what} needed more than its {} of memory ({})",
                format_bytes(limits.memory),
                error_text(error)
            ),
        )
    } else {
        // A panic's message went to stderr: quote its last lines (the
        // rest are in the log), without Rust's hint about backtraces. They
        // were escaped and capped as they were captured.
        let quoted: Vec<&str> = state
            .stderr_tail
            .iter()
            .filter(|line| !line.starts_with("note: run with `RUST_BACKTRACE"))
            .map(String::as_str)
            .collect();
        let tail = quoted[quoted.len().saturating_sub(2)..].join(" / ");
        let mut message = format!("{what} trapped: {}", error_text(error));
        if !tail.is_empty() {
            message.push_str(&format!(" (guest stderr: {tail})"));
        }
        (FailureKind::Trap, message)
    };
    Failure {
        kind,
        message,
        instance_lost: true,
        slice_used_up: false,
    }
}
