//! Everything that touches wasmtime: the engine, the sandbox a guest runs
//! in, one instance of a router, and the classification of its failures.
//!
//! Nothing in here knows about several routers or about merging answers:
//! that is [`crate::RouterSet`]'s job. This module turns "call this export
//! under these limits" into either the guest's checked answer or a
//! [`Failure`] saying which limit was hit. One file per job:
//!
//! | file | job |
//! | --- | --- |
//! | `engine.rs` | the engine and its pooling allocator, the linker, loading a component |
//! | `state.rs` | the store data of an instance and the host functions it calls (`module-api`, WASI) |
//! | `blocking.rs` | WASI's blocking calls, answered without blocking (calls are synchronous) |
//! | `clock.rs` | what a router may wait on: clock waits, charged, never slept |
//! | `deadline.rs` | the time budget of a call and the watchdog thread that enforces it |
//! | `limiter.rs` | the memory and table limiter |
//! | `output.rs` | captured stdout and stderr |
//! | `instance.rs` | one instance: making it, calling it, classifying a failure |

mod blocking;
mod clock;
mod deadline;
mod engine;
mod instance;
mod limiter;
mod output;
mod state;

use wasmtime::component::ComponentExportIndex;

use presence_router_model::FailureKind;

pub(crate) use engine::{GuestEngine, InstancePool, LoadedComponent};
pub(crate) use instance::{CallStart, CallUsage, GuestInstance, InstanceError};
pub(crate) use state::CallEffects;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "presence-router",
    });
}

/// A failure of one call, before it is attributed to a router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// The instance can't be used again: wasmtime's call failed (a trap, or
    /// an answer it refused to lift, whose post-return never ran). An answer
    /// that was lifted but failed our checks leaves the instance healthy.
    pub instance_lost: bool,
    /// Not a failure of the router's: the call needed more than the
    /// [`Slice`](crate::Slice) it was tried in, and is to be made again
    /// with the router's full limits.
    pub slice_used_up: bool,
}

impl Failure {
    /// An answer that was received whole but is not acceptable.
    pub(crate) fn invalid_answer(message: String) -> Failure {
        Failure {
            kind: FailureKind::InvalidAnswer,
            message,
            instance_lost: false,
            slice_used_up: false,
        }
    }

    /// A call stopped at the end of its slice.
    pub(crate) fn slice_used_up(instance_lost: bool) -> Failure {
        Failure {
            kind: FailureKind::Timeout,
            message: "the call needed more than its slice".to_owned(),
            instance_lost,
            slice_used_up: true,
        }
    }
}

/// One router's checked `get-users-for-states` answer: (user, indices)
/// pairs (what an [`Unfinished`](crate::Unfinished) call holds).
pub type CheckedRoutes = Vec<(String, Vec<u32>)>;

/// A checked `get-interested-users` answer: `None` is `all-users`.
pub type CheckedInterest = Option<Vec<String>>;

/// The most of a wasmtime error's text kept in a failure message.
const MAX_ERROR_TEXT_BYTES: usize = 2048;

/// The exports every presence router must have, in WIT spelling.
const PARSE_CONFIG: &str = "parse-config";
const GET_USERS_FOR_STATES: &str = "get-users-for-states";
const GET_INTERESTED_USERS: &str = "get-interested-users";

#[derive(Clone, Copy)]
struct ExportIndices {
    parse_config: ComponentExportIndex,
    get_users_for_states: ComponentExportIndex,
    get_interested_users: ComponentExportIndex,
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
        // wasmtime's words, but they may quote what a guest named, at any
        // length.
        presence_router_model::text::escape_untrusted(&parts.join(": "), MAX_ERROR_TEXT_BYTES)
    }
}
