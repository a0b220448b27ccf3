//! On-disk copy of the last applied snapshot, so a restarted data plane serves
//! immediately even when the control plane is down.
//!
//! The file may hold TLS keys in later versions, so the directory is created 0700 and
//! the file 0600. Writes go to a temporary file that is renamed over the old one, so a
//! crash never leaves a torn snapshot.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const FILE_NAME: &str = "snapshot.pb";
/// Refuse to read absurdly large files (a cache is never this big).
const MAX_SIZE: u64 = 256 * 1024 * 1024;

/// The snapshot cache file in one directory.
#[derive(Clone, Debug)]
pub struct SnapshotCache {
    dir: PathBuf,
}

// === impl SnapshotCache ===

impl SnapshotCache {
    /// A cache in `dir` (created on first write if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Full path of the cache file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Creates the directory (mode 0700) if it does not exist.
    pub fn ensure_dir(&self) -> io::Result<()> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&self.dir)
    }

    /// The cached bytes, or `None` when there is no cache yet.
    pub fn read(&self) -> io::Result<Option<Vec<u8>>> {
        let path = self.path();
        match fs::metadata(&path) {
            Ok(meta) if meta.len() > MAX_SIZE => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "snapshot cache file is too large",
            )),
            Ok(_) => fs::read(&path).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Atomically replaces the cache with `bytes`.
    pub fn write(&self, bytes: &[u8]) -> io::Result<()> {
        self.ensure_dir()?;
        let tmp = self
            .dir
            .join(format!("{FILE_NAME}.tmp.{}", std::process::id()));
        let written = write_private(&tmp, bytes).and_then(|()| fs::rename(&tmp, self.path()));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        // Persist the rename; not all platforms allow syncing a directory.
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
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
