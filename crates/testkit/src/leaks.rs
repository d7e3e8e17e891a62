//! Leaks: what a router keeps from one call to the next.
//!
//! A router instance serves call after call, and nothing resets its linear
//! memory between them (`ARCHITECTURE.md`). A router that forgets to free
//! something on every call passes every functional test, then fails with
//! `memory` in production once it has leaked `limits.memory`, loses its
//! instance, and starts over. Two checks catch it before an operator loads
//! it:
//!
//! - [`measure_growth`] makes many calls of each callback on one instance
//!   and reads the instance's memory after each of them, past a warm-up.
//!   Wasm memory only grows, and never by less than a 64 KiB page, so a
//!   router that frees what it allocates stays flat once its allocator has
//!   reached its working size, and one that leaks grows again and again.
//!   Wasm is deterministic: the same calls give the same figure every run.
//! - [`inspect_exports`] reads the component binary: an export whose result
//!   holds a string or a list hands the host an allocation, and only its
//!   canonical ABI `post-return` function, called once the host has copied
//!   the result, lets the guest free it. An export lifted without one leaks
//!   what it returns on every call (wit-bindgen-cpp 0.63 names its
//!   post-return functions so that `wasm-tools component new` ignores them).

use std::collections::HashMap;
use std::fmt;

use presence_router_runtime::{
    FailureKind, Presence, RouterFailure, RouterSet, UserPresenceState, format_bytes,
};
use wasmparser::{
    CanonicalFunction, CanonicalOption, ComponentAlias, ComponentExternalKind, ComponentInstance,
    ComponentTypeRef, Parser, Payload, ValidPayload, Validator,
    component_types::{ComponentDefinedType, ComponentValType},
};

use crate::thousands;

/// How many calls of each callback the growth measurement makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrowthPlan {
    /// Calls before the first reading: whatever an allocator or a
    /// language's runtime sets up once (a buffer sized for the largest
    /// answer, a garbage collector's first heap) is not a leak.
    pub warm_up: usize,
    /// Calls in a row without growth that show the memory settled: a
    /// router that frees what it allocates stops growing once its
    /// allocator (or its garbage collector's heap) reaches its working
    /// size; a leak never does. The measurement ends after this many calls
    /// without growth.
    pub quiet: usize,
    /// Calls measured at most. A router that still grew within the last
    /// `quiet` of them leaks.
    pub max_calls: usize,
}

impl GrowthPlan {
    /// `presence-router test`'s plan. 5,000 quiet calls see a leak of 14
    /// bytes per call (one 64 KiB page in 5,000 calls) and a JavaScript
    /// engine's leak, which grows its heap 2 MiB at a time every few
    /// thousand calls; a Go router's heap grows page by page for a few
    /// thousand calls until its collector's working size, then stays: the
    /// measurement goes on until 5,000 calls show no growth, or 12,000.
    /// Flat routers cost 5,000 calls of each callback: the Rust example
    /// router 0.2 s, the Python one 1.2 s. The warm-up comes after the kit's other calls
    /// on the same instance (the built-in cases, among them a batch of
    /// 1,000 states, yours, the consistency check), so whatever is sized
    /// once for the largest call is already there.
    pub const DEFAULT: GrowthPlan = GrowthPlan {
        warm_up: 200,
        quiet: 5_000,
        max_calls: 12_000,
    };
}

/// One of the two callbacks, as the WIT names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Export {
    GetUsersForStates,
    GetInterestedUsers,
}

impl fmt::Display for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Export::GetUsersForStates => "get-users-for-states",
            Export::GetInterestedUsers => "get-interested-users",
        })
    }
}

/// The instance's memory grew during measured call `call` (1-based) to
/// `memory` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub call: usize,
    pub memory: u64,
}

/// What one callback's calls did to the instance's memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Growth {
    pub export: Export,
    pub plan: GrowthPlan,
    /// What the calls were, for the report.
    pub calls_made_of: String,
    /// The instance's linear memory after the warm-up, in bytes.
    pub before: u64,
    /// After the last measured call that answered.
    pub after: u64,
    /// Measured calls that answered.
    pub measured: usize,
    /// How many measured calls the memory grew during.
    pub steps: usize,
    /// The first of them, and the last.
    pub first_step: Option<Step>,
    pub last_step: Option<Step>,
    /// Why the measurement ended early, if it did.
    pub stopped: Option<String>,
}

impl Growth {
    /// Bytes the instance grew by over the measured calls.
    pub fn grown(&self) -> u64 {
        self.after.saturating_sub(self.before)
    }

    /// Whether it leaks: its memory was still growing when the
    /// measurement ended (it grew within the last `plan.quiet` calls, at
    /// least twice in all), or a call failed once it had grown.
    pub fn leaks(&self) -> bool {
        let still_growing = self
            .last_step
            .is_some_and(|last| self.measured - last.call < self.plan.quiet);
        self.steps >= 2 && still_growing || self.steps >= 1 && self.stopped.is_some()
    }

    /// Whether to warn: it leaks, or its memory could not be followed.
    pub fn flagged(&self) -> bool {
        self.leaks() || self.stopped.is_some()
    }

    /// The leak per call, rounded to the byte: from the first step to the
    /// last, where it grew at least twice. Memory grows by a page or more
    /// at a time, so counting from the first step, not from before it,
    /// measures whole periods of the leak.
    pub fn bytes_per_call(&self) -> u64 {
        let (Some(first), Some(last)) = (self.first_step, self.last_step) else {
            return 0;
        };
        let (grown, calls) = if !self.leaks() {
            return 0;
        } else if self.steps >= 2 {
            (last.memory - first.memory, last.call - first.call)
        } else {
            (self.grown(), self.measured.max(1))
        };
        (grown + calls as u64 / 2) / calls as u64
    }

    /// About how many more calls until the instance reaches
    /// `memory_limit`, at the measured rate.
    pub fn calls_until(&self, memory_limit: u64) -> Option<u64> {
        let per_call = self.bytes_per_call();
        (per_call > 0).then(|| memory_limit.saturating_sub(self.after) / per_call)
    }

    /// One line, starting with the export's name: `flat at 1280KiB over
    /// 2,000 calls ...`, or how much it leaks and when that exhausts
    /// `memory_limit`.
    pub fn summary(&self, memory_limit: u64) -> String {
        let calls = format!(
            "{} calls ({})",
            thousands(self.measured as u64),
            self.calls_made_of
        );
        let grew = format!(
            "it grew from {} to {} over {calls}",
            format_bytes(self.before),
            format_bytes(self.after),
        );
        let text = match (
            self.calls_until(memory_limit),
            &self.stopped,
            self.first_step,
        ) {
            (Some(until), stopped, _) => {
                let then = stopped
                    .as_ref()
                    .map(|why| format!("; then {why}"))
                    .unwrap_or_default();
                format!(
                    "leaks ~{} bytes per call: at the {} memory limit it traps after ~{} more \
                     calls ({grew}){then}",
                    thousands(self.bytes_per_call()),
                    format_bytes(memory_limit),
                    thousands(until),
                )
            }
            (None, Some(why), _) => format!("{why} (measured {calls} before)"),
            (None, None, None) => format!("flat at {} over {calls}", format_bytes(self.after)),
            (None, None, Some(first)) => {
                let last = self.last_step.unwrap_or(first);
                let how = if self.steps == 1 {
                    format!(
                        "grew once, by {} at call {}",
                        format_bytes(self.grown()),
                        thousands(first.call as u64)
                    )
                } else {
                    format!(
                        "grew {} times, by {} in all, from call {} to call {}",
                        self.steps,
                        format_bytes(self.grown()),
                        thousands(first.call as u64),
                        thousands(last.call as u64)
                    )
                };
                format!(
                    "{how}, then stayed at {} for the {} calls after: it settled, not a leak",
                    format_bytes(self.after),
                    thousands((self.measured - last.call) as u64),
                )
            }
        };
        format!("{}: {text}", self.export)
    }
}

/// The calls the measurement cycles through for each callback: batches
/// and users from the router's configuration, so that its answers are the
/// ones it gives in service (an empty answer allocates nothing to leak).
struct Workload {
    batches: Vec<Vec<UserPresenceState>>,
    users: Vec<String>,
}

impl Workload {
    fn new(config_json: &str) -> Self {
        let pool = crate::consistency::user_pool(config_json);
        let varied = [
            Presence::Online,
            Presence::Unavailable,
            Presence::Offline,
            Presence::Busy,
            Presence::Other("org.example.custom".into()),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, presence)| {
            let mut state = UserPresenceState::new(format!("@user{i}:example.com"), presence);
            state.status_msg = Some(format!("status ✓ {i}"));
            state.currently_active = i % 2 == 0;
            state
        })
        .collect();
        let everyone = pool
            .iter()
            .enumerate()
            .map(|(i, user)| {
                let mut state = UserPresenceState::new(user.clone(), Presence::Online);
                if i % 2 == 0 {
                    state.status_msg = Some("around".into());
                }
                state
            })
            .collect();
        let mut users = pool;
        users.push("@stranger:elsewhere.example.org".into());
        Workload {
            batches: vec![varied, everyone],
            users,
        }
    }

    fn describe(&self, export: Export) -> String {
        match export {
            Export::GetUsersForStates => {
                let sizes: Vec<String> = self.batches.iter().map(|b| b.len().to_string()).collect();
                format!("batches of {} states in turn", sizes.join(" and "))
            }
            Export::GetInterestedUsers => format!("{} users in turn", self.users.len()),
        }
    }

    /// Makes call `n` of `export`: its failure, or the instance's memory
    /// after it.
    async fn call(
        &self,
        routers: &RouterSet,
        export: Export,
        n: usize,
    ) -> Result<u64, RouterFailure> {
        // Only what the calls leave behind matters here, not their answers.
        let (failure, stats) = match export {
            Export::GetUsersForStates => {
                let routed = routers
                    .get_users_for_states(&self.batches[n % self.batches.len()])
                    .await;
                (routed.failures.into_iter().next(), routed.stats)
            }
            Export::GetInterestedUsers => {
                let routed = routers
                    .get_interested_users(&self.users[n % self.users.len()])
                    .await;
                (routed.failures.into_iter().next(), routed.stats)
            }
        };
        match failure {
            Some(failure) => Err(failure),
            None => Ok(stats.first().map_or(0, |s| s.memory_bytes)),
        }
    }
}

/// Makes `plan`'s calls of each callback on one instance of the router in
/// `routers` (its only router, with `max_instances: 1`, so that every call
/// lands on the same instance) and reports each callback's growth.
pub async fn measure_growth(
    routers: &RouterSet,
    config_json: &str,
    plan: GrowthPlan,
) -> Vec<Growth> {
    let workload = Workload::new(config_json);
    let mut growths = Vec::new();
    for export in [Export::GetUsersForStates, Export::GetInterestedUsers] {
        growths.push(measure_one(routers, &workload, export, plan).await);
    }
    growths
}

async fn measure_one(
    routers: &RouterSet,
    workload: &Workload,
    export: Export,
    plan: GrowthPlan,
) -> Growth {
    let mut growth = Growth {
        export,
        plan,
        calls_made_of: workload.describe(export),
        before: 0,
        after: 0,
        measured: 0,
        steps: 0,
        first_step: None,
        last_step: None,
        stopped: None,
    };
    // The first reading is after a call: the instance may not exist before.
    let warm_up = plan.warm_up.max(1);
    for n in 0..warm_up + plan.max_calls.max(plan.quiet) {
        let memory = match workload.call(routers, export, n).await {
            Ok(memory) => memory,
            Err(failure) => {
                let ran_out = if failure.kind == FailureKind::Memory {
                    " (it ran out of memory)"
                } else {
                    ""
                };
                growth.stopped = Some(format!(
                    "call {} failed{ran_out}: {}: {}",
                    thousands(n as u64 + 1),
                    failure.kind,
                    failure.message
                ));
                break;
            }
        };
        // A healthy instance goes back to the pool after the call: if it
        // didn't, the runtime dropped it (it kept WASI resources it made),
        // and the next call's instance starts from scratch.
        if routers.warm_instances() != 1 {
            growth.stopped = Some(format!(
                "the runtime dropped its instance after call {} (it kept more WASI \
                 resources than it started with: a leak of host memory), so one instance's \
                 memory can't be followed",
                thousands(n as u64 + 1)
            ));
            break;
        }
        if n + 1 < warm_up {
            continue;
        }
        if n + 1 == warm_up {
            growth.before = memory;
            growth.after = memory;
            continue;
        }
        growth.measured += 1;
        if memory > growth.after {
            let step = Step {
                call: growth.measured,
                memory,
            };
            growth.steps += 1;
            growth.first_step.get_or_insert(step);
            growth.last_step = Some(step);
        }
        growth.after = memory;
        // Enough: settled (no growth over the last `quiet` calls). A leak
        // runs to `max_calls`, or until it runs out of memory.
        let since_growth = growth.measured - growth.last_step.map_or(0, |step| step.call);
        if since_growth >= plan.quiet {
            break;
        }
    }
    growth
}

/// What the component binary says about one exported function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportLift {
    pub name: String,
    /// Its result holds a string or a list: memory the guest allocated and
    /// must free after the host copied it.
    pub returns_allocation: bool,
    /// Whether its canonical `lift` names a `post-return` function; `None`
    /// where the export can't be followed to a lift in this binary (an
    /// import passed through, an instance of a component imported).
    pub post_return: Option<bool>,
    /// Lifted with the async ABI, which returns through `task.return`
    /// during the call: nothing to free after it.
    pub async_lift: bool,
}

/// What the post-return check says of one export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiftVerdict {
    /// Its result holds no string or list: nothing to free.
    NothingToFree,
    /// Its post-return frees what it returned.
    Frees,
    /// An async lift: the result is copied during the call.
    ReturnsDuringTheCall,
    /// It returns an allocation and nothing frees it.
    Leaks,
    /// Lifted outside this binary: not checked.
    NotFollowed,
}

impl ExportLift {
    pub fn verdict(&self) -> LiftVerdict {
        match (self.returns_allocation, self.async_lift, self.post_return) {
            (false, _, _) => LiftVerdict::NothingToFree,
            (true, true, _) => LiftVerdict::ReturnsDuringTheCall,
            (true, false, None) => LiftVerdict::NotFollowed,
            (true, false, Some(true)) => LiftVerdict::Frees,
            (true, false, Some(false)) => LiftVerdict::Leaks,
        }
    }

    /// An allocation returned with no post-return to free it.
    pub fn leaks_its_result(&self) -> bool {
        self.verdict() == LiftVerdict::Leaks
    }

    /// One line for the report, starting with the export's name.
    pub fn describe(&self) -> String {
        let name = &self.name;
        match self.verdict() {
            LiftVerdict::NothingToFree => format!("{name} returns no string or list"),
            LiftVerdict::Frees => format!("{name} frees what it returns (post-return)"),
            LiftVerdict::ReturnsDuringTheCall => {
                format!("{name} is lifted async: its result is copied during the call")
            }
            LiftVerdict::Leaks => self.warning(),
            LiftVerdict::NotFollowed => format!(
                "{name} is not lifted in this component (an import or a component passed \
                 through): not checked"
            ),
        }
    }

    /// The warning for [`ExportLift::leaks_its_result`].
    pub fn warning(&self) -> String {
        format!(
            "{} returns an allocation but has no post-return: everything it returns is \
             leaked on every call",
            self.name
        )
    }
}

/// Why a component could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("not a valid component: {0}")]
    Invalid(#[from] wasmparser::BinaryReaderError),
    #[error("a core module, not a component")]
    NotAComponent,
}

/// Every function the component exports (at its top level), with what its
/// result holds and whether its lift frees it.
pub fn inspect_exports(component: &[u8]) -> Result<Vec<ExportLift>, InspectError> {
    if !Parser::is_component(component) {
        return Err(InspectError::NotAComponent);
    }
    let mut validator = Validator::new();
    let mut scopes: Vec<Scope> = Vec::new();
    // Where the payloads being read belong: a component (its scope) or a
    // core module nested in one (whose payloads say nothing here).
    let mut open: Vec<Option<usize>> = Vec::new();
    let mut types = None;
    for payload in Parser::new(0).parse_all(component) {
        let payload = payload?;
        // The validator gives the types of the component's functions; the
        // code of core functions is left unchecked (wasmtime checked it
        // when it compiled the component, and it is most of the bytes).
        if let ValidPayload::End(end) = validator.payload(&payload)?
            && open.len() == 1
        {
            types = Some(end);
        }
        let current = open.last().copied().flatten();
        match payload {
            Payload::Version { .. } if open.is_empty() => {
                scopes.push(Scope::default());
                open.push(Some(0));
            }
            Payload::ModuleSection { .. } => open.push(None),
            Payload::ComponentSection { .. } => {
                let id = scopes.len();
                scopes.push(Scope::default());
                if let Some(parent) = current {
                    scopes[parent].components.push(Some(id));
                }
                open.push(Some(id));
            }
            Payload::End(_) => {
                open.pop();
            }
            payload => {
                if let Some(scope) = current {
                    scopes[scope].read(payload)?;
                }
            }
        }
    }
    let Some(types) = types else {
        return Err(InspectError::NotAComponent);
    };
    let types = types.as_ref();
    let Some(top) = scopes.first() else {
        return Err(InspectError::NotAComponent);
    };
    let mut lifts = Vec::new();
    for (name, kind, index) in &top.exports {
        if *kind != ComponentExternalKind::Func {
            continue;
        }
        let func_type = &types[types.component_function_at(*index)];
        let returns_allocation = func_type
            .result
            .is_some_and(|result| holds_allocation(&types, result, 0));
        let lift = resolve_func(&scopes, &Frame::top(), *index, 0);
        lifts.push(ExportLift {
            name: name.clone(),
            returns_allocation,
            post_return: lift.map(|lift| lift.post_return),
            async_lift: lift.is_some_and(|lift| lift.async_),
        });
    }
    Ok(lifts)
}

/// Whether a value of this type is passed through memory the guest
/// allocated: a string or a list anywhere in it.
fn holds_allocation(
    types: &wasmparser::types::TypesRef<'_>,
    ty: ComponentValType,
    depth: usize,
) -> bool {
    // Types are finite trees, but a malformed chain is not worth a stack.
    if depth > 100 {
        return false;
    }
    let id = match ty {
        ComponentValType::Primitive(primitive) => {
            return primitive == wasmparser::PrimitiveValType::String;
        }
        ComponentValType::Type(id) => id,
    };
    let inner = |ty: &ComponentValType| holds_allocation(types, *ty, depth + 1);
    match &types[id] {
        ComponentDefinedType::Primitive(primitive) => {
            *primitive == wasmparser::PrimitiveValType::String
        }
        ComponentDefinedType::List { .. } | ComponentDefinedType::Map { .. } => true,
        ComponentDefinedType::FixedLengthList { element, .. } => inner(element),
        ComponentDefinedType::Record(record) => record.fields.values().any(inner),
        ComponentDefinedType::Variant(variant) => variant
            .cases
            .values()
            .any(|case| case.ty.as_ref().is_some_and(inner)),
        ComponentDefinedType::Tuple(tuple) => tuple.types.iter().any(inner),
        ComponentDefinedType::Option { ty, .. } => inner(ty),
        ComponentDefinedType::Result { ok, err, .. } => {
            ok.as_ref().is_some_and(inner) || err.as_ref().is_some_and(inner)
        }
        ComponentDefinedType::Flags(_)
        | ComponentDefinedType::Enum(_)
        | ComponentDefinedType::Own(_)
        | ComponentDefinedType::Borrow(_)
        | ComponentDefinedType::Future { .. }
        | ComponentDefinedType::Stream { .. } => false,
    }
}

/// How a component function came to be, as far as this check follows it.
#[derive(Clone, Debug)]
enum FuncDef {
    Lift(Lift),
    /// The component's import of this name.
    Import(String),
    /// An export of one of the component's instances.
    Alias {
        instance: u32,
        name: String,
    },
    /// The same function under another index (an export makes a new one).
    Same(u32),
}

#[derive(Clone, Copy, Debug)]
struct Lift {
    post_return: bool,
    async_: bool,
}

#[derive(Clone, Debug)]
enum InstanceDef {
    /// A nested component (a scope, if it is one defined here) instantiated
    /// with these arguments.
    Instantiate {
        component: Option<usize>,
        args: HashMap<String, (ComponentExternalKind, u32)>,
    },
    /// Made of items of this component.
    Exports(HashMap<String, (ComponentExternalKind, u32)>),
    Import(String),
    /// Anything this check doesn't follow.
    Other,
}

/// The index spaces of one component that lead to functions.
#[derive(Default)]
struct Scope {
    funcs: Vec<FuncDef>,
    instances: Vec<InstanceDef>,
    /// Components by index: `Some(scope)` for one defined inside this one.
    components: Vec<Option<usize>>,
    exports: Vec<(String, ComponentExternalKind, u32)>,
}

impl Scope {
    fn read(&mut self, payload: Payload<'_>) -> Result<(), InspectError> {
        match payload {
            Payload::ComponentImportSection(section) => {
                for import in section {
                    let import = import?;
                    let name = import.name.name.to_owned();
                    match import.ty {
                        ComponentTypeRef::Func(_) => self.funcs.push(FuncDef::Import(name)),
                        ComponentTypeRef::Instance(_) => {
                            self.instances.push(InstanceDef::Import(name))
                        }
                        ComponentTypeRef::Component(_) => self.components.push(None),
                        _ => {}
                    }
                }
            }
            Payload::ComponentAliasSection(section) => {
                for alias in section {
                    match alias? {
                        ComponentAlias::InstanceExport {
                            kind,
                            instance_index,
                            name,
                        } => match kind {
                            ComponentExternalKind::Func => self.funcs.push(FuncDef::Alias {
                                instance: instance_index,
                                name: name.to_owned(),
                            }),
                            ComponentExternalKind::Instance => {
                                self.instances.push(InstanceDef::Other)
                            }
                            ComponentExternalKind::Component => self.components.push(None),
                            _ => {}
                        },
                        ComponentAlias::Outer {
                            kind: wasmparser::ComponentOuterAliasKind::Component,
                            ..
                        } => self.components.push(None),
                        _ => {}
                    }
                }
            }
            Payload::ComponentCanonicalSection(section) => {
                for func in section {
                    // Only `lift` makes a component function; the others
                    // make core functions.
                    if let CanonicalFunction::Lift { options, .. } = func? {
                        self.funcs.push(FuncDef::Lift(Lift {
                            post_return: options
                                .iter()
                                .any(|o| matches!(o, CanonicalOption::PostReturn(_))),
                            async_: options.iter().any(|o| matches!(o, CanonicalOption::Async)),
                        }));
                    }
                }
            }
            Payload::ComponentInstanceSection(section) => {
                for instance in section {
                    let def = match instance? {
                        ComponentInstance::Instantiate {
                            component_index,
                            args,
                        } => InstanceDef::Instantiate {
                            component: self
                                .components
                                .get(component_index as usize)
                                .copied()
                                .flatten(),
                            args: args
                                .iter()
                                .map(|a| (a.name.to_owned(), (a.kind, a.index)))
                                .collect(),
                        },
                        ComponentInstance::FromExports(exports) => InstanceDef::Exports(
                            exports
                                .iter()
                                .map(|e| (e.name.name.to_owned(), (e.kind, e.index)))
                                .collect(),
                        ),
                    };
                    self.instances.push(def);
                }
            }
            Payload::ComponentExportSection(section) => {
                for export in section {
                    let export = export?;
                    self.exports
                        .push((export.name.name.to_owned(), export.kind, export.index));
                    // An export is a new item of its kind.
                    match export.kind {
                        ComponentExternalKind::Func => self.funcs.push(FuncDef::Same(export.index)),
                        ComponentExternalKind::Instance => self.instances.push(
                            self.instances
                                .get(export.index as usize)
                                .cloned()
                                .unwrap_or(InstanceDef::Other),
                        ),
                        ComponentExternalKind::Component => self.components.push(
                            self.components
                                .get(export.index as usize)
                                .copied()
                                .flatten(),
                        ),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// One instantiation of a scope: what its imports were given, and where.
struct Frame<'a> {
    scope: usize,
    args: Option<&'a HashMap<String, (ComponentExternalKind, u32)>>,
    parent: Option<&'a Frame<'a>>,
}

impl Frame<'_> {
    fn top() -> Frame<'static> {
        Frame {
            scope: 0,
            args: None,
            parent: None,
        }
    }

    /// What the instantiating component gave for import `name` of `kind`.
    fn arg(&self, name: &str, kind: ComponentExternalKind) -> Option<u32> {
        let (given, index) = self.args?.get(name)?;
        (*given == kind).then_some(*index)
    }
}

/// The lift behind function `index` of the frame's scope, if it is one
/// defined in this binary.
fn resolve_func(scopes: &[Scope], frame: &Frame<'_>, index: u32, depth: usize) -> Option<Lift> {
    if depth > 100 {
        return None;
    }
    match scopes.get(frame.scope)?.funcs.get(index as usize)? {
        FuncDef::Lift(lift) => Some(*lift),
        FuncDef::Same(other) => resolve_func(scopes, frame, *other, depth + 1),
        FuncDef::Import(name) => {
            let given = frame.arg(name, ComponentExternalKind::Func)?;
            resolve_func(scopes, frame.parent?, given, depth + 1)
        }
        FuncDef::Alias { instance, name } => {
            resolve_instance_export(scopes, frame, *instance, name, depth + 1)
        }
    }
}

/// The lift behind the function `name` exported by instance `index`.
fn resolve_instance_export(
    scopes: &[Scope],
    frame: &Frame<'_>,
    index: u32,
    name: &str,
    depth: usize,
) -> Option<Lift> {
    if depth > 100 {
        return None;
    }
    match scopes.get(frame.scope)?.instances.get(index as usize)? {
        InstanceDef::Instantiate { component, args } => {
            let inner = (*component)?;
            let (_, _, exported) = scopes
                .get(inner)?
                .exports
                .iter()
                .find(|(n, kind, _)| n == name && *kind == ComponentExternalKind::Func)?;
            let inner_frame = Frame {
                scope: inner,
                args: Some(args),
                parent: Some(frame),
            };
            resolve_func(scopes, &inner_frame, *exported, depth + 1)
        }
        InstanceDef::Exports(items) => match items.get(name)? {
            (ComponentExternalKind::Func, func) => resolve_func(scopes, frame, *func, depth + 1),
            _ => None,
        },
        InstanceDef::Import(import) => {
            let given = frame.arg(import, ComponentExternalKind::Instance)?;
            resolve_instance_export(scopes, frame.parent?, given, name, depth + 1)
        }
        InstanceDef::Other => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn growth(before: u64, after: u64, measured: usize, steps: &[Step]) -> Growth {
        Growth {
            export: Export::GetUsersForStates,
            plan: GrowthPlan::DEFAULT,
            calls_made_of: "batches of 5 and 9 states in turn".into(),
            before,
            after,
            measured,
            steps: steps.len(),
            first_step: steps.first().copied(),
            last_step: steps.last().copied(),
            stopped: None,
        }
    }

    fn step(call: usize, memory: u64) -> Step {
        Step { call, memory }
    }

    #[test]
    fn flat_memory_is_not_flagged() {
        let flat = growth(MIB, MIB, 2_000, &[]);
        assert!(!flat.flagged());
        assert_eq!(flat.bytes_per_call(), 0);
        assert_eq!(flat.calls_until(64 * MIB), None);
        assert_eq!(
            flat.summary(64 * MIB),
            "get-users-for-states: flat at 1MiB over 2,000 calls (batches of 5 and 9 states \
             in turn)"
        );
    }

    #[test]
    fn growth_that_never_repeats_is_a_one_off() {
        let once = growth(MIB, 3 * MIB, 10_000, &[step(1_200, 3 * MIB)]);
        assert!(!once.flagged());
        assert_eq!(once.bytes_per_call(), 0);
        assert_eq!(
            once.summary(64 * MIB),
            "get-users-for-states: grew once, by 2MiB at call 1,200, then stayed at 3MiB for \
             the 8,800 calls after: it settled, not a leak"
        );
        // A heap growing page by page up to its collector's working size
        // (Go), then staying: not a leak either.
        let settled = growth(
            MIB,
            2 * MIB,
            6_200,
            &[step(300, MIB + MIB / 2), step(1_200, 2 * MIB)],
        );
        assert!(!settled.flagged());
        assert_eq!(
            settled.summary(64 * MIB),
            "get-users-for-states: grew 2 times, by 1MiB in all, from call 300 to call 1,200, \
             then stayed at 2MiB for the 5,000 calls after: it settled, not a leak"
        );
    }

    #[test]
    fn a_leak_is_measured_between_whole_steps() {
        // 2 MiB every 3,000 calls, the first step 1,000 calls in: counting
        // from before it would say 1,398 bytes per call, not 699.
        let leak = growth(
            10 * MIB,
            14 * MIB,
            4_000,
            &[step(1_000, 12 * MIB), step(4_000, 14 * MIB)],
        );
        assert!(leak.leaks() && leak.flagged());
        assert_eq!(leak.bytes_per_call(), 699);
        assert_eq!(leak.calls_until(64 * MIB), Some(50 * MIB / 699));
        assert_eq!(
            leak.summary(64 * MIB),
            "get-users-for-states: leaks ~699 bytes per call: at the 64MiB memory limit it \
             traps after ~75,005 more calls (it grew from 10MiB to 14MiB over 4,000 calls \
             (batches of 5 and 9 states in turn))"
        );
    }

    #[test]
    fn a_measurement_cut_short_is_flagged_with_why() {
        let mut failed = growth(MIB, MIB, 10, &[]);
        failed.stopped = Some("call 211 failed: trap: unreachable".into());
        assert!(failed.flagged() && !failed.leaks());
        assert_eq!(
            failed.summary(64 * MIB),
            "get-users-for-states: call 211 failed: trap: unreachable (measured 10 calls \
             (batches of 5 and 9 states in turn) before)"
        );
        // Grown once, then out of memory: a leak, at the rate seen.
        let mut exhausted = growth(MIB, 2 * MIB, 4, &[step(3, 2 * MIB)]);
        exhausted.stopped = Some("call 205 failed (it ran out of memory): memory: ...".into());
        assert!(exhausted.leaks());
        assert_eq!(exhausted.bytes_per_call(), MIB / 4);
        assert!(
            exhausted
                .summary(64 * MIB)
                .ends_with("; then call 205 failed (it ran out of memory): memory: ..."),
            "{}",
            exhausted.summary(64 * MIB)
        );
    }

    #[test]
    fn only_an_allocation_without_post_return_is_a_leak() {
        let lift = |returns_allocation, post_return, async_lift| ExportLift {
            name: "get-users-for-states".into(),
            returns_allocation,
            post_return,
            async_lift,
        };
        assert_eq!(lift(true, Some(false), false).verdict(), LiftVerdict::Leaks);
        assert_eq!(lift(true, Some(true), false).verdict(), LiftVerdict::Frees);
        assert_eq!(
            lift(false, Some(false), false).verdict(),
            LiftVerdict::NothingToFree
        );
        assert_eq!(
            lift(true, Some(false), true).verdict(),
            LiftVerdict::ReturnsDuringTheCall
        );
        assert_eq!(lift(true, None, false).verdict(), LiftVerdict::NotFollowed);
        assert_eq!(
            lift(true, Some(false), false).describe(),
            "get-users-for-states returns an allocation but has no post-return: everything \
             it returns is leaked on every call"
        );
    }
}
