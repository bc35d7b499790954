//! The state directory: created 0700, refused when others may write it,
//! held by one process at a time.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A state directory, locked by this process while the value lives.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    /// Held open: the lock goes with it.
    _lock: File,
}

impl StateDir {
    /// Open (creating it, mode 0700) and lock the state directory at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(&path, e))?;
        }
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if !meta.is_dir() {
            return Err(Error::StateDir {
                path,
                reason: "it is not a directory".into(),
            });
        }
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(Error::StateDir {
                reason: format!(
                    "it is writable by its group or by others (mode {:o}); run `chmod 700 {}`",
                    mode & 0o777,
                    path.display()
                ),
                path,
            });
        }
        let lock_path = path.join("lock");
        let mut lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&lock_path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty());
                return Err(Error::Locked { path, holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        // Say who holds it, for the message another process will print.
        let _ = lock.set_len(0);
        let _ = writeln!(lock, "pid {}", std::process::id());
        for sub in ["blobs", "cache", "tmp"] {
            let dir = path.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let this = Self { path, _lock: lock };
        this.clean_tmp();
        Ok(this)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where content-addressed component bytes live.
    pub fn blobs(&self) -> PathBuf {
        self.path.join("blobs")
    }

    /// Where compiled code lives (`RuntimeConfig::cache_dir`).
    pub fn cache(&self) -> PathBuf {
        self.path.join("cache")
    }

    /// Where files are written before they are renamed into place.
    pub(crate) fn tmp(&self) -> PathBuf {
        self.path.join("tmp")
    }

    /// The registry database.
    pub(crate) fn database(&self) -> PathBuf {
        self.path.join("registry.db")
    }

    /// The head of the audit chain, kept beside the database.
    pub(crate) fn audit_head(&self) -> PathBuf {
        self.path.join("audit.head")
    }

    /// Temporary files left by a process that stopped mid-write.
    fn clean_tmp(&self) {
        if let Ok(entries) = std::fs::read_dir(self.tmp()) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
