//! Embeds the source commit into the binary as `LETHE_COMMIT`, so every report names the code
//! that wrote it. It reads `.git` directly (HEAD, then the loose ref or `packed-refs`) instead of
//! running git, which may be absent; anything it cannot resolve (a tarball without `.git`, a
//! corrupt ref) gives "unknown". It follows `.git` files (worktrees, submodules) and their
//! `commondir`. It owns nothing else.

use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dot_git = root.join(".git");
    // Only existing paths are watched: cargo reruns a build script on every build while a path
    // it watches is missing.
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git_dir(&dot_git)
        .and_then(|dir| resolve_head(&dir))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=LETHE_COMMIT={commit}");
}

/// The git directory: `.git` itself, or the one a `.git` file points to (`gitdir: PATH`).
fn git_dir(dot_git: &Path) -> Option<PathBuf> {
    if dot_git.is_dir() {
        return Some(dot_git.to_path_buf());
    }
    let text = fs::read_to_string(dot_git).ok()?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    let base = dot_git.parent()?;
    Some(base.join(target))
}

/// Asks cargo to rerun the build script when `path` changes, if it exists.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The commit HEAD names, watching every file it was read from and the folders a new loose ref
/// would appear in.
fn resolve_head(git_dir: &Path) -> Option<String> {
    let head_path = git_dir.join("HEAD");
    watch(&head_path);
    let head = fs::read_to_string(&head_path).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:") else {
        return is_commit(head).then(|| head.to_string());
    };
    let reference = reference.trim();
    // A worktree keeps HEAD to itself but shares refs through `commondir`.
    let common = match fs::read_to_string(git_dir.join("commondir")) {
        Ok(rel) => git_dir.join(rel.trim()),
        Err(_) => git_dir.to_path_buf(),
    };
    for dir in [git_dir, common.as_path()] {
        let loose = dir.join(reference);
        watch(&loose);
        if let Some(folder) = loose.parent() {
            watch(folder);
        }
        if let Ok(text) = fs::read_to_string(&loose) {
            let id = text.trim();
            return is_commit(id).then(|| id.to_string());
        }
    }
    let packed = common.join("packed-refs");
    watch(&packed);
    let text = fs::read_to_string(packed).ok()?;
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('^'))
        .filter_map(|l| l.split_once(' '))
        .find(|(_, name)| name.trim() == reference)
        .map(|(id, _)| id.to_string())
        .filter(|id| is_commit(id))
}

fn is_commit(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}
