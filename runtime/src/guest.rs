//! Everything that touches wasmtime: the engine, the sandbox a guest runs
//! in, one instance of a router, and the classification of its failures.
//!
//! Nothing in here knows about several routers or about merging answers:
//! that is [`crate::RouterSet`]'s job. This module turns "call this export
//! under these limits" into either the guest's raw answer or a
//! [`Failure`] saying which limit was hit.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, Func, HasSelf, InstancePre, Lift, Linker,
    Lower, ResourceTable, TypedFunc,
};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter,
    Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use presence_router_model::{FailureKind, Limits, UserPresenceState, answer, format_bytes};

use crate::cache::{CacheSetting, CompileSource, ComponentCache};
use crate::module_api::LogLevel;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "presence-router",
    });
}

use bindings::matrix::presence_router::module_api;
use bindings::matrix::presence_router::types::{
    InterestedUsers as RawInterestedUsers, Route as RawRoute,
};

/// A failure of one call, before it is attributed to a router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// The instance can't be used again: wasmtime's call failed (a trap, or
    /// an answer it refused to lift, whose post-return never ran). An answer
    /// that was lifted but failed our checks leaves the instance healthy.
    pub instance_lost: bool,
}

impl Failure {
    /// An answer that was received whole but is not acceptable.
    pub(crate) fn invalid_answer(message: String) -> Failure {
        Failure {
            kind: FailureKind::InvalidAnswer,
            message,
            instance_lost: false,
        }
    }
}

/// A checked `get-users-for-states` answer: (user, indices) pairs.
pub(crate) type CheckedRoutes = Vec<(String, Vec<u32>)>;

/// A checked `get-interested-users` answer: `None` is `all-users`.
pub(crate) type CheckedInterest = Option<Vec<String>>;

/// Host bytes an answer entry may cost while wasmtime lifts it. wasmtime
/// charges what it lifts from a guest against the store's "hostcall fuel"
/// before it allocates it, so this times `max_answer_entries` bounds what a
/// flood can make the host allocate (128 MiB at the default), and a flood of
/// routes is refused before it is copied; the exact entry count is checked
/// after. A route costs 48 bytes of `String` and `Vec` headers plus its user
/// ID, an index 4: an answer at the entry cap whose user IDs average over 80
/// bytes is refused as too large, which no real router comes near.
const HOST_BYTES_PER_ANSWER_ENTRY: usize = 128;

/// How wasmtime says the hostcall fuel ran out.
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// How often the engine's epoch advances. The deadline is checked at every
/// tick, so this is the precision of `limits.timeout`.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The exports every presence router must have, in WIT spelling.
const PARSE_CONFIG: &str = "parse-config";
const GET_USERS_FOR_STATES: &str = "get-users-for-states";
const GET_INTERESTED_USERS: &str = "get-interested-users";

/// How many instances of which size the pooling allocator keeps slots for:
/// enough for every router of the set at its `max_instances` at once, plus
/// one each for a fresh instance built while a trapped one is still going.
pub(crate) struct InstancePool {
    pub instances: u32,
    pub max_memory_bytes: u64,
}

impl InstancePool {
    /// Per component: room for components built with a language runtime
    /// inside (several core instances, tables and memories).
    const CORE_INSTANCES_PER_COMPONENT: u32 = 64;
    const MEMORIES_PER_COMPONENT: u32 = 4;
    const TABLES_PER_COMPONENT: u32 = 32;
    const MIN_SLOT_BYTES: u64 = 1 << 30;
    /// A freed slot keeps up to this much of its memory mapped and is reset
    /// with `memset` (only the pages the guest dirtied, where the kernel has
    /// `PAGEMAP_SCAN`), instead of being unmapped: the fresh instance after
    /// a trap then takes no page faults, and freeing it no TLB shootdown.
    /// Page faults and zeroing were two thirds of a fresh instance's cost.
    const KEEP_RESIDENT_BYTES: usize = 4 << 20;

    fn config(&self) -> PoolingAllocationConfig {
        let instances = self.instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(Self::CORE_INSTANCES_PER_COMPONENT))
            .max_core_instances_per_component(Self::CORE_INSTANCES_PER_COMPONENT)
            .total_memories(instances.saturating_mul(Self::MEMORIES_PER_COMPONENT))
            .max_memories_per_component(Self::MEMORIES_PER_COMPONENT)
            .max_memories_per_module(Self::MEMORIES_PER_COMPONENT)
            .total_tables(instances.saturating_mul(Self::TABLES_PER_COMPONENT))
            .max_tables_per_component(Self::TABLES_PER_COMPONENT)
            .table_elements(MemoryLimiter::MAX_TABLE_ELEMENTS)
            .total_stacks(instances)
            .linear_memory_keep_resident(Self::KEEP_RESIDENT_BYTES)
            .table_keep_resident(Self::KEEP_RESIDENT_BYTES)
            .pagemap_scan(Enabled::Auto)
            // Slots are address space, not memory: size them generously and
            // leave the limit to `MemoryLimiter`, whose refusal says which
            // limit was hit (a slot too small would refuse the component at
            // compile time instead, with wasmtime's words).
            .max_memory_size(
                usize::try_from(self.max_memory_bytes.max(Self::MIN_SLOT_BYTES))
                    .unwrap_or(usize::MAX),
            );
        pool
    }
}

/// One wasmtime engine and linker, shared by all routers of a set, with the
/// thread that drives epoch-based deadlines.
pub(crate) struct GuestEngine {
    engine: Engine,
    linker: Linker<GuestState>,
    cache: Option<ComponentCache>,
}

impl GuestEngine {
    pub(crate) fn new(
        cache: &CacheSetting,
        pool: &InstancePool,
        parallel_compilation: bool,
    ) -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .parallel_compilation(parallel_compilation)
            // Fuel bounds the work of a call; epochs bound its wall-clock time
            // (fuel alone can't: a host call with a big argument costs the
            // guest little fuel and the host much time).
            .consume_fuel(true)
            .epoch_interruption(true);
        let mut pooled = config.clone();
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool.config()));
        // The pool reserves address space up front; where the machine
        // refuses that (a `ulimit -v`, say), instances are allocated one by
        // one instead: slower to make, as safe.
        let engine = match Engine::new(&pooled) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!(
                    "pooling allocator unavailable, allocating instances on demand: {}",
                    error_text(&e)
                );
                Engine::new(&config)?
            }
        };

        let mut linker = Linker::new(&engine);
        // A std guest for wasm32-wasip2 imports WASI even when it never uses
        // it; every WASI call is answered from an empty, capability-less
        // context (see `GuestState::new`).
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        module_api::add_to_linker::<GuestState, HasSelf<GuestState>>(&mut linker, |state| state)?;

        start_epoch_ticker(&engine);
        let cache = ComponentCache::open(cache, &engine);
        Ok(GuestEngine {
            engine,
            linker,
            cache,
        })
    }

    /// Compiles a component and checks its imports against what the host
    /// provides and its exports against the presence-router world.
    pub(crate) fn load(&self, bytes: &[u8]) -> Result<(LoadedComponent, CompileSource), String> {
        // A core module's header is `\0asm` then version 1; a component's
        // has a different version and layer. Say which mistake this is.
        if bytes.starts_with(b"\0asm\x01\0\0\0") {
            return Err(
                "this is a core WebAssembly module, not a component: build the router \
                        for wasm32-wasip2, or wrap the module with `wasm-tools component new`"
                    .to_owned(),
            );
        }
        let (component, source) = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, bytes),
            None => Component::new(&self.engine, bytes).map(|c| (c, CompileSource::Compiled)),
        }
        .map_err(|e| format!("not a valid WebAssembly component: {}", error_text(&e)))?;
        let export = |name: &str| {
            component.get_export_index(None, name).ok_or_else(|| {
                format!(
                    "the component does not export `{name}`: a presence router must export \
                     `{PARSE_CONFIG}`, `{GET_USERS_FOR_STATES}` and `{GET_INTERESTED_USERS}` \
                     (world matrix:presence-router/presence-router@0.1.0)"
                )
            })
        };
        let exports = ExportIndices {
            parse_config: export(PARSE_CONFIG)?,
            get_users_for_states: export(GET_USERS_FOR_STATES)?,
            get_interested_users: export(GET_INTERESTED_USERS)?,
        };
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            format!(
                "the component imports something this host does not provide \
                 (a router may import only matrix:presence-router/module-api and WASI 0.2): {}",
                error_text(&e)
            )
        })?;
        Ok((LoadedComponent { pre, exports }, source))
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] for as long as the
/// engine lives: the thread holds only a weak reference, so dropping the
/// last router of a set ends it.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("presence-router-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        });
    if let Err(e) = spawned {
        // Without the ticker, deadlines can't fire: fuel still bounds every
        // call, so carry on, loudly.
        tracing::error!("cannot start the epoch thread, deadlines are off: {e}");
    }
}

#[derive(Clone, Copy)]
struct ExportIndices {
    parse_config: ComponentExportIndex,
    get_users_for_states: ComponentExportIndex,
    get_interested_users: ComponentExportIndex,
}

/// A compiled, link-checked router component, ready to instantiate cheaply.
#[derive(Clone)]
pub(crate) struct LoadedComponent {
    pre: InstancePre<GuestState>,
    exports: ExportIndices,
}

/// What a guest did during one call besides answering.
#[derive(Default)]
pub(crate) struct CallEffects {
    /// The arguments of each `send-local-online-presence-to` call kept.
    pub sends: Vec<Vec<String>>,
    pub dropped_sends: usize,
    /// `log` calls and lines of stdout/stderr, in order.
    pub logs: Vec<(LogLevel, String)>,
    pub dropped_logs: usize,
}

/// The store data of one instance.
pub(crate) struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryLimiter,
    effects: CallEffects,
    stdout: CapturedOutput,
    stderr: CapturedOutput,
    max_send_calls: usize,
    max_log_lines: usize,
    deadline: Instant,
    timed_out: bool,
    /// The fuel the current call started with, for failure messages.
    fuel_budget: u64,
    /// The last lines the guest wrote to stderr during the current call,
    /// kept even when the log was full: a panic's message, for the failure.
    stderr_tail: Vec<String>,
}

impl GuestState {
    fn new(limits: &Limits) -> Self {
        let stdout = CapturedOutput::new(limits.max_log_lines);
        let stderr = CapturedOutput::new(limits.max_log_lines);
        // No preopened directories, no environment, no arguments, empty
        // stdin, and no network: the guest can compute and talk to the host
        // through `module-api`, nothing else.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        GuestState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryLimiter::new(limits.memory),
            effects: CallEffects::default(),
            stdout,
            stderr,
            max_send_calls: limits.max_send_calls,
            max_log_lines: limits.max_log_lines,
            deadline: Instant::now(),
            timed_out: false,
            fuel_budget: 0,
            stderr_tail: Vec::new(),
        }
    }

    fn push_log(&mut self, level: LogLevel, mut message: String) {
        if self.effects.logs.len() >= self.max_log_lines {
            self.effects.dropped_logs += 1;
            return;
        }
        truncate_at_char_boundary(&mut message, Limits::MAX_LOG_LINE_BYTES);
        self.effects.logs.push((level, message));
    }

    /// Moves what the guest wrote to stdout and stderr into the log lines.
    fn collect_output(&mut self) {
        let stdout = self.stdout.take_lines();
        let stderr = self.stderr.take_lines();
        for (captured, level) in [(stdout, LogLevel::Info), (stderr, LogLevel::Warn)] {
            for line in captured.lines {
                self.push_log(level, line);
            }
            self.effects.dropped_logs += captured.dropped;
            if level == LogLevel::Warn && !captured.last_lines.is_empty() {
                self.stderr_tail = captured.last_lines;
            }
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::matrix::presence_router::types::Host for GuestState {}

impl module_api::Host for GuestState {
    fn send_local_online_presence_to(&mut self, users: Vec<String>) {
        // Validated after the call: a call may not fail from here, and a
        // guest must never wait on the homeserver.
        if self.effects.sends.len() >= self.max_send_calls {
            self.effects.dropped_sends += 1;
        } else {
            self.effects.sends.push(users);
        }
    }

    fn log(&mut self, level: module_api::LogLevel, message: String) {
        let level = match level {
            module_api::LogLevel::Trace => LogLevel::Trace,
            module_api::LogLevel::Debug => LogLevel::Debug,
            module_api::LogLevel::Info => LogLevel::Info,
            module_api::LogLevel::Warn => LogLevel::Warn,
            module_api::LogLevel::Error => LogLevel::Error,
        };
        self.push_log(level, message);
    }
}

/// Caps an instance's linear memory, and remembers a refusal: a guest whose
/// allocation fails usually aborts with a plain trap, which without this
/// memory could not be told apart from any other.
struct MemoryLimiter {
    max_bytes: usize,
    /// All memories of the instance together; memories never shrink.
    used_bytes: usize,
    refused: bool,
}

impl MemoryLimiter {
    /// Tables are small in every real router; a huge one is an attack.
    const MAX_TABLE_ELEMENTS: usize = 100_000;

    fn new(max_bytes: u64) -> Self {
        MemoryLimiter {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            used_bytes: 0,
            refused: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.used_bytes.saturating_add(growth);
        if total > self.max_bytes {
            self.refused = true;
            return Ok(false);
        }
        self.used_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= Self::MAX_TABLE_ELEMENTS)
    }

    // The same bounds as the pooling allocator's slots, so that a component
    // the pool refuses is refused as well when instances are allocated on
    // demand (where the pool can't be reserved).
    fn instances(&self) -> usize {
        InstancePool::CORE_INSTANCES_PER_COMPONENT as usize
    }

    fn tables(&self) -> usize {
        InstancePool::TABLES_PER_COMPONENT as usize
    }

    fn memories(&self) -> usize {
        InstancePool::MEMORIES_PER_COMPONENT as usize
    }
}

/// A guest's stdout or stderr: kept in memory, cut into lines after each
/// call. Writes never fail (a Rust guest panics when `println!` fails, so
/// refusing a write would turn chatter into a trap); beyond the cap, lines
/// are counted and dropped.
#[derive(Clone)]
struct CapturedOutput(Arc<Mutex<OutputBuffer>>);

struct OutputBuffer {
    bytes: Vec<u8>,
    max_bytes: usize,
    /// Set once the buffer is full: everything after is dropped and counted
    /// until the end of the call.
    dropping: bool,
    /// Whole lines dropped.
    dropped_lines: usize,
    /// Whether the last dropped bytes end inside a line (a guest may write
    /// a line in several pieces: `eprintln!` does).
    dropped_partial: bool,
    /// The last bytes written, kept whatever the caps: a panic message comes
    /// last, after whatever filled the log.
    tail: Vec<u8>,
}

/// What the capture of one stream yields after a call.
#[derive(Default)]
struct CapturedLines {
    lines: Vec<String>,
    dropped: usize,
    /// The last three non-empty lines written, dropped or not.
    last_lines: Vec<String>,
}

impl CapturedOutput {
    fn new(max_lines: usize) -> Self {
        CapturedOutput(Arc::new(Mutex::new(OutputBuffer {
            bytes: Vec::new(),
            max_bytes: max_lines.saturating_mul(Limits::MAX_LOG_LINE_BYTES),
            dropping: false,
            dropped_lines: 0,
            dropped_partial: false,
            tail: Vec::new(),
        })))
    }

    /// Bytes of output kept for the last lines, beyond any cap.
    const TAIL_BYTES: usize = 2 * Limits::MAX_LOG_LINE_BYTES;

    fn write(&self, bytes: &[u8]) {
        let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let recent = &bytes[bytes.len().saturating_sub(Self::TAIL_BYTES)..];
        buffer.tail.extend_from_slice(recent);
        let excess = buffer.tail.len().saturating_sub(Self::TAIL_BYTES);
        buffer.tail.drain(..excess);
        if !buffer.dropping && buffer.bytes.len() + bytes.len() <= buffer.max_bytes {
            buffer.bytes.extend_from_slice(bytes);
            return;
        }
        if !buffer.dropping {
            // Full: keep whole lines only; the line that did not fit and all
            // that follows are dropped.
            buffer.dropping = true;
            buffer.bytes.extend_from_slice(bytes);
            let cut = buffer.max_bytes.min(buffer.bytes.len());
            let whole = buffer.bytes[..cut]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let dropped = buffer.bytes.split_off(whole);
            buffer.drop_bytes(&dropped);
        } else {
            buffer.drop_bytes(bytes);
        }
    }

    /// The lines written since the last call, how many were dropped, and
    /// the last ones written.
    fn take_lines(&self) -> CapturedLines {
        let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // The usual call writes nothing: skip the decoding and allocations.
        if buffer.tail.is_empty() && buffer.dropped_lines == 0 && !buffer.dropped_partial {
            buffer.dropping = false;
            return CapturedLines::default();
        }
        let bytes = std::mem::take(&mut buffer.bytes);
        let tail = std::mem::take(&mut buffer.tail);
        let dropped = std::mem::take(&mut buffer.dropped_lines)
            + usize::from(std::mem::take(&mut buffer.dropped_partial));
        buffer.dropping = false;
        let lines = non_empty_lines(&String::from_utf8_lossy(&bytes))
            .map(str::to_owned)
            .collect();
        let tail = String::from_utf8_lossy(&tail);
        let mut last_lines: Vec<String> = non_empty_lines(&tail)
            .rev()
            .take(3)
            .map(str::to_owned)
            .collect();
        last_lines.reverse();
        CapturedLines {
            lines,
            dropped,
            last_lines,
        }
    }
}

/// The non-blank lines of captured output.
fn non_empty_lines(text: &str) -> impl DoubleEndedIterator<Item = &str> {
    text.lines().filter(|line| !line.trim().is_empty())
}

impl OutputBuffer {
    fn drop_bytes(&mut self, bytes: &[u8]) {
        if let Some(&last) = bytes.last() {
            self.dropped_lines += bytes.iter().filter(|&&b| b == b'\n').count();
            self.dropped_partial = last != b'\n';
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::p2::OutputStream for CapturedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        CapturedOutput::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        CapturedOutput::write(&self, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The marker error the epoch callback raises when the deadline has passed.
#[derive(Debug)]
struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// One live instance of a router, with its own store.
pub(crate) struct GuestInstance {
    store: Store<GuestState>,
    get_users_for_states: Func,
    get_interested_users: Func,
    limits: Limits,
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
    /// `parse-config` answered `err`: the router refuses its configuration.
    ConfigRefused(String),
    /// An export has the wrong type for the presence-router world.
    WrongType(String),
}

impl GuestInstance {
    /// Instantiates the component and runs `parse-config`, each under the
    /// router's limits.
    pub(crate) async fn new(
        engine: &GuestEngine,
        component: &LoadedComponent,
        limits: &Limits,
        config_json: &str,
    ) -> Result<Self, InstanceError> {
        let mut store = Store::new(&engine.engine, GuestState::new(limits));
        store.limiter(|state| &mut state.memory);
        store.set_hostcall_fuel(
            limits
                .max_answer_entries
                .saturating_mul(HOST_BYTES_PER_ANSWER_ENTRY),
        );
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            if Instant::now() >= state.deadline {
                state.timed_out = true;
                return Err(wasmtime::Error::new(DeadlineExceeded));
            }
            // Let other tasks of the executor run while a slow guest works.
            Ok(UpdateDeadline::Yield(1))
        });
        prepare_call(&mut store, limits, limits.fuel);
        let instance = match component.pre.instantiate_async(&mut store).await {
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
            get_users_for_states,
            get_interested_users,
            limits: limits.clone(),
        };
        // Instantiation had its own budget; parse-config gets a fresh one.
        // SAFETY: checked just above.
        let answer = unsafe {
            instance.call::<(&str,), (Result<(), String>,)>(
                parse_config,
                limits.fuel,
                (config_json,),
                PARSE_CONFIG,
            )
        }
        .await;
        match answer {
            Ok(((Ok(()),), _)) => Ok(instance),
            Ok(((Err(message),), _)) => Err(InstanceError::ConfigRefused(message)),
            Err(failure) => Err(InstanceError::Failed(failure)),
        }
    }

    /// Calls `get-users-for-states` on a batch and checks the answer.
    pub(crate) async fn get_users_for_states(
        &mut self,
        states: &[UserPresenceState],
    ) -> Result<(CheckedRoutes, CallUsage), Failure> {
        let fuel = self.limits.fuel_for_batch(states.len());
        // SAFETY: `GuestInstance::new` checked the export against exactly
        // these parameter and result types.
        let ((routes,), usage) = unsafe {
            self.call::<(&[UserPresenceState],), (Vec<RawRoute>,)>(
                self.get_users_for_states,
                fuel,
                (states,),
                GET_USERS_FOR_STATES,
            )
        }
        .await?;
        let routes: CheckedRoutes = routes.into_iter().map(|r| (r.user_id, r.states)).collect();
        answer::check_routes(&routes, states.len(), self.limits.max_answer_entries)
            .map_err(Failure::invalid_answer)?;
        Ok((routes, usage))
    }

    /// Calls `get-interested-users` for one user and checks the answer.
    pub(crate) async fn get_interested_users(
        &mut self,
        user_id: &str,
    ) -> Result<(CheckedInterest, CallUsage), Failure> {
        let fuel = self.limits.fuel_for_batch(1);
        // SAFETY: as in `get_users_for_states`.
        let ((answer,), usage) = unsafe {
            self.call::<(&str,), (RawInterestedUsers,)>(
                self.get_interested_users,
                fuel,
                (user_id,),
                GET_INTERESTED_USERS,
            )
        }
        .await?;
        match answer {
            RawInterestedUsers::AllUsers => Ok((None, usage)),
            RawInterestedUsers::Users(users) => {
                answer::check_users(&users, self.limits.max_answer_entries)
                    .map_err(Failure::invalid_answer)?;
                Ok((Some(users), usage))
            }
        }
    }

    /// Calls an export with a fresh fuel budget and deadline, and classifies
    /// a failure; an answer comes with what the call used.
    ///
    /// # Safety
    ///
    /// `func` must have been type-checked against `Params` and `Return`
    /// (`Func::typed`): the check is skipped here because it costs as much as
    /// a small call.
    async unsafe fn call<Params, Return>(
        &mut self,
        func: Func,
        fuel: u64,
        params: Params,
        export: &str,
    ) -> Result<(Return, CallUsage), Failure>
    where
        Params: ComponentNamedList + Lower + Send + Sync,
        Return: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        prepare_call(&mut self.store, &self.limits, fuel);
        let started = Instant::now();
        // SAFETY: the caller guarantees the types were checked.
        let typed = unsafe { TypedFunc::<Params, Return>::new_unchecked(func) };
        let answer = typed
            .call_async(&mut self.store, params)
            .await
            .map_err(|e| classify(&mut self.store, &self.limits, &e, &format!("`{export}`")))?;
        let usage = CallUsage {
            fuel_used: fuel.saturating_sub(self.store.get_fuel().unwrap_or(0)),
            fuel_budget: fuel,
            elapsed: started.elapsed(),
        };
        Ok((answer, usage))
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

/// Resets the per-call state: a fresh fuel budget, a fresh deadline, and no
/// memory refusal remembered from before.
fn prepare_call(store: &mut Store<GuestState>, limits: &Limits, fuel: u64) {
    // Fuel is always enabled on this engine, so this cannot fail.
    let _ = store.set_fuel(fuel);
    store.set_epoch_deadline(1);
    let state = store.data_mut();
    state.deadline = Instant::now() + limits.timeout;
    state.timed_out = false;
    state.fuel_budget = fuel;
    state.memory.refused = false;
    state.stderr_tail.clear();
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
    let (kind, message) = if state.timed_out || error.is::<DeadlineExceeded>() {
        (
            FailureKind::Timeout,
            format!(
                "{what} ran past its {} deadline",
                humantime::format_duration(limits.timeout)
            ),
        )
    } else if error.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
        (
            FailureKind::OutOfFuel,
            format!("{what} ran out of fuel (budget {})", state.fuel_budget),
        )
    } else if error_text(error).contains(HOSTCALL_FUEL_EXHAUSTED) {
        // wasmtime's error type for this is private; its text is stable.
        (
            FailureKind::InvalidAnswer,
            format!(
                "{what} sent more data than limits.max_answer_entries = {} allows \
                 (over {} bytes); refused before it was all copied",
                limits.max_answer_entries,
                limits
                    .max_answer_entries
                    .saturating_mul(HOST_BYTES_PER_ANSWER_ENTRY)
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
        // rest are in the log), without Rust's hint about backtraces.
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
    }
}

/// A wasmtime error as one line: the chain of causes, without the
/// multi-line wasm backtrace.
pub(crate) fn error_text(error: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let first = text.lines().next().unwrap_or("").trim().to_owned();
        if !first.is_empty()
            && !first.starts_with("error while executing at wasm backtrace")
            && !parts.contains(&first)
        {
            parts.push(first);
        }
    }
    if parts.is_empty() {
        "unknown error".to_owned()
    } else {
        parts.join(": ")
    }
}

fn truncate_at_char_boundary(text: &mut String, max_bytes: usize) {
    if text.len() > max_bytes {
        let mut end = max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
        // A guest may log megabytes per line: keep only what is kept.
        text.shrink_to_fit();
    }
}
