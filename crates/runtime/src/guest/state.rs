//! The store data of one instance, and the host functions a guest calls:
//! `module-api` (sends and log lines) and the capability-less WASI context.
//!
//! Everything a guest hands the host is bounded as it arrives, before the
//! host copies it: a `send-local-online-presence-to` list is read entry by
//! entry from guest memory and refused at the first user ID over Matrix's
//! 255 bytes or past the call's entry cap; a `log` line is cut to 1 KiB
//! before it is copied; calls past `max_send_calls` / `max_log_lines` are
//! counted and never read; WASI resources are capped per instance. So what
//! the host holds for a guest is its limits, not what the guest chose to
//! point at (three list entries aliasing one 40 MiB region used to cost the
//! host 120 MiB per call).

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable, Val, WasmList, WasmStr};
use wasmtime_wasi::p2::bindings::io::streams::StreamError as WitStreamError;
use wasmtime_wasi::p2::{DynOutputStream, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use presence_router_model::text::{MAX_GUEST_TEXT_BYTES, escape_untrusted};
use presence_router_model::{Limits, answer};

use super::bindings::matrix::presence_router::module_api::{self, LogLevel as WitLogLevel};
use super::limiter::MemoryLimiter;
use super::output::{CapturedOutput, WRITE_PERMIT};
use super::time_budget::TimeBudget;
use super::waits::{GuestMonotonicClock, Waits};

/// WASI 0.2's random sources and name lookup, as `wasmtime-wasi` 48 names
/// them.
const WASI_RANDOM: &str = "wasi:random/random@0.2.12";
const WASI_INSECURE_RANDOM: &str = "wasi:random/insecure@0.2.12";
const WASI_NAME_LOOKUP: &str = "wasi:sockets/ip-name-lookup@0.2.12";

/// `get-random-bytes` (both sources): at most 64 KiB, paid for per byte
/// before it is made (wasmtime-wasi makes them a byte at a time). Every
/// source is the operating system's: a router gets nothing better from the
/// secure one, and nothing worse from the insecure one.
fn random_bytes(
    store: &mut StoreContextMut<'_, GuestState>,
    len: u64,
) -> wasmtime::Result<Vec<u8>> {
    if len > MAX_RANDOM_BYTES {
        return Err(wasmtime::Error::new(BrokenRule(format!(
            "asked for {len} random bytes at once, more than the {MAX_RANDOM_BYTES} a call may"
        ))));
    }
    charge_fuel(store, FUEL_PER_BYTE.saturating_mul(len))?;
    let mut bytes = vec![0u8; len as usize];
    getrandom::fill(&mut bytes)
        .map_err(|e| wasmtime::Error::msg(format!("no random bytes from the system: {e}")))?;
    Ok(bytes)
}

/// The host interface routers import, as its WIT names it.
const MODULE_API: &str = "matrix:presence-router/module-api@0.1.0";

/// WASI 0.2's streams, as `wasmtime-wasi` 48 defines them (every 0.2.x
/// import is matched to it).
pub(super) const WASI_STREAMS: &str = "wasi:io/streams@0.2.12";

/// The most WASI resources (streams, pollables) one instance may hold at
/// once. A router needs a handful (its stdio streams, a pollable while it
/// sleeps); each costs the host a table entry, so a guest that made them
/// without end would grow the host by hundreds of bytes each.
pub(crate) const MAX_GUEST_RESOURCES: usize = 1024;

/// The most random bytes one `get-random-bytes` call may ask for (language
/// runtimes ask for a few dozen to seed their hash maps).
const MAX_RANDOM_BYTES: u64 = 64 * 1024;

/// Fuel every call into the host costs, whatever it does: the host's work
/// for a guest is not wasm, so fuel would not see it, and a loop of cheap
/// host calls could otherwise run long on a tiny budget (a slice's above
/// all). A few hundred nanoseconds of host work, priced like the wasm it
/// stands for.
pub(crate) const HOST_CALL_FUEL: u64 = 100;

/// Fuel per byte a host function reads from, writes to or makes for the
/// guest (as wasmtime 48 charges `memory.copy` and `memory.fill`), and per
/// entry of a list it walks.
pub(super) const FUEL_PER_BYTE: u64 = 1;
pub(super) const FUEL_PER_ENTRY: u64 = 10;

/// Takes `units` of fuel for host work done for the guest; running out is
/// running out of fuel, as in wasm.
pub(crate) fn charge_fuel(
    store: &mut StoreContextMut<'_, GuestState>,
    units: u64,
) -> wasmtime::Result<()> {
    let left = store.get_fuel()?;
    if left < units {
        store.set_fuel(0)?;
        return Err(wasmtime::Error::new(wasmtime::Trap::OutOfFuel));
    }
    store.set_fuel(left - units)
}

/// The slice a call is tried in, as it applies to this router's limits.
#[derive(Clone, Copy)]
pub(crate) struct SliceLimits {
    pub fuel: u64,
    /// The answer entries the slice allows, and whether that is less than
    /// the router's own bound for the call.
    pub answer_entries: usize,
    pub answer_cut: bool,
    /// Whether the slice cut the call's fuel or its time budget: running
    /// out of a cut one means the slice was used up, not the router's own
    /// limit.
    pub fuel_cut: bool,
    pub time_cut: bool,
}

/// What wasmtime may lift from a guest in the running call, in bytes (its
/// hostcall fuel): a host function's arguments, and the export's answer.
#[derive(Clone, Copy)]
pub(crate) struct LiftBytes {
    pub imports: usize,
    pub answer: usize,
}

/// Severity of a line a guest logged (the WIT `log-level`). Standard output
/// lines are logged at `Info`, standard error lines at `Warn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// What a guest did during one call besides answering.
#[derive(Default)]
pub(crate) struct CallEffects {
    /// The distinct users of the `send-local-online-presence-to` calls,
    /// checked, in the order first named.
    pub sends: Vec<String>,
    /// Calls over `max_send_calls`, and users over `max_send_users`.
    pub dropped_sends: usize,
    pub dropped_send_users: usize,
    /// `log` calls and lines of stdout/stderr, in order, escaped.
    pub logs: Vec<(LogLevel, String)>,
    pub dropped_logs: usize,
}

/// A rule a guest broke in a host call: the call fails at once as an
/// invalid answer (the instance is lost, as after any trap).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BrokenRule(pub String);

/// The store data of one instance.
pub(crate) struct GuestState {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) memory: MemoryLimiter,
    pub(super) effects: CallEffects,
    /// This call's `send-local-online-presence-to` calls kept so far, and
    /// their user IDs, against `max_send_calls` and `max_answer_entries`.
    send_calls: usize,
    send_entries: usize,
    /// The users sent to in this call so far, against `max_send_users`.
    send_users: std::collections::HashSet<String>,
    max_send_users: usize,
    stdout: CapturedOutput,
    stderr: CapturedOutput,
    max_send_calls: usize,
    max_log_lines: usize,
    max_answer_entries: usize,
    /// The waits the guest was charged for, and the clock it reads.
    pub(super) waits: Waits,
    pub(super) clock: GuestMonotonicClock,
    /// The time budget of the running call.
    pub(super) time_budget: TimeBudget,
    /// The slice the running call was tried in, if any.
    pub(super) slice: Option<SliceLimits>,
    /// The running call's time budget was found used up (at a tick, or
    /// after a wait).
    pub(super) budget_used_up: bool,
    /// The fuel the current call started with, for failure messages.
    pub(super) fuel_budget: u64,
    /// The batch size of the current call, which its answer's bound
    /// follows, and that bound.
    pub(super) answer_batch: usize,
    pub(super) answer_entries: usize,
    /// The hostcall fuel of the running call (set by the call hook).
    pub(super) lift: LiftBytes,
    /// The last lines the guest wrote to stderr during the current call,
    /// kept even when the log was full: a panic's message, for the failure.
    pub(super) stderr_tail: Vec<String>,
    /// Where a profiled instance records its stacks (`profile.rs`).
    pub(super) sampler: Option<Box<super::profile::Sampler>>,
}

impl GuestState {
    pub(super) fn new(limits: &Limits) -> Self {
        let stdout = CapturedOutput::new(limits.max_log_lines);
        let stderr = CapturedOutput::new(limits.max_log_lines);
        let waits = Waits::default();
        let clock = GuestMonotonicClock::new(waits.clone());
        // No preopened directories, no environment, no arguments, empty
        // stdin, and no network: the guest can compute and talk to the host
        // through `module-api`, nothing else.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .monotonic_clock(clock.clone())
            // wasmtime-wasi makes the bytes before it copies them into the
            // guest: 64 MiB by default, whatever the guest's memory limit.
            .max_random_size(MAX_RANDOM_BYTES)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_GUEST_RESOURCES);
        GuestState {
            wasi,
            table,
            memory: MemoryLimiter::new(limits.memory),
            effects: CallEffects::default(),
            send_calls: 0,
            send_entries: 0,
            send_users: std::collections::HashSet::new(),
            max_send_users: limits.max_send_users,
            stdout,
            stderr,
            max_send_calls: limits.max_send_calls,
            max_log_lines: limits.max_log_lines,
            max_answer_entries: limits.max_answer_entries,
            waits,
            clock,
            time_budget: TimeBudget::idle(),
            slice: None,
            budget_used_up: false,
            fuel_budget: 0,
            answer_batch: 1,
            answer_entries: limits.answer_entries_for_batch(1),
            // Set by `GuestInstance::new`, then by every call.
            lift: LiftBytes {
                imports: 0,
                answer: 0,
            },
            stderr_tail: Vec::new(),
            sampler: None,
        }
    }

    /// Resets what a call gathers: every call starts afresh.
    pub(super) fn start_call(&mut self, fuel: u64) {
        self.budget_used_up = false;
        self.fuel_budget = fuel;
        self.memory.refused = false;
        self.stderr_tail.clear();
        self.send_calls = 0;
        self.send_entries = 0;
        self.send_users.clear();
    }

    /// WASI resources the instance holds now.
    pub(super) fn resources(&mut self) -> usize {
        self.table.iter_mut().count()
    }

    /// Whether this call may keep another log line; if not, the line is
    /// counted as dropped (and need not be read at all).
    fn room_for_log(&mut self) -> bool {
        let room = self.effects.logs.len() < self.max_log_lines;
        if !room {
            self.effects.dropped_logs += 1;
        }
        room
    }

    fn push_log(&mut self, level: LogLevel, message: &str) {
        if self.room_for_log() {
            self.effects
                .logs
                .push((level, escape_untrusted(message, MAX_GUEST_TEXT_BYTES)));
        }
    }

    /// Moves what the guest wrote to stdout and stderr into the log lines.
    pub(super) fn collect_output(&mut self) {
        let stdout = self.stdout.take_lines();
        let stderr = self.stderr.take_lines();
        for (captured, level) in [(stdout, LogLevel::Info), (stderr, LogLevel::Warn)] {
            for line in &captured.lines {
                self.push_log(level, line);
            }
            self.effects.dropped_logs += captured.dropped;
            if level == LogLevel::Warn && !captured.last_lines.is_empty() {
                self.stderr_tail = captured
                    .last_lines
                    .iter()
                    .map(|line| escape_untrusted(line, MAX_GUEST_TEXT_BYTES))
                    .collect();
            }
        }
    }

    /// `send-local-online-presence-to`: each user ID read from guest memory
    /// and checked as it comes, before it is copied.
    fn send(
        mut store: StoreContextMut<'_, GuestState>,
        users: WasmList<WasmStr>,
    ) -> wasmtime::Result<()> {
        let state = store.data_mut();
        if state.send_calls >= state.max_send_calls {
            // Counted, never read.
            state.effects.dropped_sends += 1;
            return Ok(());
        }
        let call = state.send_calls;
        state.send_calls += 1;
        // Entries are paid for before they are read, bytes as they are.
        charge_fuel(
            &mut store,
            FUEL_PER_ENTRY.saturating_mul(users.len() as u64),
        )?;
        let state = store.data_mut();
        let entries = state.send_entries.saturating_add(users.len());
        // The user IDs of a call's sends are bounded like its answer (the
        // host reads each of them), then the distinct ones by
        // `max_send_users`.
        let max_entries = state.max_answer_entries.min(state.answer_entries);
        answer::check_user_count(entries, max_entries).map_err(|why| {
            wasmtime::Error::new(BrokenRule(format!(
                "send-local-online-presence-to was given {why}"
            )))
        })?;
        state.send_entries = entries;
        for position in 0..users.len() {
            let Some(user) = users.get(&mut store, position) else {
                break;
            };
            // Borrowed from guest memory, and checked (its length first,
            // against Matrix's 255 bytes) before it is copied.
            let user = user?.to_str(&store)?;
            answer::check_user(position, &user).map_err(|why| {
                wasmtime::Error::new(BrokenRule(format!(
                    "send-local-online-presence-to call {call}: {why}"
                )))
            })?;
            let user = user.into_owned();
            charge_fuel(&mut store, FUEL_PER_BYTE.saturating_mul(user.len() as u64))?;
            let state = store.data_mut();
            if state.send_users.contains(&user) {
                continue;
            }
            if state.send_users.len() >= state.max_send_users {
                // Each user sent to is a database write or a federation
                // send in the homeserver: the rest are counted, not kept.
                state.effects.dropped_send_users += 1;
                continue;
            }
            state.send_users.insert(user.clone());
            state.effects.sends.push(user);
        }
        Ok(())
    }

    fn log(
        mut store: StoreContextMut<'_, GuestState>,
        level: WitLogLevel,
        message: WasmStr,
    ) -> wasmtime::Result<()> {
        let level = match level {
            WitLogLevel::Trace => LogLevel::Trace,
            WitLogLevel::Debug => LogLevel::Debug,
            WitLogLevel::Info => LogLevel::Info,
            WitLogLevel::Warn => LogLevel::Warn,
            WitLogLevel::Error => LogLevel::Error,
        };
        if !store.data_mut().room_for_log() {
            return Ok(());
        }
        // Borrowed from guest memory; only the kept part is copied. wasmtime
        // checks the whole string is UTF-8 first: its length is charged
        // after, so a guest pays for a long line once, not over and over.
        let text = message.to_str(&store)?;
        let length = text.len() as u64;
        let line = escape_untrusted(&text, MAX_GUEST_TEXT_BYTES);
        charge_fuel(&mut store, FUEL_PER_BYTE.saturating_mul(length))?;
        store.data_mut().effects.logs.push((level, line));
        Ok(())
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

impl super::bindings::matrix::presence_router::types::Host for GuestState {}

/// Never called: [`add_to_linker`] replaces both functions with ones that
/// read their arguments lazily. The generated bindings still define the
/// interface, so that its types are checked as the WIT has them.
impl module_api::Host for GuestState {
    fn send_local_online_presence_to(&mut self, _users: Vec<String>) {}

    fn log(&mut self, _level: WitLogLevel, _message: String) {}
}

/// `output-stream.write`, with the bytes checked against the write permit
/// before they are copied: wasmtime-wasi's own copies whatever list the
/// guest hands it (up to the hostcall fuel, a gigabyte) and checks after.
fn write(
    mut store: StoreContextMut<'_, GuestState>,
    stream: Resource<DynOutputStream>,
    contents: WasmList<u8>,
) -> wasmtime::Result<Result<(), WitStreamError>> {
    if contents.len() > WRITE_PERMIT {
        return Err(wasmtime::Error::new(BrokenRule(format!(
            "wrote {} bytes to an output stream at once, more than the {WRITE_PERMIT} its \
             check-write allows",
            contents.len()
        ))));
    }
    charge_fuel(
        &mut store,
        FUEL_PER_BYTE.saturating_mul(contents.len() as u64),
    )?;
    let bytes = bytes::Bytes::copy_from_slice(contents.as_le_slice(&store));
    let table = &mut store.data_mut().table;
    let written = table.get_mut(&stream)?.write(bytes);
    stream_result(table, written)
}

/// A stream result as the WIT has it: a failed operation becomes an
/// `error` resource, a trap stays a trap.
pub(super) fn stream_result<T>(
    table: &mut ResourceTable,
    result: Result<T, StreamError>,
) -> wasmtime::Result<Result<T, WitStreamError>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(StreamError::Closed) => Ok(Err(WitStreamError::Closed)),
        Err(StreamError::LastOperationFailed(e)) => {
            Ok(Err(WitStreamError::LastOperationFailed(table.push(e)?)))
        }
        Err(StreamError::Trap(e)) => Err(e),
    }
}

/// Adds `module-api`, with arguments read lazily from guest memory, and
/// the bounded `output-stream.write`. Call after the WASI interfaces were
/// added.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    module_api::add_to_linker::<GuestState, wasmtime::component::HasSelf<GuestState>>(
        linker,
        |state| state,
    )?;
    linker.allow_shadowing(true);
    let mut api = linker.instance(MODULE_API)?;
    api.func_wrap(
        "send-local-online-presence-to",
        |store: StoreContextMut<'_, GuestState>, (users,): (WasmList<WasmStr>,)| {
            GuestState::send(store, users)
        },
    )?;
    api.func_wrap(
        "log",
        |store: StoreContextMut<'_, GuestState>, (level, message): (WitLogLevel, WasmStr)| {
            GuestState::log(store, level, message)
        },
    )?;
    for (interface, function) in [
        (WASI_RANDOM, "get-random-bytes"),
        (WASI_INSECURE_RANDOM, "get-insecure-random-bytes"),
    ] {
        linker.instance(interface)?.func_wrap(
            function,
            |mut store: StoreContextMut<'_, GuestState>, (len,): (u64,)| {
                random_bytes(&mut store, len).map(|bytes| (bytes,))
            },
        )?;
    }
    // Name lookups are refused (`allow_ip_name_lookup(false)`), but
    // wasmtime-wasi refuses only after it has started its own Tokio runtime,
    // a thread per core for the life of the process: refused here first.
    // Its stream type is private, hence the dynamic signature.
    linker.instance(WASI_NAME_LOOKUP)?.func_new(
        "resolve-addresses",
        |_store, _ty, _params: &[Val], results: &mut [Val]| {
            if let Some(result) = results.first_mut() {
                *result = Val::Result(Err(Some(Box::new(Val::Enum(
                    "permanent-resolver-failure".to_owned(),
                )))));
            }
            Ok(())
        },
    )?;
    let mut streams = linker.instance(WASI_STREAMS)?;
    streams.func_wrap(
        "[method]output-stream.write",
        |store: StoreContextMut<'_, GuestState>,
         (stream, contents): (Resource<DynOutputStream>, WasmList<u8>)| {
            write(store, stream, contents).map(|r| (r,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
