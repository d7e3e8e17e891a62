//! The slicer (`tests/guests/hostile-slicer`): a router that makes the host
//! work while spending almost no fuel, against a call tried in a `Slice`
//! (what the Synapse module runs on its reactor, GIL held). It keeps its
//! big lists in data segments and writes its exports against the canonical
//! ABI by hand, so that returning a million entries costs it a handful of
//! instructions.

use std::sync::Arc;
use std::time::Duration;

use presence_router_runtime::{Presence, RouterSet, Unfinished, UserPresenceState};

use crate::{RecordingModuleApi, batch, load_ok};

/// CPU time one call on the reactor may cost it: a slice's fuel is 0.2 to
/// 0.4 ms of wasm here; this leaves room for a slow machine, and is far
/// below what the attacks cost before (0.1 to 2 s).
pub const REACTOR_CPU_BOUND: Duration = Duration::from_millis(50);

/// The slicer, as router `slicer` with `config` (suspension off), beside
/// the example router, which sends everything to `@w:x`.
pub async fn load_slicer(config: &str) -> (RouterSet, Arc<RecordingModuleApi>) {
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

pub fn one_state() -> Vec<UserPresenceState> {
    batch(&[("@a:x", Presence::Online)])
}

/// The calling thread's CPU time: a busy machine does not inflate it, as it
/// would wall time.
pub fn thread_cpu() -> Duration {
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
pub fn used_up_in_bounds<T, U>(what: &str, call: impl FnOnce() -> Result<T, Unfinished<U>>) {
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
