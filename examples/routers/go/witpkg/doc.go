// Package pkg is this repository's stand-in for go.bytecodealliance.org/pkg,
// the module that the Go bindings from `wit-bindgen go` (0.60) import.
//
// Why a stand-in: that module is served only by the Go module proxy, which
// the machines that build this repository cannot reach, so ../go.mod
// replaces it with this directory and builds run with GOPROXY=off. Why
// not a copy: upstream's wit/runtime takes the memory for allocations made
// before Go's runtime has started from runtime.sbrk, through a
// `//go:linkname`, and Go 1.27's linker refuses that ("invalid reference to
// runtime.sbrk").
//
// What it holds: only what bindings for a world without resources, futures
// or streams use (the presence-router world):
//
//   - wit/runtime: Allocate and Unpin for the bindings, and the module's
//     `cabi_realloc` export, through which the host allocates the arguments
//     of every call in the guest's memory;
//   - wit/types: Option, Result and Unit.
//
// Upstream's wit/async, the resource handles of wit/runtime, and the
// tuples, futures and streams of wit/types are left out: bindings that need
// them fail to compile against this stand-in, naming what is missing.
//
// Where wit/runtime does more than upstream's (see runtime.go): it runs the
// garbage collector itself, at the start of an export, because a
// collection that Go's pacer starts can end inside `cabi_realloc`, where
// reading the clock traps; and it hands out a call's arguments from one
// block of memory instead of one pinned object each, which cuts the fuel of
// a call on 1,000 states by three quarters.
package pkg
