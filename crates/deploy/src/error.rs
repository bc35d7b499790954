//! The one error type of the deployment engine.

use std::path::{Path, PathBuf};

/// What can go wrong; every message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{}: {source}{}", .path.display(), io_hint(.source))]
    Io {
        /// Which file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },

    /// The state directory cannot be used as it is.
    #[error("state directory {}: {reason}", .path.display())]
    StateDir {
        /// Which directory.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },

    /// Another process holds the state directory.
    #[error(
        "state directory {} is in use by another airssys-wasm process{}; stop it, or act on the running host with --host",
        .path.display(),
        .holder.as_deref().map(|h| format!(" ({h})")).unwrap_or_default()
    )]
    Locked {
        /// Which directory.
        path: PathBuf,
        /// What the lock file says about its holder.
        holder: Option<String>,
    },

    /// The registry database failed.
    #[error("registry database: {}{}", .0, database_hint(.0))]
    Database(#[from] rusqlite::Error),

    /// The database was written by a newer airssys-wasm.
    #[error(
        "the registry database has schema version {found}, newer than this airssys-wasm knows ({known}); use a newer airssys-wasm"
    )]
    SchemaTooNew {
        /// The version found.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },

    /// A name, version or input that is not acceptable.
    #[error("{0}")]
    Invalid(String),

    /// A published version cannot be changed.
    #[error(
        "{name} {version} is already published with different bytes ({existing}); versions are immutable: publish these bytes under a new version"
    )]
    Immutable {
        /// The component.
        name: String,
        /// The version.
        version: String,
        /// The digest already published.
        existing: String,
    },

    /// The component's bytes are not a usable component.
    #[error(transparent)]
    Component(#[from] airssys_wasm_runtime::Error),

    /// Every mailbox of an actor deployment stayed full while the sender
    /// waited.
    #[error(
        "{component}: every mailbox is full ({capacity} messages each) and none had room within {}; it is overloaded: try again later, or deploy it with more instances or a larger mailbox",
        humantime::format_duration(*.waited)
    )]
    MailboxFull {
        /// The component.
        component: String,
        /// Messages one mailbox holds.
        capacity: usize,
        /// How long the sender waited.
        waited: std::time::Duration,
    },

    /// An actor deployment failed (its restarts passed the intensity) or
    /// stopped.
    #[error(
        "{component} is not running: {reason}; see `airssys-wasm status`, then fix it and deploy again, or roll back"
    )]
    ActorsFailed {
        /// The component.
        component: String,
        /// Why.
        reason: String,
    },

    /// The audit chain does not verify.
    #[error("audit trail broken at record {seq}: {reason}")]
    AuditBroken {
        /// The first record that does not verify (or 0 for the head).
        seq: i64,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// The result of the engine's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do about a full or read-only file system.
fn io_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            "; the disk is full: free space and try again"
        }
        std::io::ErrorKind::ReadOnlyFilesystem => {
            "; the file system is read-only: mount it read-write, or use another path (a state directory is written even to read it: its lock, the database's log)"
        }
        _ => "",
    }
}

fn database_hint(e: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure) => {
            "; is the disk of the state directory full or failing? free space and try again"
        }
        Some(ErrorCode::ReadOnly) => {
            "; the state directory must be writable: mount it read-write, or fix its owner and mode"
        }
        Some(ErrorCode::CannotOpen) => "; the state directory must exist and be writable",
        _ => "",
    }
}
