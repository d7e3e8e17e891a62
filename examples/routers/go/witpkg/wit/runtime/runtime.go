// Package runtime is the memory side of the canonical ABI for Go
// components: the stand-in for go.bytecodealliance.org/pkg/wit/runtime (see
// ../../doc.go), with the same API, less resource handles.
//
// Before every call, the host allocates its arguments in the guest's memory
// through the module's `cabi_realloc` export, then calls the export. The
// generated bindings lift the arguments (the strings they hand the router
// point into that memory, uncopied), call Unpin, and call the router: from
// then on the garbage collector keeps the arguments' memory alive for as
// long as the router's values point into it. What an export returns is
// pinned by the bindings until its post-return function.
//
// Unlike upstream's, this package collects garbage itself (see collect) and
// takes a call's arguments from one block of memory (see arguments).
package runtime

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"unsafe"
)

// Allocate returns size bytes aligned to align (1, 2, 4 or 8) from Go's
// heap, pinned by pinner so that the garbage collector neither moves nor
// frees them until it unpins. The bindings use it for what an export
// returns and for the arguments of the host's functions. The memory holds
// no Go pointers as far as the collector knows: what the bindings write
// into it is kept alive by being pinned too, not by being scanned.
func Allocate(pinner *runtime.Pinner, size, align uintptr) unsafe.Pointer {
	if size == 0 {
		// Empty lists and strings: any aligned pointer does, and 0 is
		// always inside the instance's memory.
		return nil
	}
	pointer := allocateRaw(size, align)
	pinner.Pin(pointer)
	return pointer
}

func allocateRaw(size, align uintptr) unsafe.Pointer {
	switch align {
	case 1:
		return unsafe.Pointer(unsafe.SliceData(make([]uint8, size)))
	case 2:
		return unsafe.Pointer(unsafe.SliceData(make([]uint16, (size+1)/2)))
	case 4:
		return unsafe.Pointer(unsafe.SliceData(make([]uint32, (size+3)/4)))
	case 8:
		return unsafe.Pointer(unsafe.SliceData(make([]uint64, (size+7)/8)))
	}
	panic("wit runtime: unsupported alignment")
}

// arguments is the memory `cabi_realloc` hands out for the call under way:
// the host's allocations bumped through blocks of Go's heap, instead of an
// object each. An object each, pinned each, made arguments cost 60% of the
// fuel of a call on 1,000 states (pinning is the dear part). A block is
// kept alive by this variable until Unpin, and after it by the strings
// lifted from it, for as long as the router keeps any of them (then the
// whole block: copy an ID out with strings.Clone to keep it for longer).
var arguments struct {
	block []uint64 // 8-byte aligned, no Go pointers
	used  uintptr  // bytes of block handed out
	// Bytes handed out since the heap was last read (see collect).
	sinceCheck uintptr
}

// Blocks start small, so that a call with a single string makes little
// garbage: a call's first allocation is its largest (the list of states)
// more often than not, and the block is twice it.
const minArgumentBlock = 256

func allocateArgument(size, align uintptr) unsafe.Pointer {
	arguments.sinceCheck += size
	if size == 0 {
		return nil
	}
	block := uintptr(len(arguments.block)) * 8
	start := (arguments.used + align - 1) &^ (align - 1)
	if arguments.block == nil || start+size > block {
		// A new block; the old one stays alive through the strings lifted
		// from it, if any. Growing the heap for it reads the monotonic
		// clock (mheap.allocSpan), which the host must not be asked for
		// now: the preview1 adapter answers from a cached value while
		// paused.
		adapterMonotonicClockSetPaused(true)
		arguments.block = make([]uint64, (max(2*size, 2*block, minArgumentBlock)+7)/8)
		adapterMonotonicClockSetPaused(false)
		start = 0
	}
	arguments.used = start + size
	return unsafe.Add(unsafe.Pointer(unsafe.SliceData(arguments.block)), start)
}

// While paused, the preview1 adapter answers `clock_time_get` for the
// monotonic clock from a cached value instead of asking the host (the
// adapter of wasmtime 48.0.8 exports this; upstream uses it the same way).
//
//go:wasmimport wasi_snapshot_preview1 adapter_monotonic_clock_set_paused
func adapterMonotonicClockSetPaused(paused bool)

// Unpin releases the arguments of the call under way to the garbage
// collector. The bindings call it in every export once they have lifted the
// arguments, before the router's function, where the component may call
// the host: the place to collect garbage (see collect).
func Unpin() {
	arguments.block, arguments.used = nil, 0
	collect()
}

// A garbage collection must never run inside `cabi_realloc`: the component
// may not call the host while the host lowers arguments into it (wasmtime
// traps: "cannot leave component instance"), and a collection reads the
// clocks (gcMarkTermination reads the wall clock through WASI's
// clock_time_get, which the adapter cannot pause). Go's pacer starts a
// collection in whichever allocation crosses its goal and lets it run on
// across calls, to be finished by a later allocation, `cabi_realloc`'s
// included. So the pacer is off
// (SetGCPercent(-1), in init) and collect runs whole collections itself, at
// the start of an export, with the pacer's rule: when the heap has doubled
// since the last one, but at least by minGrowth (1 MiB; Go's default is 4
// MiB): a router's live heap is small, and every instance pays for the
// memory its heap may grow to.
//
// Reading the heap's size (runtime/metrics) costs about 18,000 fuel, four
// times a whole get-interested-users call, so collect reads it only every
// checkEvery exports, or sooner once the host has allocated checkBytes of
// arguments since the last reading (large batches). A collection costs
// about 2.8 million fuel, however small the heap: it comes every few
// hundred calls, in the call that finds the heap grown.
const (
	minGrowth  = 1 << 20
	checkEvery = 32
	checkBytes = 256 << 10
)

var (
	heapSample = []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	// The heap right after the last collection: its live objects.
	liveAfterLast uint64
	// Exports since the heap was last read.
	exportsSinceCheck int
)

func heapBytes() uint64 {
	metrics.Read(heapSample)
	return heapSample[0].Value.Uint64()
}

func collect() {
	exportsSinceCheck++
	if exportsSinceCheck < checkEvery && arguments.sinceCheck < checkBytes {
		return
	}
	exportsSinceCheck, arguments.sinceCheck = 0, 0
	if heapBytes() < liveAfterLast+max(liveAfterLast, minGrowth) {
		return
	}
	// Returns with the collection and its sweep finished: none is left
	// running for a later allocation to finish.
	runtime.GC()
	liveAfterLast = heapBytes()
}

// `cabi_realloc` can be called before Go's runtime has started: during
// `_initialize`, the runtime's first call into WASI makes the preview1
// adapter set itself up, and it takes its stack and its state (64 KiB each,
// for wasmtime 48's adapter) through `cabi_realloc`, before Go's heap is
// there. So until this package's init has run, allocations come from this
// static arena, with room to spare; they are never freed (the adapter keeps
// both for the life of the instance). Upstream takes them from runtime.sbrk
// instead, which Go's linker no longer lets a package outside the standard
// library name. Should a future adapter need more, instantiation traps
// (the panic below, before Go can print it, shows as "undefined element":
// raise arenaBytes).
const arenaBytes = 192 << 10

var (
	arena     [arenaBytes / 8]uint64 // 8-byte aligned
	arenaUsed uintptr
	runtimeUp bool
)

func init() {
	debug.SetGCPercent(-1)
	liveAfterLast = heapBytes()
	runtimeUp = true
}

//go:wasmexport cabi_realloc
func cabiRealloc(oldPointer unsafe.Pointer, oldSize, align, newSize uintptr) unsafe.Pointer {
	// The host only ever allocates anew: the canonical ABI reallocates
	// only for a guest's own lists, and the bindings never ask it to.
	if oldPointer != nil || oldSize != 0 {
		panic("wit runtime: cabi_realloc cannot reallocate")
	}
	if !runtimeUp {
		return arenaAllocate(newSize, align)
	}
	// No collection can start here: the pacer is off (see collect).
	return allocateArgument(newSize, align)
}

// arenaAllocate bumps through the arena. It must not allocate from Go's
// heap, which is not there yet: a full arena traps.
func arenaAllocate(size, align uintptr) unsafe.Pointer {
	base := uintptr(unsafe.Pointer(&arena))
	start := (base + arenaUsed + align - 1) &^ (align - 1)
	if start+size > base+arenaBytes {
		panic("wit runtime: cabi_realloc's static arena is full")
	}
	arenaUsed = start + size - base
	return unsafe.Add(unsafe.Pointer(&arena), start-base)
}
