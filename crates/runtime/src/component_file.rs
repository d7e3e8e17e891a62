//! Reading a component file (or a trusted key file) named by the
//! configuration, bounded whatever the path turns out to be.
//!
//! The path is opened once and everything is decided on what was opened
//! (not on a second look at the path, which could by then name something
//! else): it must be a regular file, because a device has no size
//! (`/dev/zero` reports 0 bytes and reads for ever) and a FIFO or socket is
//! not a file one can read to the end; and the read stops one byte past the
//! cap, so a file that grows while it is read is still bounded.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

use presence_router_model::format_bytes;

/// Components built with a language runtime inside are tens of MiB; a file
/// far beyond that is a mistake, not a router.
pub(crate) const MAX_COMPONENT_BYTES: u64 = 512 * 1024 * 1024;

/// The component file at `path`, if it is a regular file of at most
/// [`MAX_COMPONENT_BYTES`]. The blocking work runs off the executor.
pub(crate) async fn read_component(path: &Path) -> io::Result<Vec<u8>> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || read_regular_file(&path, MAX_COMPONENT_BYTES))
        .await
        .map_err(|e| io::Error::other(format!("the read did not finish: {e}")))?
}

/// Another file the configuration trusts (a public key that routers are
/// checked against), by the same rules as a component file, if it holds at
/// most `max_bytes`. The blocking work runs off the executor.
pub(crate) async fn read_trusted_file(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || read_regular_file(&path, max_bytes))
        .await
        .map_err(|e| io::Error::other(format!("the read did not finish: {e}")))?
}

/// The regular file at `path`, if it holds at most `max_bytes`.
fn read_regular_file(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    let file = open_without_waiting(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a regular file (a device, FIFO, socket or directory)",
        ));
    }
    #[cfg(unix)]
    only_this_user_can_replace(path, &metadata)?;
    let size = metadata.len();
    if size > max_bytes {
        return Err(too_large(&format!("{size} bytes is"), max_bytes));
    }
    // The size is a hint only: the file may have changed since.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // One byte past the cap tells a file that ends at the cap from one that
    // goes on.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max_bytes {
        return Err(too_large(
            "the file grew while it was read: it is",
            max_bytes,
        ));
    }
    Ok(bytes)
}

/// Refuses a component another local user could have written, or could
/// replace: compiled, it is native code in the homeserver, and a hot reload
/// would run a replacement within seconds. The rule is OpenSSH's
/// `StrictModes` ([`presence_router_ownership::Policy::COMPONENT_FILE`]):
/// the file (as opened) belongs to this process's user or root and is
/// writable by nobody else; so does every directory above it, unless the
/// directory is sticky (as `/tmp`: there only a file's owner may rename or
/// delete it).
#[cfg(unix)]
fn only_this_user_can_replace(path: &Path, opened: &std::fs::Metadata) -> io::Result<()> {
    use presence_router_ownership::{Policy, Reason, Stat};

    let policy = Policy::COMPONENT_FILE;
    if let Err(refused) = policy.check(path, Stat::from(opened)) {
        return Err(not_trusted(match refused.reason {
            Reason::Owner => format!(
                "is owned by uid {}, not by this process's user (uid {}) or root: \
                 another user could change the router",
                refused.owner, refused.euid
            ),
            // `NotPrivate` never comes: a component need not be private.
            Reason::WritableByOthers | Reason::NotPrivate => format!(
                "is writable by group or others (mode {:o}): another user could change the \
                 router; `chmod go-w` it",
                refused.mode
            ),
        }));
    }
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    match policy.check_above(parent)? {
        None => Ok(()),
        Some(dir) => Err(not_trusted(match dir.reason {
            Reason::Owner => format!(
                "is in {}, owned by uid {}: another user could replace the router",
                dir.path.display(),
                dir.owner
            ),
            // Directories above are never asked to be private.
            Reason::WritableByOthers | Reason::NotPrivate => format!(
                "is in {}, writable by others (mode {:o}) without the sticky bit: another \
                 user could replace the router",
                dir.path.display(),
                dir.mode
            ),
        })),
    }
}

#[cfg(unix)]
fn not_trusted(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why)
}

fn too_large(what: &str, max_bytes: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!(
            "{what} more than the {} a component may have",
            format_bytes(max_bytes)
        ),
    )
}

/// Opens `path` for reading without waiting: opening a FIFO that has no
/// writer blocks until one comes, unless the open is non-blocking.
/// `O_NONBLOCK` changes nothing for the regular file read afterwards (a
/// regular file's reads never wait for data), so it is not cleared.
fn open_without_waiting(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // No controlling terminal either, should the path name one.
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::*;

    /// A fresh directory under the system's temporary directory, removed
    /// when dropped.
    struct ScratchDir(PathBuf);

    impl ScratchDir {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "presence-router-component-file-{}-{test}",
                std::process::id()
            ));
            // A leftover of an earlier run with the same process id.
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("the temporary directory is writable");
            ScratchDir(dir)
        }
    }

    impl Drop for ScratchDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Reads `path` on its own thread: a read that hangs fails the test
    /// after a while instead of hanging it.
    fn read_within(path: &Path, max_bytes: u64, within: Duration) -> io::Result<Vec<u8>> {
        let (sender, receiver) = mpsc::channel();
        let reading = path.to_owned();
        std::thread::spawn(move || {
            let _ = sender.send(read_regular_file(&reading, max_bytes));
        });
        receiver
            .recv_timeout(within)
            .unwrap_or_else(|_| panic!("reading {} did not return", path.display()))
    }

    fn refusal(result: io::Result<Vec<u8>>) -> String {
        result.expect_err("refused").to_string()
    }

    const NOT_REGULAR: &str = "is not a regular file (a device, FIFO, socket or directory)";

    #[test]
    fn a_regular_file_is_read_whole() {
        let dir = ScratchDir::new("regular");
        let path = dir.0.join("router.wasm");
        std::fs::write(&path, b"\0asm component").expect("written");
        let bytes = read_within(&path, 64, Duration::from_secs(10)).expect("read");
        assert_eq!(bytes, b"\0asm component");
        // Exactly at the cap is still a component.
        assert_eq!(
            read_within(&path, 14, Duration::from_secs(10))
                .map(|b| b.len())
                .ok(),
            Some(14)
        );
    }

    #[test]
    fn a_file_over_the_cap_is_refused_with_its_size() {
        let dir = ScratchDir::new("large");
        let path = dir.0.join("large.wasm");
        std::fs::write(&path, [0u8; 65]).expect("written");
        assert_eq!(
            refusal(read_within(&path, 64, Duration::from_secs(10))),
            "65 bytes is more than the 64 bytes a component may have"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_regular_file_longer_than_its_size_says_is_still_cut_at_the_cap() {
        // Files under /proc report 0 bytes and hold more: like a file that
        // grows after it was measured.
        let path = Path::new("/proc/self/status");
        assert_eq!(std::fs::metadata(path).expect("there").len(), 0);
        assert_eq!(
            refusal(read_within(path, 16, Duration::from_secs(10))),
            "the file grew while it was read: it is more than the 16 bytes a component may have"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_refused_at_once() {
        let started = Instant::now();
        let result = read_within(
            Path::new("/dev/zero"),
            MAX_COMPONENT_BYTES,
            Duration::from_secs(10),
        );
        assert_eq!(refusal(result), NOT_REGULAR);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_without_a_writer_is_refused_without_waiting_for_one() {
        let dir = ScratchDir::new("fifo");
        let fifo = dir.0.join("router.wasm");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success(), "mkfifo {}", fifo.display());
        let result = read_within(&fifo, MAX_COMPONENT_BYTES, Duration::from_secs(10));
        assert_eq!(refusal(result), NOT_REGULAR);
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = ScratchDir::new("directory");
        let result = read_within(&dir.0, MAX_COMPONENT_BYTES, Duration::from_secs(10));
        assert_eq!(refusal(result), NOT_REGULAR);
    }

    #[test]
    fn a_missing_file_is_the_systems_error() {
        let dir = ScratchDir::new("missing");
        let result = read_within(&dir.0.join("nothing.wasm"), 64, Duration::from_secs(10));
        assert_eq!(result.expect_err("refused").kind(), io::ErrorKind::NotFound);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn read_component_reads_off_the_executor() {
        let dir = ScratchDir::new("async");
        let path = dir.0.join("router.wasm");
        std::fs::write(&path, b"component").expect("written");
        assert_eq!(read_component(&path).await.expect("read"), b"component");
        assert_eq!(
            read_component(Path::new("/dev/null"))
                .await
                .map_err(|e| e.to_string()),
            Err(NOT_REGULAR.to_owned())
        );
    }
}
