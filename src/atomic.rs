//! Atomic file output: every file lethe writes goes to a temporary name in the destination's
//! folder and is renamed into place only once it is complete, so an interrupted run (Ctrl-C, a
//! full disk, an error half-way) never leaves a partial file under the real name.
//! This module owns only that mechanism; it knows nothing of what is written.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The temporary sibling of `path` that [`write_atomic`] writes before renaming.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like [`write_atomic`], but the content is produced by `fill`, which writes into the temporary
/// file. If `fill` fails the temporary file is removed and the destination is left untouched.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        fill(&mut file)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_fill_leaves_no_file() {
        let dir = std::env::temp_dir().join(format!("lethe-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("out.bin");
        let err = write_atomic_with(&target, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("interrupted"))
        });
        assert!(err.is_err());
        assert!(!target.exists());
        assert!(!temp_path(&target).exists());
        write_atomic(&target, b"whole").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"whole");
        fs::remove_dir_all(&dir).unwrap();
    }
}
