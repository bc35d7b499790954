//! The control API's bearer token: 32 random bytes written once to
//! `STATE_DIR/admin.token` (created with `create_new`, mode 0600, in one
//! open); the server keeps only its sha256 and compares in constant time.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::Error;

/// The admin token's digest, where it is, and the named tokens' digests.
pub(crate) struct Token {
    sha256: [u8; 32],
    path: PathBuf,
    named: std::sync::RwLock<Vec<(String, [u8; 32])>>,
}

impl Token {
    /// Read the token at `path`, or make one there.
    pub(crate) fn load_or_create(path: &Path) -> Result<Self, Error> {
        let io = |e: std::io::Error| Error::Io {
            path: path.to_path_buf(),
            source: e,
        };
        let token = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut f) => {
                let mut raw = [0_u8; 32];
                getrandom::fill(&mut raw).map_err(|e| Error::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::other(e.to_string()),
                })?;
                let token = hex::encode(raw);
                f.write_all(token.as_bytes()).map_err(io)?;
                f.write_all(b"\n").map_err(io)?;
                f.sync_all().map_err(io)?;
                token
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                use std::io::Read as _;
                use std::os::unix::fs::MetadataExt as _;
                let mut f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(path)
                    .map_err(io)?;
                let meta = f.metadata().map_err(io)?;
                if !meta.is_file() || meta.mode() & 0o077 != 0 {
                    return Err(Error::Config(format!(
                        "{} must be a regular file only its owner can read (mode 0600): `chmod 600 {}`",
                        path.display(),
                        path.display()
                    )));
                }
                let mut token = String::new();
                f.read_to_string(&mut token).map_err(io)?;
                token.trim().to_string()
            }
            Err(e) => return Err(io(e)),
        };
        if token.len() < 32 {
            return Err(Error::Config(format!(
                "{} holds no usable token (at least 32 characters); remove it and start again to make a new one",
                path.display()
            )));
        }
        Ok(Self {
            sha256: Sha256::digest(token.as_bytes()).into(),
            path: path.to_path_buf(),
            named: std::sync::RwLock::default(),
        })
    }

    /// Where the token is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The named tokens in use: name and sha256 (hex, from the registry).
    pub(crate) fn set_named(&self, tokens: Vec<(String, String)>) {
        let parsed = tokens
            .into_iter()
            .filter_map(|(name, hex)| {
                let bytes: [u8; 32] = hex::decode(&hex).ok()?.try_into().ok()?;
                Some((name, bytes))
            })
            .collect();
        *self
            .named
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = parsed;
    }

    /// Who an `Authorization` header's token is: `admin` for the admin
    /// token, `token:NAME` for a named one, none for anything else. Every
    /// digest is compared, in constant time.
    pub(crate) fn actor(&self, header: Option<&http::HeaderValue>) -> Option<String> {
        let given = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))?;
        let digest: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        let mut found = None;
        if bool::from(digest.ct_eq(&self.sha256)) {
            found = Some("admin".to_string());
        }
        for (name, sha) in self
            .named
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            if bool::from(digest.ct_eq(sha)) {
                found = Some(format!("token:{name}"));
            }
        }
        found
    }
}
