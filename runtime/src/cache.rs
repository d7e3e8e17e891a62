//! The compiled-component cache: each component is compiled once to a
//! native artifact and later loaded from it, which takes milliseconds where
//! compiling takes hundreds of them (seconds for a component with a
//! language runtime inside).
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

use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use private_dir::PrivateDir;

type ArtifactMac = Hmac<Sha256>;

const KEY_FILE: &str = "key";
const KEY_LEN: usize = 32;
/// HMAC-SHA256's output.
const MAC_LEN: usize = 32;

/// Where compiled components are kept, if anywhere.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CacheSetting {
    /// Under the user's cache directory: `$XDG_CACHE_HOME/presence-router`
    /// (`~/.cache/presence-router`) on Linux.
    #[default]
    UserCacheDir,
    /// In this directory.
    Dir(PathBuf),
    /// Compile every component at every load.
    Disabled,
}

impl CacheSetting {
    fn dir(&self) -> Option<PathBuf> {
        match self {
            CacheSetting::UserCacheDir => dirs::cache_dir().map(|dir| dir.join("presence-router")),
            CacheSetting::Dir(dir) => Some(dir.clone()),
            CacheSetting::Disabled => None,
        }
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
}

impl ComponentCache {
    /// Opens (creating if need be) the cache of `setting`. A cache that can't
    /// be opened, or that someone else could have written, is not an error:
    /// components are then compiled, and the reason is logged.
    pub(crate) fn open(setting: &CacheSetting, engine: &Engine) -> Option<ComponentCache> {
        let dir = setting.dir()?;
        match Self::open_dir(&dir, engine) {
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

    fn open_dir(dir: &Path, engine: &Engine) -> Result<ComponentCache, CacheError> {
        let dir = PrivateDir::open_or_create(dir)?;
        let key = read_or_create_key(&dir)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ComponentCache {
            dir,
            key,
            engine_hash: hasher.finish(),
        })
    }

    /// The artifact for `bytes` if this cache wrote one, else compiles and
    /// stores it.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CompileSource)> {
        let name = format!("{}-{:016x}", hex(&Sha256::digest(bytes)), self.engine_hash);
        let artifact_name = format!("{name}.cwasm");
        let mac_name = format!("{name}.mac");
        match self.read_verified(&name, &artifact_name, &mac_name) {
            Ok(Some(artifact)) => {
                // SAFETY: `artifact` carries a valid MAC under this cache's
                // key, in a directory and files only this user can write, so
                // this runtime serialized it (see the module docs); the
                // engine hash in its name matches this engine. wasmtime
                // copies the buffer, so the bytes checked are the bytes run.
                match unsafe { Component::deserialize(engine, &artifact) } {
                    Ok(component) => return Ok((component, CompileSource::Cache)),
                    Err(e) => tracing::warn!(
                        "cached artifact {} refused by wasmtime, recompiling: {e}",
                        self.dir.path().join(&artifact_name).display()
                    ),
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("cached artifact refused, recompiling: {e}"),
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&name, &component, &artifact_name, &mac_name) {
            tracing::warn!(
                "cannot cache {}: {e}",
                self.dir.path().join(&artifact_name).display()
            );
        }
        Ok((component, CompileSource::Compiled))
    }

    /// The artifact's bytes if it has a valid MAC; `None` if there is no
    /// artifact or MAC, or the MAC does not match (which is logged).
    fn read_verified(
        &self,
        name: &str,
        artifact_name: &str,
        mac_name: &str,
    ) -> Result<Option<Vec<u8>>, CacheError> {
        // One byte more than a MAC, to tell a longer file from a MAC.
        let Some(expected) = self.dir.read(mac_name, Some(MAC_LEN as u64 + 1))? else {
            return Ok(None);
        };
        let Some(artifact) = self.dir.read(artifact_name, None)? else {
            return Ok(None);
        };
        let mut mac = self.mac(name);
        mac.update(&artifact);
        if mac.verify_slice(&expected).is_err() {
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
    fn store(
        &self,
        name: &str,
        component: &Component,
        artifact_name: &str,
        mac_name: &str,
    ) -> wasmtime::Result<()> {
        let bytes = component.serialize()?;
        let mut mac = self.mac(name);
        mac.update(&bytes);
        let tag = mac.finalize().into_bytes();
        self.dir.write(artifact_name, &bytes)?;
        self.dir.write(mac_name, &tag)?;
        Ok(())
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

/// The cache's key: read if it is there and well formed, else a new random
/// one (which makes every earlier artifact invalid: they are recompiled).
/// A key someone else could have written refuses the whole cache.
fn read_or_create_key(dir: &PrivateDir) -> Result<[u8; KEY_LEN], CacheError> {
    if let Some(existing) = dir.read(KEY_FILE, Some(KEY_LEN as u64 + 1))?
        && let Ok(key) = <[u8; KEY_LEN]>::try_from(existing.as_slice())
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

    use rustix::fs::{AtFlags, Mode, OFlags};
    use rustix::io::Errno;

    use super::{CacheError, hex};

    const DIR_MODE: u32 = 0o700;
    const FILE_MODE: u32 = 0o600;
    /// Write permission for the group or for others.
    const WRITABLE_BY_OTHERS: u32 = 0o022;

    /// A directory that belongs to this process's effective user and that
    /// nobody else can write, held open: every file in it is opened relative
    /// to this descriptor, so a rename of the directory (or of one above it)
    /// after the check cannot put another one in its place.
    pub(super) struct PrivateDir {
        fd: OwnedFd,
        /// For messages only, never opened again.
        path: PathBuf,
        euid: u32,
    }

    impl PrivateDir {
        /// Opens the directory at `path`, creating it (0700) and missing
        /// parents if there is none, and checks it (see the module docs).
        pub(super) fn open_or_create(path: &Path) -> Result<PrivateDir, CacheError> {
            let euid = rustix::process::geteuid().as_raw();
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
            check(path, &metadata, euid, Kind::Directory)?;
            if created {
                // mkdir's mode went through the umask (and a setgid parent
                // adds its bit): set exactly 0700. Only now that the
                // directory is known to be ours: someone who could swap
                // another in after the mkdir must not get it chmodded.
                dir.set_permissions(Permissions::from_mode(DIR_MODE))
                    .map_err(|e| io_error(path, e))?;
            }
            let metadata = dir.metadata().map_err(|e| io_error(path, e))?;
            check(path, &metadata, euid, Kind::Directory)?;
            Ok(PrivateDir {
                fd: dir.into(),
                path: path.to_owned(),
                euid,
            })
        }

        pub(super) fn path(&self) -> &Path {
            &self.path
        }

        /// The contents of the file `name` (at most `limit` bytes), if there
        /// is one and it is this user's alone; `None` if there is none.
        pub(super) fn read(
            &self,
            name: &str,
            limit: Option<u64>,
        ) -> Result<Option<Vec<u8>>, CacheError> {
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
            check(&path, &metadata, self.euid, Kind::File)?;
            let mut bytes = Vec::with_capacity(
                usize::try_from(limit.unwrap_or(metadata.len()).min(metadata.len())).unwrap_or(0),
            );
            file.take(limit.unwrap_or(u64::MAX))
                .read_to_end(&mut bytes)
                .map_err(|e| io_error(&path, e))?;
            Ok(Some(bytes))
        }

        /// Writes `bytes` as the file `name` (0600), complete or not at all:
        /// into a new file of a random name, created exclusively (so never
        /// through a link or into a file someone else holds open), then
        /// renamed over `name` (which replaces a link, never follows it).
        pub(super) fn write(&self, name: &str, bytes: &[u8]) -> Result<(), CacheError> {
            let mut random = [0u8; 16];
            getrandom::fill(&mut random).map_err(|e| CacheError::NoRandomness(e.to_string()))?;
            let temporary = format!("{name}.tmp.{}", hex(&random));
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
                .and_then(|()| file.sync_all())
                .and_then(|()| {
                    rustix::fs::renameat(&self.fd, &temporary, &self.fd, name).map_err(Into::into)
                });
            if let Err(e) = written {
                // Best effort: a leftover temporary name is never read.
                let _ = rustix::fs::unlinkat(&self.fd, &temporary, AtFlags::empty());
                return Err(io_error(&self.path.join(name), e));
            }
            Ok(())
        }
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

    /// Refuses what is not of `kind`, not owned by `euid`, or writable by
    /// the group or others (`metadata` from an `fstat` of the open
    /// descriptor, so what is checked is what is used).
    fn check(path: &Path, metadata: &Metadata, euid: u32, kind: Kind) -> Result<(), CacheError> {
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
        if owner != euid {
            return Err(CacheError::ForeignOwner {
                path: path.to_owned(),
                owner,
                mode,
                euid,
            });
        }
        if mode & WRITABLE_BY_OTHERS != 0 {
            return Err(CacheError::WritableByOthers {
                path: path.to_owned(),
                owner,
                mode,
            });
        }
        Ok(())
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
        ) -> Result<Option<Vec<u8>>, CacheError> {
            Err(CacheError::Unsupported {
                path: self.path.clone(),
            })
        }

        pub(super) fn write(&self, _name: &str, _bytes: &[u8]) -> Result<(), CacheError> {
            Err(CacheError::Unsupported {
                path: self.path.clone(),
            })
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::sync::{Arc, Mutex};

    use super::*;

    /// An empty component: the header of a component, nothing else.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

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
        warnings_of(|| ComponentCache::open(&CacheSetting::Dir(dir.to_owned()), engine))
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
