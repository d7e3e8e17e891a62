//! Who may own what this program trusts: a file or directory, and the
//! directories above it. The rule is OpenSSH's `StrictModes`, stated once
//! here for everything in this workspace that needs it.
//!
//! Several things end up running, or being believed, as the user who runs
//! this program: a compiled-component cache holds native code that is
//! loaded without being verified, a component file is compiled into native
//! code in the homeserver (and a hot reload runs a replacement within
//! seconds), a recording holds personal data, a project `new` writes has a
//! `build.sh` that runs as whoever builds it, and a toolchain directory
//! holds the programs a build runs. Whoever else can change such a thing
//! can run code as this user, or read what only this user should. So:
//!
//! - **The target** (the file or directory itself, as opened) must belong
//!   to this process's effective user, or to root where the [`Policy`]
//!   allows (root can change anything anyway; refusing it only matters
//!   where a root-owned file means a mistake, as in a private cache). Its
//!   group and others must not be able to write it; a directory others may
//!   write is accepted only where the policy accepts a sticky one (as
//!   `/tmp`: there only an entry's owner may rename or remove it), and a
//!   private target (personal data) may not be readable by them either.
//! - **The directories above it**, where the policy walks them: what is in
//!   a directory can be replaced by whoever may write that directory or any
//!   directory above it, so each of them, up to `/` (links, `.` and `..`
//!   resolved), must belong to this user or root and be writable by nobody
//!   else unless it is sticky: in a sticky directory others may add
//!   entries, but not rename or remove this user's. This rule is fixed
//!   ([`Policy::ABOVE`]): refusing sticky directories above would refuse
//!   everything under `/tmp`, and refusing root would refuse `/`.
//!
//! Where the users of the rule must differ, the difference is a field of
//! [`Policy`], and each user has its preset:
//!
//! | preset | root may own | private | sticky accepted | walks above |
//! |---|---|---|---|---|
//! | [`Policy::CACHE`] (directory and files) | no | no | no | no |
//! | [`Policy::COMPONENT_FILE`] | yes | no | no | yes |
//! | [`Policy::RECORDER_DIR`] | yes | no | yes | no |
//! | [`Policy::RECORDING`] (the file) | no | yes | no | no |
//! | [`Policy::PROJECT_DIR`] (`new`) | yes | no | no | yes |
//! | [`Policy::TOOLCHAIN_DIR`] | yes | no | no | yes |
//!
//! The judgement itself ([`Policy::judge`], [`Policy::verdict`]) is pure,
//! on owners and modes; [`Policy::check`], [`Policy::check_above`] and
//! [`Policy::check_path`] apply it to this process and the file system.
//! Checking what was opened (an `fstat` of the descriptor, then
//! [`Policy::check`]) rather than a path looked up again is the caller's
//! part: only it knows what it opened.

use std::fmt;
#[cfg(unix)]
use std::io;
use std::path::{Path, PathBuf};

/// Write permission for the group or for others.
pub const WRITABLE_BY_OTHERS: u32 = 0o022;
/// Any permission for the group or for others.
pub const ANY_FOR_OTHERS: u32 = 0o077;
/// The sticky bit.
pub const STICKY: u32 = 0o1000;
/// The permission bits, the setuid, setgid and sticky bits among them.
const PERMISSIONS: u32 = 0o7777;

/// How strictly a target is judged; the directories above it, when walked,
/// are judged by [`Policy::ABOVE`]. See the crate docs for the rule and for
/// why each preset is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Whether root may own the target, besides this process's effective
    /// user.
    pub root_may_own: bool,
    /// Whether the target must be private (no permission at all for the
    /// group or others, as 0600 or 0700), rather than just not writable by
    /// them.
    pub private: bool,
    /// Whether a target the group or others may write is accepted when it
    /// is sticky (a directory such as `/tmp`).
    pub sticky_accepted: bool,
    /// Whether the directories above the target are checked, up to `/`.
    pub walk_above: bool,
}

impl Policy {
    /// A directory above a target: this user's or root's, and writable by
    /// nobody else unless sticky.
    pub const ABOVE: Policy = Policy {
        root_may_own: true,
        private: false,
        sticky_accepted: true,
        walk_above: false,
    };

    /// The compiled-component cache's directory and every file in it: only
    /// this user is trusted (its artifacts are native code loaded without
    /// verification, under a key only it holds), not root. Not walked: the
    /// directory is held open and every file is used relative to it, and
    /// each artifact carries a MAC under the key.
    pub const CACHE: Policy = Policy {
        root_may_own: false,
        private: false,
        sticky_accepted: false,
        walk_above: false,
    };

    /// A component file named by the configuration: compiled, it is native
    /// code in the homeserver. Root may own it (a packaged router); the
    /// directories above are walked because it is read by its path.
    pub const COMPONENT_FILE: Policy = Policy {
        root_may_own: true,
        private: false,
        sticky_accepted: false,
        walk_above: true,
    };

    /// The directory a recording is written in: held open and used by
    /// descriptor, so not walked; it may be sticky (as `/tmp`), where
    /// others can't rename or remove the recording.
    pub const RECORDER_DIR: Policy = Policy {
        root_may_own: true,
        private: false,
        sticky_accepted: true,
        walk_above: false,
    };

    /// A recording: presence is personal data, so it is this user's alone
    /// and private (0600).
    pub const RECORDING: Policy = Policy {
        root_may_own: false,
        private: true,
        sticky_accepted: false,
        walk_above: false,
    };

    /// The directory `new` writes a project into: the project's `build.sh`
    /// runs as whoever builds it. The directories above are walked: another
    /// user who could replace the project could replace its `build.sh`.
    pub const PROJECT_DIR: Policy = Policy {
        root_may_own: true,
        private: false,
        sticky_accepted: false,
        walk_above: true,
    };

    /// A directory a build runs a toolchain from (a virtualenv,
    /// `node_modules`): what is in it runs as whoever builds.
    pub const TOOLCHAIN_DIR: Policy = Policy {
        root_may_own: true,
        private: false,
        sticky_accepted: false,
        walk_above: true,
    };

    /// Why a target owned and moded as `stat` is refused to a process of
    /// effective uid `euid`, if it is; its owner first, then who may write
    /// it, then who may read it.
    pub fn judge(&self, euid: u32, stat: Stat) -> Result<(), Reason> {
        let Stat { owner, mode } = stat;
        let mode = mode & PERMISSIONS;
        if owner != euid && !(self.root_may_own && owner == 0) {
            return Err(Reason::Owner);
        }
        if mode & WRITABLE_BY_OTHERS != 0 && !(self.sticky_accepted && mode & STICKY != 0) {
            return Err(Reason::WritableByOthers);
        }
        if self.private && mode & ANY_FOR_OTHERS != 0 {
            return Err(Reason::NotPrivate);
        }
        Ok(())
    }

    /// The verdict on a target and the directories above it (`above`, the
    /// nearest first), for a process of effective uid `euid`: the first
    /// refused and why. `above` is looked at only if the policy walks it.
    pub fn verdict(&self, euid: u32, target: Stat, above: &[Stat]) -> Verdict {
        let above = above
            .iter()
            .map(|stat| Ok::<_, std::convert::Infallible>(((), *stat)));
        match self.first_refused(euid, Some(((), target)), above) {
            Ok(None) => Ok(()),
            Ok(Some(((), _, place, reason))) => Err((place, reason)),
            Err(never) => match never {},
        }
    }

    /// The first of `target` and (if walked) `above` that is refused, with
    /// its place and why; `above` is consumed only as far as needed, so an
    /// error examining a directory further up is not reached once one is
    /// refused.
    fn first_refused<T, E>(
        &self,
        euid: u32,
        target: Option<(T, Stat)>,
        above: impl IntoIterator<Item = Result<(T, Stat), E>>,
    ) -> Result<Option<(T, Stat, Place, Reason)>, E> {
        if let Some((what, stat)) = target
            && let Err(reason) = self.judge(euid, stat)
        {
            return Ok(Some((what, stat, Place::Target, reason)));
        }
        if !self.walk_above {
            return Ok(None);
        }
        for (level, item) in above.into_iter().enumerate() {
            let (what, stat) = item?;
            if let Err(reason) = Policy::ABOVE.judge(euid, stat) {
                return Ok(Some((what, stat, Place::Above(level), reason)));
            }
        }
        Ok(None)
    }
}

#[cfg(unix)]
impl Policy {
    /// Checks the target at `path` (for messages only), owned and moded as
    /// `stat`, for this process: `stat` should come from an `fstat` of what
    /// the caller opened, so that what is checked is what is used. The
    /// directories above are not looked at (see [`Policy::check_above`]).
    pub fn check(&self, path: &Path, stat: Stat) -> Result<(), Refusal> {
        let euid = euid();
        self.judge(euid, stat).map_err(|reason| Refusal {
            path: path.to_owned(),
            owner: stat.owner,
            mode: stat.mode & PERMISSIONS,
            euid,
            reason,
            place: Place::Target,
            policy: *self,
        })
    }

    /// If the policy walks the directories above a target, the first of
    /// `dir` (the target's directory) and those above it, links, `.` and
    /// `..` resolved, that is refused (`dir` is [`Place::Above`]`(0)`);
    /// `None` if all are trusted, or if the policy does not walk them.
    /// Errors are the system's: `dir` missing, or a directory that can't
    /// be examined.
    pub fn check_above(&self, dir: &Path) -> io::Result<Option<Refusal>> {
        if !self.walk_above {
            return Ok(None);
        }
        let dir = std::fs::canonicalize(dir)?;
        let found = self.first_refused(euid(), None, stat_each(dir.ancestors()))?;
        Ok(found.map(|found| self.refusal(found)))
    }

    /// The target at `path`, links, `.` and `..` resolved, then (if the
    /// policy walks them) the directories above it: the first refused, or
    /// `None`. For a target used by its path, such as a toolchain
    /// directory a script runs programs from; a caller that opens the
    /// target should [`Policy::check`] what it opened instead. Errors are
    /// the system's.
    pub fn check_path(&self, path: &Path) -> io::Result<Option<Refusal>> {
        let path = std::fs::canonicalize(path)?;
        let target = Stat::from(&std::fs::metadata(&path)?);
        let above = stat_each(path.ancestors().skip(1));
        let found = self.first_refused(euid(), Some((path.clone(), target)), above)?;
        Ok(found.map(|found| self.refusal(found)))
    }

    fn refusal(&self, (path, stat, place, reason): (PathBuf, Stat, Place, Reason)) -> Refusal {
        Refusal {
            path,
            owner: stat.owner,
            mode: stat.mode & PERMISSIONS,
            euid: euid(),
            reason,
            place,
            policy: *self,
        }
    }
}

/// Each directory, with its owner and mode, examined when reached.
#[cfg(unix)]
fn stat_each<'a>(
    dirs: impl Iterator<Item = &'a Path>,
) -> impl Iterator<Item = io::Result<(PathBuf, Stat)>> {
    dirs.map(|dir| Ok((dir.to_owned(), Stat::from(&std::fs::metadata(dir)?))))
}

/// This process's effective uid: the user whose files are trusted.
#[cfg(unix)]
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// [`Policy::verdict`]'s: trusted, or the first refused and why.
pub type Verdict = Result<(), (Place, Reason)>;

/// What the rule looks at: an owner and a mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The owner's uid.
    pub owner: u32,
    /// The mode: the permission bits are looked at, the file type is not.
    pub mode: u32,
}

#[cfg(unix)]
impl From<&std::fs::Metadata> for Stat {
    fn from(metadata: &std::fs::Metadata) -> Stat {
        use std::os::unix::fs::MetadataExt;
        Stat {
            owner: metadata.uid(),
            mode: metadata.mode(),
        }
    }
}

/// Why something is not trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// It belongs to neither this process's user nor (where the policy
    /// allows) root.
    Owner,
    /// Its group or others may write it (and it is not sticky, where the
    /// policy accepts a sticky one).
    WritableByOthers,
    /// Its group or others may read or search it, and the policy wants it
    /// private.
    NotPrivate,
}

/// Where the refused file or directory is, from the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The target itself.
    Target,
    /// A directory above the target: 0 is the target's own directory, 1
    /// the one above it, and so on.
    Above(usize),
}

/// A file or directory refused, with what the rule saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The file or directory: as the caller named it for [`Policy::check`],
    /// canonical (no link, `.` or `..` in it) otherwise.
    pub path: PathBuf,
    /// Its owner's uid.
    pub owner: u32,
    /// Its permission bits, the setuid, setgid and sticky bits among them.
    pub mode: u32,
    /// This process's effective uid.
    pub euid: u32,
    pub reason: Reason,
    pub place: Place,
    /// The policy the target was judged by (a directory above by
    /// [`Policy::ABOVE`]).
    pub policy: Policy,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Refusal {
            path,
            owner,
            mode,
            euid,
            reason,
            place,
            policy,
        } = self;
        let path = path.display();
        let judged_by = match place {
            Place::Target => policy,
            Place::Above(_) => &Policy::ABOVE,
        };
        match reason {
            Reason::Owner if judged_by.root_may_own => write!(
                f,
                "{path} is owned by uid {owner} (mode {mode:04o}), neither this process's \
                 user (uid {euid}) nor root"
            ),
            Reason::Owner => write!(
                f,
                "{path} is owned by uid {owner} (mode {mode:04o}), not by this process's \
                 user (uid {euid})"
            ),
            Reason::WritableByOthers if judged_by.sticky_accepted => write!(
                f,
                "{path} (owner uid {owner}, mode {mode:04o}) is writable by its group or by \
                 others, without the sticky bit"
            ),
            Reason::WritableByOthers => write!(
                f,
                "{path} (owner uid {owner}, mode {mode:04o}) is writable by its group or by \
                 others"
            ),
            Reason::NotPrivate => write!(
                f,
                "{path} (owner uid {owner}, mode {mode:04o}) may be read by its group or by \
                 others"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// `trusted-dir DIR`, as the build scripts of `new` projects run it (both
/// `presence-router` and `presence-router-guest-build` have it): refuses
/// the toolchain directory `dir` (a virtualenv, `node_modules`, a
/// project's `.toolchain/`) unless only this user and root can change it
/// and what is in it, by [`Policy::TOOLCHAIN_DIR`]. What such a directory
/// holds runs as whoever builds, so whoever else can change it runs code
/// as them. The error is one line: it names `dir` (and what it resolves
/// to), why it is refused, and what to do.
#[cfg(unix)]
pub fn check_toolchain_dir(dir: &Path) -> Result<(), String> {
    let cannot = |e: io::Error| {
        format!(
            "cannot examine the toolchain directory {}: {e}",
            dir.display()
        )
    };
    let real = std::fs::canonicalize(dir).map_err(cannot)?;
    if !std::fs::metadata(&real).map_err(cannot)?.is_dir() {
        return Err(format!(
            "the toolchain directory {} is not a directory",
            named(dir, &real)
        ));
    }
    match Policy::TOOLCHAIN_DIR.check_path(&real).map_err(cannot)? {
        None => Ok(()),
        Some(refused) => Err(toolchain_dir_refused(dir, &real, &refused)),
    }
}

/// Elsewhere who may write a directory can't be told the same way.
#[cfg(not(unix))]
pub fn check_toolchain_dir(dir: &Path) -> Result<(), String> {
    Err(format!(
        "cannot check the toolchain directory {}: who may change a directory is checked on \
         Unix only",
        dir.display()
    ))
}

/// Why the toolchain directory `dir`, `real` once resolved, is refused,
/// and what to do.
fn toolchain_dir_refused(dir: &Path, real: &Path, refused: &Refusal) -> String {
    let named = named(dir, real);
    let (at, owner, mode, euid) = (
        refused.path.display(),
        refused.owner,
        refused.mode,
        refused.euid,
    );
    const KEEP: &str = "keep toolchains under directories only you and root can write";
    match (refused.place, refused.reason) {
        (Place::Target, Reason::Owner) => format!(
            "refused: the toolchain directory {named} is owned by uid {owner} (mode {mode:o}), \
             not by you (uid {euid}) or root: its owner could change the programs this build \
             runs as you; remove it, or use a toolchain directory of your own"
        ),
        // `NotPrivate` never comes: a toolchain need not be private.
        (Place::Target, Reason::WritableByOthers | Reason::NotPrivate) => format!(
            "refused: the toolchain directory {named} is writable by group or others (mode \
             {mode:o}): another user could change the programs this build runs as you; \
             `chmod -R go-w {}` if only you wrote it, or remove it",
            real.display()
        ),
        (Place::Above(_), Reason::Owner) => format!(
            "refused: the toolchain directory {named} is in {at}, owned by uid {owner} (mode \
             {mode:o}), not by you (uid {euid}) or root: its owner could replace the programs \
             this build runs as you; {KEEP}"
        ),
        (Place::Above(_), Reason::WritableByOthers | Reason::NotPrivate) => format!(
            "refused: the toolchain directory {named} is in {at}, writable by others (mode \
             {mode:o}) without the sticky bit: another user could replace the programs this \
             build runs as you; {KEEP}"
        ),
    }
}

/// `dir`, and what it resolves to if that is another path.
fn named(dir: &Path, real: &Path) -> String {
    if dir == real {
        dir.display().to_string()
    } else {
        format!("{} (= {})", dir.display(), real.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u32 = 1000;
    const ROOT: u32 = 0;
    const OTHER: u32 = 65534;

    fn stat(owner: u32, mode: u32) -> Stat {
        Stat { owner, mode }
    }

    /// Every parameter of the rule, each preset's defining cases among the
    /// rows: the target's owner and mode, the directories above (nearest
    /// first), the policy, and the verdict.
    #[test]
    fn the_rule() {
        use Place::{Above, Target};
        use Reason::{NotPrivate, Owner, WritableByOthers};

        let trusted_above = [stat(ROOT, 0o755), stat(ROOT, 0o1777), stat(ROOT, 0o755)];
        #[rustfmt::skip]
        let rows: &[(&str, Policy, Stat, &[Stat], Verdict)] = &[
            // Who may own the target: this user always; root where allowed.
            ("mine", Policy::CACHE, stat(ME, 0o700), &[], Ok(())),
            ("root's, root refused", Policy::CACHE, stat(ROOT, 0o700), &[], Err((Target, Owner))),
            ("root's, root refused", Policy::RECORDING, stat(ROOT, 0o600), &[], Err((Target, Owner))),
            ("root's, root allowed", Policy::COMPONENT_FILE, stat(ROOT, 0o644), &[], Ok(())),
            ("root's, root allowed", Policy::RECORDER_DIR, stat(ROOT, 0o755), &[], Ok(())),
            ("another's", Policy::COMPONENT_FILE, stat(OTHER, 0o644), &[], Err((Target, Owner))),
            ("another's", Policy::CACHE, stat(OTHER, 0o700), &[], Err((Target, Owner))),
            // The owner is looked at before the mode.
            ("another's, open", Policy::TOOLCHAIN_DIR, stat(OTHER, 0o777), &[], Err((Target, Owner))),
            // Who may write it: nobody else, group or others.
            ("group-writable", Policy::CACHE, stat(ME, 0o770), &[], Err((Target, WritableByOthers))),
            ("world-writable", Policy::PROJECT_DIR, stat(ME, 0o757), &[], Err((Target, WritableByOthers))),
            ("readable by others", Policy::CACHE, stat(ME, 0o644), &[], Ok(())),
            ("setgid, not writable", Policy::PROJECT_DIR, stat(ME, 0o2755), &[], Ok(())),
            // Sticky: accepted only where the policy says.
            ("sticky, accepted", Policy::RECORDER_DIR, stat(ME, 0o1777), &[], Ok(())),
            ("sticky root's, accepted", Policy::RECORDER_DIR, stat(ROOT, 0o1777), &[], Ok(())),
            ("open, not sticky", Policy::RECORDER_DIR, stat(ME, 0o777), &[], Err((Target, WritableByOthers))),
            ("sticky, refused", Policy::TOOLCHAIN_DIR, stat(ME, 0o1777), &[], Err((Target, WritableByOthers))),
            ("sticky, refused", Policy::CACHE, stat(ME, 0o1770), &[], Err((Target, WritableByOthers))),
            // Private: no permission at all for others.
            ("private", Policy::RECORDING, stat(ME, 0o600), &[], Ok(())),
            ("group-readable", Policy::RECORDING, stat(ME, 0o640), &[], Err((Target, NotPrivate))),
            ("world-readable", Policy::RECORDING, stat(ME, 0o604), &[], Err((Target, NotPrivate))),
            ("group-searchable", Policy::RECORDING, stat(ME, 0o610), &[], Err((Target, NotPrivate))),
            ("writable, not private", Policy::RECORDING, stat(ME, 0o620), &[], Err((Target, WritableByOthers))),
            ("not required private", Policy::RECORDER_DIR, stat(ME, 0o755), &[], Ok(())),
            // Walked above: each directory this user's or root's, writable
            // by nobody else unless sticky.
            ("trusted above", Policy::COMPONENT_FILE, stat(ME, 0o644), &trusted_above, Ok(())),
            ("mine above", Policy::PROJECT_DIR, stat(ME, 0o755), &[stat(ME, 0o700), stat(ROOT, 0o755)], Ok(())),
            ("another's above", Policy::COMPONENT_FILE, stat(ME, 0o644), &[stat(OTHER, 0o755), stat(ROOT, 0o755)], Err((Above(0), Owner))),
            ("open above", Policy::TOOLCHAIN_DIR, stat(ME, 0o755), &[stat(ME, 0o755), stat(ROOT, 0o777)], Err((Above(1), WritableByOthers))),
            ("sticky above", Policy::TOOLCHAIN_DIR, stat(ME, 0o755), &[stat(OTHER, 0o1777)], Err((Above(0), Owner))),
            ("sticky above", Policy::PROJECT_DIR, stat(ME, 0o755), &[stat(ROOT, 0o1777), stat(ROOT, 0o755)], Ok(())),
            // Above is never private, even where the target must be.
            ("readable above", Policy { walk_above: true, ..Policy::RECORDING }, stat(ME, 0o600), &[stat(ROOT, 0o755)], Ok(())),
            // Root may own what is above even where it may not own the target.
            ("root above", Policy { walk_above: true, ..Policy::CACHE }, stat(ME, 0o700), &[stat(ROOT, 0o755)], Ok(())),
            // The target is judged before what is above.
            ("both refused", Policy::PROJECT_DIR, stat(ME, 0o777), &[stat(OTHER, 0o755)], Err((Target, WritableByOthers))),
            // Not walked: what is above is not looked at.
            ("unwalked", Policy::CACHE, stat(ME, 0o700), &[stat(OTHER, 0o777)], Ok(())),
            ("unwalked", Policy::RECORDER_DIR, stat(ME, 0o755), &[stat(OTHER, 0o777)], Ok(())),
            ("unwalked", Policy::RECORDING, stat(ME, 0o600), &[stat(ROOT, 0o777)], Ok(())),
            // Only the permission bits are looked at, not the file type.
            ("a directory's mode", Policy::CACHE, stat(ME, 0o040_700), &[], Ok(())),
            ("a file's mode", Policy::RECORDING, stat(ME, 0o100_640), &[], Err((Target, NotPrivate))),
        ];
        for (what, policy, target, above, expected) in rows {
            assert_eq!(
                policy.verdict(ME, *target, above),
                *expected,
                "{what}: {policy:?}, target {target:?}, above {above:?}"
            );
        }
        // Root's own files are root's own: its process trusts them.
        assert_eq!(Policy::CACHE.verdict(ROOT, stat(ROOT, 0o700), &[]), Ok(()));
    }

    #[test]
    fn the_presets() {
        // The table in the crate docs.
        #[rustfmt::skip]
        let presets = [
            (Policy::CACHE, [false, false, false, false]),
            (Policy::COMPONENT_FILE, [true, false, false, true]),
            (Policy::RECORDER_DIR, [true, false, true, false]),
            (Policy::RECORDING, [false, true, false, false]),
            (Policy::PROJECT_DIR, [true, false, false, true]),
            (Policy::TOOLCHAIN_DIR, [true, false, false, true]),
            (Policy::ABOVE, [true, false, true, false]),
        ];
        for (policy, [root_may_own, private, sticky_accepted, walk_above]) in presets {
            assert_eq!(
                policy,
                Policy {
                    root_may_own,
                    private,
                    sticky_accepted,
                    walk_above
                }
            );
        }
    }

    #[test]
    fn refusals_say_what_was_seen() {
        let refusal = |reason, place, policy| Refusal {
            path: PathBuf::from("/x/y"),
            owner: OTHER,
            mode: 0o777,
            euid: ME,
            reason,
            place,
            policy,
        };
        #[rustfmt::skip]
        let rows = [
            (Reason::Owner, Place::Target, Policy::COMPONENT_FILE,
             "/x/y is owned by uid 65534 (mode 0777), neither this process's user (uid 1000) nor root"),
            (Reason::Owner, Place::Target, Policy::CACHE,
             "/x/y is owned by uid 65534 (mode 0777), not by this process's user (uid 1000)"),
            (Reason::Owner, Place::Above(2), Policy::CACHE,
             "/x/y is owned by uid 65534 (mode 0777), neither this process's user (uid 1000) nor root"),
            (Reason::WritableByOthers, Place::Target, Policy::TOOLCHAIN_DIR,
             "/x/y (owner uid 65534, mode 0777) is writable by its group or by others"),
            (Reason::WritableByOthers, Place::Above(0), Policy::TOOLCHAIN_DIR,
             "/x/y (owner uid 65534, mode 0777) is writable by its group or by others, without the sticky bit"),
            (Reason::NotPrivate, Place::Target, Policy::RECORDING,
             "/x/y (owner uid 65534, mode 0777) may be read by its group or by others"),
        ];
        for (reason, place, policy, expected) in rows {
            assert_eq!(refusal(reason, place, policy).to_string(), expected);
        }
    }

    /// What `trusted-dir` says of a refused toolchain directory: its name
    /// (and what it resolves to), why, and what to do.
    #[test]
    fn toolchain_dir_refusals_say_why_and_what_to_do() {
        let refusal = |path: &str, owner, mode, reason, place| Refusal {
            path: PathBuf::from(path),
            owner,
            mode,
            euid: ME,
            reason,
            place,
            policy: Policy::TOOLCHAIN_DIR,
        };
        let (venv, link) = (Path::new("/t/venv"), Path::new("/l"));
        #[rustfmt::skip]
        let rows = [
            (venv, refusal("/t/venv", OTHER, 0o755, Reason::Owner, Place::Target),
             "refused: the toolchain directory /t/venv is owned by uid 65534 (mode 755), not by \
              you (uid 1000) or root: its owner could change the programs this build runs as \
              you; remove it, or use a toolchain directory of your own"),
            (link, refusal("/t/venv", ME, 0o1777, Reason::WritableByOthers, Place::Target),
             "refused: the toolchain directory /l (= /t/venv) is writable by group or others \
              (mode 1777): another user could change the programs this build runs as you; \
              `chmod -R go-w /t/venv` if only you wrote it, or remove it"),
            (venv, refusal("/t", OTHER, 0o755, Reason::Owner, Place::Above(0)),
             "refused: the toolchain directory /t/venv is in /t, owned by uid 65534 (mode 755), \
              not by you (uid 1000) or root: its owner could replace the programs this build \
              runs as you; keep toolchains under directories only you and root can write"),
            (link, refusal("/", ROOT, 0o777, Reason::WritableByOthers, Place::Above(1)),
             "refused: the toolchain directory /l (= /t/venv) is in /, writable by others (mode \
              777) without the sticky bit: another user could replace the programs this build \
              runs as you; keep toolchains under directories only you and root can write"),
        ];
        for (dir, refused, expected) in rows {
            assert_eq!(
                toolchain_dir_refused(dir, Path::new("/t/venv"), &refused),
                expected
            );
        }
    }

    #[cfg(unix)]
    mod on_disk {
        use std::os::unix::fs::PermissionsExt;
        use std::path::{Path, PathBuf};

        use super::super::*;
        use super::OTHER;

        /// A fresh directory under the system's temporary directory, mode
        /// 0755, removed when dropped.
        struct Scratch(PathBuf);

        impl Scratch {
            fn new(test: &str) -> Scratch {
                let dir = std::env::temp_dir().join(format!(
                    "presence-router-ownership-{}-{test}",
                    std::process::id()
                ));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("the temporary directory is writable");
                chmod(&dir, 0o755);
                Scratch(std::fs::canonicalize(&dir).expect("there"))
            }
        }

        impl Drop for Scratch {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }

        fn chmod(path: &Path, mode: u32) {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }

        fn seen(refusal: Option<Refusal>) -> Option<(PathBuf, u32, Reason, Place)> {
            refusal.map(|r| (r.path, r.mode, r.reason, r.place))
        }

        #[test]
        fn the_directories_above_are_walked_up_to_the_root() {
            // The system's temporary directory is sticky (or private): a
            // directory of this user's under it is trusted.
            let scratch = Scratch::new("above");
            let inner = scratch.0.join("inner");
            std::fs::create_dir(&inner).expect("made");
            let walked = Policy::COMPONENT_FILE;
            assert_eq!(
                walked
                    .check_above(&inner.join("../inner/."))
                    .expect("examined"),
                None
            );
            chmod(&scratch.0, 0o777);
            assert_eq!(
                seen(walked.check_above(&inner).expect("examined")),
                Some((
                    scratch.0.clone(),
                    0o777,
                    Reason::WritableByOthers,
                    Place::Above(1)
                ))
            );
            // Not walked: nothing is looked at.
            assert_eq!(
                Policy::CACHE
                    .check_above(&inner)
                    .expect("nothing to examine"),
                None
            );
            chmod(&scratch.0, 0o1777);
            assert_eq!(walked.check_above(&inner).expect("examined"), None);
        }

        #[test]
        fn a_path_is_resolved_then_judged_itself_then_above() {
            let scratch = Scratch::new("path");
            let toolchain = scratch.0.join("venv");
            std::fs::create_dir(&toolchain).expect("made");
            chmod(&toolchain, 0o755);
            let link = scratch.0.join("link");
            std::os::unix::fs::symlink(&toolchain, &link).expect("linked");
            let policy = Policy::TOOLCHAIN_DIR;
            assert_eq!(policy.check_path(&link).expect("examined"), None);
            // Sticky is no excuse for the target itself.
            chmod(&toolchain, 0o1777);
            assert_eq!(
                seen(policy.check_path(&link).expect("examined")),
                Some((
                    toolchain.clone(),
                    0o1777,
                    Reason::WritableByOthers,
                    Place::Target
                ))
            );
            chmod(&toolchain, 0o755);
            chmod(&scratch.0, 0o775);
            assert_eq!(
                seen(policy.check_path(&toolchain).expect("examined")),
                Some((
                    scratch.0.clone(),
                    0o775,
                    Reason::WritableByOthers,
                    Place::Above(0)
                ))
            );
        }

        #[test]
        fn another_users_directory_is_refused_here_and_above() {
            // Giving a directory away takes root; elsewhere, the table
            // covers other owners.
            if !rustix::process::geteuid().is_root() {
                return;
            }
            let scratch = Scratch::new("owner");
            let toolchain = scratch.0.join("venv");
            std::fs::create_dir(&toolchain).expect("made");
            chmod(&toolchain, 0o755);
            std::os::unix::fs::chown(&toolchain, Some(OTHER), Some(OTHER)).expect("chown");
            let refused = Policy::TOOLCHAIN_DIR
                .check_path(&toolchain)
                .expect("examined");
            assert_eq!(
                seen(refused.clone()),
                Some((toolchain.clone(), 0o755, Reason::Owner, Place::Target))
            );
            assert_eq!(refused.expect("refused").owner, OTHER);
            std::os::unix::fs::chown(&toolchain, Some(0), Some(0)).expect("chown back");
            std::os::unix::fs::chown(&scratch.0, Some(OTHER), Some(OTHER)).expect("chown");
            assert_eq!(
                seen(
                    Policy::TOOLCHAIN_DIR
                        .check_path(&toolchain)
                        .expect("examined")
                ),
                Some((scratch.0.clone(), 0o755, Reason::Owner, Place::Above(0)))
            );
            // `check` judges what the caller opened, nothing above it.
            let opened = Stat::from(&std::fs::metadata(&toolchain).expect("there"));
            assert_eq!(Policy::TOOLCHAIN_DIR.check(&toolchain, opened), Ok(()));
            let opened = Stat::from(&std::fs::metadata(&scratch.0).expect("there"));
            assert_eq!(
                Policy::RECORDER_DIR
                    .check(Path::new("named"), opened)
                    .map_err(|r| (r.path, r.reason, r.place)),
                Err((PathBuf::from("named"), Reason::Owner, Place::Target))
            );
        }

        #[test]
        fn a_toolchain_dir_is_checked_resolved_and_named_as_given() {
            let scratch = Scratch::new("toolchain");
            let venv = scratch.0.join("venv");
            std::fs::create_dir(&venv).expect("made");
            chmod(&venv, 0o755);
            let link = scratch.0.join("link");
            std::os::unix::fs::symlink(&venv, &link).expect("linked");
            let file = scratch.0.join("file");
            std::fs::write(&file, "").expect("written");
            let missing = scratch.0.join("none");
            let shown = |path: &Path| path.display().to_string();
            // What each error starts with.
            let rows: &[(&str, &Path, u32, Result<(), String>)] = &[
                ("private", &venv, 0o755, Ok(())),
                ("private, linked", &link, 0o755, Ok(())),
                (
                    "group-writable",
                    &link,
                    0o775,
                    Err(format!(
                        "refused: the toolchain directory {} (= {}) is writable by group or \
                         others (mode 775)",
                        shown(&link),
                        shown(&venv)
                    )),
                ),
                (
                    "a file",
                    &file,
                    0o755,
                    Err(format!(
                        "the toolchain directory {} is not a directory",
                        shown(&file)
                    )),
                ),
                (
                    "missing",
                    &missing,
                    0o755,
                    Err(format!(
                        "cannot examine the toolchain directory {}: ",
                        shown(&missing)
                    )),
                ),
            ];
            for (what, dir, mode, expected) in rows {
                chmod(&venv, *mode);
                let checked = check_toolchain_dir(dir);
                match (&checked, expected) {
                    (Ok(()), Ok(())) => {}
                    (Err(said), Err(start)) if said.starts_with(start.as_str()) => {}
                    _ => panic!("{what}: {checked:?}, expected {expected:?}"),
                }
            }
        }

        #[test]
        fn a_missing_path_is_the_systems_error() {
            let missing = std::env::temp_dir().join("presence-router-ownership-missing/none");
            for result in [
                Policy::PROJECT_DIR.check_above(&missing),
                Policy::TOOLCHAIN_DIR.check_path(&missing),
            ] {
                assert_eq!(result.map_err(|e| e.kind()), Err(io::ErrorKind::NotFound));
            }
        }
    }
}
