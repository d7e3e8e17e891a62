//! The compiled-component cache: each component is compiled once to a
//! native artifact and later loaded with a memory-mapped deserialize, which
//! takes milliseconds where compiling takes hundreds of them (seconds for a
//! component with a language runtime inside).
//!
//! Deserializing is `unsafe` in wasmtime for a reason: an artifact is native
//! code that wasmtime maps and runs as it is, without verifying it. Bytes
//! that did not come from this runtime's own compiler could do anything. So
//! an artifact is loaded only if this cache wrote it: every artifact has an
//! HMAC-SHA256 (over its name and its bytes) under a random key that lives
//! in the cache directory (`key`, readable by its owner only). A file that is corrupt, truncated, left
//! half-written, or copied in from another cache fails the check and is
//! recompiled, never loaded.
//!
//! What this does not defend against: someone who can write the cache
//! directory can read its key too. The cache is as trustworthy as the
//! account that owns it, like the configuration file beside it.
//!
//! Artifacts are named by the SHA-256 of the component and by the engine's
//! compatibility hash (the wasmtime version and every compilation setting),
//! so a changed component or a different engine never finds a stale one.

use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

type ArtifactMac = Hmac<Sha256>;

const KEY_FILE: &str = "key";
const KEY_LEN: usize = 32;

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

/// An open cache directory with its key.
pub(crate) struct ComponentCache {
    dir: PathBuf,
    key: [u8; KEY_LEN],
    engine_hash: u64,
}

impl ComponentCache {
    /// Opens (creating if need be) the cache of `setting`. A cache that can't
    /// be opened is not an error: components are then compiled, and the
    /// reason is logged.
    pub(crate) fn open(setting: &CacheSetting, engine: &Engine) -> Option<ComponentCache> {
        let dir = setting.dir()?;
        match Self::open_dir(&dir, engine) {
            Ok(cache) => Some(cache),
            Err(e) => {
                tracing::warn!(
                    "compiled-component cache {} unusable, compiling instead: {e}",
                    dir.display()
                );
                None
            }
        }
    }

    fn open_dir(dir: &Path, engine: &Engine) -> io::Result<ComponentCache> {
        fs::create_dir_all(dir)?;
        let key = read_or_create_key(&dir.join(KEY_FILE))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ComponentCache {
            dir: dir.to_owned(),
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
        let artifact = self.dir.join(format!("{name}.cwasm"));
        let mac_file = self.dir.join(format!("{name}.mac"));
        match self.verified(&name, &artifact, &mac_file) {
            Ok(true) => {
                // SAFETY: the artifact carries a valid MAC under this cache's
                // key, so this runtime serialized it (see the module docs);
                // the engine hash in its name matches this engine.
                match unsafe { Component::deserialize_file(engine, &artifact) } {
                    Ok(component) => return Ok((component, CompileSource::Cache)),
                    Err(e) => tracing::warn!(
                        "cached artifact {} refused by wasmtime, recompiling: {e}",
                        artifact.display()
                    ),
                }
            }
            Ok(false) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "cached artifact {} unreadable, recompiling: {e}",
                artifact.display()
            ),
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&name, &component, &artifact, &mac_file) {
            tracing::warn!("cannot cache {}: {e}", artifact.display());
        }
        Ok((component, CompileSource::Compiled))
    }

    /// Whether `artifact` has a valid MAC in `mac_file`.
    fn verified(&self, name: &str, artifact: &Path, mac_file: &Path) -> io::Result<bool> {
        let expected = fs::read(mac_file)?;
        let mut mac = self.mac(name);
        let mut file = File::open(artifact)?;
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let read = file.read(&mut chunk)?;
            if read == 0 {
                break;
            }
            mac.update(&chunk[..read]);
        }
        let valid = mac.verify_slice(&expected).is_ok();
        if !valid {
            tracing::warn!(
                "cached artifact {} was not written by this cache (its MAC does not match): \
                 refusing it, recompiling",
                artifact.display()
            );
        }
        Ok(valid)
    }

    /// Writes the artifact and its MAC, each through a temporary file and a
    /// rename, so that a reader never sees half a file under the real name.
    fn store(
        &self,
        name: &str,
        component: &Component,
        artifact: &Path,
        mac_file: &Path,
    ) -> wasmtime::Result<()> {
        let bytes = component.serialize()?;
        let mut mac = self.mac(name);
        mac.update(&bytes);
        let tag = mac.finalize().into_bytes();
        write_atomically(artifact, &bytes)?;
        write_atomically(mac_file, &tag)?;
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
fn read_or_create_key(path: &Path) -> io::Result<[u8; KEY_LEN]> {
    if let Ok(existing) = fs::read(path)
        && let Ok(key) = <[u8; KEY_LEN]>::try_from(existing.as_slice())
    {
        return Ok(key);
    }
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key)
        .map_err(|e| io::Error::other(format!("no randomness for the key: {e}")))?;
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let temporary = temporary_name(path);
    let mut file = options.open(&temporary)?;
    file.write_all(&key)?;
    file.sync_all()?;
    // If another process created a key meanwhile, the last rename wins and
    // the loser's artifacts are recompiled once: harmless.
    fs::rename(&temporary, path)?;
    Ok(key)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = temporary_name(path);
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path)
}

fn temporary_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(
        ".tmp.{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    PathBuf::from(name)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
