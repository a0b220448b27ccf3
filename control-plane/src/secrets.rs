//! Secrets at rest: one master key seals private keys (certificates, ACME accounts, later
//! OAuth signing keys) before they reach either store.
//!
//! AES-256-GCM with a random 96-bit nonce per value; the sealed form is
//! `v1:` + base64(nonce ‖ ciphertext ‖ tag). The key comes from `--master-key-file` /
//! `PORTCULLIS_MASTER_KEY`, or is created once as `<data-dir>/master.key` (mode 0600).
//! Control planes sharing Redis must share the key.

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Prk, Salt};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

const PREFIX: &str = "v1:";
const KEY_FILE: &str = "master.key";

/// Why a master key could not be loaded or a value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The key material is unusable.
    #[error("master key: {0}")]
    BadKey(String),
    /// A sealed value is malformed or was sealed with another key.
    #[error("cannot decrypt a stored secret (wrong master key, or corrupt data)")]
    Open,
    /// Reading or writing the key file failed.
    #[error("master key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The master key. Cheap to clone; never printed.
#[derive(Clone)]
pub struct MasterKey(Arc<LessSafeKey>, Arc<Prk>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// From 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretsError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| SecretsError::BadKey("must be exactly 32 bytes".into()))?;
        // Derived keys come from a separate HKDF PRK, never from the sealing key itself.
        let prk = Salt::new(HKDF_SHA256, b"portcullis master key v1").extract(bytes);
        Ok(Self(Arc::new(LessSafeKey::new(key)), Arc::new(prk)))
    }

    /// A 32-byte key for one purpose (`label`) and subject (e.g. a hostname), derived with
    /// HKDF-SHA256. Deterministic, so control planes sharing the master key (and every
    /// data plane they feed) agree on it without storing it anywhere.
    pub fn derive(&self, label: &str, subject: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        let info = [label.as_bytes(), &[0], subject.as_bytes()];
        // Expanding 32 bytes from SHA-256 is always within HKDF's output limit.
        let filled = self
            .1
            .expand(&info, HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut out));
        if filled.is_err() {
            panic!("HKDF expand of 32 bytes failed");
        }
        out
    }

    /// From base64 text (what `master.key` and `PORTCULLIS_MASTER_KEY` hold).
    pub fn from_base64(text: &str) -> Result<Self, SecretsError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| SecretsError::BadKey("not base64".into()))?;
        Self::from_bytes(&bytes)
    }

    /// Loads `explicit` if given, else `<data_dir>/master.key`, creating it if missing.
    pub fn load_or_create(explicit: Option<&str>, data_dir: &Path) -> Result<Self, SecretsError> {
        if let Some(text) = explicit {
            return Self::from_base64(text);
        }
        let path = data_dir.join(KEY_FILE);
        let io = |source| SecretsError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::files::private_dir(data_dir).map_err(io)?;
                let mut bytes = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| SecretsError::BadKey("no randomness".into()))?;
                crate::files::create_private(&path, B64.encode(bytes).as_bytes()).map_err(io)?;
                Self::from_bytes(&bytes)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Seals `plain` for storage.
    pub fn seal(&self, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // The system RNG failing is not recoverable; an all-zero nonce must never be used.
        if SystemRandom::new().fill(&mut nonce).is_err() {
            panic!("system random number generator failed");
        }
        let mut buf = plain.to_vec();
        // Sealing in place with a fresh nonce cannot fail for inputs of this size.
        let sealed = self.0.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut buf,
        );
        if sealed.is_err() {
            panic!("AES-GCM seal failed");
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// Opens a value made by [`seal`](Self::seal).
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SecretsError> {
        let raw = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| B64.decode(b).ok())
            .ok_or(SecretsError::Open)?;
        if raw.len() < NONCE_LEN {
            return Err(SecretsError::Open);
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretsError::Open)?;
        let mut buf = rest.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .map_err(|_| SecretsError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_depend_on_key_label_and_subject() {
        let key = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let a = key.derive("edge-session", "a.example.com");
        assert_eq!(a, key.derive("edge-session", "a.example.com"));
        assert_ne!(a, key.derive("edge-session", "b.example.com"));
        assert_ne!(a, key.derive("other", "a.example.com"));
        let other = MasterKey::from_bytes(&[8u8; 32]).unwrap();
        assert_ne!(a, other.derive("edge-session", "a.example.com"));
    }

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::load_or_create(None, dir.path()).unwrap();
        let sealed = key.seal(b"-----BEGIN PRIVATE KEY-----");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("PRIVATE"));
        assert_eq!(key.open(&sealed).unwrap(), b"-----BEGIN PRIVATE KEY-----");
        assert_ne!(
            sealed,
            key.seal(b"-----BEGIN PRIVATE KEY-----"),
            "nonces differ"
        );

        // The same file gives the same key; another key cannot open it.
        let again = MasterKey::load_or_create(None, dir.path()).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), b"-----BEGIN PRIVATE KEY-----");
        let other = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        assert!(other.open(&sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push('A');
        assert!(key.open(&tampered).is_err());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("master.key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert!(MasterKey::from_base64("short").is_err());
    }
}
