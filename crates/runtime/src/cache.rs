//! The compiled-component cache: each component is compiled once to a
//! native artifact and later loaded from it, which takes milliseconds where
//! compiling takes hundreds of them (seconds for a component with a
//! language runtime inside).
//!
//! The cache stores and fetches bytes: compiling a component, serializing
//! its artifact and deserializing one are the sandbox's (`guest/compile.rs`),
//! and `compiler.rs` combines the two (look the artifact up, compile on a
//! miss, store).
//!
//! Deserializing is `unsafe` in wasmtime for a reason: an artifact is native
//! code that wasmtime loads and runs as it is, without verifying it. Bytes
//! that did not come from this runtime's own compiler could do anything. So
//! an artifact is loaded only if this cache wrote it:
//!
//! - Only the current (effective) user is trusted. The cache directory must
//!   belong to it, must not be a symbolic link, and must not be writable by
//!   its group or by others; so must every file used in it (the key, the
//!   artifacts, their MACs). A directory or file anyone else could have
//!   written or replaced is refused, with a warning that says which, whose
//!   and with what mode, and the component is compiled instead. The checks
//!   are made on the opened descriptors (`fstat`), every open refuses a
//!   symlink (`O_NOFOLLOW`), and every file is opened relative to the
//!   checked directory's descriptor, so nothing is checked under one name
//!   and used under another.
//! - Every artifact has an HMAC-SHA256 (over its name and its bytes) under a
//!   random key kept in the directory (`key`). A file that is corrupt,
//!   truncated, left half-written, copied in from another cache or renamed
//!   from another component's fails the check and is recompiled.
//! - An artifact is read once, into memory; its MAC is checked over those
//!   bytes and wasmtime loads that same buffer (copying it into its own
//!   memory), never the file again: what runs is what was checked, and
//!   nothing written to the file later reaches the running code.
//! - The directory is created 0700 and files 0600, whatever the umask;
//!   files are written under a random temporary name, created exclusively
//!   (never through an existing file or link), then renamed into place.
//!
//! What this does not defend against: the current user itself (or root),
//! which can write the cache and read its key, as it can change the
//! configuration file that names the routers.
//!
//! Artifacts are named by the SHA-256 of the component and by the engine's
//! compatibility hash (the wasmtime version and every compilation setting),
//! so a changed component or a different engine never finds a stale one.
//!
//! # Size and eviction
//!
//! Every new version of a component adds an artifact, so the cache is
//! bounded ([`CacheBound`]: by default 1 GiB and 1,000 artifacts, an
//! artifact counted with its MAC): a reload storm can't fill the disk.
//! After each write of an artifact (and after a write that failed, which
//! may have found the disk full), the least recently used artifacts are
//! evicted until the cache is back within both figures. An artifact was
//! last used when it was last written or loaded: a load sets its
//! modification time through the descriptor it was read from (`futimens`),
//! so the versions that processes keep loading stay while newer ones come
//! and go. The artifact just written is never evicted (if it alone is over
//! the bound, it stays alone). The same pass removes temporary files left
//! by writes that never finished, once they are an hour old.
//!
//! Eviction keeps the properties above:
//!
//! - It runs under an exclusive `flock` of the directory (on a descriptor
//!   of its own, so threads of one process exclude each other too): two
//!   evictions never interleave. One that waits for the lock for a second
//!   gives up with a warning, and the next write evicts; a load never waits
//!   longer than that on another process.
//! - It removes only names this cache makes (`<component hash>-<engine
//!   hash>.cwasm` and `.mac`, and the temporary names of those and of the
//!   key), never the key and never anything else, with `unlinkat` relative
//!   to the checked directory's descriptor: a link under such a name is
//!   removed itself, never followed. An artifact and its MAC go together.
//! - Writes don't take the lock: an eviction racing another process's
//!   write can at worst remove half a pair, which fails the MAC check and
//!   costs one compilation.
//! - Removing an artifact never affects a router already loaded from it
//!   (wasmtime holds its own copy of the code): evicting a version still in
//!   use costs one compilation, at its next load.
//! - A failure to evict is a warning, never a failed load.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use private_dir::{PrivateDir, ReadFile};

type ArtifactMac = Hmac<Sha256>;

const KEY_FILE: &str = "key";
const KEY_LEN: usize = 32;
/// HMAC-SHA256's output.
const MAC_LEN: usize = 32;
const ARTIFACT_EXTENSION: &str = "cwasm";
const MAC_EXTENSION: &str = "mac";
/// Between the name a file is written for and the random part of its
/// temporary name (see [`PrivateDir::write`]).
const TEMPORARY_MARK: &str = ".tmp.";
/// The random part of a temporary name: 16 bytes, in hex.
const TEMPORARY_RANDOM_LEN: usize = 32;
/// A temporary file this old belongs to a write that will never finish
/// (writing even a large artifact takes seconds).
const STALE_TEMPORARY_AGE: Duration = Duration::from_secs(60 * 60);
/// How long an eviction waits for another one (in another process, or on
/// another thread) to finish before leaving its work to the next write.
const EVICTION_LOCK_WAIT: Duration = Duration::from_secs(1);

/// Where compiled components are kept, if anywhere.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CacheSetting {
    /// Under the user's cache directory: `$XDG_CACHE_HOME/presence-router`
    /// (`~/.cache/presence-router`) on Linux, within [`CacheBound::DEFAULT`].
    #[default]
    UserCacheDir,
    /// In this directory, within [`CacheBound::DEFAULT`].
    Dir(PathBuf),
    /// In this directory, within this bound.
    BoundedDir { dir: PathBuf, bound: CacheBound },
    /// Compile every component at every load.
    Disabled,
}

impl CacheSetting {
    fn dir(&self) -> Option<(PathBuf, CacheBound)> {
        match self {
            CacheSetting::UserCacheDir => {
                dirs::cache_dir().map(|dir| (dir.join("presence-router"), CacheBound::DEFAULT))
            }
            CacheSetting::Dir(dir) => Some((dir.clone(), CacheBound::DEFAULT)),
            CacheSetting::BoundedDir { dir, bound } => Some((dir.clone(), *bound)),
            CacheSetting::Disabled => None,
        }
    }
}

/// How much a cache directory may hold; past either figure, the least
/// recently used artifacts are evicted (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheBound {
    /// The total size of the artifacts and their MACs, in bytes.
    pub max_bytes: u64,
    /// How many artifacts (each with its MAC) it keeps.
    pub max_artifacts: usize,
}

impl CacheBound {
    /// 1 GiB and 1,000 artifacts: some 20 versions of a JavaScript or
    /// Python router (its artifact carries the language's runtime: 43 MB
    /// for the JavaScript example) or 1,000 of a Rust one (0.4 MB), room
    /// for every version a host's processes still load and those just
    /// before them.
    pub const DEFAULT: CacheBound = CacheBound {
        max_bytes: 1 << 30,
        max_artifacts: 1000,
    };
}

impl Default for CacheBound {
    fn default() -> Self {
        CacheBound::DEFAULT
    }
}

/// How a component was made ready, for `check` and the benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompileSource {
    /// Compiled now (no cache, or nothing usable in it).
    Compiled,
    /// Deserialized from an artifact this cache wrote.
    Cache,
}

/// Why the cache, or one file in it, is not used.
#[derive(Debug, thiserror::Error)]
#[cfg_attr(
    not(unix),
    allow(dead_code, reason = "only `Unsupported` is made off Unix")
)]
pub(crate) enum CacheError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} is a symbolic link; the cache and its files must be real directories and files, \
         not links someone could point elsewhere",
        .path.display()
    )]
    Symlink { path: PathBuf },
    #[error("{} is not a {expected} (owner uid {owner}, mode {mode:04o})", .path.display())]
    WrongType {
        path: PathBuf,
        expected: &'static str,
        owner: u32,
        mode: u32,
    },
    #[error(
        "{} is owned by uid {owner} (mode {mode:04o}), not by this process's effective uid \
         {euid}: only its own files are trusted",
        .path.display()
    )]
    ForeignOwner {
        path: PathBuf,
        owner: u32,
        mode: u32,
        euid: u32,
    },
    #[error(
        "{} (owner uid {owner}, mode {mode:04o}) is writable by its group or by others, \
         who could have written or replaced what is in it",
        .path.display()
    )]
    WritableByOthers {
        path: PathBuf,
        owner: u32,
        mode: u32,
    },
    #[error("no randomness for the cache: {0}")]
    NoRandomness(String),
    #[error(
        "the cache is supported on Unix only, where who can write it can be checked ({})",
        .path.display()
    )]
    #[cfg_attr(unix, allow(dead_code, reason = "made off Unix only"))]
    Unsupported { path: PathBuf },
}

/// An open cache directory with its key.
pub(crate) struct ComponentCache {
    dir: PrivateDir,
    key: [u8; KEY_LEN],
    engine_hash: u64,
    bound: CacheBound,
}

impl ComponentCache {
    /// Opens (creating if need be) the cache of `setting`, for the artifacts
    /// of an engine whose compatibility hash is `engine_hash`. A cache that
    /// can't be opened, or that someone else could have written, is not an
    /// error: components are then compiled, and the reason is logged.
    pub(crate) fn open(setting: &CacheSetting, engine_hash: u64) -> Option<ComponentCache> {
        let (dir, bound) = setting.dir()?;
        match Self::open_dir(&dir, engine_hash, bound) {
            Ok(cache) => Some(cache),
            Err(e) => {
                // The start of this text is in docs/synapse.md and the
                // Synapse module's tests; the reason follows it.
                tracing::warn!(
                    "compiled-component cache {} unusable, compiling instead: {e}",
                    dir.display()
                );
                None
            }
        }
    }

    fn open_dir(
        dir: &Path,
        engine_hash: u64,
        bound: CacheBound,
    ) -> Result<ComponentCache, CacheError> {
        let dir = PrivateDir::open_or_create(dir)?;
        let key = read_or_create_key(&dir)?;
        Ok(ComponentCache {
            dir,
            key,
            engine_hash,
            bound,
        })
    }

    /// The name of the artifact of `component` (its bytes) for this cache's
    /// engine.
    pub(crate) fn artifact_name(&self, component: &[u8]) -> ArtifactName {
        ArtifactName(format!(
            "{}-{:016x}",
            hex(&Sha256::digest(component)),
            self.engine_hash
        ))
    }

    /// Where the artifact `name` is kept, for messages.
    pub(crate) fn artifact_path(&self, name: &ArtifactName) -> PathBuf {
        self.dir.path().join(name.artifact())
    }

    /// The artifact `name`, read once and checked, if this cache wrote it;
    /// `None` (the reason logged, if there is one) to compile instead.
    pub(crate) fn fetch(&self, name: &ArtifactName) -> Option<Artifact> {
        match self.read_verified(&name.0, &name.artifact(), &name.mac()) {
            Ok(found) => found.map(|file| Artifact { file }),
            Err(e) => {
                tracing::warn!("cached artifact refused, recompiling: {e}");
                None
            }
        }
    }

    /// Keeps `artifact` (the bytes compiling the component made) under
    /// `name`, then brings the cache back within its bound. A failure is a
    /// warning: the component was compiled all the same.
    pub(crate) fn store(&self, name: &ArtifactName, artifact: &[u8]) {
        if let Err(e) = self.write(&name.0, artifact, &name.artifact(), &name.mac()) {
            tracing::warn!("cannot cache {}: {e}", self.artifact_path(name).display());
        }
        // Also after a failed write: it may have found the disk full.
        if let Err(e) = self.evict(&name.0) {
            tracing::warn!("cannot evict from the compiled-component cache: {e}");
        }
    }

    /// The artifact, read, if it has a valid MAC; `None` if there is no
    /// artifact or MAC, or the MAC does not match (which is logged).
    fn read_verified(
        &self,
        name: &str,
        artifact_name: &str,
        mac_name: &str,
    ) -> Result<Option<ReadFile>, CacheError> {
        // One byte more than a MAC, to tell a longer file from a MAC.
        let Some(expected) = self.dir.read(mac_name, Some(MAC_LEN as u64 + 1))? else {
            return Ok(None);
        };
        let Some(artifact) = self.dir.read(artifact_name, None)? else {
            return Ok(None);
        };
        let mut mac = self.mac(name);
        mac.update(&artifact.bytes);
        if mac.verify_slice(&expected.bytes).is_err() {
            tracing::warn!(
                "cached artifact {} was not written by this cache (its MAC does not match): \
                 refusing it, recompiling",
                self.dir.path().join(artifact_name).display()
            );
            return Ok(None);
        }
        Ok(Some(artifact))
    }

    /// Writes the artifact, then its MAC, each complete under its name or
    /// not at all (see [`PrivateDir::write`]).
    fn write(
        &self,
        name: &str,
        bytes: &[u8],
        artifact_name: &str,
        mac_name: &str,
    ) -> Result<(), CacheError> {
        let mut mac = self.mac(name);
        mac.update(bytes);
        let tag = mac.finalize().into_bytes();
        self.dir.write(artifact_name, bytes)?;
        self.dir.write(mac_name, &tag)?;
        Ok(())
    }

    /// Brings the directory back within its bound, never evicting the
    /// artifact `written` (its name without extension), and removes stale
    /// temporary files (see the module docs). A file that can't be removed
    /// is logged and left; the error is for the pass as a whole.
    fn evict(&self, written: &str) -> Result<(), CacheError> {
        let Some(_lock) = self.dir.lock(EVICTION_LOCK_WAIT)? else {
            tracing::warn!(
                "compiled-component cache {}: another eviction held it for {} s, leaving \
                 eviction to the next write",
                self.dir.path().display(),
                EVICTION_LOCK_WAIT.as_secs()
            );
            return Ok(());
        };
        let entries = self.dir.entries(|name| own_file_name(name).is_some())?;
        let now = SystemTime::now();
        let mut artifacts: BTreeMap<&str, CachedArtifact<'_>> = BTreeMap::new();
        for entry in &entries {
            match own_file_name(&entry.name) {
                Some(OwnFileName::Artifact { stem }) => {
                    let artifact = artifacts.entry(stem).or_insert(CachedArtifact {
                        bytes: 0,
                        last_used: SystemTime::UNIX_EPOCH,
                        files: Vec::new(),
                    });
                    artifact.bytes = artifact.bytes.saturating_add(entry.len);
                    artifact.last_used = artifact.last_used.max(entry.modified);
                    artifact.files.push(&entry.name);
                }
                // A time in the future is no age at all.
                Some(OwnFileName::Temporary)
                    if now
                        .duration_since(entry.modified)
                        .is_ok_and(|age| age > STALE_TEMPORARY_AGE) =>
                {
                    self.remove_or_warn(&entry.name);
                }
                Some(OwnFileName::Temporary) | None => {}
            }
        }
        let mut bytes = artifacts
            .values()
            .fold(0u64, |sum, artifact| sum.saturating_add(artifact.bytes));
        let mut count = artifacts.len();
        let mut least_recently_used_first: Vec<_> = artifacts
            .into_iter()
            .filter(|(stem, _)| *stem != written)
            .collect();
        least_recently_used_first.sort_by(|(stem_a, a), (stem_b, b)| {
            a.last_used.cmp(&b.last_used).then(stem_a.cmp(stem_b))
        });
        for (_, artifact) in least_recently_used_first {
            if bytes <= self.bound.max_bytes && count <= self.bound.max_artifacts {
                break;
            }
            // Both, even if one can't be removed: either left alone is
            // refused at its next load (no MAC, or no artifact) and
            // rewritten.
            let mut removed = true;
            for name in artifact.files {
                removed &= self.remove_or_warn(name);
            }
            // One that stays still counts: the next one goes instead.
            if removed {
                bytes = bytes.saturating_sub(artifact.bytes);
                count -= 1;
            }
        }
        Ok(())
    }

    /// Removes `name`; whether it is gone (a failure is logged).
    fn remove_or_warn(&self, name: &str) -> bool {
        match self.dir.remove(name) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("cannot evict {e}");
                false
            }
        }
    }

    /// The MAC of an artifact covers its name too (the component's hash and
    /// the engine's): a valid artifact of one component copied under
    /// another's name is refused.
    fn mac(&self, name: &str) -> ArtifactMac {
        let mut mac = <ArtifactMac as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(name.as_bytes());
        mac.update(b"\0");
        mac
    }
}

/// The name of a component's artifact for one engine, without extension:
/// `<SHA-256 of the component>-<engine hash>`.
pub(crate) struct ArtifactName(String);

impl ArtifactName {
    fn artifact(&self) -> String {
        format!("{}.{ARTIFACT_EXTENSION}", self.0)
    }

    fn mac(&self) -> String {
        format!("{}.{MAC_EXTENSION}", self.0)
    }
}

/// An artifact this cache wrote, read once into memory and checked: these
/// bytes, never the file again, are what is loaded.
pub(crate) struct Artifact {
    file: ReadFile,
}

impl Artifact {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.file.bytes
    }

    /// The artifact was loaded: eviction takes it for used now. A failure
    /// is a warning (it may be evicted first, and compiled again).
    pub(crate) fn mark_used(&self) {
        if let Err(e) = self.file.mark_used() {
            tracing::warn!("cannot mark cached artifact used, it may be evicted first: {e}");
        }
    }
}

/// One artifact in the directory, as eviction sees it.
struct CachedArtifact<'a> {
    /// Of the artifact and its MAC.
    bytes: u64,
    /// The later modification time of the two.
    last_used: SystemTime,
    /// Those of the artifact and its MAC that are there, by name.
    files: Vec<&'a str>,
}

/// A name this cache gives a file, other than the key's.
#[derive(Debug, PartialEq, Eq)]
enum OwnFileName<'a> {
    /// An artifact or its MAC; `stem` is their name without extension.
    Artifact { stem: &'a str },
    /// The temporary name of an artifact, a MAC or the key, being written
    /// or left by a write that never finished.
    Temporary,
}

/// What `name` is, if it is a name this cache makes, exactly as it makes
/// them (lowercase hex of the right lengths): eviction removes nothing
/// else.
fn own_file_name(name: &str) -> Option<OwnFileName<'_>> {
    if let Some((target, random)) = name.split_once(TEMPORARY_MARK) {
        let own = is_lowercase_hex(random, TEMPORARY_RANDOM_LEN)
            && (target == KEY_FILE || artifact_stem(target).is_some());
        return own.then_some(OwnFileName::Temporary);
    }
    artifact_stem(name).map(|stem| OwnFileName::Artifact { stem })
}

/// The name without extension of an artifact (`<SHA-256 of the
/// component>-<engine hash>.cwasm`) or of its MAC (`.mac`).
fn artifact_stem(name: &str) -> Option<&str> {
    let (stem, extension) = name.rsplit_once('.')?;
    let (component, engine) = stem.split_once('-')?;
    let own = (extension == ARTIFACT_EXTENSION || extension == MAC_EXTENSION)
        && is_lowercase_hex(component, 2 * 32)
        && is_lowercase_hex(engine, 16);
    own.then_some(stem)
}

fn is_lowercase_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The cache's key: read if it is there and well formed, else a new random
/// one (which makes every earlier artifact invalid: they are recompiled).
/// A key someone else could have written refuses the whole cache.
fn read_or_create_key(dir: &PrivateDir) -> Result<[u8; KEY_LEN], CacheError> {
    if let Some(existing) = dir.read(KEY_FILE, Some(KEY_LEN as u64 + 1))?
        && let Ok(key) = <[u8; KEY_LEN]>::try_from(existing.bytes.as_slice())
    {
        return Ok(key);
    }
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| CacheError::NoRandomness(e.to_string()))?;
    // If another process creates a key meanwhile, the last rename wins and
    // the loser's artifacts are recompiled once: harmless.
    dir.write(KEY_FILE, &key)?;
    Ok(key)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(unix)]
mod private_dir {
    use std::fs::{self, DirBuilder, File, Metadata, Permissions};
    use std::io::{self, Read, Write};
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant, SystemTime};

    use presence_router_ownership::{Policy, Reason, Stat};
    use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
    use rustix::io::Errno;

    use super::{CacheError, TEMPORARY_MARK, hex};

    const DIR_MODE: u32 = 0o700;
    const FILE_MODE: u32 = 0o600;

    /// A directory that belongs to this process's effective user and that
    /// nobody else can write, held open: every file in it is opened relative
    /// to this descriptor, so a rename of the directory (or of one above it)
    /// after the check cannot put another one in its place.
    pub(super) struct PrivateDir {
        fd: OwnedFd,
        /// For messages only, never opened again.
        path: PathBuf,
    }

    impl PrivateDir {
        /// Opens the directory at `path`, creating it (0700) and missing
        /// parents if there is none, and checks it (see the module docs).
        pub(super) fn open_or_create(path: &Path) -> Result<PrivateDir, CacheError> {
            let created = create_dir(path)?;
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = match rustix::fs::open(path, flags, Mode::empty()) {
                Ok(fd) => fd,
                // O_NOFOLLOW refuses a symlink: Linux says ENOTDIR (because
                // of O_DIRECTORY), others may say ELOOP. The lstat only
                // chooses the message, not whether the open failed.
                Err(Errno::LOOP | Errno::NOTDIR)
                    if fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink()) =>
                {
                    return Err(CacheError::Symlink {
                        path: path.to_owned(),
                    });
                }
                Err(e) => return Err(io_error(path, e.into())),
            };
            let dir = File::from(fd);
            let metadata = dir.metadata().map_err(|e| io_error(path, e))?;
            check(path, &metadata, Kind::Directory)?;
            if created {
                // mkdir's mode went through the umask (and a setgid parent
                // adds its bit): set exactly 0700. Only now that the
                // directory is known to be ours: someone who could swap
                // another in after the mkdir must not get it chmodded.
                dir.set_permissions(Permissions::from_mode(DIR_MODE))
                    .map_err(|e| io_error(path, e))?;
            }
            let metadata = dir.metadata().map_err(|e| io_error(path, e))?;
            check(path, &metadata, Kind::Directory)?;
            Ok(PrivateDir {
                fd: dir.into(),
                path: path.to_owned(),
            })
        }

        pub(super) fn path(&self) -> &Path {
            &self.path
        }

        /// The file `name`, read (at most `limit` bytes), if there is one
        /// and it is this user's alone; `None` if there is none.
        pub(super) fn read(
            &self,
            name: &str,
            limit: Option<u64>,
        ) -> Result<Option<ReadFile>, CacheError> {
            let path = self.path.join(name);
            // NONBLOCK: a FIFO under this name must not hang the load (it is
            // then refused as not a regular file).
            let flags = OFlags::RDONLY
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::NOCTTY
                | OFlags::CLOEXEC;
            let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => return Ok(None),
                Err(Errno::LOOP) => return Err(CacheError::Symlink { path }),
                Err(e) => return Err(io_error(&path, e.into())),
            };
            let file = File::from(fd);
            let metadata = file.metadata().map_err(|e| io_error(&path, e))?;
            check(&path, &metadata, Kind::File)?;
            let mut bytes = Vec::with_capacity(
                usize::try_from(limit.unwrap_or(metadata.len()).min(metadata.len())).unwrap_or(0),
            );
            (&file)
                .take(limit.unwrap_or(u64::MAX))
                .read_to_end(&mut bytes)
                .map_err(|e| io_error(&path, e))?;
            Ok(Some(ReadFile { bytes, file, path }))
        }

        /// Writes `bytes` as the file `name` (0600), complete or not at all:
        /// into a new file of a random name, created exclusively (so never
        /// through a link or into a file someone else holds open), then
        /// renamed over `name` (which replaces a link, never follows it).
        pub(super) fn write(&self, name: &str, bytes: &[u8]) -> Result<(), CacheError> {
            let mut random = [0u8; 16];
            getrandom::fill(&mut random).map_err(|e| CacheError::NoRandomness(e.to_string()))?;
            let temporary = format!("{name}{TEMPORARY_MARK}{}", hex(&random));
            let temporary_path = self.path.join(&temporary);
            let flags = OFlags::WRONLY
                | OFlags::CREATE
                | OFlags::EXCL
                | OFlags::NOFOLLOW
                | OFlags::NOCTTY
                | OFlags::CLOEXEC;
            let fd =
                rustix::fs::openat(&self.fd, &temporary, flags, Mode::from_raw_mode(FILE_MODE))
                    .map_err(|e| io_error(&temporary_path, e.into()))?;
            let mut file = File::from(fd);
            let written = file
                // The creation mode went through the umask: set it exactly.
                .set_permissions(Permissions::from_mode(FILE_MODE))
                .and_then(|()| file.write_all(bytes))
                // From the clock `ReadFile::mark_used` reads, not the
                // kernel's coarser one: eviction orders writes and loads
                // by it.
                .and_then(|()| file.set_modified(SystemTime::now()))
                .and_then(|()| file.sync_all())
                .and_then(|()| {
                    rustix::fs::renameat(&self.fd, &temporary, &self.fd, name).map_err(Into::into)
                });
            if let Err(e) = written {
                // Best effort: a leftover temporary name is never read (and
                // eviction removes it once it is stale).
                let _ = rustix::fs::unlinkat(&self.fd, &temporary, AtFlags::empty());
                return Err(io_error(&self.path.join(name), e));
            }
            Ok(())
        }

        /// An exclusive `flock` of the directory, taken on a descriptor of
        /// its own (so it excludes the other threads of this process too),
        /// waiting at most `wait` for whoever holds it; `None` if it is
        /// still held then.
        pub(super) fn lock(&self, wait: Duration) -> Result<Option<DirLock>, CacheError> {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(&self.fd, ".", flags, Mode::empty())
                .map_err(|e| io_error(&self.path, e.into()))?;
            let started = Instant::now();
            loop {
                match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                    Ok(()) => return Ok(Some(DirLock { _fd: fd })),
                    Err(Errno::WOULDBLOCK) if started.elapsed() < wait => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(Errno::WOULDBLOCK) => return Ok(None),
                    Err(e) => return Err(io_error(&self.path, e.into())),
                }
            }
        }

        /// The entries of the directory whose names are `wanted` (and
        /// UTF-8), each `lstat`ed relative to the directory's descriptor:
        /// a link is described, never followed.
        pub(super) fn entries(
            &self,
            wanted: impl Fn(&str) -> bool,
        ) -> Result<Vec<DirEntry>, CacheError> {
            let listing =
                rustix::fs::Dir::read_from(&self.fd).map_err(|e| io_error(&self.path, e.into()))?;
            let mut entries = Vec::new();
            for entry in listing {
                let entry = entry.map_err(|e| io_error(&self.path, e.into()))?;
                let Ok(name) = entry.file_name().to_str() else {
                    continue;
                };
                if !wanted(name) {
                    continue;
                }
                let stat = match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(stat) => stat,
                    // Removed since it was listed.
                    Err(Errno::NOENT) => continue,
                    Err(e) => return Err(io_error(&self.path.join(name), e.into())),
                };
                let len = if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile {
                    u64::try_from(stat.st_size).unwrap_or(0)
                } else {
                    0
                };
                // Nanoseconds since the epoch; before it (or past 2554, as
                // far as u64 nanoseconds go) is as old (or new) as it gets.
                let nanos =
                    i128::from(stat.st_mtime) * 1_000_000_000 + i128::from(stat.st_mtime_nsec);
                let modified = SystemTime::UNIX_EPOCH
                    + Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX));
                entries.push(DirEntry {
                    name: name.to_owned(),
                    len,
                    modified,
                });
            }
            Ok(entries)
        }

        /// Removes the name `name` (`unlinkat` relative to the directory's
        /// descriptor: a link is removed itself, a directory not at all).
        /// A name already gone is not an error.
        pub(super) fn remove(&self, name: &str) -> Result<(), CacheError> {
            match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(io_error(&self.path.join(name), e.into())),
            }
        }
    }

    /// A file of the directory, read, still open.
    pub(super) struct ReadFile {
        pub(super) bytes: Vec<u8>,
        file: File,
        /// For messages only.
        path: PathBuf,
    }

    impl ReadFile {
        /// Sets the file's modification time to now, through the descriptor
        /// it was read from (`futimens`), so that eviction takes it for
        /// used now; whatever its name leads to by now is not touched.
        pub(super) fn mark_used(&self) -> Result<(), CacheError> {
            match self.file.set_modified(SystemTime::now()) {
                // A cache on a read-only file system is never evicted from
                // either: there is nothing to mark.
                Err(e) if e.kind() == io::ErrorKind::ReadOnlyFilesystem => Ok(()),
                result => result.map_err(|e| io_error(&self.path, e)),
            }
        }
    }

    /// Held while the directory is `flock`ed: unlocked when dropped (when
    /// its descriptor is closed).
    pub(super) struct DirLock {
        _fd: OwnedFd,
    }

    /// One entry of the directory, as eviction sees it.
    pub(super) struct DirEntry {
        pub(super) name: String,
        /// Its size, if it is a regular file; 0 if it is anything else.
        pub(super) len: u64,
        pub(super) modified: SystemTime,
    }

    /// Creates the directory (0700 before the umask), and its missing
    /// parents; whether it was created now.
    fn create_dir(path: &Path) -> Result<bool, CacheError> {
        let mut builder = DirBuilder::new();
        builder.mode(DIR_MODE);
        let mut created = builder.create(path);
        if let Err(e) = &created
            && e.kind() == io::ErrorKind::NotFound
            && let Some(parent) = path.parent()
        {
            // The parents are not the cache's: they get the usual modes.
            fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
            created = builder.create(path);
        }
        match created {
            Ok(()) => Ok(true),
            // An existing directory, or anything else: the open and its
            // checks decide.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_error(path, e)),
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Directory,
        File,
    }

    /// Refuses what is not of `kind`, or that the cache's ownership policy
    /// refuses (not this user's, or writable by the group or others:
    /// [`Policy::CACHE`]); `metadata` from an `fstat` of the open
    /// descriptor, so what is checked is what is used.
    fn check(path: &Path, metadata: &Metadata, kind: Kind) -> Result<(), CacheError> {
        let (owner, mode) = (metadata.uid(), metadata.mode() & 0o7777);
        let right_kind = match kind {
            Kind::Directory => metadata.is_dir(),
            Kind::File => metadata.is_file(),
        };
        if !right_kind {
            return Err(CacheError::WrongType {
                path: path.to_owned(),
                expected: match kind {
                    Kind::Directory => "directory",
                    Kind::File => "regular file",
                },
                owner,
                mode,
            });
        }
        Policy::CACHE
            .check(path, Stat::from(metadata))
            .map_err(|refused| match refused.reason {
                Reason::Owner => CacheError::ForeignOwner {
                    path: refused.path,
                    owner,
                    mode,
                    euid: refused.euid,
                },
                // `NotPrivate` never comes: the cache's policy does not ask
                // for privacy.
                Reason::WritableByOthers | Reason::NotPrivate => CacheError::WritableByOthers {
                    path: refused.path,
                    owner,
                    mode,
                },
            })
    }

    fn io_error(path: &Path, source: io::Error) -> CacheError {
        CacheError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Elsewhere the owner and permissions of the cache can't be checked the
/// same way, so there is no cache: every component is compiled.
#[cfg(not(unix))]
mod private_dir {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime};

    use super::CacheError;

    #[allow(dead_code, reason = "never made: `open_or_create` always fails")]
    pub(super) struct PrivateDir {
        path: PathBuf,
    }

    impl PrivateDir {
        pub(super) fn open_or_create(path: &Path) -> Result<PrivateDir, CacheError> {
            Err(CacheError::Unsupported {
                path: path.to_owned(),
            })
        }

        pub(super) fn path(&self) -> &Path {
            &self.path
        }

        pub(super) fn read(
            &self,
            _name: &str,
            _limit: Option<u64>,
        ) -> Result<Option<ReadFile>, CacheError> {
            Err(self.unsupported())
        }

        pub(super) fn write(&self, _name: &str, _bytes: &[u8]) -> Result<(), CacheError> {
            Err(self.unsupported())
        }

        pub(super) fn lock(&self, _wait: Duration) -> Result<Option<DirLock>, CacheError> {
            Err(self.unsupported())
        }

        pub(super) fn entries(
            &self,
            _wanted: impl Fn(&str) -> bool,
        ) -> Result<Vec<DirEntry>, CacheError> {
            Err(self.unsupported())
        }

        pub(super) fn remove(&self, _name: &str) -> Result<(), CacheError> {
            Err(self.unsupported())
        }

        fn unsupported(&self) -> CacheError {
            CacheError::Unsupported {
                path: self.path.clone(),
            }
        }
    }

    #[allow(dead_code, reason = "never made: `read` always fails")]
    pub(super) struct ReadFile {
        pub(super) bytes: Vec<u8>,
    }

    impl ReadFile {
        pub(super) fn mark_used(&self) -> Result<(), CacheError> {
            Err(CacheError::Unsupported {
                path: PathBuf::new(),
            })
        }
    }

    #[allow(dead_code, reason = "never made: `lock` always fails")]
    pub(super) struct DirLock;

    #[allow(dead_code, reason = "never made: `entries` always fails")]
    pub(super) struct DirEntry {
        pub(super) name: String,
        pub(super) len: u64,
        pub(super) modified: SystemTime,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::sync::{Arc, Mutex};

    use super::*;

    /// An empty component: the header of a component, nothing else.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    /// An engine as the cache knows one: by its compatibility hash. The
    /// cache stores and fetches bytes and never compiles, so here a
    /// component's own bytes stand in for its artifact (`compiler.rs`
    /// tests the cache with wasmtime's).
    struct Engine {
        hash: u64,
    }

    impl Default for Engine {
        fn default() -> Self {
            Engine {
                hash: 0x0123_4567_89ab_cdef,
            }
        }
    }

    impl Engine {
        fn hash(&self) -> u64 {
            self.hash
        }
    }

    impl ComponentCache {
        /// What `compiler.rs` does with the cache: the artifact if this
        /// cache has it, else the component compiled (here: its bytes) and
        /// stored.
        fn load_or_compile(
            &self,
            _engine: &Engine,
            bytes: &[u8],
        ) -> Result<(Vec<u8>, CompileSource), CacheError> {
            let name = self.artifact_name(bytes);
            if let Some(artifact) = self.fetch(&name) {
                artifact.mark_used();
                return Ok((artifact.bytes().to_vec(), CompileSource::Cache));
            }
            self.store(&name, bytes);
            Ok((bytes.to_vec(), CompileSource::Compiled))
        }
    }

    /// The text of every warning logged while `f` runs on this thread.
    fn warnings_of<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let subscriber = Warnings(warnings.clone());
        let result = tracing::subscriber::with_default(subscriber, f);
        let texts = warnings.lock().expect("not poisoned").clone();
        (result, texts)
    }

    struct Warnings(Arc<Mutex<Vec<String>>>);

    struct Message<'a>(&'a mut String);

    impl tracing::field::Visit for Message<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0.push_str(&format!("{value:?}"));
            }
        }
    }

    impl tracing::Subscriber for Warnings {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() == tracing::Level::WARN {
                let mut text = String::new();
                event.record(&mut Message(&mut text));
                self.0.lock().expect("not poisoned").push(text);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    fn euid() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).expect("lstat").mode() & 0o7777
    }

    fn open(dir: &Path, engine: &Engine) -> (Option<ComponentCache>, Vec<String>) {
        warnings_of(|| ComponentCache::open(&CacheSetting::Dir(dir.to_owned()), engine.hash()))
    }

    #[test]
    fn a_new_cache_and_its_files_are_private() {
        let engine = Engine::default();
        let parent = tempfile::tempdir().expect("a temporary directory");
        let dir = parent.path().join("missing").join("cache");
        let (cache, warnings) = open(&dir, &engine);
        let cache = cache.expect("a new cache opens");
        assert_eq!(warnings, Vec::<String>::new());
        let (_, source) = cache
            .load_or_compile(&engine, EMPTY_COMPONENT)
            .expect("compiles");
        assert_eq!(source, CompileSource::Compiled);
        let (_, source) = cache
            .load_or_compile(&engine, EMPTY_COMPONENT)
            .expect("loads");
        assert_eq!(source, CompileSource::Cache);
        assert_eq!(mode_of(&dir), 0o700);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("an entry").path();
            assert_eq!(mode_of(&path), 0o600, "{}", path.display());
            names.push(path.extension().map(|e| e.to_string_lossy().into_owned()));
        }
        names.sort();
        // No temporary file is left behind.
        assert_eq!(
            names,
            [None, Some("cwasm".to_owned()), Some("mac".to_owned())]
        );
    }

    #[test]
    fn a_directory_others_can_write_is_refused_with_its_owner_and_mode() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().expect("a temporary directory");
        set_mode(dir.path(), 0o775);
        let (cache, warnings) = open(dir.path(), &engine);
        assert!(cache.is_none());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let expected = format!(
            "{} (owner uid {}, mode 0775) is writable by its group or by others",
            dir.path().display(),
            euid()
        );
        assert!(warnings[0].contains(&expected), "{}", warnings[0]);
        // Nothing was written into it.
        assert_eq!(std::fs::read_dir(dir.path()).expect("read_dir").count(), 0);
    }

    #[test]
    fn a_symlinked_directory_or_key_is_refused() {
        let engine = Engine::default();
        let real = tempfile::tempdir().expect("a temporary directory");
        let links = tempfile::tempdir().expect("a temporary directory");
        let link = links.path().join("cache");
        std::os::unix::fs::symlink(real.path(), &link).expect("symlink");
        let (cache, warnings) = open(&link, &engine);
        assert!(cache.is_none());
        assert!(
            warnings[0].contains(&format!("{} is a symbolic link", link.display())),
            "{warnings:?}"
        );

        let elsewhere = links.path().join("key");
        std::fs::write(&elsewhere, [7u8; KEY_LEN]).expect("write");
        std::os::unix::fs::symlink(&elsewhere, real.path().join(KEY_FILE)).expect("symlink");
        let (cache, warnings) = open(real.path(), &engine);
        assert!(cache.is_none());
        assert!(
            warnings[0].contains(&format!(
                "{} is a symbolic link",
                real.path().join(KEY_FILE).display()
            )),
            "{warnings:?}"
        );
    }

    #[test]
    fn an_artifact_others_can_write_is_recompiled_and_replaced() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let cache = open(dir.path(), &engine).0.expect("opens");
        cache
            .load_or_compile(&engine, EMPTY_COMPONENT)
            .expect("compiles");
        let artifact = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|entry| entry.expect("an entry").path())
            .find(|path| path.extension().is_some_and(|e| e == "cwasm"))
            .expect("an artifact");
        set_mode(&artifact, 0o664);
        let (loaded, warnings) = warnings_of(|| cache.load_or_compile(&engine, EMPTY_COMPONENT));
        assert_eq!(loaded.expect("compiles").1, CompileSource::Compiled);
        let expected = format!(
            "{} (owner uid {}, mode 0664) is writable by its group or by others",
            artifact.display(),
            euid()
        );
        assert!(
            warnings.iter().any(|w| w.contains(&expected)),
            "{warnings:?}"
        );
        // Replaced by the recompilation, the owner's alone again.
        assert_eq!(mode_of(&artifact), 0o600);
        let (_, source) = cache
            .load_or_compile(&engine, EMPTY_COMPONENT)
            .expect("loads");
        assert_eq!(source, CompileSource::Cache);
    }

    /// A distinct component for each `version` (its own SHA-256, so its own
    /// artifact) that compiles in no time: the empty component with a custom
    /// section saying which version it is.
    fn version_of_empty_component(version: u32) -> Vec<u8> {
        use wasm_encoder::ComponentSection;
        let mut bytes = EMPTY_COMPONENT.to_vec();
        wasm_encoder::CustomSection {
            name: "version".into(),
            data: version.to_le_bytes().to_vec().into(),
        }
        .append_to_component(&mut bytes);
        bytes
    }

    fn bounded_cache(dir: &Path, engine: &Engine, bound: CacheBound) -> ComponentCache {
        let setting = CacheSetting::BoundedDir {
            dir: dir.to_owned(),
            bound,
        };
        let (cache, warnings) = warnings_of(|| ComponentCache::open(&setting, engine.hash()));
        assert_eq!(warnings, Vec::<String>::new());
        cache.expect("a new cache opens")
    }

    /// How `bytes` was made ready, checking that this logged no warning.
    fn load_quietly(cache: &ComponentCache, engine: &Engine, bytes: &[u8]) -> CompileSource {
        let (loaded, warnings) = warnings_of(|| cache.load_or_compile(engine, bytes));
        assert_eq!(warnings, Vec::<String>::new());
        loaded.expect("compiles").1
    }

    /// What a cache directory holds: its artifacts (names ending `.cwasm`)
    /// and the bytes of its artifacts and MACs together.
    fn artifacts_and_bytes(dir: &Path) -> (usize, u64) {
        let (mut artifacts, mut bytes) = (0, 0);
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("an entry").path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("cwasm") => artifacts += 1,
                Some("mac") => {}
                _ => continue,
            }
            bytes += std::fs::symlink_metadata(&path).expect("lstat").len();
        }
        (artifacts, bytes)
    }

    #[test]
    fn a_hundred_versions_of_a_component_keep_within_the_artifact_bound() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let bound = CacheBound {
            max_bytes: u64::MAX,
            max_artifacts: 5,
        };
        let cache = bounded_cache(dir.path(), &engine, bound);
        for version in 0..100 {
            let component = version_of_empty_component(version);
            assert_eq!(
                load_quietly(&cache, &engine, &component),
                CompileSource::Compiled
            );
            let (artifacts, _) = artifacts_and_bytes(dir.path());
            assert!(
                artifacts <= bound.max_artifacts,
                "{artifacts} artifacts after version {version}"
            );
            // The version just written is never the one evicted.
            assert_eq!(
                load_quietly(&cache, &engine, &component),
                CompileSource::Cache,
                "version {version}"
            );
        }
        // The first version was evicted long ago: it compiles again, and is
        // cached again.
        let first = version_of_empty_component(0);
        assert_eq!(
            load_quietly(&cache, &engine, &first),
            CompileSource::Compiled
        );
        assert_eq!(load_quietly(&cache, &engine, &first), CompileSource::Cache);
        // Nothing but the key and whole artifacts with their MACs is left.
        let mut kinds: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|entry| {
                let path = entry.expect("an entry").path();
                path.extension()
                    .map_or_else(|| "key".to_owned(), |e| e.to_string_lossy().into_owned())
            })
            .collect();
        kinds.sort();
        kinds.dedup_by(|a, b| a == b);
        assert_eq!(kinds, ["cwasm", "key", "mac"]);
        assert_eq!(artifacts_and_bytes(dir.path()).0, bound.max_artifacts);
    }

    #[test]
    fn a_hundred_versions_of_a_component_keep_within_the_byte_bound() {
        let engine = Engine::default();
        // The size of one artifact and its MAC, from a cache of its own.
        let scratch = tempfile::tempdir().expect("a temporary directory");
        let unbounded = bounded_cache(scratch.path(), &engine, CacheBound::DEFAULT);
        load_quietly(&unbounded, &engine, &version_of_empty_component(0));
        let (_, one) = artifacts_and_bytes(scratch.path());

        let dir = tempfile::tempdir().expect("a temporary directory");
        let bound = CacheBound {
            max_bytes: 3 * one + one / 2,
            max_artifacts: usize::MAX,
        };
        let cache = bounded_cache(dir.path(), &engine, bound);
        for version in 0..100 {
            let component = version_of_empty_component(version);
            assert_eq!(
                load_quietly(&cache, &engine, &component),
                CompileSource::Compiled
            );
            let (artifacts, bytes) = artifacts_and_bytes(dir.path());
            assert!(
                bytes <= bound.max_bytes,
                "{bytes} bytes ({artifacts} artifacts) after version {version}, bound {}",
                bound.max_bytes
            );
            assert_eq!(
                load_quietly(&cache, &engine, &component),
                CompileSource::Cache,
                "version {version}"
            );
        }
        assert_eq!(artifacts_and_bytes(dir.path()).0, 3);
    }

    #[test]
    fn the_version_in_use_survives_a_reload_storm() {
        // Least recently *used*, not least recently written: the version a
        // process keeps loading stays while newer ones come and go.
        let engine = Engine::default();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let bound = CacheBound {
            max_bytes: u64::MAX,
            max_artifacts: 3,
        };
        let cache = bounded_cache(dir.path(), &engine, bound);
        let in_use = version_of_empty_component(0);
        load_quietly(&cache, &engine, &in_use);
        for version in 1..30 {
            let component = version_of_empty_component(version);
            assert_eq!(
                load_quietly(&cache, &engine, &component),
                CompileSource::Compiled
            );
            assert_eq!(
                load_quietly(&cache, &engine, &in_use),
                CompileSource::Cache,
                "evicted at version {version}"
            );
            assert!(artifacts_and_bytes(dir.path()).0 <= bound.max_artifacts);
        }
    }

    #[test]
    fn eviction_removes_stale_temporary_files_and_only_the_caches_own_names() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let bound = CacheBound {
            max_bytes: u64::MAX,
            max_artifacts: 1,
        };
        let cache = bounded_cache(dir.path(), &engine, bound);
        let artifact_name = |n: u8| format!("{}-{:016x}.cwasm", hex(&[n; 32]), 7);
        let hour_and_a_bit_ago =
            std::time::SystemTime::now() - std::time::Duration::from_secs(3600 + 60);
        let stale = format!("{}.tmp.{}", artifact_name(1), hex(&[1; 16]));
        let fresh = format!("{}.tmp.{}", artifact_name(2), hex(&[2; 16]));
        for (name, modified) in [
            (&stale, hour_and_a_bit_ago),
            (&fresh, std::time::SystemTime::now()),
            // Not names of this cache: never removed, however old.
            (&"notes.txt".to_owned(), hour_and_a_bit_ago),
            (&format!("{}.bak", artifact_name(3)), hour_and_a_bit_ago),
        ] {
            let file = std::fs::File::create(dir.path().join(name)).expect("create");
            file.set_modified(modified).expect("futimens");
        }
        // A link under an artifact's name is removed, never followed.
        let outside = tempfile::tempdir().expect("a temporary directory");
        let target = outside.path().join("precious");
        std::fs::write(&target, b"not the cache's").expect("write");
        std::os::unix::fs::symlink(&target, dir.path().join(artifact_name(4))).expect("symlink");

        load_quietly(&cache, &engine, &version_of_empty_component(0));
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| !name.ends_with(".cwasm") && !name.ends_with(".mac"))
            .collect();
        left.sort();
        let mut expected = vec![
            format!("{}.bak", artifact_name(3)),
            fresh,
            KEY_FILE.to_owned(),
            "notes.txt".to_owned(),
        ];
        expected.sort();
        assert_eq!(left, expected);
        assert_eq!(artifacts_and_bytes(dir.path()).0, 1);
        assert!(!dir.path().join(artifact_name(4)).exists());
        assert_eq!(std::fs::read(&target).expect("read"), b"not the cache's");
    }

    #[test]
    fn an_eviction_that_fails_is_a_warning_not_a_failed_load() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let bound = CacheBound {
            max_bytes: u64::MAX,
            max_artifacts: 1,
        };
        let cache = bounded_cache(dir.path(), &engine, bound);
        // A directory under an artifact's name: unlinkat can't remove it.
        let stuck = dir
            .path()
            .join(format!("{}-{:016x}.cwasm", hex(&[9; 32]), 9));
        std::fs::create_dir(&stuck).expect("mkdir");
        let (loaded, warnings) =
            warnings_of(|| cache.load_or_compile(&engine, &version_of_empty_component(0)));
        assert_eq!(loaded.expect("compiles").1, CompileSource::Compiled);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains(&format!("cannot evict {}", stuck.display())),
            "{warnings:?}"
        );
    }

    #[test]
    fn an_eviction_waits_a_second_for_another_then_leaves_it_to_the_next_write() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let bound = CacheBound {
            max_bytes: u64::MAX,
            max_artifacts: 1,
        };
        let cache = bounded_cache(dir.path(), &engine, bound);
        load_quietly(&cache, &engine, &version_of_empty_component(0));
        // Another process evicting: it holds the directory's lock.
        let other = std::fs::File::open(dir.path()).expect("open");
        rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .expect("flock");
        let started = std::time::Instant::now();
        let (loaded, warnings) =
            warnings_of(|| cache.load_or_compile(&engine, &version_of_empty_component(1)));
        assert_eq!(loaded.expect("compiles").1, CompileSource::Compiled);
        assert!(started.elapsed() >= EVICTION_LOCK_WAIT);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("another eviction held it for 1 s"),
            "{warnings:?}"
        );
        assert_eq!(artifacts_and_bytes(dir.path()).0, 2);
        drop(other);
        load_quietly(&cache, &engine, &version_of_empty_component(2));
        assert_eq!(artifacts_and_bytes(dir.path()).0, 1);
    }

    #[test]
    fn only_the_caches_own_names_are_its_own() {
        let stem = format!("{}-{:016x}", hex(&[0xab; 32]), 0xcd);
        for (name, own) in [
            (
                format!("{stem}.cwasm"),
                Some(OwnFileName::Artifact { stem: &stem }),
            ),
            (
                format!("{stem}.mac"),
                Some(OwnFileName::Artifact { stem: &stem }),
            ),
            (
                format!("{stem}.mac.tmp.{}", hex(&[1; 16])),
                Some(OwnFileName::Temporary),
            ),
            (
                format!("key.tmp.{}", hex(&[1; 16])),
                Some(OwnFileName::Temporary),
            ),
            ("key".to_owned(), None),
            (format!("{stem}.wasm"), None),
            (format!("{}.cwasm", stem.to_uppercase()), None),
            (format!("x{stem}.cwasm"), None),
            (format!("{stem}.cwasm.tmp.{}", hex(&[1; 15])), None),
            (format!("notes.tmp.{}", hex(&[1; 16])), None),
            (format!("../{stem}.cwasm"), None),
        ] {
            assert_eq!(own_file_name(&name), own, "{name}");
        }
    }

    #[test]
    fn files_of_another_owner_are_refused_as_root() {
        if euid() != 0 {
            eprintln!("skipped: only root can give a file to another user");
            return;
        }
        let engine = Engine::default();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let cache = open(dir.path(), &engine).0.expect("opens");
        drop(cache);
        let key = dir.path().join(KEY_FILE);
        std::os::unix::fs::chown(&key, Some(65534), Some(65534)).expect("chown");
        let (cache, warnings) = open(dir.path(), &engine);
        assert!(cache.is_none());
        let expected = format!(
            "{} is owned by uid 65534 (mode 0600), not by this process's effective uid 0",
            key.display()
        );
        assert!(warnings[0].contains(&expected), "{warnings:?}");
    }
}
