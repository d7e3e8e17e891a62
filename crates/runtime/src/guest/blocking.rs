//! WASI's blocking calls, answered without blocking.
//!
//! Calls are plain synchronous wasmtime calls: no fiber, no executor (a
//! fiber switch and an executor poll were a third of a one-state call). So
//! every host function must be synchronous, and `wasmtime-wasi`'s
//! synchronous bindings are not quite: the functions that may wait
//! (`poll`, `pollable.block`, the `blocking-*` stream methods, dropping a
//! stream) run an async body through `block_on` on the calling thread's
//! Tokio runtime, which panics when that thread is already driving one (an
//! embedder calling from an async task). This file replaces each of them
//! with one that polls the body once and never blocks.
//!
//! That is exact, not an approximation: a router has nothing to wait for.
//! Its clock waits are ready at once and charged to its budget
//! (`clock.rs`), its stdout and stderr are always ready, and its stdin is
//! closed. A body that is not ready at once would wait for something that
//! never comes for a router, so the call fails as `timeout` at once
//! ([`WouldWait`]) instead of holding its thread.
//!
//! The other asynchronous bodies of `wasmtime-wasi` act on file
//! descriptors and sockets, and a router can never hold one: it has no
//! preopened directory, and creating a socket is refused
//! (`GuestState::new`; the UDP constructor, asynchronous itself, is
//! replaced here). The component model refuses a handle the guest does not
//! own before any host code runs.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType, WasmList};
use wasmtime_wasi::p2::bindings::io::poll::{Host as _, HostPollable as _};
use wasmtime_wasi::p2::bindings::io::streams::{HostInputStream as _, HostOutputStream as _};
use wasmtime_wasi::p2::bindings::sockets::network::ErrorCode;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, UdpSocket};

use super::state::{
    BrokenRule, FUEL_PER_BYTE, FUEL_PER_ENTRY, GuestState, MAX_GUEST_RESOURCES, WASI_STREAMS,
    charge_fuel, stream_result,
};
use super::time_budget::BudgetUsedUp;

const WASI_POLL: &str = "wasi:io/poll@0.2.12";
const WASI_UDP_CREATE: &str = "wasi:sockets/udp-create-socket@0.2.12";

/// The most bytes one `blocking-write-and-flush` may carry, as WASI 0.2
/// specifies (`wasmtime-wasi` checks it only after copying the list).
const BLOCKING_WRITE_MAX: usize = 4096;

/// The marker error of a guest that waited on something not ready at once.
#[derive(Debug, thiserror::Error)]
#[error("waited on something that is not ready")]
pub(crate) struct WouldWait;

/// Polls a host body once: its output, or [`WouldWait`].
fn at_once<F: Future>(body: F) -> wasmtime::Result<F::Output> {
    let mut body = std::pin::pin!(body);
    match body.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err(wasmtime::Error::new(WouldWait)),
    }
}

type Store<'a> = StoreContextMut<'a, GuestState>;

/// After a wait: a guest whose waits have used its budget up stops here,
/// whether or not a watchdog ticks (a call in a slice has none), so that a
/// loop of short sleeps can't run on for free.
fn after_wait<T>(store: &mut Store<'_>, output: T) -> wasmtime::Result<T> {
    let state = store.data_mut();
    if state.time_budget.waits_overspent(&state.waits) {
        state.budget_used_up = true;
        return Err(wasmtime::Error::new(BudgetUsedUp));
    }
    Ok(output)
}

/// Replaces every asynchronous function of `wasmtime-wasi`'s synchronous
/// bindings that a router can reach. Call after the WASI interfaces were
/// added.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_POLL)?;
    poll.func_wrap(
        "poll",
        |mut store: Store<'_>, (pollables,): (WasmList<Resource<DynPollable>>,)| {
            // A list longer than the resources an instance may hold repeats
            // itself: refused before its handles are lifted one by one.
            if pollables.len() > MAX_GUEST_RESOURCES {
                return Err(wasmtime::Error::new(BrokenRule(format!(
                    "polled a list of {} pollables, more than the {MAX_GUEST_RESOURCES} an \
                     instance may hold",
                    pollables.len()
                ))));
            }
            // Each entry is host work: paid for before it is lifted.
            charge_fuel(
                &mut store,
                FUEL_PER_ENTRY.saturating_mul(pollables.len() as u64),
            )?;
            let mut lifted = Vec::with_capacity(pollables.len());
            for position in 0..pollables.len() {
                if let Some(pollable) = pollables.get(&mut store, position) {
                    lifted.push(pollable?);
                }
            }
            let table = &mut store.data_mut().table;
            let ready = at_once(table.poll(lifted))??;
            after_wait(&mut store, (ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.ready",
        |mut store: Store<'_>, (pollable,): (Resource<DynPollable>,)| {
            let ready = at_once(store.data_mut().table.ready(pollable))??;
            after_wait(&mut store, (ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: Store<'_>, (pollable,): (Resource<DynPollable>,)| {
            at_once(store.data_mut().table.block(pollable))??;
            after_wait(&mut store, ())
        },
    )?;

    let mut streams = linker.instance(WASI_STREAMS)?;
    streams.resource(
        "output-stream",
        ResourceType::host::<DynOutputStream>(),
        |mut store: Store<'_>, rep| {
            let stream = store
                .data_mut()
                .table
                .delete(Resource::<DynOutputStream>::new_own(rep))?;
            // Ours have nothing to cancel; were one busy, dropping it
            // cancels it just the same.
            let _ = at_once(stream_cancel(stream));
            Ok(())
        },
    )?;
    streams.resource(
        "input-stream",
        ResourceType::host::<DynInputStream>(),
        |mut store: Store<'_>, rep| {
            let stream = store
                .data_mut()
                .table
                .delete(Resource::<DynInputStream>::new_own(rep))?;
            let _ = at_once(input_cancel(stream));
            Ok(())
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |mut store: Store<'_>, (stream, contents): (Resource<DynOutputStream>, WasmList<u8>)| {
            // The bound first, then the copy (wasmtime-wasi copies first).
            if contents.len() > BLOCKING_WRITE_MAX {
                return Err(wasmtime::Error::new(BrokenRule(format!(
                    "wrote {} bytes with blocking-write-and-flush, more than the \
                     {BLOCKING_WRITE_MAX} it allows",
                    contents.len()
                ))));
            }
            charge_fuel(
                &mut store,
                FUEL_PER_BYTE.saturating_mul(contents.len() as u64),
            )?;
            let bytes = contents.as_le_slice(&store).to_vec();
            let table = &mut store.data_mut().table;
            let written = at_once(table.blocking_write_and_flush(stream, bytes))?;
            stream_result(table, written).map(|r| (r,))
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        |mut store: Store<'_>, (stream, len): (Resource<DynOutputStream>, u64)| {
            charge_fuel(
                &mut store,
                FUEL_PER_BYTE.saturating_mul(len.min(BLOCKING_WRITE_MAX as u64 + 1)),
            )?;
            let table = &mut store.data_mut().table;
            let written = at_once(table.blocking_write_zeroes_and_flush(stream, len))?;
            stream_result(table, written).map(|r| (r,))
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-flush",
        |mut store: Store<'_>, (stream,): (Resource<DynOutputStream>,)| {
            let table = &mut store.data_mut().table;
            let flushed = at_once(table.blocking_flush(stream))?;
            stream_result(table, flushed).map(|r| (r,))
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-splice",
        |mut store: Store<'_>,
         (stream, source, len): (Resource<DynOutputStream>, Resource<DynInputStream>, u64)| {
            let table = &mut store.data_mut().table;
            let spliced = at_once(table.blocking_splice(stream, source, len))?;
            stream_result(table, spliced).map(|r| (r,))
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.blocking-read",
        |mut store: Store<'_>, (stream, len): (Resource<DynInputStream>, u64)| {
            let table = &mut store.data_mut().table;
            let read = at_once(table.blocking_read(stream, len))?;
            stream_result(table, read).map(|r| (r,))
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.blocking-skip",
        |mut store: Store<'_>, (stream, len): (Resource<DynInputStream>, u64)| {
            let table = &mut store.data_mut().table;
            let skipped = at_once(table.blocking_skip(stream, len))?;
            stream_result(table, skipped).map(|r| (r,))
        },
    )?;

    let mut udp = linker.instance(WASI_UDP_CREATE)?;
    udp.func_wrap(
        "create-udp-socket",
        |_store: Store<'_>,
         (_family,): (wasmtime_wasi::p2::bindings::sockets::network::IpAddressFamily,)| {
            // As `GuestState`'s `allow_udp(false)` answers, without the
            // asynchronous body that would first look for a runtime.
            Ok((Err::<Resource<UdpSocket>, ErrorCode>(
                ErrorCode::AccessDenied,
            ),))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

async fn stream_cancel(mut stream: DynOutputStream) {
    stream.cancel().await;
}

async fn input_cancel(mut stream: DynInputStream) {
    stream.cancel().await;
}
