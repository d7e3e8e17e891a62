//! Hostile guest (review of the slice change): makes the host work for a
//! long time while spending almost no fuel, so that a call tried in a
//! `Slice` (200,000 fuel, no watchdog) runs long on the calling thread
//! (Synapse's reactor) and yet is never "used up".
//!
//! Everything big is a data segment (written into memory at instantiation,
//! at no fuel cost); each call only hands the host a pointer.
//! The exports are written against the canonical ABI by hand, so that
//! returning a list of a million entries costs a handful of instructions.
//!
//! Config `{"mode": M, "n": N, "k": K}`:
//! - `interest`: `get-interested-users` answers `users` with N entries, all
//!   the same (aliased) `@a:x`;
//! - `routes`: `get-users-for-states` answers N routes `(@a:x, [0])`, all
//!   aliasing one string and one index list;
//! - `send`: `get-users-for-states` calls `send-local-online-presence-to`
//!   once with N entries aliasing one valid 255-byte user ID, answers [];
//! - `random`: K calls of `get-random-bytes(65536)` into one scratch buffer;
//! - `write`: K writes of 65536 bytes (newlines) to stdout;
//! - `poll`: K polls of a list of 1000 borrows of one ready pollable;
//! - `log`: K `log` calls with one 32 MiB message (zero pages: valid
//!   UTF-8 made at no fuel);
//! - `lookup`: `instance-network`, then `resolve-addresses("localhost")`
//!   (refused: name lookup is off).

use std::cell::UnsafeCell;

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

#[link(wasm_import_module = "matrix:presence-router/module-api@0.1.0")]
unsafe extern "C" {
    #[link_name = "send-local-online-presence-to"]
    fn raw_send(list: *const u8, len: usize);
    /// `log: func(level: log-level, message: string)`.
    #[link_name = "log"]
    fn raw_log(level: i32, message: *const u8, len: usize);
}

#[link(wasm_import_module = "wasi:cli/stdout@0.2.0")]
unsafe extern "C" {
    #[link_name = "get-stdout"]
    fn raw_get_stdout() -> i32;
}

#[link(wasm_import_module = "wasi:io/streams@0.2.0")]
unsafe extern "C" {
    #[link_name = "[method]output-stream.write"]
    fn raw_write(stream: i32, contents: *const u8, len: usize, result: *mut u8);
}

#[link(wasm_import_module = "wasi:random/random@0.2.0")]
unsafe extern "C" {
    #[link_name = "get-random-bytes"]
    fn raw_random(len: i64, result: *mut u8);
}

#[link(wasm_import_module = "wasi:sockets/instance-network@0.2.0")]
unsafe extern "C" {
    #[link_name = "instance-network"]
    fn raw_instance_network() -> i32;
}

#[link(wasm_import_module = "wasi:sockets/ip-name-lookup@0.2.0")]
unsafe extern "C" {
    /// `resolve-addresses: func(network: borrow<network>, name: string)
    /// -> result<resolve-address-stream, error-code>`.
    #[link_name = "resolve-addresses"]
    fn raw_resolve(network: i32, name: *const u8, len: usize, result: *mut u8);
}

#[link(wasm_import_module = "wasi:clocks/monotonic-clock@0.2.0")]
unsafe extern "C" {
    #[link_name = "subscribe-duration"]
    fn raw_subscribe_duration(nanos: i64) -> i32;
}

#[link(wasm_import_module = "wasi:io/poll@0.2.0")]
unsafe extern "C" {
    /// `poll: func(in: list<borrow<pollable>>) -> list<u32>`.
    #[link_name = "poll"]
    fn raw_poll(list: *const i32, len: usize, result: *mut u8);
}

const SCRATCH: usize = 65536;

struct State {
    mode: u32,
    k: usize,
    n: usize,
    scratch_on: bool,
    ret: [u32; 4],
    scratch: [u8; SCRATCH],
}

struct Global(UnsafeCell<State>);
// SAFETY: a wasm guest is single-threaded.
unsafe impl Sync for Global {}

static STATE: Global = Global(UnsafeCell::new(State {
    mode: 0,
    k: 0,
    n: 0,
    scratch_on: false,
    ret: [0; 4],
    scratch: [b'\n'; SCRATCH],
}));

fn state() -> &'static mut State {
    // SAFETY: single-threaded, no reentrancy across these exports.
    unsafe { &mut *STATE.0.get() }
}

const SHORT_ID: &str = "@a:x";
static INDICES: [u32; 1] = [0];
/// A valid user ID of Matrix's maximum 255 bytes.
const LONG_ID: &str = concat!(
    "@",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "aa:x"
);
const _: () = assert!(LONG_ID.len() == 255);

/// A route as the canonical ABI lays it out: (pointer, length) twice. On
/// wasm32 a `&str` and a `&[u32]` are exactly that.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawRoute {
    user_id: &'static str,
    states: &'static [u32],
}

const MAX_N: usize = 1_000_000;

// Data segments: written into memory at instantiation, at no fuel.
static USERS: [&str; MAX_N] = [SHORT_ID; MAX_N];
static SENDS: [&str; MAX_N] = [LONG_ID; MAX_N];
static ROUTES: [RawRoute; MAX_N / 2] = [RawRoute {
    user_id: SHORT_ID,
    states: &INDICES,
}; MAX_N / 2];

/// The canonical ABI's allocator: the scratch buffer while a loop of
/// host calls runs (no allocation, no fuel), std's otherwise.
///
/// # Safety
///
/// Called only by the component model, with `old` and `old_size` from an
/// earlier call (or null and 0) and a power-of-two `align`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old: *mut u8,
    old_size: usize,
    align: usize,
    new_size: usize,
) -> *mut u8 {
    let s = state();
    if s.scratch_on && new_size <= SCRATCH {
        return s.scratch.as_mut_ptr();
    }
    if new_size == 0 {
        return align as *mut u8;
    }
    let layout = std::alloc::Layout::from_size_align(new_size, align).unwrap();
    // SAFETY: valid layouts; old was allocated with the same align.
    unsafe {
        if old.is_null() || old_size == 0 {
            std::alloc::alloc(layout)
        } else {
            std::alloc::realloc(
                old,
                std::alloc::Layout::from_size_align(old_size, align).unwrap(),
                new_size,
            )
        }
    }
}

/// The `parse-config` export, by the canonical ABI.
///
/// # Safety
///
/// Called only by the component model, with a string it lowered.
#[unsafe(export_name = "parse-config")]
pub unsafe extern "C" fn parse_config(ptr: *const u8, len: usize) -> *const u32 {
    // SAFETY: the host lowered a string there.
    let text = unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(ptr, len)) };
    let config: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let s = state();
    let n = config.get("n").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
    s.k = config.get("k").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
    s.mode = match config.get("mode").and_then(|v| v.as_str()) {
        Some("interest") => 1,
        Some("routes") => 2,
        Some("send") => 3,
        Some("random") => 4,
        Some("write") => 5,
        Some("lookup") => 6,
        Some("poll") => 7,
        Some("log") => 8,
        _ => 0,
    };
    s.n = n.min(MAX_N);
    s.ret = [0; 4]; // ok
    s.ret.as_ptr()
}

/// The `get-users-for-states` export, by the canonical ABI.
///
/// # Safety
///
/// Called only by the component model; the batch is not read.
#[unsafe(export_name = "get-users-for-states")]
pub unsafe extern "C" fn get_users_for_states(_ptr: *const u8, _len: usize) -> *const u32 {
    let s = state();
    match s.mode {
        2 => {
            s.ret = [ROUTES.as_ptr() as u32, s.n.min(MAX_N / 2) as u32, 0, 0];
        }
        3 => {
            // SAFETY: (pointer, length) pairs of valid UTF-8 the host reads.
            unsafe { raw_send(SENDS.as_ptr().cast(), s.n) };
            s.ret = [0; 4];
        }
        4 => {
            s.scratch_on = true;
            let mut result = [0u32; 2];
            for _ in 0..s.k {
                // SAFETY: the host writes the bytes where cabi_realloc says.
                unsafe { raw_random(SCRATCH as i64, result.as_mut_ptr().cast()) };
            }
            s.scratch_on = false;
            s.ret = [0; 4];
        }
        5 => {
            // SAFETY: no arguments; an owned handle.
            let stdout = unsafe { raw_get_stdout() };
            let mut result = [0u32; 2];
            for _ in 0..s.k {
                // SAFETY: a valid buffer the host only reads.
                unsafe {
                    raw_write(
                        stdout,
                        s.scratch.as_ptr(),
                        SCRATCH,
                        result.as_mut_ptr().cast(),
                    )
                };
            }
            s.ret = [0; 4];
        }
        6 => {
            // SAFETY: no arguments; an owned handle.
            let network = unsafe { raw_instance_network() };
            let mut result = [0u32; 3];
            let name = "localhost";
            // SAFETY: a valid string and an aligned result slot.
            unsafe {
                raw_resolve(
                    network,
                    name.as_ptr(),
                    name.len(),
                    result.as_mut_ptr().cast(),
                )
            };
            s.ret = [0; 4];
        }
        7 => {
            // SAFETY: an owned pollable, ready at once (a zero wait).
            let pollable = unsafe { raw_subscribe_duration(0) };
            let list = [pollable; 1000];
            s.scratch_on = true;
            let mut result = [0u32; 2];
            for _ in 0..s.k {
                // SAFETY: 1000 borrows of one pollable; the answer lands in
                // the scratch buffer.
                unsafe { raw_poll(list.as_ptr(), list.len(), result.as_mut_ptr().cast()) };
            }
            s.scratch_on = false;
            s.ret = [0; 4];
        }
        8 => {
            // Fresh pages are zeros, and a run of NULs is valid UTF-8: a
            // 32 MiB message that costs no fuel to make.
            static mut MESSAGE: usize = 0;
            const PAGES: usize = 512;
            // SAFETY: single-threaded; the grown pages belong to no one.
            unsafe {
                if MESSAGE == 0 {
                    let old = core::arch::wasm32::memory_grow(0, PAGES);
                    MESSAGE = old * 65536;
                }
                for _ in 0..s.k {
                    raw_log(3, MESSAGE as *const u8, PAGES * 65536);
                }
            }
            s.ret = [0; 4];
        }
        _ => s.ret = [0; 4],
    }
    s.ret.as_ptr()
}

/// The `get-interested-users` export, by the canonical ABI.
///
/// # Safety
///
/// Called only by the component model; the user ID is not read.
#[unsafe(export_name = "get-interested-users")]
pub unsafe extern "C" fn get_interested_users(_ptr: *const u8, _len: usize) -> *const u32 {
    let s = state();
    if s.mode == 1 {
        // users(list): discriminant 1, then the list.
        s.ret = [1, USERS.as_ptr() as u32, s.n as u32, 0];
    } else {
        s.ret = [1, 0, 0, 0];
    }
    s.ret.as_ptr()
}
