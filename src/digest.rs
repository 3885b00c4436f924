//! sha256, the one way lethe names the bytes it read: of a buffer, and of a file hashed as a
//! stream (model weights are large). Every digest in evidence, reports, statements, ledgers and
//! training records comes from here, as lower-case hex. This module owns hashing only; it opens
//! no file it was not handed and decides nothing about what a digest must match.

use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io;
use std::path::Path;

/// A file read, with the sha256 of the bytes actually read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileDigest {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The digest of bytes already read, under the file name `name`.
pub fn digest(name: &str, bytes: &[u8]) -> FileDigest {
    FileDigest {
        name: name.to_string(),
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
    }
}

/// The raw sha256 of the file at `path` and its length, hashed as a stream.
pub fn file_sha256(path: &Path) -> io::Result<([u8; 32], u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let bytes = io::copy(&mut file, &mut hasher)?;
    Ok((hasher.finalize().into(), bytes))
}

/// Lower-case hex sha256 of the file at `path` and its length.
pub fn file_sha256_hex(path: &Path) -> io::Result<(String, u64)> {
    file_sha256(path).map(|(d, n)| (hex::encode(d), n))
}

/// True for 64 lower-case hex digits, the only form of sha256 lethe writes or accepts.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_of_abc() {
        // FIPS 180-2, appendix B.1: sha256("abc").
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let d = digest("x", b"abc");
        assert_eq!((d.name.as_str(), d.bytes), ("x", 3));
    }
}
