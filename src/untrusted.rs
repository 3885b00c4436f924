//! Reading files that may come from a hostile party (DESIGN.md, "Honesty of a certificate", rule
//! 7): a model directory, a tokenizer, a data file named by a certificate. This module owns the
//! three habits every such reader shares: open regular files only (a FIFO would block the reader
//! forever, a device or a directory is not a file), never read more than a stated cap, and parse
//! JSON strictly (a repeated key is reported instead of the last one silently winning). It also
//! hashes what a streaming reader actually read, so a caller never reads a file twice to digest
//! it. The caps themselves live beside each reader (`MAX_CONFIG_BYTES`, ...), with their reason.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a regular file (it is a {kind}); refusing to read it as the {what}")]
    NotRegular {
        path: PathBuf,
        kind: &'static str,
        what: &'static str,
    },
    #[error("{path}: {len} bytes, more than the {cap}-byte limit for the {what}")]
    TooLarge {
        path: PathBuf,
        len: u64,
        cap: u64,
        what: &'static str,
    },
}

fn kind_of(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "FIFO";
        }
        if t.is_socket() {
            return "socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "device";
        }
    }
    if t.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// Opens `path` for reading if it is a regular file (symbolic links are followed) and returns
/// it with its length. The type is checked before opening (so a FIFO is never opened) and again
/// on the opened handle (so a swap in between is caught); on Unix the open itself is
/// non-blocking, which a FIFO swapped in would otherwise turn into a hang.
pub fn open_regular(path: &Path, what: &'static str) -> Result<(File, u64), ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let not_regular = |t: std::fs::FileType| ReadError::NotRegular {
        path: path.to_path_buf(),
        kind: kind_of(t),
        what,
    };
    let before = std::fs::metadata(path).map_err(io)?;
    if !before.is_file() {
        return Err(not_regular(before.file_type()));
    }
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = opts.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    Ok((file, meta.len()))
}

/// [`open_regular`], refusing a file longer than `cap` bytes before reading any of it.
pub fn open_regular_capped(
    path: &Path,
    cap: u64,
    what: &'static str,
) -> Result<(File, u64), ReadError> {
    let (file, len) = open_regular(path, what)?;
    if len > cap {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            len,
            cap,
            what,
        });
    }
    Ok((file, len))
}

/// The whole of a regular file of at most `cap` bytes. Never reads more than `cap + 1` bytes,
/// even if the file grows while it is read.
pub fn read_regular_file_capped(
    path: &Path,
    cap: u64,
    what: &'static str,
) -> Result<Vec<u8>, ReadError> {
    let (file, len) = open_regular_capped(path, cap, what)?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            cap,
            what,
        });
    }
    Ok(bytes)
}

/// The sha256 (hex) and length of the bytes a reader actually read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHash {
    pub sha256: String,
    pub bytes: u64,
}

/// A reader that hashes (sha256) and counts every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The sha256 and length of what has been read so far.
    pub fn hash(&self) -> FileHash {
        FileHash {
            sha256: hex::encode(self.hasher.clone().finalize()),
            bytes: self.bytes,
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// JSON parsed into a [`Value`], with the first key that an object repeated (serde_json keeps
/// the last one silently, so `{"id":"a","id":"b"}` would read as `b`).
pub struct StrictJson {
    pub value: Value,
    pub duplicate_key: Option<String>,
}

impl StrictJson {
    /// Parses `text`; a repeated key is not a parse error but [`StrictJson::duplicate_key`], so
    /// each caller reports it in its own typed error.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The text and JSON of a file's `bytes`, refusing what is not UTF-8, not JSON, or repeats
    /// a key, with the message a caller puts in its own error beside the file's path.
    pub fn of_file(bytes: &[u8]) -> Result<(&str, Value), String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
        let json = Self::parse(text).map_err(|e| format!("invalid JSON: {e}"))?;
        match json.duplicate_key {
            Some(key) => Err(format!("key {key:?} appears more than once")),
            None => Ok((text, json.value)),
        }
    }
}

impl<'de> Deserialize<'de> for StrictJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

fn plain(value: Value) -> StrictJson {
    StrictJson {
        value,
        duplicate_key: None,
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictJson;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<StrictJson, E> {
        Ok(plain(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<StrictJson, E> {
        Ok(plain(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<StrictJson, E> {
        Ok(plain(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<StrictJson, E> {
        Ok(plain(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<StrictJson, E> {
        Ok(plain(Value::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<StrictJson, E> {
        Ok(plain(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<StrictJson, E> {
        Ok(plain(Value::Null))
    }
    fn visit_none<E>(self) -> Result<StrictJson, E> {
        Ok(plain(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictJson, A::Error> {
        let (mut items, mut duplicate_key) = (Vec::new(), None);
        while let Some(item) = seq.next_element::<StrictJson>()? {
            duplicate_key = duplicate_key.or(item.duplicate_key);
            items.push(item.value);
        }
        Ok(StrictJson {
            value: Value::Array(items),
            duplicate_key,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictJson, A::Error> {
        let (mut obj, mut duplicate_key) = (Map::new(), None);
        while let Some(key) = map.next_key::<String>()? {
            let item = map.next_value::<StrictJson>()?;
            duplicate_key = duplicate_key.or(item.duplicate_key);
            if obj.contains_key(&key) {
                duplicate_key = duplicate_key.or(Some(key));
            } else {
                obj.insert(key, item.value);
            }
        }
        Ok(StrictJson {
            value: Value::Object(obj),
            duplicate_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_json_reports_the_first_repeated_key_at_any_depth() {
        let j = StrictJson::parse(r#"{"id":"a","id":"b","text":"x"}"#).unwrap();
        assert_eq!(j.duplicate_key.as_deref(), Some("id"));
        let j = StrictJson::parse(r#"{"a":[{"k":1,"k":2}],"b":1.5}"#).unwrap();
        assert_eq!(j.duplicate_key.as_deref(), Some("k"));
        let text = r#"{"a":[1,-2,3.5,"s",null,true],"b":{"c":{}}}"#;
        let j = StrictJson::parse(text).unwrap();
        assert_eq!(j.duplicate_key, None);
        assert_eq!(j.value, serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn hashing_reader_digests_what_it_read() {
        let mut r = HashingReader::new(&b"abc"[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        let h = r.hash();
        assert_eq!(h.bytes, 3);
        assert_eq!(h.sha256, hex::encode(Sha256::digest(b"abc")));
    }
}
