//! Recording requests to a file (the Synapse module's `record:` key, and a
//! canary's divergent requests), for `presence-router diff` to replay
//! through a new version of the routers before it is swapped in.
//!
//! Each recorded call is one line of the CLI's JSON Lines request format
//! (`crates/model/src/jsonl.rs`): `{"get_users_for_states": [STATE, ...]}` with
//! the states the routers were given, or `{"get_interested_users": "@u:x"}`.
//! Recording is off unless configured, and then:
//!
//! - sampled: each call is recorded with probability `sample`; a call not
//!   drawn costs an atomic add and a few multiplications, and nothing is
//!   serialized;
//! - off the calling thread: the call (on Synapse's reactor) only
//!   serializes its line, into a buffer refused as soon as the line would
//!   pass `max_bytes` (a status message is a remote user's text, and
//!   escaping can make it six times longer), and hands it to one writer
//!   thread through a queue of [`QUEUE_LINES`] lines and [`QUEUE_BYTES`]
//!   bytes, never waiting: when the writer is behind, the line is dropped
//!   and counted, with a warning at most once a minute. Every write, `fstat`
//!   and rename is the writer's;
//! - bounded: a line that would take the file past `max_bytes` first
//!   rotates it (`path` → `path.1` → ... → `path.KEEP`, the oldest
//!   dropped, by rename), so the files never hold much more than
//!   `(keep + 1) × max_bytes`; a single line larger than `max_bytes` is not
//!   recorded (one warning);
//! - private: presence is personal data. The directory is opened once, at
//!   setup (`O_DIRECTORY | O_NOFOLLOW`), and must belong to this process's
//!   user or to root and be writable by no one else unless it is sticky
//!   (as `/tmp`); the file and its rotations are then opened, renamed and
//!   removed relative to that descriptor, so a directory renamed or
//!   replaced afterwards is never written to. The file is created mode 0600
//!   with `O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK`, and is refused (recording
//!   stops) if it is a symbolic link, not a regular file, another user's,
//!   hard-linked elsewhere, or readable or writable by anyone else;
//! - one writer per file: the open file is locked (`flock`, exclusive). A
//!   file another process holds locked is refused: at setup, a
//!   `ConfigError`; found later, recording stops with one warning. Give
//!   each Synapse process its own path;
//! - whole lines: a write that fails or is cut short (a full disk) is
//!   taken back (`ftruncate` to the size before it), so the file never ends
//!   in half a line;
//! - harmless: a call is never failed or delayed by recording. The first
//!   error (disk full, a refused file, a failed rename) stops recording,
//!   with one warning naming the file and the cause.

use std::ffi::OsString;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use presence_router_model::UserPresenceState;
use presence_router_ownership::{Policy, Reason, Stat};
use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

/// The most rotated files `keep` may ask for.
pub const MAX_KEEP: u32 = 1000;
/// The largest `max_bytes`: 1 TiB.
pub const MAX_MAX_BYTES: u64 = 1 << 40;
/// The most lines waiting for the writer thread; more are dropped.
const QUEUE_LINES: usize = 1024;
/// The most bytes waiting for the writer thread; more are dropped, but a
/// line is always taken when none waits (`max_bytes` may be larger).
const QUEUE_BYTES: u64 = 64 << 20;
/// The least time between two warnings about dropped lines.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(60);
/// What a lock held by someone else is called, everywhere.
const LOCKED: &str = "it is used by another process: give each Synapse process its own path";

/// A `record:` setting the recorder can't work with. [`RecordError::key`]
/// names the key at fault, for Synapse's `ConfigError`.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("expected a fraction of calls above 0 and at most 1, found {0}")]
    Sample(f64),
    #[error("expected a number of bytes above 0 and at most 1 TiB ({MAX_MAX_BYTES}), found {0}")]
    MaxBytes(u64),
    #[error("expected a number of rotated files from 0 to {MAX_KEEP}, found {0}")]
    Keep(u32),
    #[error("cannot record to {}: {why}", path.display())]
    Path { path: PathBuf, why: String },
}

impl RecordError {
    /// The key of `record:` at fault.
    pub fn key(&self) -> &'static str {
        match self {
            RecordError::Sample(_) => "sample",
            RecordError::MaxBytes(_) => "max_bytes",
            RecordError::Keep(_) => "keep",
            RecordError::Path { .. } => "path",
        }
    }
}

/// What was recorded and what was not, since the recorder was set.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecordCounts {
    /// Lines written to the file.
    pub written: u64,
    /// Calls drawn but left out: their line was longer than `max_bytes`.
    pub too_big: u64,
    /// Calls drawn but left out: the writer thread was behind.
    pub behind: u64,
}

/// Records sampled calls to a bounded, rotated file: the calling side.
pub struct Recorder {
    shared: Arc<Shared>,
    /// A call is recorded when its draw is below this; `None`: every call.
    threshold: Option<u64>,
    /// The state of the sampling generator (SplitMix64: a Weyl sequence,
    /// mixed), advanced by one atomic add per call.
    draws: AtomicU64,
    /// The writer thread's queue, made at the first recorded call, so in
    /// the process that records (a daemonizing Synapse forks after setting
    /// up, and threads don't follow a fork); `None`: the thread could not
    /// start, and recording stopped.
    queue: OnceLock<Option<SyncSender<Vec<u8>>>>,
    /// Lines handed to the writer thread.
    sent: AtomicU64,
    /// Whether a line too big to record was reported.
    too_big_reported: AtomicBool,
    /// When lines dropped for a writer behind were last reported.
    behind_reported: Mutex<Option<Instant>>,
}

/// What the calling side and the writer thread share.
struct Shared {
    /// The recording's path, for messages only: files are reached through
    /// `dir`.
    path: PathBuf,
    /// The directory, held open since setup.
    dir: OwnedFd,
    /// The file's name in `dir`.
    name: OsString,
    max_bytes: u64,
    keep: u32,
    /// Cleared for good by the first error.
    recording: AtomicBool,
    /// The open, locked file: the writer thread's (only `Recorder::drop`
    /// closes it from elsewhere, to release its lock at once).
    file: Mutex<Option<File>>,
    /// Lines the writer thread is done with (written or not), and the
    /// condition `flush` waits on.
    handled: Mutex<u64>,
    handled_changed: Condvar,
    /// Bytes of the lines waiting in the queue.
    queued_bytes: AtomicU64,
    written: AtomicU64,
    too_big: AtomicU64,
    behind: AtomicU64,
}

impl Recorder {
    /// A recorder to `path`, checked: settings in range, its directory
    /// opened and safe, and `path`, if it exists, a file the recorder will
    /// accept and that no other process records to. Nothing is created,
    /// and no thread started, until a call is recorded.
    pub fn new(
        path: PathBuf,
        sample: f64,
        max_bytes: u64,
        keep: u32,
    ) -> Result<Recorder, RecordError> {
        // Written so that NaN fails too.
        if !(sample > 0.0 && sample <= 1.0) {
            return Err(RecordError::Sample(sample));
        }
        if max_bytes == 0 || max_bytes > MAX_MAX_BYTES {
            return Err(RecordError::MaxBytes(max_bytes));
        }
        if keep > MAX_KEEP {
            return Err(RecordError::Keep(keep));
        }
        let refused = |why| RecordError::Path {
            path: path.clone(),
            why,
        };
        let name = path
            .file_name()
            .ok_or_else(|| refused("it names no file".to_owned()))?
            .to_owned();
        let dir = open_directory(&path).map_err(refused)?;
        check_existing(&dir, &name).map_err(refused)?;
        // The draws need not be unpredictable, only different per process:
        // std's hasher keys are random per process.
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Ok(Recorder {
            shared: Arc::new(Shared {
                path,
                dir,
                name,
                max_bytes,
                keep,
                recording: AtomicBool::new(true),
                file: Mutex::new(None),
                handled: Mutex::new(0),
                handled_changed: Condvar::new(),
                queued_bytes: AtomicU64::new(0),
                written: AtomicU64::new(0),
                too_big: AtomicU64::new(0),
                behind: AtomicU64::new(0),
            }),
            // 2^64 × sample; the cast saturates, and 1 means every call.
            threshold: (sample < 1.0).then_some((sample * 18_446_744_073_709_551_616.0) as u64),
            draws: AtomicU64::new(seed),
            queue: OnceLock::new(),
            sent: AtomicU64::new(0),
            too_big_reported: AtomicBool::new(false),
            behind_reported: Mutex::new(None),
        })
    }

    /// Records a `get_users_for_states` call, if it is drawn.
    pub fn states(&self, states: &[UserPresenceState]) {
        if self.drawn() {
            self.record("get_users_for_states", |line| {
                serde_json::to_writer(line, states)
            });
        }
    }

    /// Records a `get_interested_users` call, if it is drawn.
    pub fn interest(&self, user_id: &str) {
        if self.drawn() {
            self.record("get_interested_users", |line| {
                serde_json::to_writer(line, user_id)
            });
        }
    }

    /// Waits until the writer thread is done with every line handed to it
    /// so far, at most `timeout`; whether it is.
    pub fn flush(&self, timeout: Duration) -> bool {
        let target = self.sent.load(Ordering::Acquire);
        let deadline = Instant::now() + timeout;
        let mut handled = self.shared.lock_handled();
        while *handled < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            handled = self
                .shared
                .handled_changed
                .wait_timeout(handled, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Lines handed to the writer thread so far: written, or to be written
    /// unless recording stops. Unlike what [`Recorder::counts`] says was
    /// written, it is known as soon as a call is recorded.
    pub fn handed_to_writer(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }

    /// The file it records to.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    pub fn counts(&self) -> RecordCounts {
        RecordCounts {
            written: self.shared.written.load(Ordering::Relaxed),
            too_big: self.shared.too_big.load(Ordering::Relaxed),
            behind: self.shared.behind.load(Ordering::Relaxed),
        }
    }

    /// Whether calls are still recorded (false after an error).
    pub fn is_recording(&self) -> bool {
        self.shared.recording.load(Ordering::Relaxed)
    }

    /// Whether to record this call: the only cost of a call that isn't.
    fn drawn(&self) -> bool {
        if !self.is_recording() {
            return false;
        }
        let Some(threshold) = self.threshold else {
            return true;
        };
        const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut z = self
            .draws
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) < threshold
    }

    /// Serializes `{"KEY": VALUE}\n`, within `max_bytes`, and queues it.
    fn record(&self, key: &str, value: impl FnOnce(&mut LineBuf) -> serde_json::Result<()>) {
        let limit = usize::try_from(self.shared.max_bytes).unwrap_or(usize::MAX);
        let mut line = LineBuf::new(limit);
        match line.request(key, value) {
            Ok(()) => self.enqueue(line.bytes),
            Err(Encoded::TooBig) => {
                self.shared.too_big.fetch_add(1, Ordering::Relaxed);
                if !self.too_big_reported.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "a presence request was not recorded to {}: longer than \
                         record.max_bytes ({} bytes) (reported once)",
                        self.shared.path.display(),
                        self.shared.max_bytes
                    );
                }
            }
            Err(Encoded::Failed(e)) => self.shared.stop(&io::Error::other(e)),
        }
    }

    /// Hands `line` to the writer thread, or drops it if the thread is
    /// behind: never waits.
    fn enqueue(&self, line: Vec<u8>) {
        let Some(queue) = self.queue.get_or_init(|| self.start_writer()) else {
            return;
        };
        let len = line.len() as u64;
        let queued = self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if queued > 0 && queued + len > QUEUE_BYTES {
            self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return self.behind();
        }
        match queue.try_send(line) {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Release);
            }
            Err(TrySendError::Full(_)) => {
                self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                self.behind();
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                self.shared
                    .stop(&io::Error::other("the recording thread is gone"));
            }
        }
    }

    /// Counts a line dropped because the writer is behind, and says so at
    /// most once a minute.
    fn behind(&self) {
        let behind = self.shared.behind.fetch_add(1, Ordering::Relaxed) + 1;
        let mut reported = self
            .behind_reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if reported.is_none_or(|at| now.duration_since(at) >= DROP_WARNING_INTERVAL) {
            *reported = Some(now);
            tracing::warn!(
                "presence requests are not all recorded to {}: writing the file is slower \
                 than the calls come ({behind} dropped so far; at most one warning a minute)",
                self.shared.path.display()
            );
        }
    }

    /// Starts the writer thread; `None` (and recording stopped) if it
    /// can't.
    fn start_writer(&self) -> Option<SyncSender<Vec<u8>>> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        let shared = self.shared.clone();
        match std::thread::Builder::new()
            .name("presence-record".into())
            .spawn(move || shared.write_all_of(&receiver))
        {
            Ok(_) => Some(sender),
            Err(e) => {
                self.shared.stop(&io::Error::other(format!(
                    "cannot start the recording thread: {e}"
                )));
                None
            }
        }
    }

    /// `path.N`.
    #[cfg(test)]
    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.shared.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }
}

impl Drop for Recorder {
    /// Closes the file now, releasing its lock, rather than when the writer
    /// thread sees the queue closed; what is still queued is dropped.
    fn drop(&mut self) {
        self.shared.recording.store(false, Ordering::Relaxed);
        self.shared.lock_file().take();
    }
}

impl Shared {
    /// The writer thread: every queued line, until the recorder is gone.
    fn write_all_of(&self, queue: &Receiver<Vec<u8>>) {
        for line in queue {
            self.queued_bytes
                .fetch_sub(line.len() as u64, Ordering::Relaxed);
            if self.recording.load(Ordering::Relaxed) {
                let mut file = self.lock_file();
                match self.append(&mut file, &line) {
                    Ok(()) => {
                        self.written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        *file = None;
                        self.stop(&e);
                    }
                }
            }
            *self.lock_handled() += 1;
            self.handled_changed.notify_all();
        }
    }

    fn lock_file(&self) -> MutexGuard<'_, Option<File>> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_handled(&self) -> MutexGuard<'_, u64> {
        self.handled.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `line` (never longer than `max_bytes`), rotating first if it
    /// would take the file past `max_bytes`.
    fn append(&self, file: &mut Option<File>, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64;
        let open = match file {
            Some(open) => open,
            None => file.insert(self.open()?),
        };
        let size = open.metadata()?.len();
        if size + len <= self.max_bytes {
            return append_whole(open, line, size);
        }
        *file = None;
        self.rotate()?;
        let open = file.insert(self.open()?);
        let size = open.metadata()?.len();
        append_whole(open, line, size)
    }

    /// Opens the file for appending, creating it 0600, never through a
    /// symbolic link and never blocking (a FIFO planted there would); then
    /// refuses what `refusal` refuses, looking at what was opened, and
    /// locks it.
    fn open(&self) -> io::Result<File> {
        let flags = OFlags::WRONLY
            | OFlags::APPEND
            | OFlags::CREATE
            | OFlags::NOFOLLOW
            | OFlags::NOCTTY
            | OFlags::CLOEXEC
            | OFlags::NONBLOCK;
        let fd = rustix::fs::openat(&self.dir, &self.name, flags, Mode::from_raw_mode(0o600))
            .map_err(|e| {
                if e == Errno::LOOP {
                    io::Error::other(format!(
                        "{} is a symbolic link: refused, never followed",
                        self.path.display()
                    ))
                } else {
                    io::Error::other(format!("cannot open {}: {e}", self.path.display()))
                }
            })?;
        if let Some(why) = refusal(&rustix::fs::fstat(&fd)?) {
            return Err(io::Error::other(format!("{}: {why}", self.path.display())));
        }
        lock(&fd).map_err(|why| io::Error::other(format!("{}: {why}", self.path.display())))?;
        Ok(File::from(fd))
    }

    /// `NAME.KEEP-1` → `NAME.KEEP`, ..., `NAME` → `NAME.1`, each by rename
    /// in the directory held open (which replaces the target, never
    /// following it); with `keep: 0`, `NAME` is removed.
    fn rotate(&self) -> io::Result<()> {
        if self.keep == 0 {
            return ignore_missing(rustix::fs::unlinkat(
                &self.dir,
                &self.name,
                AtFlags::empty(),
            ));
        }
        for n in (1..self.keep).rev() {
            ignore_missing(rustix::fs::renameat(
                &self.dir,
                self.rotated_name(n),
                &self.dir,
                self.rotated_name(n + 1),
            ))?;
        }
        ignore_missing(rustix::fs::renameat(
            &self.dir,
            &self.name,
            &self.dir,
            self.rotated_name(1),
        ))
    }

    /// `NAME.N`.
    fn rotated_name(&self, n: u32) -> OsString {
        let mut name = self.name.clone();
        name.push(format!(".{n}"));
        name
    }

    /// Stops recording for good, with one warning.
    fn stop(&self, error: &io::Error) {
        if self.recording.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "recording presence requests to {} stopped: {error}; the routers go on \
                 routing, unrecorded",
                self.path.display()
            );
        }
    }
}

/// Writes all of `line` to `file` (of `size` bytes before), or, if that
/// fails midway (a full disk, a file size limit), cuts the file back to
/// `size`: the file never ends in half a line.
fn append_whole(file: &mut File, line: &[u8], size: u64) -> io::Result<()> {
    let Err(e) = file.write_all(line) else {
        return Ok(());
    };
    match rustix::fs::ftruncate(&*file, size) {
        Ok(()) => Err(e),
        Err(cut) => Err(io::Error::other(format!(
            "{e}; and cutting the partial line off failed: {cut}"
        ))),
    }
}

/// A request line being serialized, refused as soon as it would pass
/// `limit` bytes: the whole line is never built to find it too long, and
/// its buffer never grows past `limit`.
struct LineBuf {
    bytes: Vec<u8>,
    limit: usize,
    over: bool,
}

/// Why a line was not made.
enum Encoded {
    TooBig,
    Failed(serde_json::Error),
}

impl LineBuf {
    fn new(limit: usize) -> LineBuf {
        LineBuf {
            bytes: Vec::new(),
            limit,
            over: false,
        }
    }

    /// `{"KEY":` VALUE `}\n`, VALUE written by `value`.
    fn request(
        &mut self,
        key: &str,
        value: impl FnOnce(&mut LineBuf) -> serde_json::Result<()>,
    ) -> Result<(), Encoded> {
        let written = write!(self, "{{\"{key}\":")
            .map_err(serde_json::Error::io)
            .and_then(|()| value(self))
            .and_then(|()| self.write_all(b"}\n").map_err(serde_json::Error::io));
        match written {
            Ok(()) => Ok(()),
            Err(_) if self.over => Err(Encoded::TooBig),
            Err(e) => Err(Encoded::Failed(e)),
        }
    }
}

impl Write for LineBuf {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let needed = self.bytes.len().saturating_add(data.len());
        if needed > self.limit {
            self.over = true;
            return Err(io::Error::other("longer than record.max_bytes"));
        }
        if needed > self.bytes.capacity() {
            // Doubling, as a Vec would, but never past the limit.
            let capacity = needed
                .max(self.bytes.capacity().saturating_mul(2))
                .max(256)
                .min(self.limit);
            self.bytes.reserve_exact(capacity - self.bytes.len());
        }
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The recorder of a router set, once one is set: every call asks, so an
/// unset one costs an atomic load.
#[derive(Default)]
pub struct Slot(OnceLock<Recorder>);

impl Slot {
    /// Sets the recorder; `Err` gives it back if one is set already.
    pub fn set(&self, recorder: Recorder) -> Result<(), Recorder> {
        self.0.set(recorder)
    }

    pub fn states(&self, states: &[UserPresenceState]) {
        if let Some(recorder) = self.0.get() {
            recorder.states(states);
        }
    }

    pub fn interest(&self, user_id: &str) {
        if let Some(recorder) = self.0.get() {
            recorder.interest(user_id);
        }
    }

    /// [`Recorder::flush`]; true if there is no recorder.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.0.get().is_none_or(|recorder| recorder.flush(timeout))
    }

    /// [`Recorder::counts`], if there is a recorder.
    pub fn counts(&self) -> Option<RecordCounts> {
        self.0.get().map(Recorder::counts)
    }
}

fn ignore_missing(result: rustix::io::Result<()>) -> io::Result<()> {
    match result {
        Err(Errno::NOENT) => Ok(()),
        other => other.map_err(Into::into),
    }
}

/// Takes the file's exclusive lock, or says who has it.
fn lock(fd: &OwnedFd) -> Result<(), String> {
    match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(Errno::WOULDBLOCK) => Err(LOCKED.to_owned()),
        Err(e) => Err(format!("cannot lock it: {e}")),
    }
}

/// Opens the directory of `path`, checked: a directory (not a symbolic
/// link to one) that belongs to this process's user or to root and that no
/// one else can write to, unless it is sticky (then no one else can
/// rename or remove this user's files in it): [`Policy::RECORDER_DIR`].
// `stat`'s field types differ between targets: the conversions are needed
// on some.
#[allow(clippy::useless_conversion)]
fn open_directory(path: &Path) -> Result<OwnedFd, String> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(directory, flags, Mode::empty()) {
        Ok(fd) => fd,
        // O_NOFOLLOW refuses a symbolic link: Linux says ENOTDIR (because
        // of O_DIRECTORY), others may say ELOOP. The lstat only chooses the
        // message.
        Err(Errno::LOOP | Errno::NOTDIR)
            if std::fs::symlink_metadata(directory).is_ok_and(|m| m.is_symlink()) =>
        {
            return Err(format!(
                "its directory {} is a symbolic link: refused, never followed (give the \
                 directory's own path)",
                directory.display()
            ));
        }
        Err(e) => {
            return Err(format!(
                "its directory {}: {}",
                directory.display(),
                io::Error::from(e)
            ));
        }
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| {
        format!(
            "its directory {}: {}",
            directory.display(),
            io::Error::from(e)
        )
    })?;
    let opened = Stat {
        owner: stat.st_uid,
        mode: u32::from(stat.st_mode),
    };
    match Policy::RECORDER_DIR.check(directory, opened) {
        Ok(()) => Ok(fd),
        Err(refused) => {
            let (owner, mode, euid) = (refused.owner, refused.mode, refused.euid);
            Err(match refused.reason {
                Reason::Owner => format!(
                    "its directory {} belongs to user {owner}, neither this process's user \
                     {euid} nor root: its owner could replace the recording",
                    directory.display()
                ),
                // `NotPrivate` never comes: the directory need not be private
                // (the recording is).
                Reason::WritableByOthers | Reason::NotPrivate => format!(
                    "its directory {} (owner uid {owner}, mode {mode:04o}) is writable by its \
                     group or by others, and not sticky: they could replace the recording or \
                     read it through a link; make it writable by its owner only",
                    directory.display()
                ),
            })
        }
    }
}

/// What is wrong with the file `name` in `dir`, if there is one, checked
/// when the recorder is set up, so that a bad path stops Synapse at start;
/// `Shared::open` checks again, on what it opened.
fn check_existing(dir: &OwnedFd, name: &OsString) -> Result<(), String> {
    let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(io::Error::from(e).to_string()),
    };
    if let Some(why) = refusal(&stat) {
        return Err(why);
    }
    // A regular file of ours, alone: is another process recording to it?
    // (Opened for reading only, never blocking: the lock is all it is for.)
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())
        .map_err(|e| io::Error::from(e).to_string())?;
    if let Some(why) = refusal(&rustix::fs::fstat(&fd).map_err(|e| io::Error::from(e).to_string())?)
    {
        return Err(why);
    }
    // Released when `fd` closes, at the end of this function.
    lock(&fd)
}

/// Why a file found at the recording's path won't be written to, if it
/// won't: not a regular file, or refused by [`Policy::RECORDING`] (another
/// user's, root's included, or not private), or hard-linked.
#[allow(clippy::useless_conversion)] // As in `open_directory`.
fn refusal(stat: &rustix::fs::Stat) -> Option<String> {
    let euid = presence_router_ownership::euid();
    let file_type = FileType::from_raw_mode(stat.st_mode);
    let mode = u32::from(stat.st_mode) & 0o7777;
    let links = u64::from(stat.st_nlink);
    let verdict = Policy::RECORDING.judge(
        euid,
        Stat {
            owner: stat.st_uid,
            mode,
        },
    );
    if file_type == FileType::Symlink {
        Some("it is a symbolic link: refused, never followed".to_owned())
    } else if file_type != FileType::RegularFile {
        Some("it is not a regular file".to_owned())
    } else if verdict == Err(Reason::Owner) {
        Some(format!(
            "it belongs to user {}, not to this process's user {euid}",
            stat.st_uid
        ))
    } else if links != 1 {
        Some(format!(
            "it has {links} hard links: it may be another file's too"
        ))
    } else if verdict.is_err() {
        Some(format!(
            "other users may read or write it (mode {mode:04o}): presence is personal \
             data, make it 0600"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use presence_router_model::Presence;
    use presence_router_model::jsonl::{Request, parse_request};

    use super::*;

    impl Recorder {
        /// Records an interest query, for chaining.
        fn interest_and(&self, user_id: &str) -> &Recorder {
            self.interest(user_id);
            self
        }
    }

    fn recorder(dir: &Path, sample: f64, max_bytes: u64, keep: u32) -> Recorder {
        Recorder::new(dir.join("record.jsonl"), sample, max_bytes, keep).expect("a good recorder")
    }

    /// Waits for the writer thread to be done with every line so far.
    fn synced(recorder: &Recorder) -> &Recorder {
        assert!(
            recorder.flush(Duration::from_secs(120)),
            "the writer thread caught up"
        );
        recorder
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .expect("the file is there")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn busy_state() -> UserPresenceState {
        let mut state = UserPresenceState::new("@a:x", Presence::Busy);
        state.last_active_ts = 1_700_000_000_000;
        state.last_federation_update_ts = 2;
        state.last_user_sync_ts = 3;
        // Text someone else wrote, with a line break and a quote in it.
        state.status_msg = Some("in a \"meeting\"\nback at 3".into());
        state.currently_active = true;
        state
    }

    #[test]
    fn with_sample_1_every_call_is_recorded_and_parses_back_as_the_same_request() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let recorder = recorder(dir.path(), 1.0, 1 << 20, 3);
        let batch = vec![
            busy_state(),
            UserPresenceState::new("@b:y", Presence::Other("dnd".into())),
        ];
        recorder.states(&batch);
        recorder.interest("@c:z");
        recorder.states(&[]);
        for _ in 0..100 {
            recorder.interest("@d:z");
        }
        synced(&recorder);
        let lines = lines(&dir.path().join("record.jsonl"));
        assert_eq!(lines.len(), 103);
        let requests: Vec<Request> = lines
            .iter()
            .map(|line| parse_request(line).expect("a request"))
            .collect();
        assert_eq!(requests[0], Request::GetUsersForStates(batch));
        assert_eq!(requests[1], Request::GetInterestedUsers("@c:z".into()));
        assert_eq!(requests[2], Request::GetUsersForStates(vec![]));
        assert!(
            requests[3..]
                .iter()
                .all(|r| *r == Request::GetInterestedUsers("@d:z".into()))
        );
        assert!(recorder.is_recording());
        assert_eq!(
            recorder.counts(),
            RecordCounts {
                written: 103,
                too_big: 0,
                behind: 0
            }
        );
    }

    #[test]
    fn the_file_is_created_0600() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let recorder = recorder(dir.path(), 1.0, 1 << 20, 3);
        let path = dir.path().join("record.jsonl");
        assert!(
            !path.exists(),
            "nothing is created before a call is recorded"
        );
        synced(recorder.interest_and("@a:x"));
        let mode = std::fs::metadata(&path).expect("created").mode() & 0o7777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn files_rotate_by_rename_within_their_bounds_and_the_oldest_go() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let line_len = r#"{"get_interested_users":"@u0000:x"}"#.len() as u64 + 1;
        // Three lines per file.
        let recorder = recorder(dir.path(), 1.0, 3 * line_len + 1, 2);
        for n in 0..14 {
            recorder.interest(&format!("@u{n:04}:x"));
        }
        synced(&recorder);
        let path = dir.path().join("record.jsonl");
        let users = |path: &Path| -> Vec<String> {
            lines(path)
                .iter()
                .map(|line| match parse_request(line) {
                    Ok(Request::GetInterestedUsers(user)) => user,
                    other => panic!("not an interest query: {other:?}"),
                })
                .collect()
        };
        // 14 lines: files of 3, 3, 3, 3 and 2; the first two files dropped.
        assert_eq!(users(&path), ["@u0012:x", "@u0013:x"]);
        assert_eq!(
            users(&recorder.rotated(1)),
            ["@u0009:x", "@u0010:x", "@u0011:x"]
        );
        assert_eq!(
            users(&recorder.rotated(2)),
            ["@u0006:x", "@u0007:x", "@u0008:x"]
        );
        assert!(!recorder.rotated(3).exists());
        for file in [path.clone(), recorder.rotated(1), recorder.rotated(2)] {
            let metadata = std::fs::metadata(&file).expect("there");
            assert!(metadata.len() <= 3 * line_len + 1, "{}", file.display());
            assert_eq!(metadata.mode() & 0o777, 0o600, "{}", file.display());
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("readable")
            .map(|entry| entry.expect("an entry").file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn keep_0_starts_the_file_again_and_a_line_over_the_bound_is_skipped() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let recorder = recorder(dir.path(), 1.0, 100, 0);
        recorder.interest("@first:x");
        recorder.interest("@second:x");
        recorder.interest("@third:x");
        synced(&recorder);
        let path = dir.path().join("record.jsonl");
        assert_eq!(lines(&path), [r#"{"get_interested_users":"@third:x"}"#]);
        // Too big for any file: left out, and recording goes on.
        recorder.states(&vec![busy_state(); 3]);
        recorder.interest("@fourth:x");
        synced(&recorder);
        assert_eq!(
            lines(&path),
            [
                r#"{"get_interested_users":"@third:x"}"#,
                r#"{"get_interested_users":"@fourth:x"}"#
            ]
        );
        assert!(recorder.is_recording());
        assert_eq!(std::fs::read_dir(dir.path()).expect("readable").count(), 1);
    }

    #[test]
    fn a_planted_symbolic_link_is_refused_and_never_followed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let target = dir.path().join("target");
        std::fs::write(&target, "precious\n").expect("writable");
        // A file the recorder would accept, but for the link.
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::symlink(&target, dir.path().join("record.jsonl")).expect("a link");
        // At setup...
        let refused = Recorder::new(dir.path().join("record.jsonl"), 1.0, 1 << 20, 3)
            .err()
            .expect("refused");
        assert_eq!(refused.key(), "path");
        assert!(
            refused
                .to_string()
                .ends_with("it is a symbolic link: refused, never followed"),
            "{refused}"
        );
        // ...and when planted after it: recording stops, nothing is written.
        std::fs::remove_file(dir.path().join("record.jsonl")).expect("removed");
        let recorder = recorder(dir.path(), 1.0, 1 << 20, 3);
        std::os::unix::fs::symlink(&target, dir.path().join("record.jsonl")).expect("a link");
        synced(recorder.interest_and("@a:x"));
        assert!(!recorder.is_recording());
        recorder.interest("@b:x");
        assert_eq!(
            std::fs::read_to_string(&target).expect("there"),
            "precious\n"
        );
    }

    #[test]
    fn a_link_planted_where_a_rotation_renames_to_is_replaced_not_followed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let target = dir.path().join("target");
        std::fs::write(&target, "precious\n").expect("writable");
        // A file the recorder would accept, but for the link.
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let recorder = recorder(dir.path(), 1.0, 50, 1);
        std::os::unix::fs::symlink(&target, recorder.rotated(1)).expect("a link");
        recorder.interest("@first:x");
        recorder.interest("@second:x");
        assert!(synced(&recorder).is_recording());
        assert!(
            !std::fs::symlink_metadata(recorder.rotated(1))
                .expect("there")
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            lines(&recorder.rotated(1)),
            [r#"{"get_interested_users":"@first:x"}"#]
        );
        assert_eq!(
            std::fs::read_to_string(&target).expect("there"),
            "precious\n"
        );
    }

    #[test]
    fn a_file_others_may_read_or_a_hard_link_is_refused() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("record.jsonl");
        std::fs::write(&path, "").expect("writable");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let refused = Recorder::new(path.clone(), 1.0, 1 << 20, 3)
            .err()
            .expect("refused");
        assert!(
            refused
                .to_string()
                .ends_with("other users may read or write it (mode 0644): presence is personal data, make it 0600"),
            "{refused}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::hard_link(&path, dir.path().join("elsewhere")).expect("a hard link");
        let refused = Recorder::new(path.clone(), 1.0, 1 << 20, 3)
            .err()
            .expect("refused");
        assert!(
            refused.to_string().contains("it has 2 hard links"),
            "{refused}"
        );

        // Planted after setup: found when the file is opened.
        std::fs::remove_file(dir.path().join("elsewhere")).expect("removed");
        let recorder = recorder(dir.path(), 1.0, 1 << 20, 3);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        synced(recorder.interest_and("@a:x"));
        assert!(!recorder.is_recording());
        assert_eq!(std::fs::read_to_string(&path).expect("there"), "");
    }

    #[test]
    fn a_file_of_another_user_or_not_a_file_is_refused() {
        let refused = Recorder::new(PathBuf::from("/dev/null"), 1.0, 1 << 20, 3)
            .err()
            .expect("refused");
        assert!(
            refused.to_string().ends_with("it is not a regular file"),
            "{refused}"
        );
        // Root makes a file of nobody's (65534); anyone else finds root's.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (foreign, owner) = if rustix::process::geteuid().is_root() {
            let path = dir.path().join("record.jsonl");
            std::fs::write(&path, "").expect("writable");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).expect("chown as root");
            (path, 65534)
        } else {
            (PathBuf::from("/etc/passwd"), 0)
        };
        let refused = Recorder::new(foreign, 1.0, 1 << 20, 3)
            .err()
            .expect("refused");
        assert!(
            refused.to_string().contains(&format!(
                "it belongs to user {owner}, not to this process's user"
            )),
            "{refused}"
        );
    }

    #[test]
    fn a_write_error_stops_recording_once_and_never_panics() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let recorder = recorder(dir.path(), 1.0, 50, 1);
        // A directory where the rotation renames to: the rename fails.
        std::fs::create_dir(recorder.rotated(1)).expect("a directory");
        std::fs::write(recorder.rotated(1).join("x"), "").expect("not empty");
        assert!(synced(recorder.interest_and("@first:x")).is_recording());
        assert!(!synced(recorder.interest_and("@second:x")).is_recording());
        synced(recorder.interest_and("@third:x"));
        assert_eq!(
            lines(&dir.path().join("record.jsonl")),
            [r#"{"get_interested_users":"@first:x"}"#]
        );
    }

    #[test]
    fn a_missing_directory_and_bad_settings_name_their_key() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("record.jsonl");
        let cases = [
            (
                Recorder::new(dir.path().join("no/record.jsonl"), 1.0, 1, 1),
                "path",
            ),
            (Recorder::new(path.clone(), 0.0, 1, 1), "sample"),
            (Recorder::new(path.clone(), 1.5, 1, 1), "sample"),
            (Recorder::new(path.clone(), f64::NAN, 1, 1), "sample"),
            (Recorder::new(path.clone(), 1.0, 0, 1), "max_bytes"),
            (
                Recorder::new(path.clone(), 1.0, MAX_MAX_BYTES + 1, 1),
                "max_bytes",
            ),
            (Recorder::new(path.clone(), 1.0, 1, MAX_KEEP + 1), "keep"),
        ];
        let keys: Vec<&str> = cases
            .iter()
            .map(|(result, _)| result.as_ref().err().map_or("accepted", RecordError::key))
            .collect();
        let expected: Vec<&str> = cases.iter().map(|(_, key)| *key).collect();
        assert_eq!(keys, expected);
        let Err(missing) = &cases[0].0 else {
            unreachable!("checked above")
        };
        assert!(
            missing
                .to_string()
                .contains("no/record.jsonl: its directory"),
            "{missing}"
        );
    }

    #[test]
    fn a_sample_records_about_that_fraction_of_calls() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let recorder = recorder(dir.path(), 0.25, 1 << 30, 0);
        // A fixed seed: the count is the same at every run.
        recorder.draws.store(42, Ordering::Relaxed);
        for _ in 0..20_000 {
            recorder.interest("@a:x");
        }
        let counts = synced(&recorder).counts();
        assert_eq!(
            lines(&dir.path().join("record.jsonl")).len() as u64,
            counts.written
        );
        // Drawn: written, or dropped if the writer fell behind.
        let recorded = counts.written + counts.behind;
        // 5,000 expected; the standard deviation is 61.
        assert!((4_700..=5_300).contains(&recorded), "{recorded}");
    }

    #[test]
    fn a_slot_records_only_once_set_and_takes_one_recorder() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let slot = Slot::default();
        slot.interest("@before:x");
        slot.states(&[busy_state()]);
        assert!(slot.0.get().is_none());
        assert!(slot.set(recorder(dir.path(), 1.0, 1 << 20, 3)).is_ok());
        assert!(slot.set(recorder(dir.path(), 1.0, 1 << 20, 3)).is_err());
        slot.interest("@after:x");
        assert!(slot.flush(Duration::from_secs(120)));
        assert_eq!(slot.counts().map(|counts| counts.written), Some(1));
        assert_eq!(
            lines(&dir.path().join("record.jsonl")),
            [r#"{"get_interested_users":"@after:x"}"#]
        );
    }

    #[test]
    fn a_huge_status_message_is_refused_before_its_line_is_built() {
        // Control characters are escaped as `\u0001`: 6 MiB of JSON from a
        // status message of 1 MiB; plain text of 1 MiB comes in one piece.
        let mut escaped = busy_state();
        escaped.status_msg = Some("\u{1}".repeat(1 << 20));
        let mut plain = busy_state();
        plain.status_msg = Some("x".repeat(1 << 20));
        for state in [escaped, plain] {
            let mut line = LineBuf::new(4096);
            let made = line.request("get_users_for_states", |line| {
                serde_json::to_writer(line, std::slice::from_ref(&state))
            });
            assert!(matches!(made, Err(Encoded::TooBig)));
            // Its buffer never grew past the limit.
            assert!(line.bytes.capacity() <= 4096, "{}", line.bytes.capacity());
        }

        // Through the recorder: counted, reported, and recording goes on.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let recorder = recorder(dir.path(), 1.0, 4096, 1);
        let mut huge = busy_state();
        huge.status_msg = Some("\u{1}".repeat(1 << 20));
        recorder.states(&[huge]);
        recorder.interest("@after:x");
        assert!(synced(&recorder).is_recording());
        assert_eq!(
            recorder.counts(),
            RecordCounts {
                written: 1,
                too_big: 1,
                behind: 0
            }
        );
        assert_eq!(
            lines(&dir.path().join("record.jsonl")),
            [r#"{"get_interested_users":"@after:x"}"#]
        );

        // A line of exactly max_bytes is recorded.
        let exact = r#"{"get_interested_users":"@a:x"}"#.len() as u64 + 1;
        let recorder =
            Recorder::new(dir.path().join("exact.jsonl"), 1.0, exact, 0).expect("a good recorder");
        synced(recorder.interest_and("@a:x"));
        assert_eq!(recorder.counts().written, 1);
    }

    #[test]
    fn a_call_never_waits_for_the_file_and_a_writer_behind_drops_lines() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let recorder = Arc::new(recorder(dir.path(), 1.0, 1 << 30, 0));
        // The writer stalls, as on a disk that stopped answering.
        let stalled = recorder.shared.lock_file();
        let calls = 3000;
        let (done, finished) = std::sync::mpsc::channel();
        let calling = recorder.clone();
        std::thread::spawn(move || {
            for n in 0..calls {
                calling.interest(&format!("@u{n:04}:x"));
            }
            let _ = done.send(());
        });
        // Every call returns while the file is out of reach (the deadline
        // is only for a recorder that would wait: then the test fails).
        finished
            .recv_timeout(Duration::from_secs(120))
            .expect("the calls returned without waiting for the file");
        let sent = recorder.sent.load(Ordering::Acquire);
        // The queue holds 1,024 lines, the writer one more in its hands.
        assert!((1024..=1025).contains(&sent), "{sent}");
        assert_eq!(recorder.counts().behind, calls - sent);
        drop(stalled);
        synced(&recorder);
        assert_eq!(recorder.counts().written, sent);
        let written = lines(&dir.path().join("record.jsonl"));
        assert_eq!(written.len() as u64, sent);
        assert_eq!(written[0], r#"{"get_interested_users":"@u0000:x"}"#);
        assert!(recorder.is_recording());
    }

    #[test]
    fn queued_bytes_are_bounded_too() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let recorder = recorder(dir.path(), 1.0, 1 << 30, 0);
        let stalled = recorder.shared.lock_file();
        // Lines of 1 MiB: 64 MiB of them wait, at most.
        let mut big = busy_state();
        big.status_msg = Some("x".repeat(1 << 20));
        for _ in 0..100 {
            recorder.states(std::slice::from_ref(&big));
        }
        let sent = recorder.sent.load(Ordering::Acquire);
        assert!((63..=65).contains(&sent), "{sent}");
        assert_eq!(recorder.counts().behind, 100 - sent);
        drop(stalled);
        assert_eq!(synced(&recorder).counts().written, sent);
        assert_eq!(recorder.shared.queued_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_directory_others_can_write_is_refused_unless_sticky() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).expect("a directory");
        for mode in [0o775, 0o757, 0o777] {
            std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(mode))
                .expect("chmod");
            let refused = Recorder::new(shared.join("record.jsonl"), 1.0, 1 << 20, 3)
                .err()
                .expect("refused");
            assert_eq!(refused.key(), "path");
            assert!(
                refused.to_string().starts_with(&format!(
                    "cannot record to {}: its directory {} (owner uid ",
                    shared.join("record.jsonl").display(),
                    shared.display()
                )) && refused.to_string().contains(&format!(
                    "mode {mode:04o}) is writable by its group or by others, and not sticky"
                )),
                "{refused}"
            );
        }
        // Sticky (as /tmp): no one else can rename or remove our files.
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        let recorder = Recorder::new(shared.join("record.jsonl"), 1.0, 1 << 20, 3)
            .expect("a sticky directory is fine");
        assert!(synced(recorder.interest_and("@a:x")).is_recording());

        // A symbolic link to a directory is refused, not followed.
        let private = dir.path().join("private");
        std::fs::create_dir(&private).expect("a directory");
        std::os::unix::fs::symlink(&private, dir.path().join("link")).expect("a link");
        let refused = Recorder::new(dir.path().join("link/record.jsonl"), 1.0, 1 << 20, 3)
            .err()
            .expect("refused");
        assert!(
            refused
                .to_string()
                .contains("is a symbolic link: refused, never followed"),
            "{refused}"
        );

        // Another user's directory (root makes one of nobody's).
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&private, Some(65534), Some(65534)).expect("chown as root");
            let refused = Recorder::new(private.join("record.jsonl"), 1.0, 1 << 20, 3)
                .err()
                .expect("refused");
            assert!(
                refused
                    .to_string()
                    .contains("belongs to user 65534, neither this process's user 0 nor root"),
                "{refused}"
            );
        }
    }

    #[test]
    fn the_directory_is_held_open_and_one_put_in_its_place_is_never_written() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let first = dir.path().join("first");
        std::fs::create_dir(&first).expect("a directory");
        let recorder =
            Recorder::new(first.join("record.jsonl"), 1.0, 50, 1).expect("a good recorder");
        // After setup, the directory is moved away and another put at its
        // path.
        std::fs::rename(&first, dir.path().join("moved")).expect("renamed");
        std::fs::create_dir(&first).expect("a directory");
        recorder.interest("@first:x");
        recorder.interest("@second:x");
        assert!(synced(&recorder).is_recording());
        assert_eq!(std::fs::read_dir(&first).expect("readable").count(), 0);
        // Rotated there too.
        assert_eq!(
            lines(&dir.path().join("moved/record.jsonl")),
            [r#"{"get_interested_users":"@second:x"}"#]
        );
        assert_eq!(
            lines(&dir.path().join("moved/record.jsonl.1")),
            [r#"{"get_interested_users":"@first:x"}"#]
        );
    }

    #[test]
    fn a_second_recorder_on_the_same_path_is_refused() {
        let _no_child = no_child_made_meanwhile();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("record.jsonl");
        // Set up before either made the file: the second finds it locked
        // when it opens it, and stops.
        let first = recorder(dir.path(), 1.0, 1 << 20, 3);
        let second = recorder(dir.path(), 1.0, 1 << 20, 3);
        assert!(synced(first.interest_and("@first:x")).is_recording());
        assert!(!synced(second.interest_and("@second:x")).is_recording());
        assert!(synced(first.interest_and("@first-again:x")).is_recording());
        assert_eq!(
            lines(&path),
            [
                r#"{"get_interested_users":"@first:x"}"#,
                r#"{"get_interested_users":"@first-again:x"}"#
            ]
        );
        // Set up while the file is locked: refused at once.
        let refused = Recorder::new(path.clone(), 1.0, 1 << 20, 3)
            .err()
            .expect("refused");
        assert_eq!(refused.key(), "path");
        assert_eq!(
            refused.to_string(),
            format!(
                "cannot record to {}: it is used by another process: give each Synapse \
                 process its own path",
                path.display()
            )
        );
        // Once the first is gone, the file is free.
        drop(first);
        let third = recorder(dir.path(), 1.0, 1 << 20, 3);
        assert!(synced(third.interest_and("@third:x")).is_recording());
        assert_eq!(lines(&path).len(), 3);
    }

    /// The child process of the test below, under a file size limit.
    const SHORT_WRITE_CHILD: &str = "RECORD_TEST_SHORT_WRITE_DIR";

    /// A child process holds a copy of every descriptor of this process
    /// from the moment it is made until it execs (they close on exec, not
    /// at the fork), and with it every lock on their files: a recording
    /// file another test released would still be locked that long. So the
    /// test that makes a child and the test that takes a released lock
    /// again don't run at the same time (on a busy machine that moment
    /// lasted long enough to refuse the lock).
    static MAKING_A_CHILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn no_child_made_meanwhile() -> std::sync::MutexGuard<'static, ()> {
        MAKING_A_CHILD
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[test]
    fn a_write_cut_short_is_taken_back_to_the_last_whole_line() {
        if let Some(dir) = std::env::var_os(SHORT_WRITE_CHILD) {
            return write_cut_short(Path::new(&dir));
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let test = std::env::current_exe().expect("the test binary");
        let _making_a_child = no_child_made_meanwhile();
        // The child ignores SIGXFSZ (a disposition exec keeps), so that a
        // write past its file size limit is short, then fails with EFBIG,
        // as on a full disk, instead of killing it.
        let output = std::process::Command::new("sh")
            .args(["-c", "trap '' XFSZ; exec \"$0\" \"$@\""])
            .arg(test)
            .args([
                "--exact",
                "recording::tests::a_write_cut_short_is_taken_back_to_the_last_whole_line",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(SHORT_WRITE_CHILD, dir.path())
            .output()
            .expect("the child runs");
        assert!(
            output.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("1 passed"),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("record.jsonl")).expect("there"),
            "{\"get_interested_users\":\"@first:x\"}\n"
        );
    }

    fn write_cut_short(dir: &Path) {
        use rustix::process::{Resource, Rlimit, setrlimit};
        let recorder = recorder(dir, 1.0, 1 << 20, 0);
        assert!(synced(recorder.interest_and("@first:x")).is_recording());
        let size = std::fs::metadata(dir.join("record.jsonl"))
            .expect("written")
            .len();
        // Room for 10 bytes of the next line, of 37.
        let limit = Some(size + 10);
        setrlimit(
            Resource::Fsize,
            Rlimit {
                current: limit,
                maximum: limit,
            },
        )
        .expect("setrlimit");
        assert!(!synced(recorder.interest_and("@second:x")).is_recording());
        assert_eq!(
            std::fs::metadata(dir.join("record.jsonl"))
                .expect("there")
                .len(),
            size
        );
    }
}
