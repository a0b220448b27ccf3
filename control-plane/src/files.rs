//! Everything the control plane writes to disk is private to its user: directories it
//! creates are 0700 and its files 0600, whatever the umask, because the data directory
//! holds the store (token hashes, sealed keys, OAuth state) and the master key.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

/// Creates `dir` and any missing parents with mode 0700, and narrows an existing `dir`
/// to 0700 (its parents are left alone: they may be shared). A directory that cannot be
/// narrowed (owned by another user) is only warned about: its files are 0600 anyway.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0
            && let Err(error) = fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        {
            tracing::warn!(%error, dir = %dir.display(), "cannot make the directory private (0700)");
        }
    }
    Ok(())
}

/// Writes a new file (failing if it exists) with mode 0600.
pub fn create_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Makes sure `path` exists with mode 0600 before another library (redb) opens it: an
/// empty file is created 0600, and an existing one made by an older version with the
/// umask's mode is narrowed to 0600.
pub fn ensure_private_file(path: &Path) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777)
    }

    #[test]
    fn files_are_0600_and_created_directories_0700() -> io::Result<()> {
        let root = tempfile::tempdir()?;
        let dir = root.path().join("a/b");
        private_dir(&dir)?;
        assert_eq!((mode(&root.path().join("a")), mode(&dir)), (0o700, 0o700));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        private_dir(&dir)?;
        assert_eq!(mode(&dir), 0o700, "an existing directory is narrowed");

        create_private(&dir.join("key"), b"k")?;
        assert_eq!(mode(&dir.join("key")), 0o600);
        assert!(create_private(&dir.join("key"), b"again").is_err());
        assert_eq!(fs::read(dir.join("key"))?, b"k");

        let old = dir.join("old.redb");
        fs::write(&old, b"data")?;
        fs::set_permissions(&old, fs::Permissions::from_mode(0o644))?;
        ensure_private_file(&old)?;
        assert_eq!(mode(&old), 0o600);
        assert_eq!(fs::read(&old)?, b"data", "contents kept");
        ensure_private_file(&dir.join("new.redb"))?;
        assert_eq!(mode(&dir.join("new.redb")), 0o600);
        Ok(())
    }
}
