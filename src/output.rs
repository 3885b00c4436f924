//! Where a command may write: the one check every command runs on each output path before any
//! work, so that an output never replaces one of the same command's inputs (`unlearn --out`
//! naming its own model folder, `verify --html` naming the certificate it reads) and never
//! replaces an existing file or folder unless the user said `--force`. Paths are compared after
//! resolving symlinks, `.` and `..` (and, on Unix, by device and inode, which catches hard
//! links); an output inside an input folder, or an input inside an output folder (which
//! replacing the output would delete), is refused like an equal one. This module owns that
//! rule only; writing belongs to `atomic`.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Why an output path was refused; each names the paths.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("the output {out} is the input {input}; write the output somewhere else")]
    IsInput { out: PathBuf, input: PathBuf },
    #[error(
        "the output {out} lies inside the input folder {input}; write the output somewhere else"
    )]
    InsideInput { out: PathBuf, input: PathBuf },
    #[error("the input {input} lies inside the output {out}, which would replace it; write the output somewhere else")]
    ContainsInput { out: PathBuf, input: PathBuf },
    #[error("the output {0} already exists; pass --force to replace it")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Checks that `out` may be written by a command that reads `inputs` (files or folders; those
/// that do not exist are skipped, their reader reports them): it must not be, lie inside, or
/// contain any input, and unless `force` it must not exist (an empty folder counts as free).
pub fn check_output(out: &Path, inputs: &[&Path], force: bool) -> Result<(), OutputError> {
    let resolved = resolve(out)?;
    for input in inputs {
        let Ok(canonical) = input.canonicalize() else {
            continue;
        };
        let pair = || (out.to_owned(), input.to_path_buf());
        if resolved == canonical || same_file(out, input) {
            let (out, input) = pair();
            return Err(OutputError::IsInput { out, input });
        }
        if resolved.starts_with(&canonical) {
            let (out, input) = pair();
            return Err(OutputError::InsideInput { out, input });
        }
        if canonical.starts_with(&resolved) {
            let (out, input) = pair();
            return Err(OutputError::ContainsInput { out, input });
        }
    }
    if !force && occupied(out)? {
        return Err(OutputError::Exists(out.to_owned()));
    }
    Ok(())
}

/// `path` made absolute with symlinks resolved as far as it exists; the rest (which does not
/// exist yet) is appended with `.` dropped and `..` applied.
fn resolve(path: &Path) -> Result<PathBuf, OutputError> {
    let io_error = |source| OutputError::Io {
        path: path.to_owned(),
        source,
    };
    let absolute = std::path::absolute(path).map_err(io_error)?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(mut resolved) => {
                for part in rest.iter().rev() {
                    match part {
                        Component::ParentDir => {
                            resolved.pop();
                        }
                        Component::Normal(name) => resolved.push(name),
                        _ => {}
                    }
                }
                return Ok(resolved);
            }
            Err(e) => match (existing.parent(), existing.components().next_back()) {
                (Some(parent), Some(last)) => {
                    rest.push(last);
                    existing = parent;
                }
                _ => return Err(io_error(e)),
            },
        }
    }
}

/// True when something is at `path` (a dangling symlink too) other than an empty folder.
fn occupied(path: &Path) -> Result<bool, OutputError> {
    let io_error = |source| OutputError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(e)),
        Ok(meta) if meta.is_dir() => {
            let mut entries = std::fs::read_dir(path).map_err(io_error)?;
            Ok(entries.next().is_some())
        }
        Ok(_) => Ok(true),
    }
}

/// Two existing paths naming one file (hard links included).
#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &Path, _: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lethe-output-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.canonicalize().unwrap()
    }

    #[test]
    fn an_output_may_not_be_inside_or_around_an_input() {
        let dir = scratch("overlap");
        let model = dir.join("model");
        fs::create_dir(&model).unwrap();
        fs::write(model.join("config.json"), b"{}").unwrap();
        let data = dir.join("forget.jsonl");
        fs::write(&data, b"").unwrap();
        let inputs = [model.as_path(), data.as_path()];
        let check = |out: &Path, force| check_output(out, &inputs, force);
        for force in [false, true] {
            let err = check(&model, force).unwrap_err();
            assert!(matches!(err, OutputError::IsInput { .. }), "{err}");
            let spelled = dir.join("model/../model/.");
            let err = check(&spelled, force).unwrap_err();
            assert!(matches!(err, OutputError::IsInput { .. }), "{err}");
            let err = check(&model.join("new"), force).unwrap_err();
            assert!(matches!(err, OutputError::InsideInput { .. }), "{err}");
            let err = check(&dir, force).unwrap_err();
            assert!(matches!(err, OutputError::ContainsInput { .. }), "{err}");
            let err = check(&data, force).unwrap_err();
            assert!(err.to_string().contains("forget.jsonl"), "{err}");
        }
        assert!(check(&dir.join("unlearned"), false).is_ok());
        // A path that does not exist yet, spelled with `..`, through a folder that does not either.
        let err = check(&dir.join("a/b/../../model/x"), false).unwrap_err();
        assert!(matches!(err, OutputError::InsideInput { .. }), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_and_hard_links_to_an_input_are_the_input() {
        let dir = scratch("links");
        let cert = dir.join("c.json");
        fs::write(&cert, b"{}").unwrap();
        let soft = dir.join("soft.html");
        std::os::unix::fs::symlink(&cert, &soft).unwrap();
        let hard = dir.join("hard.html");
        fs::hard_link(&cert, &hard).unwrap();
        for out in [&soft, &hard] {
            let err = check_output(out, &[&cert], true).unwrap_err();
            assert!(matches!(err, OutputError::IsInput { .. }), "{err}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_output_needs_force() {
        let dir = scratch("exists");
        let file = dir.join("report.html");
        fs::write(&file, b"old").unwrap();
        let err = check_output(&file, &[], false).unwrap_err();
        assert!(matches!(err, OutputError::Exists(_)), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
        assert!(check_output(&file, &[], true).is_ok());
        let empty = dir.join("empty");
        fs::create_dir(&empty).unwrap();
        assert!(check_output(&empty, &[], false).is_ok());
        fs::write(empty.join("x"), b"").unwrap();
        assert!(check_output(&empty, &[], false).is_err());
        // Inputs that do not exist are left to their readers.
        assert!(check_output(&dir.join("new"), &[&dir.join("missing")], false).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
