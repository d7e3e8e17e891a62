//! A router that makes the host work while spending almost no fuel, against
//! a call tried in a `Slice` (what the Synapse module runs on its reactor,
//! GIL held). Found by the attacker review of the first slice version, on
//! which every call below was answered *in* the slice after holding the
//! calling thread for 0.1 to 2 s (so the module never moved it off the
//! reactor), one send grew the host by 270 MiB, and a refused name lookup
//! started a Tokio runtime's threads in the host for good.
//!
//! Host work now costs fuel (every host call, and per byte and per entry of
//! what it copies, makes or walks; `guest/state.rs`), and a slice lifts at
//! most `answer_bytes` of answer. So each attack below uses its slice up:
//! deterministic, by fuel, whatever the machine is doing. The bound on the
//! calling thread is asserted on its CPU time, which a busy machine does
//! not inflate (wall time would be luck).
//!
//! `tests/guests/hostile-slicer` keeps its big lists in data segments and
//! writes its exports against the canonical ABI by hand, so that returning
//! a million entries costs it a handful of instructions.

use std::time::Duration;

use presence_router_runtime::{Presence, RouterSet, Slice, UserPresenceState};
use presence_router_tests::{RecordingModuleApi, batch, load_ok, proc_status_bytes};

/// CPU time one call on the reactor may cost it: a slice's fuel is 0.2 to
/// 0.4 ms of wasm here; this leaves room for a slow machine, and is far
/// below what the attacks cost before (0.1 to 2 s).
const REACTOR_CPU_BOUND: Duration = Duration::from_millis(50);

/// The tests measure memory peaks and threads: one at a time (an async
/// lock: each test holds it across its loads).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn load(config: &str) -> (RouterSet, std::sync::Arc<RecordingModuleApi>) {
    load_ok(&format!(
        r#"
routers:
  - name: slicer
    component: $HOSTILE_SLICER
    config: {config}
    failure_policy: {{suspend_after: 0}}
  - name: example
    component: $EXAMPLE_ROUTER
    config: {{always_send_to_users: ["@w:x"]}}
"#
    ))
    .await
}

fn one_state() -> Vec<UserPresenceState> {
    batch(&[("@a:x", Presence::Online)])
}

/// The calling thread's CPU time.
fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(result, 0, "no thread CPU clock");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Runs `call` and asserts it used its slice up within the CPU bound.
fn used_up_in_bounds<T, U>(
    what: &str,
    call: impl FnOnce() -> Result<T, presence_router_runtime::Unfinished<U>>,
) {
    let started = thread_cpu();
    let tried = call();
    let spent = thread_cpu() - started;
    match tried {
        Ok(_) => panic!("{what}: answered within one Slice::REACTOR"),
        Err(unfinished) => assert!(unfinished.slice_used_up(), "{what}: {unfinished:?}"),
    }
    assert!(
        spent < REACTOR_CPU_BOUND,
        "{what}: one Slice::REACTOR cost the calling thread {spent:?} of CPU"
    );
}

/// `get-interested-users` answers `users` with 1,000,000 entries that all
/// point at one `@a:x`: about ten instructions of fuel, and the host would
/// lift, check and merge a million strings.
#[tokio::test]
async fn an_aliased_interest_answer_uses_its_slice_up() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (set, _api) = load("{mode: interest, n: 1000000}").await;
    used_up_in_bounds("interest", || {
        set.get_interested_users_in_slice("@q:x", &Slice::REACTOR)
    });
}

/// 500,000 routes `(@a:x, [0])` aliasing one string and one index list.
#[tokio::test]
async fn an_aliased_route_answer_uses_its_slice_up() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (set, _api) = load("{mode: routes, n: 500000}").await;
    used_up_in_bounds("routes", || {
        set.get_users_for_states_in_slice(&one_state(), &Slice::REACTOR)
    });
}

/// One `send-local-online-presence-to` of 1,000,000 entries aliasing one
/// valid 255-byte user ID (the default `max_answer_entries`): each entry is
/// paid for before it is read, so this one is refused before any is.
#[tokio::test]
async fn an_aliased_send_uses_its_slice_up_and_no_host_memory() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (set, _api) = load("{mode: send, n: 1000000}").await;
    let peak_before = proc_status_bytes("VmHWM:");
    used_up_in_bounds("send", || {
        set.get_users_for_states_in_slice(&one_state(), &Slice::REACTOR)
    });
    let growth = proc_status_bytes("VmHWM:").saturating_sub(peak_before);
    assert!(
        growth < 16 << 20,
        "the host's peak grew by {} MiB",
        growth >> 20
    );
}

/// Loops of host calls that cost the guest almost no fuel of its own:
/// `get-random-bytes(65536)`, 64 KiB stdout writes, `poll` of 1,000
/// borrows of one ready pollable, `log` of a 32 MiB message.
#[tokio::test]
async fn loops_of_host_calls_use_their_slice_up() {
    let _one = ONE_AT_A_TIME.lock().await;
    for (mode, k) in [
        ("random", 4000),
        ("write", 8000),
        ("poll", 2000),
        ("log", 64),
    ] {
        let (set, _api) = load(&format!("{{mode: {mode}, k: {k}}}")).await;
        used_up_in_bounds(mode, || {
            set.get_users_for_states_in_slice(&one_state(), &Slice::REACTOR)
        });
    }
}

/// The same loops, with the router's own limits: they end, by fuel or by
/// the time budget (which comes first depends on the machine; a timeout
/// needs a tick of the watchdog to notice host work, fuel needs none).
#[tokio::test]
async fn loops_of_host_calls_end_with_full_limits() {
    use presence_router_runtime::FailureKind::{OutOfFuel, Timeout};
    let _one = ONE_AT_A_TIME.lock().await;
    for (mode, k) in [("random", 400_000), ("write", 800_000), ("poll", 200_000)] {
        let (set, _api) = load(&format!("{{mode: {mode}, k: {k}}}")).await;
        let routed = set.get_users_for_states_blocking(&one_state());
        let kinds = presence_router_tests::failure_kinds(&routed);
        assert!(
            kinds == [("slicer", OutOfFuel)] || kinds == [("slicer", Timeout)],
            "{mode}: {kinds:?}"
        );
        assert_eq!(routed.answer.get("@w:x"), Some(&vec![0]), "{mode}");
    }
}

/// `instance-network` then `resolve-addresses`: refused (name lookup is
/// off) before wasmtime-wasi starts its own multi-threaded Tokio runtime,
/// a thread per core for the life of the process.
#[test]
fn a_refused_name_lookup_starts_no_threads() {
    let _one = ONE_AT_A_TIME.blocking_lock();
    let loading = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (set, _api) = loading.block_on(load("{mode: lookup}"));
    // Dropping a runtime joins its blocking threads.
    drop(loading);
    let threads = || std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
    let before = threads();
    let tried = set.get_users_for_states_in_slice(
        &one_state(),
        &Slice {
            time: Duration::from_secs(3600),
            ..Slice::REACTOR
        },
    );
    let after = threads();
    assert!(tried.is_ok());
    // Another test's runtime may be ending meanwhile: fewer is fine.
    assert!(
        after <= before,
        "a router's call started threads: {before} → {after}"
    );
}
