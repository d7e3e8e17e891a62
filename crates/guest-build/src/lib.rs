//! Builds router components from languages whose compilers emit plain
//! WebAssembly modules (C, C++, and any other that links a `wasm32-wasi`
//! reactor), with the two steps that otherwise need `wit-bindgen` and
//! `wasm-tools` installed by `cargo install` (over 20 minutes on two cores):
//!
//! - [`bindgen::generate`]: the guest bindings of a WIT world for a language
//!   (`presence-router-guest-build bindgen --lang c --wit wit --out gen`);
//! - [`componentize::componentize`]: a wasip1 reactor module, with its WIT
//!   world embedded by the bindings (or given), made a component through the
//!   preview1 reactor adapter, validated
//!   (`presence-router-guest-build componentize --module m.wasm --out c.wasm`).
//!
//! Componentizing also checks what the encoder does not: every export that
//! returns an allocation (a string or a list, as `parse-config`'s error,
//! `get-users-for-states`' routes) needs its post-return function in the
//! module, under the exact name the canonical ABI looks for
//! (`cabi_post_get-users-for-states`). Without it the component still
//! works and passes every functional test, but nothing it returns is ever
//! freed: it leaks on every call. wit-bindgen-cpp 0.60 to 0.63 name theirs
//! `cabi_post_get_users_for_states`, which the encoder silently ignores.
//! [`post_return::missing_post_returns`] is that check on its own.
//!
//! The crate shares every wasm-tools crate with wasmtime 48 (0.254) and
//! depends on no wasmtime: the workspace builds it in seconds once its
//! dependencies are there.

pub mod bindgen;
pub mod cli;
pub mod componentize;
pub mod post_return;
pub mod trusted_dir;

use std::path::PathBuf;

/// What can go wrong building a component; each error names its file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the WIT package in {dir}")]
    Wit {
        dir: PathBuf,
        #[source]
        source: anyhow::Error,
    },
    #[error("unknown language `{0}` (known: {known})", known = bindgen::language_names().join(", "))]
    UnknownLanguage(String),
    #[error("cannot generate the {language} bindings of world `{world}`")]
    Bindgen {
        language: String,
        world: String,
        #[source]
        source: anyhow::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a WebAssembly module")]
    NotAModule(#[source] wasmparser::BinaryReaderError),
    #[error("already a component: componentize takes a core (wasip1 reactor) module")]
    AlreadyAComponent,
    #[error(
        "the module carries no WIT world (no `component-type` custom section from the \
         bindings): pass the WIT with --wit DIR"
    )]
    NoWorld,
    #[error(
        "a command module (it exports `_start`): build a reactor (clang -mexec-model=reactor), \
         which the preview1 reactor adapter turns into a component"
    )]
    CommandModule,
    #[error("cannot read the WIT world the module carries")]
    Metadata(#[source] anyhow::Error),
    #[error("cannot make a component of the module")]
    Encode(#[source] anyhow::Error),
    #[error("{}", post_return::describe(.0))]
    MissingPostReturns(Vec<post_return::MissingPostReturn>),
}
