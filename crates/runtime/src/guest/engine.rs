//! The wasmtime engine shared by the routers of a set: its configuration,
//! the pooling allocator (with an on-demand fallback), the linker with
//! every host function a router may import, and link-checking a compiled
//! component (compiling it is `compile.rs`'s).

use wasmtime::component::{ComponentExportIndex, InstancePre, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::compile::{self, CompiledComponent};
use super::failure::error_text;
use super::limiter::{
    CORE_INSTANCES_PER_COMPONENT, MEMORIES_PER_COMPONENT, MemoryLimiter, TABLES_PER_COMPONENT,
};
use super::profile::{CAPTURED_FRAMES, FuelProfiler};
use super::state::GuestState;
use super::time_budget::Watchdog;
use super::{blocking, clock, state};

/// The exports every presence router must have, in WIT spelling.
pub(super) const PARSE_CONFIG: &str = "parse-config";
pub(super) const GET_USERS_FOR_STATES: &str = "get-users-for-states";
pub(super) const GET_INTERESTED_USERS: &str = "get-interested-users";

/// Where a component's exports are, found once when it is loaded.
#[derive(Clone, Copy)]
pub(super) struct ExportIndices {
    pub(super) parse_config: ComponentExportIndex,
    pub(super) get_users_for_states: ComponentExportIndex,
    pub(super) get_interested_users: ComponentExportIndex,
}

/// How many instances of which size the pooling allocator keeps slots for:
/// enough for every router of the set at its `max_instances` at once, plus
/// one each for a fresh instance built while a trapped one is still going.
pub(crate) struct InstancePool {
    pub instances: u32,
    pub max_memory_bytes: u64,
}

impl InstancePool {
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
        // The per-component bounds are the memory limiter's, which enforces
        // them when instances are allocated on demand.
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .total_memories(instances.saturating_mul(MEMORIES_PER_COMPONENT))
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .max_memories_per_module(MEMORIES_PER_COMPONENT)
            .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT))
            .max_tables_per_component(TABLES_PER_COMPONENT)
            // wasmtime's default is one table per core module; the limiter
            // counts per instance, so the pool must too.
            .max_tables_per_module(TABLES_PER_COMPONENT)
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

/// One wasmtime engine and linker, shared by all routers of a set, with the
/// watchdog that enforces time budgets.
pub(crate) struct GuestEngine {
    pub(super) engine: Engine,
    linker: Linker<GuestState>,
    pub(super) watchdog: Watchdog,
    /// Where every instance's stacks go, when profiling.
    pub(super) profiler: Option<FuelProfiler>,
}

/// A compiled, link-checked router component, ready to instantiate cheaply.
#[derive(Clone)]
pub(crate) struct LoadedComponent {
    pub(super) pre: InstancePre<GuestState>,
    pub(super) exports: ExportIndices,
}

impl GuestEngine {
    /// The engine, its linker and its watchdog; the error is wasmtime's, as
    /// one line.
    pub(crate) fn new(
        pool: &InstancePool,
        parallel_compilation: bool,
        profiler: Option<FuelProfiler>,
    ) -> Result<Self, String> {
        Self::make(pool, parallel_compilation, profiler).map_err(|e| error_text(&e))
    }

    fn make(
        pool: &InstancePool,
        parallel_compilation: bool,
        profiler: Option<FuelProfiler>,
    ) -> wasmtime::Result<Self> {
        let mut config = base_config(parallel_compilation);
        if profiler.is_some() {
            // A sample is the stack (profile.rs cuts a deep one), not the
            // innermost 20 frames a trap's backtrace keeps.
            config.wasm_backtrace_max_frames(std::num::NonZeroUsize::new(CAPTURED_FRAMES));
        }
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
        Ok(GuestEngine {
            engine,
            linker,
            watchdog,
            profiler,
        })
    }

    /// What an artifact must have been compiled with to be loaded by this
    /// engine, as a number the cache names its artifacts by.
    pub(crate) fn compatibility_hash(&self) -> u64 {
        compile::compatibility_hash(&self.engine)
    }

    /// Compiles a component for this engine; the error is wasmtime's, as
    /// one line.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<CompiledComponent, String> {
        CompiledComponent::compile(&self.engine, bytes)
    }

    /// Loads a native artifact of a component compiled for an engine like
    /// this one.
    ///
    /// # Safety
    ///
    /// `artifact` must be bytes this runtime serialized
    /// ([`CompiledComponent::serialize`]) with an engine of the same
    /// [`GuestEngine::compatibility_hash`], unchanged since: wasmtime runs
    /// an artifact's native code as it is, without verifying it.
    pub(crate) unsafe fn deserialize(&self, artifact: &[u8]) -> Result<CompiledComponent, String> {
        // SAFETY: the caller vouches for the bytes, as above.
        unsafe { CompiledComponent::deserialize(&self.engine, artifact) }
    }

    /// Checks a compiled component's imports against what the host
    /// provides and its exports against the presence-router world.
    pub(crate) fn link(&self, compiled: &CompiledComponent) -> Result<LoadedComponent, String> {
        let component = &compiled.0;
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
        let pre = self.linker.instantiate_pre(component).map_err(|e| {
            format!(
                "the component imports something this host does not provide \
                 (a router may import only matrix:presence-router/module-api and WASI 0.2): {}",
                error_text(&e)
            )
        })?;
        prepare_memory_images(component)?;
        Ok(LoadedComponent { pre, exports })
    }
}

/// Makes the component's copy-on-write memory images now, at load, rather
/// than at its first instantiation inside a call: each is a sealed memfd,
/// and Linux refuses to seal one (EBUSY) while a page of it is briefly held
/// elsewhere, which a loaded machine shows now and then. wasmtime keeps an
/// image once made and makes it again after a failure, so a refusal is
/// tried again a few times, here where no call waits on it.
fn prepare_memory_images(component: &wasmtime::component::Component) -> Result<(), String> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 1;
    loop {
        match component.initialize_copy_on_write_image() {
            Ok(()) => return Ok(()),
            Err(e) if attempt < ATTEMPTS => {
                tracing::debug!("making the component's memory images (attempt {attempt}): {e:#}");
                std::thread::sleep(std::time::Duration::from_millis(10 << attempt));
                attempt += 1;
            }
            Err(e) => {
                return Err(format!(
                    "cannot make the component's memory images after {ATTEMPTS} attempts: {}",
                    error_text(&e)
                ));
            }
        }
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
        let max = TABLES_PER_COMPONENT;
        assert_eq!(
            instantiates(max, 0),
            [("pooled", true), ("on demand", true)]
        );
        assert_eq!(
            instantiates(max + 1, 0),
            [("pooled", false), ("on demand", false)]
        );
    }

    #[test]
    fn memories_are_bounded_alike() {
        let max = MEMORIES_PER_COMPONENT;
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
