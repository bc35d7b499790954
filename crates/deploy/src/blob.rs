//! Content-addressed blobs: written to a temporary file, fsynced, renamed
//! into place, and the directory fsynced, so a blob is either whole or
//! absent.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Write `bytes` as `dir/NAME` through `tmp`, durably; an existing blob of
/// that name (same content, by construction) is left as it is.
pub(crate) fn write(dir: &Path, tmp: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let dest = dir.join(name);
    if dest.is_file() {
        return Ok(dest);
    }
    let staging = tmp.join(format!("{name}.{}", std::process::id()));
    let written = std::fs::File::create(&staging).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        // A full disk: leave no partial file behind.
        let _ = std::fs::remove_file(&staging);
        return Err(Error::io(&staging, e));
    }
    crash_point!("blob-written");
    std::fs::rename(&staging, &dest).map_err(|e| Error::io(&dest, e))?;
    crash_point!("blob-renamed");
    sync_dir(dir)?;
    crash_point!("blob-durable");
    Ok(dest)
}

/// Make a directory's entries durable (a rename into it, a removal).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
