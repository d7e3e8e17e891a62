//! Whether another local user could change what is under a directory:
//! OpenSSH's `StrictModes` rule. Component files follow it
//! (`component_file.rs`): compiled, a component is native code in the
//! homeserver. The CLI's `new` follows it for the directory it writes a
//! project into: the project's `build.sh` runs as whoever builds it.
//!
//! A directory is trusted when it belongs to this process's effective user
//! or to root and nobody else can write it, unless it is sticky (as `/tmp`:
//! there only an entry's owner may rename or delete it). What is under a
//! directory can be replaced by whoever may write that directory or any
//! directory above it, so all of them are checked, up to `/`.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Write permission for the group or for others.
const WRITABLE_BY_OTHERS: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// A directory another local user could change things in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UntrustedDir {
    /// The directory, canonical (no link, `.` or `..` in it).
    pub path: PathBuf,
    /// Its owner's uid.
    pub owner: u32,
    /// Its permission bits, the setuid, setgid and sticky bits among them.
    pub mode: u32,
    /// This process's effective uid, which the owner is not (or root).
    pub euid: u32,
    pub why: Untrusted,
}

/// Why a directory is not trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Untrusted {
    /// It belongs to neither this process's user nor root.
    Owner,
    /// Its group or others may write it, and it is not sticky.
    WritableByOthers,
}

/// Whether `uid` may own what this process trusts: itself, or root.
pub fn trusted_owner(uid: u32) -> bool {
    uid == rustix::process::geteuid().as_raw() || uid == 0
}

/// The first of `dir` and the directories above it (after resolving links,
/// `.` and `..`) that is not trusted, from `dir` up; `None` if all are.
/// Errors are the system's: `dir` missing, or a directory that can't be
/// examined.
pub fn first_untrusted_dir(dir: &Path) -> io::Result<Option<UntrustedDir>> {
    let euid = rustix::process::geteuid().as_raw();
    let dir = std::fs::canonicalize(dir)?;
    for ancestor in dir.ancestors() {
        let metadata = std::fs::metadata(ancestor)?;
        let (owner, mode) = (metadata.uid(), metadata.mode() & 0o7777);
        let why = if owner != euid && owner != 0 {
            Untrusted::Owner
        } else if mode & WRITABLE_BY_OTHERS != 0 && mode & STICKY == 0 {
            Untrusted::WritableByOthers
        } else {
            continue;
        };
        return Ok(Some(UntrustedDir {
            path: ancestor.to_owned(),
            owner,
            mode,
            euid,
            why,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_private_directory_under_tmp_is_trusted() {
        // /tmp is world-writable and sticky; the directory is this user's.
        let dir = std::env::temp_dir().join(format!("strict-modes-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("inner")).expect("made");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let trusted = first_untrusted_dir(&dir.join("inner/."));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let open = first_untrusted_dir(&dir.join("inner"));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        let sticky = first_untrusted_dir(&dir.join("inner"));
        let _ = std::fs::remove_dir_all(&dir);

        assert_eq!(trusted.expect("examined"), None);
        let canonical = std::fs::canonicalize(std::env::temp_dir())
            .expect("there")
            .join(dir.file_name().expect("a name"));
        let open = open.expect("examined").expect("untrusted");
        assert_eq!(
            (open.path, open.mode, open.why),
            (canonical, 0o777, Untrusted::WritableByOthers)
        );
        assert_eq!(sticky.expect("examined"), None);
    }

    #[test]
    fn a_missing_directory_is_the_systems_error() {
        let missing = std::env::temp_dir().join("strict-modes-missing/none");
        assert_eq!(
            first_untrusted_dir(&missing).map_err(|e| e.kind()),
            Err(io::ErrorKind::NotFound)
        );
    }
}
