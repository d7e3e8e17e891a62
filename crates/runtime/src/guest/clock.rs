//! What a router may wait on: nothing, really.
//!
//! A router has no I/O (no files, sockets or name lookups; stdin is empty
//! and its stdout and stderr always take what is written), so the only thing
//! it could wait for is time: a WASI monotonic-clock subscription, which is
//! what `std::thread::sleep` and `poll` with a timeout use. Such a
//! subscription is ready at once here. Waiting on it charges its duration to
//! the call's time budget (`time_budget.rs`) as if the router had computed
//! through it, and moves the router's monotonic clock forward by as much, so
//! that code which sleeps until a time sees that time come. A router that
//! sleeps past its budget fails as `timeout` at once, without holding a
//! thread or an instance for the length of its sleep.
//!
//! Anything else that would make a call wait is a bug in this reasoning: a
//! call that does wait is failed at once as `timeout` (see
//! `blocking::WouldWait`).

use std::time::Duration;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use super::state::GuestState;
use super::waits::Waits;

/// The WASI 0.2 monotonic-clock interface as `wasmtime-wasi` 48 defines it
/// (guests importing any 0.2.x version are matched to it).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// A clock subscription: ready at once; waiting on it charges its wait.
struct ChargedWait {
    /// How long the guest asked to wait, from when it subscribed.
    wait: Duration,
    waits: Waits,
    /// Charged once, however often the guest polls it.
    charged: bool,
}

#[async_trait::async_trait]
impl Pollable for ChargedWait {
    async fn ready(&mut self) {
        if !self.charged {
            self.charged = true;
            self.waits.add(self.wait);
        }
    }
}

/// Replaces `wasmtime-wasi`'s clock subscriptions (real timers) with
/// charged waits. Call after the WASI interfaces were added.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |store: StoreContextMut<'_, GuestState>, (nanos,): (u64,)| {
            subscribe_wait(store, Duration::from_nanos(nanos)).map(|p| (p,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |store: StoreContextMut<'_, GuestState>, (when,): (u64,)| {
            let now = wasmtime_wasi::HostMonotonicClock::now(&store.data().clock);
            let wait = Duration::from_nanos(when.saturating_sub(now));
            subscribe_wait(store, wait).map(|p| (p,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn subscribe_wait(
    mut store: StoreContextMut<'_, GuestState>,
    wait: Duration,
) -> wasmtime::Result<Resource<DynPollable>> {
    let state = store.data_mut();
    let pollable = ChargedWait {
        wait,
        waits: state.waits.clone(),
        charged: false,
    };
    let resource = state.table.push(pollable)?;
    subscribe(&mut state.table, resource)
}
