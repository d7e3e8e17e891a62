//! Recording the requests the module routes (the module's `record:` key),
//! for `presence-router diff` to replay through a new version of the
//! routers before it is swapped in.
//!
//! Each recorded call is one line of the CLI's JSON Lines request format
//! (`model/src/jsonl.rs`): `{"get_users_for_states": [STATE, ...]}` with
//! the states the routers were given, or `{"get_interested_users": "@u:x"}`.
//! Recording is off unless configured, and then:
//!
//! - sampled: each call is recorded with probability `sample`; a call not
//!   drawn costs an atomic add and a few multiplications, and nothing is
//!   serialized;
//! - bounded: a line that would take the file past `max_bytes` first
//!   rotates it (`path` → `path.1` → ... → `path.KEEP`, the oldest
//!   dropped, by rename), so the files never hold much more than
//!   `(keep + 1) × max_bytes`; a single line larger than `max_bytes` is not
//!   recorded;
//! - private: presence is personal data. The file is created mode 0600
//!   with `O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK`, and is refused (recording
//!   stops) if it is a symbolic link, not a regular file, another user's,
//!   hard-linked elsewhere, or readable or writable by anyone else;
//! - harmless: a call is never failed or delayed by recording beyond one
//!   `write`. The first error (disk full, a refused file, a failed rename)
//!   stops recording, with one warning naming the file and the cause.
//!
//! The size is read from the open file before each write, so processes
//! that share one path (they should not: give each its own) keep each file
//! within bounds, though they rotate each other's files.

use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use presence_router_runtime::UserPresenceState;

/// The most rotated files `keep` may ask for.
pub(crate) const MAX_KEEP: u32 = 1000;

/// A `record:` setting the recorder can't work with. [`RecordError::key`]
/// names the key at fault, for Synapse's `ConfigError`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("expected a fraction of calls above 0 and at most 1, found {0}")]
    Sample(f64),
    #[error("expected a number of bytes above 0")]
    MaxBytes,
    #[error("expected a number of rotated files from 0 to {MAX_KEEP}, found {0}")]
    Keep(u32),
    #[error("cannot record to {}: {why}", path.display())]
    Path { path: PathBuf, why: String },
}

impl RecordError {
    /// The key of `record:` at fault.
    pub(crate) fn key(&self) -> &'static str {
        match self {
            RecordError::Sample(_) => "sample",
            RecordError::MaxBytes => "max_bytes",
            RecordError::Keep(_) => "keep",
            RecordError::Path { .. } => "path",
        }
    }
}

/// Records sampled calls to a bounded, rotated file.
pub(crate) struct Recorder {
    path: PathBuf,
    /// A call is recorded when its draw is below this; `None`: every call.
    threshold: Option<u64>,
    max_bytes: u64,
    keep: u32,
    /// The state of the sampling generator (SplitMix64: a Weyl sequence,
    /// mixed), advanced by one atomic add per call.
    draws: AtomicU64,
    /// Cleared for good by the first error.
    recording: AtomicBool,
    /// Whether a line too big to record was reported.
    too_big_reported: AtomicBool,
    /// Opened at the first recorded call, reopened after each rotation.
    file: Mutex<Option<File>>,
}

impl Recorder {
    /// A recorder to `path`, checked: settings in range, and `path`, if it
    /// exists, a file the recorder will accept; else its directory must
    /// exist. Nothing is created until a call is recorded.
    pub(crate) fn new(
        path: PathBuf,
        sample: f64,
        max_bytes: u64,
        keep: u32,
    ) -> Result<Recorder, RecordError> {
        // Written so that NaN fails too.
        if !(sample > 0.0 && sample <= 1.0) {
            return Err(RecordError::Sample(sample));
        }
        if max_bytes == 0 {
            return Err(RecordError::MaxBytes);
        }
        if keep > MAX_KEEP {
            return Err(RecordError::Keep(keep));
        }
        check_before_use(&path).map_err(|why| RecordError::Path {
            path: path.clone(),
            why,
        })?;
        // The draws need not be unpredictable, only different per process:
        // std's hasher keys are random per process.
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Ok(Recorder {
            path,
            // 2^64 × sample; the cast saturates, and 1 means every call.
            threshold: (sample < 1.0).then_some((sample * 18_446_744_073_709_551_616.0) as u64),
            max_bytes,
            keep,
            draws: AtomicU64::new(seed),
            recording: AtomicBool::new(true),
            too_big_reported: AtomicBool::new(false),
            file: Mutex::new(None),
        })
    }

    /// Records a `get_users_for_states` call, if it is drawn.
    pub(crate) fn states(&self, states: &[UserPresenceState]) {
        if self.drawn() {
            let mut line = br#"{"get_users_for_states":"#.to_vec();
            match serde_json::to_writer(&mut line, states) {
                Ok(()) => self.write(line),
                Err(e) => self.stop(&io::Error::other(e)),
            }
        }
    }

    /// Records a `get_interested_users` call, if it is drawn.
    pub(crate) fn interest(&self, user_id: &str) {
        if self.drawn() {
            let mut line = br#"{"get_interested_users":"#.to_vec();
            match serde_json::to_writer(&mut line, user_id) {
                Ok(()) => self.write(line),
                Err(e) => self.stop(&io::Error::other(e)),
            }
        }
    }

    /// Whether to record this call: the only cost of a call that isn't.
    fn drawn(&self) -> bool {
        if !self.recording.load(Ordering::Relaxed) {
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

    /// Ends `line` (the request object, still open) and appends it.
    fn write(&self, mut line: Vec<u8>) {
        line.extend_from_slice(b"}\n");
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = self.append(&mut file, &line) {
            *file = None;
            self.stop(&e);
        }
    }

    fn append(&self, file: &mut Option<File>, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64;
        if len > self.max_bytes {
            if !self.too_big_reported.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "a presence request of {len} bytes was not recorded to {}: more than \
                     record.max_bytes ({}) (reported once)",
                    self.path.display(),
                    self.max_bytes
                );
            }
            return Ok(());
        }
        let open = match file {
            Some(open) => open,
            None => file.insert(open_checked(&self.path)?),
        };
        // The file's own size, not a count of ours: another process may
        // append to it too.
        if open.metadata()?.len() + len > self.max_bytes {
            *file = None;
            self.rotate()?;
            let open = file.insert(open_checked(&self.path)?);
            return open.write_all(line);
        }
        // One write per line, in append mode: a reader never sees half a
        // line unless the disk is full.
        open.write_all(line)
    }

    /// `path.KEEP-1` → `path.KEEP`, ..., `path` → `path.1`, each by rename
    /// (which replaces the target, never following it); with `keep: 0`,
    /// `path` is removed.
    fn rotate(&self) -> io::Result<()> {
        if self.keep == 0 {
            return ignore_missing(std::fs::remove_file(&self.path));
        }
        for n in (1..self.keep).rev() {
            ignore_missing(std::fs::rename(self.rotated(n), self.rotated(n + 1)))?;
        }
        ignore_missing(std::fs::rename(&self.path, self.rotated(1)))
    }

    /// `path.N`.
    pub(crate) fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
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

    /// Whether calls are still recorded (false after an error).
    #[cfg(test)]
    fn is_recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }
}

/// The recorder of a router set, once one is set: every call asks, so an
/// unset one costs an atomic load.
#[derive(Default)]
pub(crate) struct Slot(OnceLock<Recorder>);

impl Slot {
    /// Sets the recorder; `Err` gives it back if one is set already.
    pub(crate) fn set(&self, recorder: Recorder) -> Result<(), Recorder> {
        self.0.set(recorder)
    }

    pub(crate) fn states(&self, states: &[UserPresenceState]) {
        if let Some(recorder) = self.0.get() {
            recorder.states(states);
        }
    }

    pub(crate) fn interest(&self, user_id: &str) {
        if let Some(recorder) = self.0.get() {
            recorder.interest(user_id);
        }
    }
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// What is wrong with recording to `path`, checked when the recorder is
/// set up, so that a bad path stops Synapse at start; `open_checked` checks
/// again, on what it opened.
fn check_before_use(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) => refusal(&metadata).map_or(Ok(()), Err),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let directory = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            match std::fs::metadata(directory) {
                Ok(metadata) if metadata.is_dir() => Ok(()),
                Ok(_) => Err(format!("{} is not a directory", directory.display())),
                Err(e) => Err(format!("its directory {}: {e}", directory.display())),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Why a file found at the recording's path won't be written to, if it
/// won't.
fn refusal(metadata: &std::fs::Metadata) -> Option<String> {
    let euid = rustix::process::geteuid().as_raw();
    let file_type = metadata.file_type();
    let mode = metadata.mode() & 0o7777;
    if file_type.is_symlink() {
        Some("it is a symbolic link: refused, never followed".to_owned())
    } else if !file_type.is_file() {
        Some("it is not a regular file".to_owned())
    } else if metadata.uid() != euid {
        Some(format!(
            "it belongs to user {}, not to this process's user {euid}",
            metadata.uid()
        ))
    } else if metadata.nlink() != 1 {
        Some(format!(
            "it has {} hard links: it may be another file's too",
            metadata.nlink()
        ))
    } else if mode & 0o077 != 0 {
        Some(format!(
            "other users may read or write it (mode {mode:04o}): presence is personal \
             data, make it 0600"
        ))
    } else {
        None
    }
}

/// Opens `path` for appending, creating it 0600, never through a symbolic
/// link and never blocking (a FIFO planted there would); then refuses
/// what `refusal` refuses, looking at what was opened.
fn open_checked(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::WRONLY
        | OFlags::APPEND
        | OFlags::CREATE
        | OFlags::NOFOLLOW
        | OFlags::CLOEXEC
        | OFlags::NONBLOCK;
    let fd = rustix::fs::open(path, flags, Mode::from_raw_mode(0o600)).map_err(|e| {
        if e == rustix::io::Errno::LOOP {
            io::Error::other(format!(
                "{} is a symbolic link: refused, never followed",
                path.display()
            ))
        } else {
            io::Error::other(format!("cannot open {}: {e}", path.display()))
        }
    })?;
    let file = File::from(fd);
    if let Some(why) = refusal(&file.metadata()?) {
        return Err(io::Error::other(format!("{}: {why}", path.display())));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use presence_router_runtime::Presence;
    use presence_router_runtime::jsonl::{Request, parse_request};

    use super::*;

    fn recorder(dir: &Path, sample: f64, max_bytes: u64, keep: u32) -> Recorder {
        Recorder::new(dir.join("record.jsonl"), sample, max_bytes, keep).expect("a good recorder")
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
        recorder.interest("@a:x");
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
        let path = dir.path().join("record.jsonl");
        assert_eq!(lines(&path), [r#"{"get_interested_users":"@third:x"}"#]);
        // Too big for any file: left out, and recording goes on.
        recorder.states(&vec![busy_state(); 3]);
        recorder.interest("@fourth:x");
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
        recorder.interest("@a:x");
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
        assert!(recorder.is_recording());
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
        recorder.interest("@a:x");
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
        recorder.interest("@first:x");
        assert!(recorder.is_recording());
        recorder.interest("@second:x");
        assert!(!recorder.is_recording());
        recorder.interest("@third:x");
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
        let recorded = lines(&dir.path().join("record.jsonl")).len();
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
        assert_eq!(
            lines(&dir.path().join("record.jsonl")),
            [r#"{"get_interested_users":"@after:x"}"#]
        );
    }
}
