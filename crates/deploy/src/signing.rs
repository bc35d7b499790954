//! Provenance: Ed25519 keys, detached signatures over a component's digest,
//! and the trust policy of a state directory.
//!
//! A key pair is two text files: `NAME.key` (`ed25519-private:BASE64` of the
//! 32-byte seed, created with mode 0600) and `NAME.pub`
//! (`ed25519:BASE64`). A key's id is the first 16 hex digits of the sha256
//! of its public key. A signature file (`FILE.sig`) is JSON: the digest it
//! signs, the key id, the public key and the signature, made over
//! `airssys-wasm signature v1\n` followed by the digest (`sha256:HEX`), so
//! a signature can only ever mean "these bytes".

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

const CONTEXT: &[u8] = b"airssys-wasm signature v1\n";
const PRIVATE_PREFIX: &str = "ed25519-private:";
const PUBLIC_PREFIX: &str = "ed25519:";

/// A public key, as trusted or as carried by a signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublicKey {
    /// The first 16 hex digits of the sha256 of the key.
    pub id: String,
    /// `ed25519:BASE64`.
    pub key: String,
}

impl PublicKey {
    fn from_verifying(k: &VerifyingKey) -> Self {
        let bytes = k.to_bytes();
        Self {
            id: hex::encode(&Sha256::digest(bytes)[..8]),
            key: format!("{PUBLIC_PREFIX}{}", b64().encode(bytes)),
        }
    }

    /// Parse `ed25519:BASE64` (a `.pub` file's text).
    pub fn parse(text: &str) -> Result<Self> {
        let k = verifying(text.trim())?;
        Ok(Self::from_verifying(&k))
    }

    /// Read a `.pub` file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }
}

/// A detached signature over a component's digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// What was signed: `sha256:HEX` of the component's bytes.
    pub digest: String,
    /// The signer's key id.
    pub key_id: String,
    /// The signer's public key, `ed25519:BASE64`.
    pub public_key: String,
    /// The signature, base64.
    pub signature: String,
}

impl Signature {
    /// Read a `.sig` file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{} is not a signature file: {e}", path.display())))
    }

    /// Check that this signature is a valid one of `digest` by the key it
    /// names; the signer's public key.
    pub fn verify(&self, digest: &str) -> Result<PublicKey> {
        if self.digest != digest {
            return Err(Error::Invalid(format!(
                "the signature is for {}, not for these bytes ({digest})",
                self.digest
            )));
        }
        let key = verifying(&self.public_key)?;
        let public = PublicKey::from_verifying(&key);
        if public.id != self.key_id {
            return Err(Error::Invalid(format!(
                "the signature names key {} but carries key {}",
                self.key_id, public.id
            )));
        }
        let sig: [u8; 64] = b64()
            .decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Invalid("the signature is not 64 bytes of base64".into()))?;
        key.verify(
            &message(digest),
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .map_err(|_| Error::Invalid(format!("the signature does not verify for {digest}")))?;
        Ok(public)
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn message(digest: &str) -> Vec<u8> {
    let mut m = CONTEXT.to_vec();
    m.extend_from_slice(digest.as_bytes());
    m
}

fn verifying(text: &str) -> Result<VerifyingKey> {
    let b64text = text
        .strip_prefix(PUBLIC_PREFIX)
        .ok_or_else(|| Error::Invalid(format!("a public key starts with `{PUBLIC_PREFIX}`")))?;
    let bytes: [u8; 32] = b64()
        .decode(b64text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::Invalid("a public key is 32 bytes of base64".into()))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|e| Error::Invalid(format!("not an Ed25519 public key: {e}")))
}

/// `sha256:HEX` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Make a key pair: `PREFIX.key` (mode 0600, never overwritten) and
/// `PREFIX.pub`. Returns the public key.
pub fn keygen(prefix: &Path) -> Result<PublicKey> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| Error::Invalid(format!("the system gave no randomness: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    let private = prefix.with_extension("key");
    let public_path = prefix.with_extension("pub");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private)
        .map_err(|e| Error::io(&private, e))?;
    writeln!(f, "{PRIVATE_PREFIX}{}", b64().encode(seed))
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&private, e))?;
    let public = PublicKey::from_verifying(&key.verifying_key());
    std::fs::write(&public_path, format!("{}\n", public.key))
        .map_err(|e| Error::io(&public_path, e))?;
    Ok(public)
}

/// Sign `bytes` with the private key in `key_file`.
pub fn sign(bytes: &[u8], key_file: &Path) -> Result<Signature> {
    let text = std::fs::read_to_string(key_file).map_err(|e| Error::io(key_file, e))?;
    let seed: [u8; 32] = text
        .trim()
        .strip_prefix(PRIVATE_PREFIX)
        .and_then(|b| b64().decode(b).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{} is not a private key made by `airssys-wasm keygen`",
                key_file.display()
            ))
        })?;
    let key = SigningKey::from_bytes(&seed);
    let digest = digest(bytes);
    let public = PublicKey::from_verifying(&key.verifying_key());
    Ok(Signature {
        signature: b64().encode(key.sign(&message(&digest)).to_bytes()),
        digest,
        key_id: public.id,
        public_key: public.key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("release");
        let public = keygen(&prefix).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(prefix.with_extension("key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(keygen(&prefix).is_err(), "never overwrites a key");
        let sig = sign(b"component", &prefix.with_extension("key")).unwrap();
        assert_eq!(sig.verify(&digest(b"component")).unwrap(), public);
        assert!(
            sig.verify(&digest(b"other"))
                .unwrap_err()
                .to_string()
                .contains("not for these bytes")
        );
        let mut forged = sig.clone();
        forged.digest = digest(b"other");
        assert!(
            forged
                .verify(&digest(b"other"))
                .unwrap_err()
                .to_string()
                .contains("does not verify")
        );
        assert_eq!(
            PublicKey::read(&prefix.with_extension("pub")).unwrap(),
            public
        );
    }
}
