//! A call arena: the allocator of a router that keeps nothing between calls.
//!
//! Every call allocates the same way: the host asks the guest's `realloc`
//! for room for the batch (once for the list, once per string), the router
//! builds its answer, and after the call everything is freed (the guest
//! drops the batch, the host's post-return frees the answer). A general
//! allocator (std's dlmalloc) spends a few hundred instructions on each of
//! those, and every instruction is paid in fuel: for a one-state call that
//! was more than the routing itself.
//!
//! This allocator hands out memory by bumping an offset in a fixed arena and
//! counts what is live; when the count falls back to zero (the end of every
//! call), the whole arena is free again. What does not fit goes to std's
//! allocator, as does everything allocated before [`start`]: call it once
//! the router's configuration is parsed, so that the state it keeps for its
//! life is never in the arena.
//!
//! Memory in the arena is reused only once nothing in it is live, so it is
//! as safe as any allocator. A router that keeps an allocation from a call
//! (a cache, a lazily made static, a leak) keeps the arena from emptying:
//! it fills up, and from then on every allocation goes to std's allocator,
//! as without the arena. A component without the threads proposal runs on
//! one thread, which is what makes the plain `Cell`s below sound; `lib.rs`
//! compiles this module for such components only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, UnsafeCell};

/// Room for a large batch's strings; beyond it, std's allocator.
const ARENA_BYTES: usize = 256 * 1024;

#[global_allocator]
static ALLOCATOR: CallArena = CallArena::new();

/// From now on, each call's allocations come from the arena while they
/// fit: call it once what the router keeps for its life is allocated.
pub fn start() {
    ALLOCATOR.started.set(true);
}

#[repr(C, align(16))]
struct Bytes(UnsafeCell<[u8; ARENA_BYTES]>);

struct CallArena {
    bytes: Bytes,
    /// The first free byte, as an offset into `bytes`.
    next: Cell<usize>,
    /// Allocations in the arena not yet freed.
    live: Cell<usize>,
    started: Cell<bool>,
}

// SAFETY: a component without the threads proposal (what `mod call_arena`
// is compiled for) has one thread.
unsafe impl Sync for CallArena {}

impl CallArena {
    const fn new() -> Self {
        CallArena {
            bytes: Bytes(UnsafeCell::new([0; ARENA_BYTES])),
            next: Cell::new(0),
            live: Cell::new(0),
            started: Cell::new(false),
        }
    }

    fn base(&self) -> usize {
        self.bytes.0.get() as usize
    }

    fn contains(&self, ptr: *mut u8) -> bool {
        (ptr as usize).wrapping_sub(self.base()) < ARENA_BYTES
    }

    /// Room for `layout` in the arena, or null if it doesn't fit.
    fn bump(&self, layout: Layout) -> *mut u8 {
        let base = self.base();
        let Some(start) = (base + self.next.get())
            .checked_next_multiple_of(layout.align())
            .map(|address| address - base)
        else {
            return std::ptr::null_mut();
        };
        match start.checked_add(layout.size()) {
            Some(end) if end <= ARENA_BYTES => {
                self.next.set(end);
                self.live.set(self.live.get() + 1);
                // SAFETY: `start + size` is within the arena.
                unsafe { self.bytes.0.get().cast::<u8>().add(start) }
            }
            _ => std::ptr::null_mut(),
        }
    }
}

unsafe impl GlobalAlloc for CallArena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.started.get() {
            let ptr = self.bump(layout);
            if !ptr.is_null() {
                return ptr;
            }
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !self.contains(ptr) {
            // SAFETY: not the arena's, so std's allocator made it.
            return unsafe { System.dealloc(ptr, layout) };
        }
        let live = self.live.get() - 1;
        self.live.set(live);
        if live == 0 {
            self.next.set(0);
        } else if ptr as usize + layout.size() == self.base() + self.next.get() {
            // The latest allocation: its room is free again at once (a
            // vector that grows, then shrinks into a copy).
            self.next.set(ptr as usize - self.base());
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.contains(ptr) {
            // SAFETY: not the arena's, so std's allocator made it.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let offset = ptr as usize - self.base();
        if offset + layout.size() == self.next.get() {
            // The latest allocation grows (or shrinks) where it is.
            if let Some(end) = offset
                .checked_add(new_size)
                .filter(|&end| end <= ARENA_BYTES)
            {
                self.next.set(end);
                return ptr;
            }
        }
        // SAFETY: `new_size` and the alignment make a valid layout (the
        // caller's promise for `realloc`).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as `alloc`.
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both are valid for the smaller size, and distinct.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        moved
    }
}
