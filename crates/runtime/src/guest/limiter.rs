//! The memory limiter: caps an instance's linear memories and tables, and
//! remembers a refusal so that the abort it causes is reported as `memory`.
//!
//! Its per-instance bounds are also the pooling allocator's per-component
//! slots (`engine::InstancePool` sizes them from the constants here), so
//! that instances allocated on demand (where the pool can't be reserved)
//! are refused exactly what pooled ones are.

use wasmtime::ResourceLimiter;

/// Per component instance: room for components built with a language
/// runtime inside (several core instances, tables and memories). Both the
/// pool's slots and this limiter enforce these numbers, and SECURITY.md
/// states them.
pub(crate) const CORE_INSTANCES_PER_COMPONENT: u32 = 64;
pub(crate) const MEMORIES_PER_COMPONENT: u32 = 4;
pub(crate) const TABLES_PER_COMPONENT: u32 = 32;

/// Caps an instance's linear memory, and remembers a refusal: a guest whose
/// allocation fails usually aborts with a plain trap, which without this
/// memory could not be told apart from any other.
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    /// All memories of the instance together; memories never shrink.
    pub(crate) used_bytes: usize,
    pub(crate) refused: bool,
}

impl MemoryLimiter {
    /// Tables are small in every real router; a huge one is an attack.
    pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;

    pub(crate) fn new(max_bytes: u64) -> Self {
        MemoryLimiter {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            used_bytes: 0,
            refused: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.used_bytes.saturating_add(growth);
        if total > self.max_bytes {
            self.refused = true;
            return Ok(false);
        }
        self.used_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= Self::MAX_TABLE_ELEMENTS)
    }

    // The same bounds as the pooling allocator's slots, so that a component
    // the pool refuses is refused as well when instances are allocated on
    // demand (where the pool can't be reserved).
    fn instances(&self) -> usize {
        CORE_INSTANCES_PER_COMPONENT as usize
    }

    fn tables(&self) -> usize {
        TABLES_PER_COMPONENT as usize
    }

    fn memories(&self) -> usize {
        MEMORIES_PER_COMPONENT as usize
    }
}
