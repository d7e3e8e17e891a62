//! Making a component file's bytes ready to instantiate: the sandbox's
//! compiler (`guest/compile.rs`) and the compiled-component cache
//! (`cache.rs`, which keeps bytes) combined. The artifact is looked up in
//! the cache, deserialized on a hit, and on a miss the component is
//! compiled and its artifact stored.

use std::sync::Arc;

use crate::cache::{CacheSetting, CompileSource, ComponentCache};
use crate::guest::{CompiledComponent, GuestEngine, LoadedComponent, check_component_bytes};

/// An engine, with the cache of its artifacts if there is one usable.
pub(crate) struct Compiler {
    engine: Arc<GuestEngine>,
    cache: Option<ComponentCache>,
}

impl Compiler {
    /// The compiler of `engine`, keeping artifacts where `cache` says (a
    /// cache that can't be used is logged, and components are compiled).
    pub(crate) fn new(engine: GuestEngine, cache: &CacheSetting) -> Compiler {
        let cache = ComponentCache::open(cache, engine.compatibility_hash());
        Compiler {
            engine: Arc::new(engine),
            cache,
        }
    }

    pub(crate) fn engine(&self) -> &Arc<GuestEngine> {
        &self.engine
    }

    /// Compiles a component (or loads its artifact) and checks its imports
    /// against what the host provides and its exports against the
    /// presence-router world.
    pub(crate) fn load(&self, bytes: &[u8]) -> Result<(LoadedComponent, CompileSource), String> {
        check_component_bytes(bytes)?;
        let (component, source) = self
            .compile(bytes)
            .map_err(|e| format!("not a valid WebAssembly component: {e}"))?;
        Ok((self.engine.link(&component)?, source))
    }

    /// The compiled component: from the cache's artifact if it has one that
    /// wasmtime takes, else compiled now (and its artifact stored).
    fn compile(&self, bytes: &[u8]) -> Result<(CompiledComponent, CompileSource), String> {
        let Some(cache) = &self.cache else {
            return Ok((self.engine.compile(bytes)?, CompileSource::Compiled));
        };
        let name = cache.artifact_name(bytes);
        if let Some(artifact) = cache.fetch(&name) {
            // SAFETY: `fetch` returns only bytes that carry a valid MAC under
            // the cache's key, read from a directory and files only this
            // user can write, so this runtime serialized them (see
            // `cache.rs`); the engine hash in their name is this engine's.
            match unsafe { self.engine.deserialize(artifact.bytes()) } {
                Ok(component) => {
                    artifact.mark_used();
                    return Ok((component, CompileSource::Cache));
                }
                Err(e) => tracing::warn!(
                    "cached artifact {} refused by wasmtime, recompiling: {e}",
                    cache.artifact_path(&name).display()
                ),
            }
        }
        let component = self.engine.compile(bytes)?;
        match component.serialize() {
            Ok(artifact) => cache.store(&name, &artifact),
            Err(e) => tracing::warn!("cannot cache {}: {e}", cache.artifact_path(&name).display()),
        }
        Ok((component, CompileSource::Compiled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::InstancePool;

    /// An empty component: the header of a component, nothing else.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn a_component_compiled_once_is_deserialized_from_the_cache_after() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pool = InstancePool {
            instances: 1,
            max_memory_bytes: 64 << 20,
        };
        let compiler = || {
            let engine = GuestEngine::new(&pool, false, None).expect("an engine");
            Compiler::new(engine, &CacheSetting::Dir(dir.path().to_owned()))
        };
        let first = compiler();
        let (_, source) = first.compile(EMPTY_COMPONENT).expect("compiles");
        assert_eq!(source, CompileSource::Compiled);
        let (_, source) = first.compile(EMPTY_COMPONENT).expect("loads");
        assert_eq!(source, CompileSource::Cache);
        // Another engine of the same settings (another process) takes it.
        let (_, source) = compiler().compile(EMPTY_COMPONENT).expect("loads");
        assert_eq!(source, CompileSource::Cache);
        // Without a cache, always compiled.
        let engine = GuestEngine::new(&pool, false, None).expect("an engine");
        let uncached = Compiler::new(engine, &CacheSetting::Disabled);
        let (_, source) = uncached.compile(EMPTY_COMPONENT).expect("compiles");
        assert_eq!(source, CompileSource::Compiled);
    }
}
