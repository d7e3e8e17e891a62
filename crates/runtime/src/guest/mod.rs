//! Everything that touches wasmtime: the engine and its compiler, the
//! sandbox a guest runs in, one instance of a router, and the
//! classification of its failures.
//!
//! The bottom layer of the crate: it imports nothing from the rest of it,
//! only the model's plain data. Nothing in here knows about several
//! routers, merging answers or where compiled components are kept: that
//! is [`crate::RouterSet`]'s job, and the cache's (`cache.rs`, which stores
//! the bytes this module serializes). This module turns "call this export
//! under these limits" into either the guest's checked answer or a
//! [`Failure`] saying which limit was hit. One file per job:
//!
//! | file | job |
//! | --- | --- |
//! | `engine.rs` | the engine and its pooling allocator, the linker, link-checking a component |
//! | `compile.rs` | compiling a component, and its artifact serialized and deserialized |
//! | `state.rs` | the store data of an instance and the host functions it calls (`module-api`, WASI) |
//! | `blocking.rs` | WASI's blocking calls, answered without blocking (calls are synchronous) |
//! | `clock.rs` | what a router may wait on: clock waits, charged, never slept |
//! | `waits.rs` | the waits a guest was charged for, and the monotonic clock it reads |
//! | `time_budget.rs` | the time budget of a call and the watchdog thread that enforces it |
//! | `limiter.rs` | the memory and table limiter, and the per-component bounds it shares with the pool |
//! | `output.rs` | captured stdout and stderr |
//! | `profile.rs` | where a guest's fuel goes: its stacks sampled by fuel, when profiling |
//! | `instance.rs` | one instance: making it, calling it, classifying a failure |
//! | `failure.rs` | a failed call, and wasmtime's errors as one line |
//! | `bindings.rs` | the WIT world's generated types and host interface |

mod bindings;
mod blocking;
mod clock;
mod compile;
mod engine;
mod failure;
mod instance;
mod limiter;
mod output;
mod profile;
mod state;
mod time_budget;
mod waits;

pub(crate) use compile::{CompiledComponent, check_component_bytes};
pub(crate) use engine::{GuestEngine, InstancePool, LoadedComponent};
pub(crate) use failure::Failure;
pub(crate) use instance::{CallStart, CallUsage, GuestInstance, InstanceError};
pub use instance::{CheckedInterest, CheckedRoutes, Slice};
pub use profile::{FuelProfile, FuelProfiler};
pub(crate) use state::CallEffects;
pub use state::LogLevel;
