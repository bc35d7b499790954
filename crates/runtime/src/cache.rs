//! Compiled code, kept once per content hash.
//!
//! Threat model: the cache directory holds native code that the process will
//! map executable, so an entry is never trusted on its name alone. Entries
//! are written by this process (to a temporary file, fsynced, renamed) into a
//! directory created 0700; each carries the sha256 of its artifact, recorded
//! at write time and checked before `deserialize`. Entries live under the
//! engine's `precompile_compatibility_hash`, so code for another engine
//! configuration or wasmtime version is never looked up, and wasmtime checks
//! the artifact's own header again on load. A corrupt, truncated, foreign or
//! stale entry is removed and the component recompiled.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::{Error, Result};

/// The identity of a component: the sha256 of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Hash `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", &self.to_hex()[..12])
    }
}

/// Counters of the compiled-code cache, so callers (and tests) can tell
/// whether a path recompiled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Components compiled from their bytes.
    pub compilations: u64,
    /// Lookups served from memory.
    pub memory_hits: u64,
    /// Lookups served from the disk cache.
    pub disk_hits: u64,
    /// Disk entries found corrupt, truncated, foreign or stale, and removed.
    pub disk_rejected: u64,
}

#[derive(Default)]
struct Counters {
    compilations: AtomicU64,
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    disk_rejected: AtomicU64,
}

/// An entry: this magic, the digest of the component it was compiled from,
/// the sha256 of the artifact, the artifact.
const MAGIC: &[u8; 16] = b"airssys-cwasm\x00v2";
const HEADER: usize = MAGIC.len() + 32 + 32;

/// Memory and disk cache of compiled components.
pub(crate) struct CodeCache {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<Digest, Component>>,
    counters: Counters,
}

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Compiled from its bytes just now.
    Compiled,
    /// Already in this process.
    Memory,
    /// Loaded from the disk cache.
    Disk,
}

impl CodeCache {
    pub(crate) fn new(engine: &Engine, dir: Option<&Path>) -> Result<Self> {
        let dir = match dir {
            None => None,
            Some(root) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                engine.precompile_compatibility_hash().hash(&mut h);
                let sub = root.join(format!("{:016x}", h.finish()));
                create_private_dir(root)?;
                create_private_dir(&sub)?;
                Some(sub)
            }
        };
        Ok(Self {
            dir,
            memory: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        })
    }

    /// The directory entries for this engine live in, if any.
    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The file that holds (or would hold) `digest`'s compiled code.
    pub(crate) fn entry_path(&self, digest: &Digest) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}.cwasm", digest.to_hex())))
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            compilations: self.counters.compilations.load(Ordering::Relaxed),
            memory_hits: self.counters.memory_hits.load(Ordering::Relaxed),
            disk_hits: self.counters.disk_hits.load(Ordering::Relaxed),
            disk_rejected: self.counters.disk_rejected.load(Ordering::Relaxed),
        }
    }

    /// The compiled form of `bytes` (whose digest is `digest`), from memory,
    /// from disk, or compiled now and stored in both.
    pub(crate) fn get_or_compile(
        &self,
        engine: &Engine,
        name: &str,
        digest: Digest,
        bytes: &[u8],
    ) -> Result<(Component, Source)> {
        if let Some(c) = self.lock().get(&digest) {
            self.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok((c.clone(), Source::Memory));
        }
        if let Some(component) = self.load_from_disk(engine, &digest) {
            self.counters.disk_hits.fetch_add(1, Ordering::Relaxed);
            self.lock().insert(digest, component.clone());
            return Ok((component, Source::Disk));
        }
        let component = Component::new(engine, bytes).map_err(|e| Error::InvalidComponent {
            component: name.to_string(),
            source: e.into(),
        })?;
        self.counters.compilations.fetch_add(1, Ordering::Relaxed);
        self.store_on_disk(&digest, &component);
        self.lock().insert(digest, component.clone());
        Ok((component, Source::Compiled))
    }

    pub(crate) fn evict(&self, digest: &Digest) {
        self.lock().remove(digest);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Component>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (inserts are single operations), so a poisoned lock is still usable.
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load_from_disk(&self, engine: &Engine, digest: &Digest) -> Option<Component> {
        let path = self.entry_path(digest)?;
        let data = std::fs::read(&path).ok()?;
        match verify_entry(&data, digest) {
            Some(artifact) => {
                // SAFETY: `deserialize` maps this native code executable. The
                // artifact was produced by `Component::serialize` of this
                // process or an earlier one, and we checked above that its
                // sha256 matches the one recorded next to it at write time, in
                // a 0700 directory created by us and keyed by this engine's
                // compatibility hash; wasmtime checks its header (version and
                // engine settings) again and refuses a mismatch.
                #[allow(unsafe_code, reason = "loading verified precompiled code; see SAFETY")]
                let loaded = unsafe { Component::deserialize(engine, artifact) };
                match loaded {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "stale compiled-code cache entry; recompiling");
                        self.reject(&path);
                        None
                    }
                }
            }
            None if data.starts_with(&MAGIC[..MAGIC.len() - 2]) && !data.starts_with(MAGIC) => {
                tracing::debug!(path = %path.display(), "compiled-code cache entry of an older format; recompiling");
                self.reject(&path);
                None
            }
            None => {
                tracing::warn!(path = %path.display(), "corrupt compiled-code cache entry; recompiling");
                self.reject(&path);
                None
            }
        }
    }

    fn reject(&self, path: &Path) {
        self.counters.disk_rejected.fetch_add(1, Ordering::Relaxed);
        let _ = std::fs::remove_file(path);
    }

    fn store_on_disk(&self, digest: &Digest, component: &Component) {
        let Some(path) = self.entry_path(digest) else {
            return;
        };
        // The cache is an optimization: failing to write it is logged, never
        // an error of the call.
        if let Err(e) = write_entry(&path, digest, component) {
            tracing::warn!(path = %path.display(), error = %e, "could not write compiled-code cache entry");
        }
    }
}

/// Check an entry's header: its magic, that it was compiled from `digest`
/// (an entry copied under another component's name is refused), and the
/// artifact's checksum. The artifact if all hold.
fn verify_entry<'a>(data: &'a [u8], digest: &Digest) -> Option<&'a [u8]> {
    if data.len() < HEADER || &data[..MAGIC.len()] != MAGIC {
        return None;
    }
    let (source, rest) = data[MAGIC.len()..].split_at(32);
    let (recorded, artifact) = rest.split_at(32);
    if source != digest.0 {
        return None;
    }
    let actual: [u8; 32] = Sha256::digest(artifact).into();
    (recorded == actual).then_some(artifact)
}

fn write_entry(path: &Path, digest: &Digest, component: &Component) -> anyhow::Result<()> {
    let artifact = component.serialize()?;
    let sum: [u8; 32] = Sha256::digest(&artifact).into();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(MAGIC)?;
    tmp.1.write_all(&digest.0)?;
    tmp.1.write_all(&sum)?;
    tmp.1.write_all(&artifact)?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path)?;
    Ok(())
}

/// A uniquely named temporary file next to its final place (so the rename is
/// atomic), readable only by us.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::AtomicU32;
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".tmp-{}-{seq}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(&path)?;
    Ok((path, file))
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(Error::Config {
                reason: format!(
                    "cache directory {} is writable by others (mode {:o}); run `chmod 700` on it",
                    dir.display(),
                    mode & 0o777
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_rejects_bad_entries() {
        let digest = Digest::of(b"component bytes");
        let artifact = b"not really code".to_vec();
        let sum: [u8; 32] = Sha256::digest(&artifact).into();
        let mut good = MAGIC.to_vec();
        good.extend_from_slice(&digest.0);
        good.extend_from_slice(&sum);
        good.extend_from_slice(&artifact);
        assert_eq!(verify_entry(&good, &digest), Some(&artifact[..]));
        assert_eq!(verify_entry(&good, &Digest::of(b"another component")), None);

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(verify_entry(&flipped, &digest), None);
        assert_eq!(verify_entry(&good[..good.len() - 1], &digest), None);
        assert_eq!(verify_entry(&good[..10], &digest), None);
        assert_eq!(verify_entry(b"", &digest), None);
    }
}
