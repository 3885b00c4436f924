//! Ed25519 signing keys on disk: generating a pair (`signer.key.pem`, PKCS#8, mode 0600 from the
//! moment it exists, in a folder made 0700 when keygen creates it; `signer.pub.pem`, SPKI),
//! loading either, and warning when a private key file is open to others. This module owns key
//! files and nothing else: it never overwrites a key, never prints or logs private key material,
//! and knows nothing of envelopes or reports.

use crate::atomic;
use ed25519_dalek::pkcs8::spki::der::{pem::LineEnding, zeroize::Zeroizing};
use ed25519_dalek::pkcs8::spki::EncodePublicKey as _;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, KeypairBytes,
};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::rngs::OsRng;
use rand::RngCore as _;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// File name of the private key that [`keygen`] writes.
pub const SIGNING_KEY_FILE: &str = "signer.key.pem";
/// File name of the public key that [`keygen`] writes.
pub const VERIFYING_KEY_FILE: &str = "signer.pub.pem";

/// Why a key could not be made, written or read; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{0} already exists; refusing to overwrite a key (move it away or pick another directory)"
    )]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read random bytes from the operating system: {0}")]
    Random(#[from] rand::Error),
    #[error("cannot encode the key for {path}: {reason}")]
    Encode { path: PathBuf, reason: String },
    #[error("{path} is not a PEM {expected}: {reason}")]
    Parse {
        path: PathBuf,
        expected: &'static str,
        reason: String,
    },
}

/// Generates a fresh key pair in `dir` and returns the paths of the private and public key
/// files. A missing `dir` is created owner-only (0700; missing parents get the usual mode); an
/// existing one keeps its mode. Refuses, before writing anything, if either file exists.
pub fn keygen(dir: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
    create_private_dir(dir)?;
    let key_path = dir.join(SIGNING_KEY_FILE);
    let pub_path = dir.join(VERIFYING_KEY_FILE);
    for path in [&key_path, &pub_path] {
        if fs::symlink_metadata(path).is_ok() {
            return Err(KeyError::Exists(path.clone()));
        }
    }
    let (private_pem, public_pem) = pem_pair(&generate()?, &key_path, &pub_path)?;
    create_new(&key_path, 0o600, private_pem.as_bytes())?;
    if let Err(e) = create_new(&pub_path, 0o644, public_pem.as_bytes()) {
        // Leave no half pair behind: a key without its public half is useless and confusing.
        let _ = fs::remove_file(&key_path);
        return Err(e);
    }
    Ok((key_path, pub_path))
}

/// A warning when the private key file at `path` can be read or written by its group or by
/// others (the mode is named, as in `0644`), `None` when it cannot or its mode is unreadable.
/// Commands that sign print it and go on: a key that was exposed is the user's call to replace.
pub fn private_key_exposure(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "the private key {} has mode {mode:04o}: its group or others can read or change it \
                 (chmod 600 it, and make a new key if others may have copied it)",
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Reads a PKCS#8 PEM Ed25519 private key (with or without the embedded public key).
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io_error(path))?);
    SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::Parse {
        path: path.to_owned(),
        expected: "PKCS#8 Ed25519 private key",
        reason: e.to_string(),
    })
}

/// Reads an SPKI PEM (`BEGIN PUBLIC KEY`) Ed25519 public key.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = fs::read_to_string(path).map_err(io_error(path))?;
    VerifyingKey::from_public_key_pem(&text).map_err(|e| KeyError::Parse {
        path: path.to_owned(),
        expected: "SPKI Ed25519 public key",
        reason: e.to_string(),
    })
}

/// The PEM texts of a key pair. The private key is written as PKCS#8 v1 (RFC 8410 §7, no
/// embedded public key): ed25519-dalek's own encoding is v2, which OpenSSL 3.0 and Python's
/// `cryptography` refuse to read.
fn pem_pair(
    key: &SigningKey,
    key_path: &Path,
    pub_path: &Path,
) -> Result<(Zeroizing<String>, String), KeyError> {
    let encode_error = |path: &Path, e: &dyn std::fmt::Display| KeyError::Encode {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let seed_only = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    let private_pem = seed_only
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| encode_error(key_path, &e))?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| encode_error(pub_path, &e))?;
    Ok((private_pem, public_pem))
}

fn generate() -> Result<SigningKey, KeyError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    OsRng.try_fill_bytes(&mut seed[..])?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Creates `dir` (and any missing parents) with the leaf made 0700, leaving an existing `dir`
/// as it is.
fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other.map_err(io_error(dir)),
    }
}

/// Writes `bytes` to a new file at `path` with permissions `mode`, atomically and without ever
/// replacing an existing file: a temporary file beside it ([`atomic::temp_file_beside`],
/// exclusive, unpredictable name) is created with `mode` already set and then linked into place
/// with a call that fails if `path` exists. The temporary file is gone on every path.
fn create_new(path: &Path, mode: u32, bytes: &[u8]) -> Result<(), KeyError> {
    let mut tmp = atomic::temp_file_beside(path, mode).map_err(io_error(path))?;
    let written = tmp.write_all(bytes).and_then(|()| tmp.as_file().sync_all());
    written.map_err(io_error(tmp.path()))?;
    tmp.persist_noclobber(path)
        .map_err(|e| match e.error.kind() {
            io::ErrorKind::AlreadyExists => KeyError::Exists(path.to_owned()),
            _ => io_error(path)(e.error),
        })?;
    Ok(())
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use ed25519_dalek::{Signer as _, Verifier as _};

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lethe-keys-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn keygen_writes_a_working_pair() {
        let dir = scratch_dir("pair").join("nested");
        let (key_path, pub_path) = keygen(&dir).unwrap();
        assert_eq!(key_path, dir.join(SIGNING_KEY_FILE));
        assert_eq!(pub_path, dir.join(VERIFYING_KEY_FILE));
        let sk = load_signing_key(&key_path).unwrap();
        let vk = load_verifying_key(&pub_path).unwrap();
        assert_eq!(sk.verifying_key(), vk);
        vk.verify(b"m", &sk.sign(b"m")).unwrap();
        let pem = fs::read_to_string(&key_path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        // PKCS#8 v1, laid out as RFC 8410 §10.3: version 0, id-Ed25519, the 32-byte seed.
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        assert_eq!(der.len(), 48);
        assert_eq!(hex::encode(&der[..16]), "302e020100300506032b657004220420");
        let pem = fs::read_to_string(&pub_path).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        let leftovers = fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 2, "temporary files left in {}", dir.display());
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn private_key_is_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = scratch_dir("mode");
        let (key_path, _) = keygen(&dir).unwrap();
        let mode = fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_keygen_creates_is_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let top = scratch_dir("folder-mode");
        let dir = top.join("keys");
        keygen(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700, "{:04o}", mode(&dir));
        assert_eq!(mode(&dir.join(SIGNING_KEY_FILE)), 0o600);
        // An existing folder keeps its mode; keygen does not chmod the user's folders.
        let shared = top.join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o750)).unwrap();
        keygen(&shared).unwrap();
        assert_eq!(mode(&shared), 0o750);
        fs::remove_dir_all(&top).unwrap();
    }

    /// What a killed keygen left (or someone planted) under the old predictable temporary name,
    /// `.signer.key.pem.PID.tmp`, neither blocks a new key nor receives it.
    #[cfg(unix)]
    #[test]
    fn leftovers_at_the_old_temporary_name_change_nothing() {
        let dir = scratch_dir("leftover");
        fs::create_dir_all(&dir).unwrap();
        let pid = std::process::id();
        fs::write(dir.join(format!(".{SIGNING_KEY_FILE}.{pid}.tmp")), b"stale").unwrap();
        let victim = dir.join("victim");
        fs::write(&victim, b"precious").unwrap();
        let planted = dir.join(format!(".{VERIFYING_KEY_FILE}.{pid}.tmp"));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let (key_path, pub_path) = keygen(&dir).unwrap();
        assert!(load_signing_key(&key_path).is_ok());
        assert!(load_verifying_key(&pub_path).is_ok());
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn an_exposed_private_key_is_named_with_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = scratch_dir("exposure");
        let (key_path, pub_path) = keygen(&dir).unwrap();
        assert_eq!(private_key_exposure(&key_path), None);
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644)).unwrap();
        let warning = private_key_exposure(&key_path).unwrap();
        assert!(
            warning.contains("0644") && warning.contains(SIGNING_KEY_FILE),
            "{warning}"
        );
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o620)).unwrap();
        assert!(private_key_exposure(&key_path).unwrap().contains("0620"));
        // A warning, not a refusal: the key still loads.
        assert!(load_signing_key(&key_path).is_ok());
        assert!(private_key_exposure(&pub_path).is_some());
        assert_eq!(private_key_exposure(&dir.join("missing")), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keygen_refuses_to_overwrite_either_file() {
        let dir = scratch_dir("overwrite");
        let (key_path, pub_path) = keygen(&dir).unwrap();
        let before = fs::read(&key_path).unwrap();
        let err = keygen(&dir).unwrap_err();
        assert!(
            matches!(&err, KeyError::Exists(p) if *p == key_path),
            "{err}"
        );
        assert!(err.to_string().contains(SIGNING_KEY_FILE), "{err}");
        assert_eq!(fs::read(&key_path).unwrap(), before);

        fs::remove_file(&key_path).unwrap();
        let err = keygen(&dir).unwrap_err();
        assert!(
            matches!(&err, KeyError::Exists(p) if *p == pub_path),
            "{err}"
        );
        assert!(
            !key_path.exists(),
            "a private key was written although the pair was refused"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn create_new_never_replaces() {
        let dir = scratch_dir("create-new");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        fs::write(&path, b"old").unwrap();
        assert!(matches!(
            create_new(&path, 0o600, b"new"),
            Err(KeyError::Exists(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "a temporary file was left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    /// RFC 8410 §10.3 (private key) and §10.1 (its public key): keys made by other tools load.
    #[test]
    fn loads_rfc8410_examples() {
        let dir = scratch_dir("rfc8410");
        fs::create_dir_all(&dir).unwrap();
        let key_path = dir.join("k.pem");
        let pub_path = dir.join("p.pem");
        fs::write(&key_path, "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n").unwrap();
        fs::write(&pub_path, "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n").unwrap();
        let sk = load_signing_key(&key_path).unwrap();
        let vk = load_verifying_key(&pub_path).unwrap();
        assert_eq!(sk.verifying_key(), vk);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = scratch_dir("errors");
        fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let err = load_signing_key(&missing).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
        let garbage = dir.join("garbage.pem");
        fs::write(&garbage, "not a key").unwrap();
        let err = load_verifying_key(&garbage).unwrap_err().to_string();
        assert!(
            err.contains("garbage.pem") && err.contains("public key"),
            "{err}"
        );
        // A private key where a public key is expected is refused, not misread.
        let (key_path, _) = keygen(&dir.join("pair")).unwrap();
        assert!(load_verifying_key(&key_path).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
