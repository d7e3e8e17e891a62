//! Compiling a component for the engine, and its native artifact
//! serialized (for the cache to keep) and deserialized (from what it kept).
//!
//! Where artifacts are kept, and whether one may be trusted, is the cache's
//! business (`cache.rs`, bytes only); looking one up and compiling on a miss
//! is `compiler.rs`'s, above both.

use std::hash::{Hash, Hasher};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::failure::error_text;

/// A compiled component, not yet checked against the presence-router world
/// (`GuestEngine::link`).
pub(crate) struct CompiledComponent(pub(super) Component);

impl CompiledComponent {
    /// Compiles a component (seconds of CPU for a large one); the error is
    /// wasmtime's, as one line.
    pub(super) fn compile(engine: &Engine, bytes: &[u8]) -> Result<CompiledComponent, String> {
        Component::new(engine, bytes)
            .map(CompiledComponent)
            .map_err(|e| error_text(&e))
    }

    /// Loads a native artifact ([`CompiledComponent::serialize`]); wasmtime
    /// copies the bytes, so the bytes checked are the bytes run.
    ///
    /// # Safety
    ///
    /// `artifact` must be bytes this runtime serialized with an engine of the
    /// same [`compatibility_hash`], unchanged since: wasmtime runs an
    /// artifact's native code as it is, without verifying it.
    pub(super) unsafe fn deserialize(
        engine: &Engine,
        artifact: &[u8],
    ) -> Result<CompiledComponent, String> {
        // SAFETY: the caller vouches for the bytes (see above).
        unsafe { Component::deserialize(engine, artifact) }
            .map(CompiledComponent)
            .map_err(|e| error_text(&e))
    }

    /// Its native artifact, for the cache to keep.
    pub(crate) fn serialize(&self) -> Result<Vec<u8>, String> {
        self.0.serialize().map_err(|e| error_text(&e))
    }
}

/// What an artifact must have been compiled with to be loaded by `engine`
/// (the wasmtime version and every compilation setting), as a number the
/// cache names its artifacts by.
pub(super) fn compatibility_hash(engine: &Engine) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

/// Refuses what is not worth compiling, before the cache is even looked
/// at, in words that say which mistake it is.
pub(crate) fn check_component_bytes(bytes: &[u8]) -> Result<(), String> {
    // A core module's header is `\0asm` then version 1; a component's
    // has a different version and layer.
    if bytes.starts_with(b"\0asm\x01\0\0\0") {
        return Err(
            "this is a core WebAssembly module, not a component: build the router \
                    for wasm32-wasip2, or wrap the module with `wasm-tools component new`"
                .to_owned(),
        );
    }
    refuse_other_string_encodings(bytes)
}

/// Refuses a component that would hand the host strings in UTF-16 or
/// Latin-1: the host reads a `log` line or a user ID lazily from guest
/// memory, bounded before it is copied, and only a UTF-8 string can be read
/// that way (wasmtime converts any other encoding whole into a new string
/// first). Every toolchain we know of uses UTF-8.
fn refuse_other_string_encodings(bytes: &[u8]) -> Result<(), String> {
    use wasmparser::{CanonicalFunction, CanonicalOption, Payload};
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        // A malformed component is wasmtime's to refuse, in its words.
        let Ok(Payload::ComponentCanonicalSection(functions)) = payload else {
            continue;
        };
        for function in functions.into_iter().flatten() {
            if let CanonicalFunction::Lower { options, .. } = function
                && options.iter().any(|option| {
                    matches!(
                        option,
                        CanonicalOption::UTF16 | CanonicalOption::CompactUTF16
                    )
                })
            {
                return Err(
                    "the component passes strings to the host in UTF-16 or Latin-1: a router \
                     must use UTF-8 strings for the functions it imports"
                        .to_owned(),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component whose only content lowers function 0 with `options`.
    fn lowering_with(options: &[wasm_encoder::CanonicalOption]) -> Vec<u8> {
        let mut component = wasm_encoder::Component::new();
        let mut canon = wasm_encoder::CanonicalFunctionSection::new();
        canon.lower(0, options.iter().copied());
        component.section(&canon);
        component.finish()
    }

    #[test]
    fn strings_handed_to_the_host_must_be_utf8() {
        use wasm_encoder::CanonicalOption;
        assert_eq!(
            refuse_other_string_encodings(&lowering_with(&[CanonicalOption::UTF8])),
            Ok(())
        );
        assert_eq!(refuse_other_string_encodings(&lowering_with(&[])), Ok(()));
        for encoding in [CanonicalOption::UTF16, CanonicalOption::CompactUTF16] {
            let refused = refuse_other_string_encodings(&lowering_with(&[encoding]));
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.contains("must use UTF-8")),
                "{refused:?}"
            );
        }
    }
}
