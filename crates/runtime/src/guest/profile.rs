//! Where a guest's fuel goes: stacks sampled every so much fuel, for
//! `presence-router profile`'s flame graph and Firefox profile.
//!
//! Sampling is deterministic, so the same requests give the same profile
//! on a busy machine as on an idle one. While a profiled call runs, its
//! epoch deadline is always due: wasmtime then calls the epoch callback at
//! every function entry and loop header (the points where it checks
//! epochs), which records the guest's stack every `interval` such checks.
//!
//! Samples are weighted by fuel, exactly. The fuel the store reports inside
//! the callback is the fuel as of the guest's last call, return or function
//! entry (compiled code keeps the running count in a register and writes it
//! back only there), so it is exact but late: when it changes, the fuel it
//! grew by was used since it last changed, and is shared out among the
//! samples taken in that time, by the checks each stands for. A loop of
//! 20,000 iterations inside one function is one such stretch: its samples
//! get its fuel the moment the function calls or returns. Whatever a call
//! has left when it ends is shared out the same way, so each call's samples
//! add up to exactly the fuel it used.
//!
//! A profiled call runs slower (a host call at every function entry and
//! loop iteration), never differently: fuel, answers and failures are the
//! same. Its time budget alone is not enforced, since sampling is what
//! makes it slow. An engine made without a profiler never sets the deadline to
//! always due, and its epoch callback only checks the `Option` this leaves
//! empty.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use presence_router_model::text::escape_untrusted;
use wasmtime::{AsContext, WasmBacktrace};

/// The most frames a sample keeps: the outermost [`OUTER_FRAMES`], a frame
/// saying how many were left out, and the innermost rest. A guest that
/// recurses deep would otherwise make each sample as long as its stack.
const MAX_FRAMES: usize = 256;
const OUTER_FRAMES: usize = 64;

/// The most frames a profiled engine's backtraces hold, innermost first.
/// wasmtime reserves room for this many at every capture, so it is not
/// "all of them"; a stack deeper than this has its outermost frames
/// (below the export) left out.
pub(super) const CAPTURED_FRAMES: usize = 1024;
/// The frame that stands for those left out.
const FRAMES_LEFT_OUT: &str = "… frames left out …";

/// A call's samples kept in the order taken, at most; past it, one per
/// stack.
const MAX_CALL_SAMPLES: usize = 1 << 16;

/// Collects the samples of every instance made by an engine it was given to
/// (through `LoadOptions::profiler`). Cheap to clone: clones share it.
#[derive(Clone)]
pub struct FuelProfiler(Arc<Shared>);

struct Shared {
    interval: u64,
    samples: Mutex<FuelProfile>,
}

/// The samples taken so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FuelProfile {
    /// Each frame's name: the export called (`export get-users-for-states`,
    /// or `instantiation`), or a guest function's name from the component's
    /// name sections (`module!wasm-function[N]` where it has none), escaped
    /// as all guest text is.
    pub names: Vec<String>,
    /// The indices of `names` that stand for guest functions without a
    /// name (the component has no name section for them).
    pub unnamed: std::collections::BTreeSet<u32>,
    /// Each distinct stack, outermost frame first, as indices into `names`.
    pub stacks: Vec<Vec<u32>>,
    /// Samples in the order taken: a stack (an index into `stacks`) and the
    /// fuel it stands for (samples of the same stack in a row are one).
    pub samples: Vec<(usize, u64)>,
    /// Calls profiled, instantiations included.
    pub calls: u64,
    name_index: HashMap<String, u32>,
    stack_index: HashMap<Vec<u32>, usize>,
}

impl FuelProfile {
    /// The longest function name kept, in bytes (names come from the
    /// guest).
    pub const MAX_NAME_BYTES: usize = 512;

    /// The names of a stack's frames, outermost first.
    pub fn stack(&self, id: usize) -> impl Iterator<Item = &str> {
        self.stacks[id]
            .iter()
            .map(|&name| self.names[name as usize].as_str())
    }

    fn name_id(&mut self, name: &str) -> u32 {
        // Keyed by what is kept of it: two names alike that far are shown
        // alike anyway, and a megabyte name costs no more than a short one.
        let mut end = name.len().min(Self::MAX_NAME_BYTES);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let key = &name[..end];
        if let Some(&id) = self.name_index.get(key) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(escape_untrusted(key, Self::MAX_NAME_BYTES));
        self.name_index.insert(key.to_owned(), id);
        id
    }

    fn intern(&mut self, stack: Vec<u32>) -> usize {
        match self.stack_index.get(&stack) {
            Some(&id) => id,
            None => {
                let id = self.stacks.len();
                self.stacks.push(stack.clone());
                self.stack_index.insert(stack, id);
                id
            }
        }
    }

    fn add(samples: &mut Vec<(usize, u64)>, id: usize, fuel: u64) {
        if fuel == 0 {
            return;
        }
        match samples.last_mut() {
            // Run-length: a loop sampled many times in a row is one entry.
            Some((last, used)) if *last == id => *used = used.saturating_add(fuel),
            _ => samples.push((id, fuel)),
        }
    }

    /// All fuel sampled.
    pub fn total_fuel(&self) -> u64 {
        self.samples
            .iter()
            .fold(0u64, |sum, (_, fuel)| sum.saturating_add(*fuel))
    }
}

impl FuelProfiler {
    /// A profiler that takes a sample every `interval` epoch checks
    /// (function entries and loop iterations).
    pub fn new(interval: u64) -> Self {
        FuelProfiler(Arc::new(Shared {
            interval: interval.max(1),
            samples: Mutex::new(FuelProfile::default()),
        }))
    }

    pub fn interval(&self) -> u64 {
        self.0.interval
    }

    /// The samples so far.
    pub fn profile(&self) -> FuelProfile {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FuelProfile> {
        self.0
            .samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn sampler(&self) -> Box<Sampler> {
        Box::new(Sampler {
            profiler: self.clone(),
            root: 0,
            fuel_at_start: 0,
            used_as_read: 0,
            pending: Vec::new(),
            unweighed: 0,
            since_sample: 0,
            last: None,
            call: Vec::new(),
            owes_host_fuel: false,
        })
    }
}

impl std::fmt::Debug for FuelProfiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FuelProfiler(every {} checks)", self.0.interval)
    }
}

/// The same profiler, not an equal one.
impl PartialEq for FuelProfiler {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for FuelProfiler {}

/// What a profiled call runs for while an instance is made (the other
/// calls run for an export, by its WIT name).
pub(super) const INSTANTIATION: &str = "instantiation";

/// The outermost frame of a call's samples: `export get-users-for-states`
/// (the guest's own function for an export is often named after it too),
/// or `instantiation`.
fn root_frame(root: &str) -> String {
    match root {
        INSTANTIATION => root.to_owned(),
        export => format!("export {export}"),
    }
}

/// A guest frame's name: its function's, or where it is.
fn frame_name(profile: &mut FuelProfile, frame: &wasmtime::FrameInfo) -> u32 {
    match frame.func_name() {
        Some(name) => profile.name_id(name),
        None => {
            let id = profile.name_id(&format!(
                "{}!wasm-function[{}]",
                frame.module().name().unwrap_or("module"),
                frame.func_index()
            ));
            profile.unnamed.insert(id);
            id
        }
    }
}

/// One instance's side of the profiler, in its store's data.
pub(super) struct Sampler {
    profiler: FuelProfiler,
    /// The name of the call's outermost frame ([`root_frame`]).
    root: u32,
    /// The fuel the call began with.
    fuel_at_start: u64,
    /// The fuel used as last read (which changes only at calls, returns and
    /// function entries).
    used_as_read: u64,
    /// Samples whose fuel is not known yet: each stack with the checks it
    /// stands for.
    pending: Vec<(usize, u64)>,
    /// Checks since the last sample or the last sharing out, whichever was
    /// later: they count for the last sample's stack.
    unweighed: u64,
    /// Checks since the last sample: when to take the next.
    since_sample: u64,
    /// The stack of the call's last sample.
    last: Option<usize>,
    /// This call's samples, weighed: added to the profile when it ends.
    call: Vec<(usize, u64)>,
    /// The call hook found too little fuel for a host call's charge: owed
    /// until the call comes back, unless it was an epoch check (which an
    /// unprofiled call would not have made), see `instance.rs`.
    pub(super) owes_host_fuel: bool,
}

impl Sampler {
    /// A call of `root` begins with `fuel`.
    pub(super) fn begin(&mut self, root: &str, fuel: u64) {
        self.root = self.profiler.lock().name_id(&root_frame(root));
        self.fuel_at_start = fuel;
        self.used_as_read = 0;
        self.pending.clear();
        self.unweighed = 0;
        self.since_sample = 0;
        self.last = None;
        self.call.clear();
        self.owes_host_fuel = false;
    }

    /// At an epoch check, with the fuel the store reports: a sample every
    /// `interval` checks.
    pub(super) fn check(&mut self, store: impl AsContext, fuel_left: u64) {
        self.share_out(fuel_left);
        self.unweighed += 1;
        self.since_sample += 1;
        // A call's first check is always sampled: what it runs before its
        // first sample (the allocations that lower its arguments, say) is
        // then not put down to the export alone.
        if self.last.is_some() && self.since_sample < self.profiler.0.interval {
            return;
        }
        let backtrace = WasmBacktrace::force_capture(store);
        // wasmtime lists the innermost frame first; a stack is outermost
        // first.
        let frames: Vec<&wasmtime::FrameInfo> = backtrace.frames().iter().rev().collect();
        // A stack wasmtime cut has lost its outermost frames already.
        let cut_by_wasmtime = frames.len() >= CAPTURED_FRAMES;
        let (outer, inner) = if frames.len() <= MAX_FRAMES && !cut_by_wasmtime {
            (&frames[..], &frames[..0])
        } else {
            let outer = if cut_by_wasmtime { 0 } else { OUTER_FRAMES };
            let inner = MAX_FRAMES - 1 - outer;
            (&frames[..outer], &frames[frames.len() - inner..])
        };
        let mut profile = self.profiler.lock();
        let mut stack = Vec::with_capacity(outer.len() + inner.len() + 2);
        stack.push(self.root);
        for frame in outer {
            stack.push(frame_name(&mut profile, frame));
        }
        if !inner.is_empty() {
            // One name however many: stacks that differ only in their
            // depth are one stack.
            stack.push(profile.name_id(FRAMES_LEFT_OUT));
            for frame in inner {
                stack.push(frame_name(&mut profile, frame));
            }
        }
        let id = profile.intern(stack);
        drop(profile);
        // A loop that calls nothing changes no reading: its samples are one.
        match self.pending.last_mut() {
            Some((last, checks)) if *last == id => *checks += self.unweighed,
            _ => self.pending.push((id, self.unweighed)),
        }
        self.unweighed = 0;
        self.since_sample = 0;
        self.last = Some(id);
    }

    /// The call ended with `fuel_left` (exact: compiled code wrote its
    /// count back before returning): the rest of its fuel goes to the
    /// samples not yet weighed, and the call's samples to the profile,
    /// adding up to exactly the fuel it used.
    pub(super) fn end(&mut self, fuel_left: u64) {
        self.share_out(fuel_left);
        let used = self.fuel_at_start.saturating_sub(fuel_left);
        let sampled: u64 = self.call.iter().map(|&(_, fuel)| fuel).sum();
        if sampled > used {
            // A host call's charge the compiled code then overwrote (see
            // the call hook) was read on the way: scale back to the exact
            // figure.
            scale(&mut self.call, sampled, used);
        }
        let mut profile = self.profiler.lock();
        profile.calls += 1;
        for &(stack, fuel) in &self.call {
            FuelProfile::add(&mut profile.samples, stack, fuel);
        }
        self.call.clear();
    }

    /// Shares the fuel used since the last reading out among the pending
    /// samples (and the checks since, as the last sample's stack), by the
    /// checks each stands for.
    fn share_out(&mut self, fuel_left: u64) {
        let used = self.fuel_at_start.saturating_sub(fuel_left);
        let grown = used.saturating_sub(self.used_as_read);
        if grown == 0 {
            return;
        }
        self.used_as_read = used;
        let tail = std::mem::take(&mut self.unweighed);
        let mut shares = std::mem::take(&mut self.pending);
        if tail > 0 || shares.is_empty() {
            let stack = match self.last {
                Some(id) => id,
                None => self.profiler.lock().intern(vec![self.root]),
            };
            shares.push((stack, tail.max(1)));
        }
        let checks: u64 = shares.iter().map(|&(_, checks)| checks).sum();
        scale(&mut shares, checks, grown);
        for (stack, fuel) in shares {
            FuelProfile::add(&mut self.call, stack, fuel);
        }
        if self.call.len() > MAX_CALL_SAMPLES {
            // A loop that calls helpers alternates stacks at every check:
            // past this many, the call's samples are kept one per stack.
            merge_by_stack(&mut self.call);
        }
    }
}

/// Merges samples of the same stack, in the order each stack first came.
fn merge_by_stack(samples: &mut Vec<(usize, u64)>) {
    let mut at: HashMap<usize, usize> = HashMap::new();
    let mut merged: Vec<(usize, u64)> = Vec::new();
    for &(stack, fuel) in samples.iter() {
        match at.get(&stack) {
            Some(&i) => merged[i].1 = merged[i].1.saturating_add(fuel),
            None => {
                at.insert(stack, merged.len());
                merged.push((stack, fuel));
            }
        }
    }
    *samples = merged;
}

/// Makes `weights` (which add up to `total`, at least 1) add up to `to`
/// instead, each in proportion; the rounding goes to the last.
fn scale(weights: &mut [(usize, u64)], total: u64, to: u64) {
    let Some(last) = weights.len().checked_sub(1) else {
        return;
    };
    let mut given = 0u64;
    for (i, (_, weight)) in weights.iter_mut().enumerate() {
        *weight = if i == last {
            to.saturating_sub(given)
        } else {
            (u128::from(to) * u128::from(*weight) / u128::from(total.max(1))) as u64
        };
        given = given.saturating_add(*weight);
    }
}
