//! Atomic output: every file lethe writes goes to a temporary name in the destination's folder
//! and is renamed into place only once it is complete, and a directory (a model) is built under a
//! temporary name beside its destination and renamed into place as a whole, so an interrupted
//! run (Ctrl-C, a full disk, an error half-way) never leaves a partial file or folder under the
//! real name. Temporaries are created exclusively (`O_EXCL`, never through a planted symlink)
//! under unpredictable names (`.NAME.XXXXXXXXXXXX.tmp`), and removed on every error path, on
//! drop and on unwinding; one left by a killed process never collides with a later run's.
//! This module owns only that mechanism; it knows nothing of what is written.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use tempfile::{Builder, TempDir};

/// Random characters in a temporary name (62 possibilities each: about 71 bits).
const RANDOM_CHARS: usize = 12;

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like [`write_atomic`], but the content is produced by `fill`, which writes into the temporary
/// file. If `fill` fails (or panics) the temporary file is removed and the destination is left
/// untouched.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let mut tmp = with_temp_names(path, |b| b.tempfile_in(folder_of(path)))?;
    fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    // On failure the PersistError owns the temporary file and removes it when dropped.
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A temporary file beside `path` (exclusive, unpredictable name), created with Unix permission
/// bits `mode` (less the umask) and removed when dropped unless persisted; for writers that need
/// their own final step (such as a link that never replaces an existing file).
pub fn temp_file_beside(path: &Path, mode: u32) -> io::Result<tempfile::NamedTempFile> {
    with_temp_names(path, |b| {
        #[cfg(unix)]
        b.permissions(std::os::unix::fs::PermissionsExt::from_mode(mode));
        #[cfg(not(unix))]
        let _ = mode;
        b.tempfile_in(folder_of(path))
    })
}

/// A directory built under a temporary name beside its destination, then renamed into place as
/// a whole by [`StagedDir::commit`]. Dropped without a commit (an error, a panic), it is removed
/// with everything in it.
#[derive(Debug)]
pub struct StagedDir {
    dir: TempDir,
    dest: PathBuf,
}

impl StagedDir {
    /// An empty staging folder beside `dest` (whose parent folders are created if missing).
    pub fn new(dest: &Path) -> io::Result<Self> {
        let parent = folder_of(dest);
        fs::create_dir_all(parent)?;
        let dir = with_temp_names(dest, |b| b.tempdir_in(parent))?;
        Ok(StagedDir {
            dir,
            dest: dest.to_owned(),
        })
    }

    /// Where to write the folder's files.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Renames the staged folder to its destination. Whatever is already there (a folder, a file
    /// or a symlink, which is not followed) is first moved aside under a temporary name, put back
    /// if the rename fails, and removed once the new folder is in place.
    pub fn commit(self) -> io::Result<()> {
        let aside = match fs::symlink_metadata(&self.dest) {
            Ok(_) => Some(self.move_aside()?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Err(e) = fs::rename(self.dir.path(), &self.dest) {
            if let Some(aside) = &aside {
                let _ = fs::rename(aside.path().join("old"), &self.dest);
            }
            return Err(e); // dropping `self.dir` removes the staged folder
        }
        let _ = self.dir.keep(); // it now lives at `dest`
        if let Some(aside) = aside {
            aside.close()?;
        }
        Ok(())
    }

    /// Moves `dest` into a fresh, exclusively created temporary folder beside it.
    fn move_aside(&self) -> io::Result<TempDir> {
        let aside = with_temp_names(&self.dest, |b| b.tempdir_in(folder_of(&self.dest)))?;
        fs::rename(&self.dest, aside.path().join("old"))?;
        Ok(aside)
    }
}

/// The folder that holds `path` (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Runs `make` with a builder of temporary names for `path`: `.NAME.` + random characters +
/// `.tmp`, so that a folder listing shows what each temporary was for.
fn with_temp_names<T>(
    path: &Path,
    make: impl FnOnce(&mut Builder) -> io::Result<T>,
) -> io::Result<T> {
    let name = path.file_name().ok_or_else(|| {
        let msg = format!("{} does not name a file or folder", path.display());
        io::Error::new(io::ErrorKind::InvalidInput, msg)
    })?;
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    make(
        Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .rand_bytes(RANDOM_CHARS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lethe-atomic-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn failed_fill_leaves_no_file() {
        let dir = scratch("fail");
        let target = dir.join("out.bin");
        let err = write_atomic_with(&target, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("interrupted"))
        });
        assert!(err.is_err());
        assert!(names(&dir).is_empty(), "{:?}", names(&dir));
        write_atomic(&target, b"whole").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"whole");
        assert_eq!(names(&dir), ["out.bin"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_panicking_fill_leaves_no_file() {
        let dir = scratch("panic");
        let target = dir.join("out.bin");
        let result = std::panic::catch_unwind(|| {
            write_atomic_with(&target, |f| {
                f.write_all(b"half")?;
                panic!("killed half-way");
            })
        });
        assert!(result.is_err());
        assert!(names(&dir).is_empty(), "{:?}", names(&dir));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A symlink planted where the temporary name used to be predictable (`.NAME.PID.tmp`), and
    /// a stale temporary of a killed run under it, change nothing.
    #[cfg(unix)]
    #[test]
    fn a_planted_symlink_is_never_written_through() {
        let dir = scratch("symlink");
        let victim = dir.join("victim");
        fs::write(&victim, b"precious").unwrap();
        let target = dir.join("out.bin");
        let planted = dir.join(format!(".out.bin.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        write_atomic(&target, b"whole").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&target).unwrap(), b"whole");
        assert!(!fs::symlink_metadata(&target).unwrap().is_symlink());
        fs::remove_file(&planted).unwrap();
        fs::write(&planted, b"stale").unwrap();
        write_atomic(&target, b"again").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"again");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_names_are_unpredictable() {
        let dir = scratch("names");
        let path = dir.join("key.pem");
        let a = temp_file_beside(&path, 0o600).unwrap();
        let b = temp_file_beside(&path, 0o600).unwrap();
        assert_ne!(a.path(), b.path());
        let name = a.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".key.pem.") && name.ends_with(".tmp"),
            "{name}"
        );
        assert_eq!(name.len(), ".key.pem.".len() + RANDOM_CHARS + ".tmp".len());
        drop((a, b));
        assert!(names(&dir).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_staged_folder_appears_whole_or_not_at_all() {
        let dir = scratch("staged");
        let dest = dir.join("model");
        let staged = StagedDir::new(&dest).unwrap();
        fs::write(staged.path().join("config.json"), b"{}").unwrap();
        assert!(!dest.exists(), "visible before the commit");
        drop(staged); // an error half-way
        assert!(names(&dir).is_empty(), "{:?}", names(&dir));

        let staged = StagedDir::new(&dest).unwrap();
        fs::write(staged.path().join("config.json"), b"{\"v\":1}").unwrap();
        fs::write(staged.path().join("stale.txt"), b"x").unwrap();
        staged.commit().unwrap();
        assert_eq!(names(&dir), ["model"]);
        // Replacing: the old folder goes as a whole, nothing of it is mixed into the new one.
        let staged = StagedDir::new(&dest).unwrap();
        fs::write(staged.path().join("config.json"), b"{\"v\":2}").unwrap();
        staged.commit().unwrap();
        assert_eq!(names(&dir), ["model"]);
        assert_eq!(names(&dest), ["config.json"]);
        assert_eq!(fs::read(dest.join("config.json")).unwrap(), b"{\"v\":2}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn committing_over_a_symlink_replaces_the_link_not_its_target() {
        let dir = scratch("staged-link");
        let elsewhere = dir.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::write(elsewhere.join("keep"), b"mine").unwrap();
        let dest = dir.join("model");
        std::os::unix::fs::symlink(&elsewhere, &dest).unwrap();
        let staged = StagedDir::new(&dest).unwrap();
        fs::write(staged.path().join("config.json"), b"{}").unwrap();
        staged.commit().unwrap();
        assert!(!fs::symlink_metadata(&dest).unwrap().is_symlink());
        assert_eq!(names(&dest), ["config.json"]);
        assert_eq!(fs::read(elsewhere.join("keep")).unwrap(), b"mine");
        assert_eq!(names(&dir), ["elsewhere", "model"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_path_without_a_name_is_refused() {
        assert!(write_atomic(Path::new("/"), b"x").is_err());
        assert!(StagedDir::new(Path::new("..")).is_err());
    }
}
