//! On-disk copy of the last applied snapshot, so a restarted data plane serves
//! immediately even when the control plane is down.
//!
//! The snapshot holds TLS private keys and the per-proxy cookie-sealing keys, so the file
//! is sealed: AES-256-GCM under a key derived (HKDF-SHA256) from the enrolment token, which
//! the data plane holds only in memory. Someone who can read the disk but not the token (a
//! copied volume, a backup) learns only the file's size. A file that does not open — written
//! under another token, truncated or altered — is refused as a whole, never half-used.
//!
//! The directory is created 0700 and the file 0600. Writes go to a temporary file that is
//! renamed over the old one, so a crash never leaves a torn snapshot.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};

const FILE_NAME: &str = "snapshot.sealed";
/// Where versions before sealing kept the snapshot in plain text; removed on first write.
const LEGACY_FILE_NAME: &str = "snapshot.pb";
/// Format tag at the start of the file, also authenticated as associated data.
const MAGIC: &[u8; 8] = b"PCSNAP01";
/// Refuse to read absurdly large files (a cache is never this big).
const MAX_SIZE: u64 = 256 * 1024 * 1024;

/// Why the cache could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading the file failed.
    #[error("reading the snapshot cache: {0}")]
    Io(#[from] io::Error),
    /// The file is larger than any snapshot cache.
    #[error("the snapshot cache file is larger than 256 MiB")]
    TooLarge,
    /// The file is not one this token sealed, or it was changed.
    #[error(
        "the snapshot cache does not open with this enrolment token (written under another token, or altered)"
    )]
    Unsealed,
}

/// The sealed snapshot cache file in one directory.
#[derive(Clone)]
pub struct SnapshotCache {
    dir: PathBuf,
    key: Arc<LessSafeKey>,
}

// === impl SnapshotCache ===

impl SnapshotCache {
    /// A cache in `dir` (created on first write if missing), sealed under a key derived
    /// from `enrolment_token`.
    pub fn new(dir: impl Into<PathBuf>, enrolment_token: &str) -> Self {
        Self {
            dir: dir.into(),
            key: Arc::new(derive_key(enrolment_token)),
        }
    }

    /// Full path of the cache file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Creates the directory (mode 0700) if it does not exist, and narrows an existing one
    /// to 0700 (only warned about when that fails: the file is 0600 anyway).
    pub fn ensure_dir(&self) -> io::Result<()> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&self.dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&self.dir)?.permissions().mode();
            if mode & 0o077 != 0
                && let Err(error) =
                    fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            {
                tracing::warn!(%error, dir = %self.dir.display(), "cannot make the cache directory private (0700)");
            }
        }
        Ok(())
    }

    /// The cached snapshot bytes, or `None` when there is no cache yet.
    pub fn read(&self) -> Result<Option<Vec<u8>>, CacheError> {
        let path = self.path();
        let sealed = match fs::metadata(&path) {
            Ok(meta) if meta.len() > MAX_SIZE => return Err(CacheError::TooLarge),
            Ok(_) => fs::read(&path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        self.open(sealed).map(Some)
    }

    /// Atomically replaces the cache with `plain`, sealed.
    pub fn write(&self, plain: &[u8]) -> io::Result<()> {
        self.ensure_dir()?;
        let sealed = self.seal(plain)?;
        let tmp = self
            .dir
            .join(format!("{FILE_NAME}.tmp.{}", std::process::id()));
        let written = write_private(&tmp, &sealed).and_then(|()| fs::rename(&tmp, self.path()));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        // A plain-text cache left by an older version must not outlive the sealed one.
        match fs::remove_file(self.dir.join(LEGACY_FILE_NAME)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // Persist the rename; not all platforms allow syncing a directory.
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// `MAGIC ‖ nonce ‖ AES-256-GCM(plain) ‖ tag`, with a fresh random nonce.
    fn seal(&self, plain: &[u8]) -> io::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| io::Error::other("no randomness for the cache nonce"))?;
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(MAGIC),
                &mut body,
            )
            .map_err(|_| io::Error::other("sealing the snapshot cache failed"))?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn open(&self, mut sealed: Vec<u8>) -> Result<Vec<u8>, CacheError> {
        let Some(rest) = sealed.strip_prefix(MAGIC.as_slice()) else {
            return Err(CacheError::Unsealed);
        };
        if rest.len() < NONCE_LEN {
            return Err(CacheError::Unsealed);
        }
        let nonce = Nonce::try_assume_unique_for_key(&rest[..NONCE_LEN])
            .map_err(|_| CacheError::Unsealed)?;
        let body = &mut sealed[MAGIC.len() + NONCE_LEN..];
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(MAGIC), body)
            .map_err(|_| CacheError::Unsealed)?;
        Ok(plain.to_vec())
    }
}

impl std::fmt::Debug for SnapshotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The cache key: HKDF-SHA256 of the token. Tokens are long random strings, so no stored
/// salt is needed to make the key unguessable; the fixed salt and label keep this key apart
/// from any other use of the token.
fn derive_key(token: &str) -> LessSafeKey {
    let prk = Salt::new(HKDF_SHA256, b"portcullis data plane").extract(token.as_bytes());
    let mut key = [0u8; 32];
    // 32 bytes from SHA-256 are always within HKDF's output limit, and 32 bytes are always
    // an AES-256 key.
    let okm = prk.expand(&[b"snapshot cache v1"], HKDF_SHA256);
    let filled = okm.and_then(|okm| okm.fill(&mut key));
    let unbound = filled.and_then(|()| UnboundKey::new(&AES_256_GCM, &key));
    match unbound {
        Ok(unbound) => LessSafeKey::new(unbound),
        Err(_) => unreachable!("HKDF-SHA256 yields a 32-byte AES-256 key"),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // A stale temp file keeps its old mode; force 0600 either way.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &[u8] = b"-----BEGIN PRIVATE KEY-----\nsession key bytes\n";

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn the_file_is_sealed_and_opens_with_the_same_token_only() -> anyhow::Result<()> {
        use portcullis_proto::v1 as pb;
        use prost::Message as _;

        let session_key = [0x5a_u8; 32];
        let snapshot = pb::ConfigSnapshot {
            version: 3,
            proxies: vec![pb::ProxyTarget {
                hostname: "app.test".into(),
                auth: Some(pb::ProxyAuthPolicy {
                    session_key: session_key.to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            certificates: vec![pb::TlsCertificate {
                private_key_pem: "-----BEGIN PRIVATE KEY-----\nMIGH\n".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec();
        let dir = tempfile::tempdir()?;
        let cache = SnapshotCache::new(dir.path(), "pcs_token");
        assert!(cache.read()?.is_none());
        cache.write(&snapshot)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
            assert_eq!((mode(dir.path())?, mode(&cache.path())?), (0o700, 0o600));
        }
        let raw = fs::read(cache.path())?;
        assert!(!contains(&raw, b"PRIVATE KEY"));
        assert!(!contains(&raw, &session_key[..16]));
        assert!(!contains(&raw, b"app.test"));
        assert_eq!(cache.read()?.as_deref(), Some(snapshot.as_slice()));
        // A restart with the same token opens it; another token does not.
        let again = SnapshotCache::new(dir.path(), "pcs_token");
        assert_eq!(again.read()?.as_deref(), Some(snapshot.as_slice()));
        let other = SnapshotCache::new(dir.path(), "pcs_other");
        assert!(matches!(other.read(), Err(CacheError::Unsealed)));
        Ok(())
    }

    #[test]
    fn a_tampered_or_truncated_file_is_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cache = SnapshotCache::new(dir.path(), "pcs_token");
        cache.write(PLAIN)?;
        let good = fs::read(cache.path())?;
        for at in [0, MAGIC.len(), MAGIC.len() + NONCE_LEN, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            fs::write(cache.path(), &bad)?;
            assert!(matches!(cache.read(), Err(CacheError::Unsealed)), "{at}");
        }
        for len in [0, MAGIC.len() + 3, good.len() - 1] {
            fs::write(cache.path(), &good[..len])?;
            assert!(matches!(cache.read(), Err(CacheError::Unsealed)), "{len}");
        }
        // An old plain-text cache is neither read nor kept.
        fs::write(dir.path().join(LEGACY_FILE_NAME), PLAIN)?;
        fs::write(cache.path(), PLAIN)?;
        assert!(matches!(cache.read(), Err(CacheError::Unsealed)));
        cache.write(PLAIN)?;
        assert!(!dir.path().join(LEGACY_FILE_NAME).exists());
        Ok(())
    }
}
