//! The wasmtime engine shared by the routers of a set: its configuration,
//! the pooling allocator (with an on-demand fallback), the linker with
//! every host function a router may import, and loading a component.

use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::deadline::Watchdog;
use super::limiter::MemoryLimiter;
use super::state::GuestState;
use super::{
    ExportIndices, GET_INTERESTED_USERS, GET_USERS_FOR_STATES, PARSE_CONFIG, blocking, clock,
    error_text, state,
};
use crate::cache::{CacheSetting, CompileSource, ComponentCache};

/// How many instances of which size the pooling allocator keeps slots for:
/// enough for every router of the set at its `max_instances` at once, plus
/// one each for a fresh instance built while a trapped one is still going.
pub(crate) struct InstancePool {
    pub instances: u32,
    pub max_memory_bytes: u64,
}

impl InstancePool {
    /// Per component: room for components built with a language runtime
    /// inside (several core instances, tables and memories). The memory
    /// limiter enforces the same numbers when instances are allocated on
    /// demand, and SECURITY.md states them.
    pub(crate) const CORE_INSTANCES_PER_COMPONENT: u32 = 64;
    pub(crate) const MEMORIES_PER_COMPONENT: u32 = 4;
    pub(crate) const TABLES_PER_COMPONENT: u32 = 32;
    const MIN_SLOT_BYTES: u64 = 1 << 30;
    /// A freed slot keeps up to this much of its memory mapped and is reset
    /// with `memset` (only the pages the guest dirtied, where the kernel has
    /// `PAGEMAP_SCAN`), instead of being unmapped: the fresh instance after
    /// a trap then takes no page faults, and freeing it no TLB shootdown.
    /// Page faults and zeroing were two thirds of a fresh instance's cost.
    const KEEP_RESIDENT_BYTES: usize = 4 << 20;

    fn config(&self) -> PoolingAllocationConfig {
        let instances = self.instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(Self::CORE_INSTANCES_PER_COMPONENT))
            .max_core_instances_per_component(Self::CORE_INSTANCES_PER_COMPONENT)
            .total_memories(instances.saturating_mul(Self::MEMORIES_PER_COMPONENT))
            .max_memories_per_component(Self::MEMORIES_PER_COMPONENT)
            .max_memories_per_module(Self::MEMORIES_PER_COMPONENT)
            .total_tables(instances.saturating_mul(Self::TABLES_PER_COMPONENT))
            .max_tables_per_component(Self::TABLES_PER_COMPONENT)
            // wasmtime's default is one table per core module; the limiter
            // counts per instance, so the pool must too.
            .max_tables_per_module(Self::TABLES_PER_COMPONENT)
            .table_elements(MemoryLimiter::MAX_TABLE_ELEMENTS)
            .total_stacks(instances)
            .linear_memory_keep_resident(Self::KEEP_RESIDENT_BYTES)
            .table_keep_resident(Self::KEEP_RESIDENT_BYTES)
            .pagemap_scan(Enabled::Auto)
            // Slots are address space, not memory: size them generously and
            // leave the limit to `MemoryLimiter`, whose refusal says which
            // limit was hit (a slot too small would refuse the component at
            // compile time instead, with wasmtime's words).
            .max_memory_size(
                usize::try_from(self.max_memory_bytes.max(Self::MIN_SLOT_BYTES))
                    .unwrap_or(usize::MAX),
            );
        pool
    }
}

/// What every engine of ours has, however it allocates instances.
fn base_config(parallel_compilation: bool) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .parallel_compilation(parallel_compilation)
        // Fuel bounds the instructions of a call; epochs let the watchdog
        // make a running guest check its time budget (fuel alone can't: a
        // host call with a big argument costs the guest little fuel and the
        // host much time).
        .consume_fuel(true)
        .epoch_interruption(true);
    // Component-model async (and with it wasmtime 48's slower call path,
    // wasmtime#12836) is not compiled in: the workspace leaves out the
    // `component-model-async` feature, and `concurrency_support(true)`
    // would refuse to build an engine.
    config
}

/// Instances in the pooling allocator's slots, reserved up front.
fn pooled_engine(config: &Config, pool: &InstancePool) -> wasmtime::Result<Engine> {
    let mut pooled = config.clone();
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool.config()));
    Engine::new(&pooled)
}

/// Where the pool's address space can't be reserved (a `ulimit -v`, say):
/// instances allocated one by one, each memory reserving only what it uses
/// (explicit bounds checks instead of 4 GiB guard regions, which the limit
/// would refuse just the same). Slower, as safe; the memory limiter bounds
/// these instances exactly as the pool's slots bound pooled ones.
fn on_demand_engine(mut config: Config) -> wasmtime::Result<Engine> {
    config
        .memory_reservation(0)
        .memory_guard_size(0)
        .memory_reservation_for_growth(1 << 20);
    Engine::new(&config)
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

/// One wasmtime engine and linker, shared by all routers of a set, with the
/// watchdog that enforces time budgets.
pub(crate) struct GuestEngine {
    pub(super) engine: Engine,
    linker: Linker<GuestState>,
    cache: Option<ComponentCache>,
    pub(super) watchdog: Watchdog,
}

/// A compiled, link-checked router component, ready to instantiate cheaply.
#[derive(Clone)]
pub(crate) struct LoadedComponent {
    pub(super) pre: InstancePre<GuestState>,
    pub(super) exports: ExportIndices,
}

impl GuestEngine {
    pub(crate) fn new(
        cache: &CacheSetting,
        pool: &InstancePool,
        parallel_compilation: bool,
    ) -> wasmtime::Result<Self> {
        let config = base_config(parallel_compilation);
        let engine = match pooled_engine(&config, pool) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!(
                    "pooling allocator unavailable, allocating instances on demand: {}",
                    error_text(&e)
                );
                on_demand_engine(config)?
            }
        };

        let mut linker = Linker::new(&engine);
        // A std guest for wasm32-wasip2 imports WASI even when it never uses
        // it; every WASI call is answered from an empty, capability-less
        // context (see `GuestState::new`), and clock waits are charged, not
        // slept (`clock.rs`).
        // Synchronous host functions only, so that calls need no fiber
        // (`blocking.rs` replaces the few that would block).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        blocking::add_to_linker(&mut linker)?;
        clock::add_to_linker(&mut linker)?;
        state::add_to_linker(&mut linker)?;

        let watchdog = Watchdog::start(engine.weak());
        let cache = ComponentCache::open(cache, &engine);
        Ok(GuestEngine {
            engine,
            linker,
            cache,
            watchdog,
        })
    }

    /// Compiles a component and checks its imports against what the host
    /// provides and its exports against the presence-router world.
    pub(crate) fn load(&self, bytes: &[u8]) -> Result<(LoadedComponent, CompileSource), String> {
        // A core module's header is `\0asm` then version 1; a component's
        // has a different version and layer. Say which mistake this is.
        if bytes.starts_with(b"\0asm\x01\0\0\0") {
            return Err(
                "this is a core WebAssembly module, not a component: build the router \
                        for wasm32-wasip2, or wrap the module with `wasm-tools component new`"
                    .to_owned(),
            );
        }
        refuse_other_string_encodings(bytes)?;
        let (component, source) = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, bytes),
            None => Component::new(&self.engine, bytes).map(|c| (c, CompileSource::Compiled)),
        }
        .map_err(|e| format!("not a valid WebAssembly component: {}", error_text(&e)))?;
        let export = |name: &str| {
            component.get_export_index(None, name).ok_or_else(|| {
                format!(
                    "the component does not export `{name}`: a presence router must export \
                     `{PARSE_CONFIG}`, `{GET_USERS_FOR_STATES}` and `{GET_INTERESTED_USERS}` \
                     (world matrix:presence-router/presence-router@0.1.0)"
                )
            })
        };
        let exports = ExportIndices {
            parse_config: export(PARSE_CONFIG)?,
            get_users_for_states: export(GET_USERS_FOR_STATES)?,
            get_interested_users: export(GET_INTERESTED_USERS)?,
        };
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            format!(
                "the component imports something this host does not provide \
                 (a router may import only matrix:presence-router/module-api and WASI 0.2): {}",
                error_text(&e)
            )
        })?;
        Ok((LoadedComponent { pre, exports }, source))
    }
}

#[cfg(test)]
mod tests {
    //! Both allocation modes refuse exactly the same components.

    use wasm_encoder::{
        Component as ComponentBytes, InstanceSection, MemorySection, MemoryType, Module, ModuleArg,
        ModuleSection, RefType, TableSection, TableType,
    };
    use wasmtime::Store;

    use super::*;
    use presence_router_model::Limits;

    /// A component with one core module of `tables` tables and `memories`
    /// memories, instantiated once.
    fn component(tables: u32, memories: u32) -> Vec<u8> {
        let mut module = Module::new();
        let mut table_section = TableSection::new();
        for _ in 0..tables {
            table_section.table(TableType {
                element_type: RefType::FUNCREF,
                minimum: 1,
                maximum: None,
                table64: false,
                shared: false,
            });
        }
        module.section(&table_section);
        let mut memory_section = MemorySection::new();
        for _ in 0..memories {
            memory_section.memory(MemoryType {
                minimum: 1,
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
        }
        module.section(&memory_section);
        let mut component = ComponentBytes::new();
        component.section(&ModuleSection(&module));
        let mut instances = InstanceSection::new();
        instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
        component.section(&instances);
        component.finish()
    }

    /// Whether each engine instantiates the component.
    fn instantiates(tables: u32, memories: u32) -> [(&'static str, bool); 2] {
        let pool = InstancePool {
            instances: 2,
            max_memory_bytes: 64 << 20,
        };
        let engines = [
            (
                "pooled",
                pooled_engine(&base_config(false), &pool).expect("a pool"),
            ),
            (
                "on demand",
                on_demand_engine(base_config(false)).expect("an engine"),
            ),
        ];
        engines.map(|(mode, engine)| {
            let compiled =
                wasmtime::component::Component::new(&engine, component(tables, memories));
            let ok = compiled.is_ok_and(|component| {
                let mut store = Store::new(&engine, GuestState::new(&Limits::DEFAULT));
                store.limiter(|state| &mut state.memory);
                let _ = store.set_fuel(u64::MAX);
                Linker::new(&engine)
                    .instantiate(&mut store, &component)
                    .is_ok()
            });
            (mode, ok)
        })
    }

    #[test]
    fn tables_per_module_are_bounded_alike() {
        assert_eq!(instantiates(2, 0), [("pooled", true), ("on demand", true)]);
        let max = InstancePool::TABLES_PER_COMPONENT;
        assert_eq!(
            instantiates(max, 0),
            [("pooled", true), ("on demand", true)]
        );
        assert_eq!(
            instantiates(max + 1, 0),
            [("pooled", false), ("on demand", false)]
        );
    }

    /// A component whose only content lowers function 0 with `options`.
    fn lowering_with(options: &[wasm_encoder::CanonicalOption]) -> Vec<u8> {
        let mut component = ComponentBytes::new();
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

    #[test]
    fn memories_are_bounded_alike() {
        let max = InstancePool::MEMORIES_PER_COMPONENT;
        assert_eq!(
            instantiates(0, max),
            [("pooled", true), ("on demand", true)]
        );
        assert_eq!(
            instantiates(0, max + 1),
            [("pooled", false), ("on demand", false)]
        );
    }
}
