//! Streaming reader of JSONL record files: one line at a time (never the whole file in memory),
//! each line checked — UTF-8, JSON, repeated keys, required fields, unknown fields, a size
//! limit, unique ids, question–answer consistency — with errors that name the file and the line.
//! The file must be a regular file (`crate::untrusted`) and is read once: the reader hashes what
//! it reads, so a caller that needs the file's digest asks the reader instead of reading again.

use super::record::Record;
use crate::untrusted::{open_regular_capped, FileHash, HashingReader, ReadError, StrictJson};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Lines longer than this are refused (a record is a sentence or a paragraph, not a book).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Data files larger than this are refused before reading: every command but `eval` holds the
/// records in memory, and 4 GiB is far beyond any split lethe trains or certifies on.
pub const MAX_FILE_BYTES: u64 = 1 << 32;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no records (the file is empty)")]
    Empty { path: PathBuf },
    #[error("{path}:{line}: line is longer than the {limit}-byte limit")]
    LineTooLong {
        path: PathBuf,
        line: usize,
        limit: usize,
    },
    #[error("{path}:{line}: not valid UTF-8")]
    Utf8 { path: PathBuf, line: usize },
    #[error("{path}:{line}: invalid JSON: {msg}")]
    Json {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{path}:{line}: {msg}")]
    Field {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{path}:{line}: key {key:?} appears more than once in the record")]
    DuplicateKey {
        path: PathBuf,
        line: usize,
        key: String,
    },
    #[error("{path}:{line}: duplicate id {id:?} (first on line {first})")]
    DuplicateId {
        path: PathBuf,
        line: usize,
        id: String,
        first: usize,
    },
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path}: {msg}")]
    Tokenizer { path: PathBuf, msg: String },
    #[error(
        "{path}: refusing the regex `{pattern}`: only patterns without look-around or \
         backreferences are accepted, as they run in linear time ({reason})"
    )]
    UnsafeRegex {
        path: PathBuf,
        pattern: String,
        reason: String,
    },
    #[error(
        "{path}: its Replace normalizers can grow a text {factor:.1}-fold, more than the \
         {limit}-fold limit"
    )]
    Expansion {
        path: PathBuf,
        factor: f64,
        limit: f64,
    },
    #[error("{path}: record {id:?}: {msg}")]
    Record {
        path: PathBuf,
        id: String,
        msg: String,
    },
}

/// Iterates over the records of a JSONL file, checking each line.
pub struct JsonlReader {
    path: PathBuf,
    reader: BufReader<HashingReader<File>>,
    line: usize,
    ids: HashMap<String, usize>,
    count: usize,
    done: bool,
    buf: Vec<u8>,
}

impl JsonlReader {
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let (file, _) = open_regular_capped(path, MAX_FILE_BYTES, "JSONL data")?;
        Ok(JsonlReader {
            path: path.to_path_buf(),
            reader: BufReader::new(HashingReader::new(file)),
            line: 0,
            ids: HashMap::new(),
            count: 0,
            done: false,
            buf: Vec::new(),
        })
    }

    /// The sha256 and length of the bytes read so far: of the whole file once the iterator has
    /// returned `None`.
    pub fn hash(&self) -> FileHash {
        self.reader.get_ref().hash()
    }

    fn next_line(&mut self) -> Result<Option<&[u8]>, DataError> {
        self.buf.clear();
        self.line += 1;
        let limit = MAX_LINE_BYTES as u64 + 1;
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| DataError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        let body = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.len() > MAX_LINE_BYTES {
            return Err(DataError::LineTooLong {
                path: self.path.clone(),
                line: self.line,
                limit: MAX_LINE_BYTES,
            });
        }
        Ok(Some(body))
    }

    fn parse(&mut self, bytes: &[u8]) -> Result<Record, DataError> {
        let (path, line) = (self.path.clone(), self.line);
        let text = std::str::from_utf8(bytes).map_err(|_| DataError::Utf8 {
            path: path.clone(),
            line,
        })?;
        let json = StrictJson::parse(text).map_err(|e| DataError::Json {
            path: path.clone(),
            line,
            msg: e.to_string(),
        })?;
        if let Some(key) = json.duplicate_key {
            return Err(DataError::DuplicateKey { path, line, key });
        }
        let value = json.value;
        let field = |msg: String| DataError::Field {
            path: path.clone(),
            line,
            msg,
        };
        let obj = value
            .as_object()
            .ok_or_else(|| field("a record must be a JSON object".into()))?;
        for key in ["id", "text"] {
            match obj.get(key) {
                None => return Err(field(format!("missing field `{key}`"))),
                Some(v) if !v.is_string() => {
                    return Err(field(format!("field `{key}` must be a string")))
                }
                _ => {}
            }
        }
        let rec: Record = serde_json::from_value(value).map_err(|e| field(e.to_string()))?;
        check_record(&rec).map_err(|e| field(e.to_string()))?;
        if let Some(&first) = self.ids.get(&rec.id) {
            return Err(DataError::DuplicateId {
                path,
                line,
                id: rec.id,
                first,
            });
        }
        self.ids.insert(rec.id.clone(), line);
        Ok(rec)
    }
}

/// Why a record's fields disagree with each other; each names the record or the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("field `id` is empty")]
    EmptyId,
    #[error("record {0:?}: field `text` is empty")]
    EmptyText(String),
    #[error("record {0:?}: `text` must equal `prompt` followed by `answer`")]
    TextMismatch(String),
    #[error("record {0:?}: `prompt` and `answer` go together")]
    Unpaired(String),
}

/// Consistency of one record's fields.
fn check_record(rec: &Record) -> Result<(), RecordError> {
    if rec.id.is_empty() {
        return Err(RecordError::EmptyId);
    }
    if rec.text.trim().is_empty() {
        return Err(RecordError::EmptyText(rec.id.clone()));
    }
    match (&rec.prompt, &rec.answer) {
        (None, None) => Ok(()),
        (Some(p), Some(a)) if rec.text == format!("{p}{a}") => Ok(()),
        (Some(_), Some(_)) => Err(RecordError::TextMismatch(rec.id.clone())),
        _ => Err(RecordError::Unpaired(rec.id.clone())),
    }
}

impl Iterator for JsonlReader {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let bytes = match self.next_line() {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(None) => {
                    self.done = true;
                    if self.count == 0 {
                        return Some(Err(DataError::Empty {
                            path: self.path.clone(),
                        }));
                    }
                    return None;
                }
                Ok(Some(b)) if b.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(Some(b)) => b.to_vec(),
            };
            let r = self.parse(&bytes);
            self.done = r.is_err();
            self.count += 1;
            return Some(r);
        }
        None
    }
}

/// Reads every record of a file (for the small splits the commands hold in memory anyway).
pub fn read_records(path: &Path) -> Result<Vec<Record>, DataError> {
    JsonlReader::open(path)?.collect()
}

/// Reads every record of a file and the sha256 of the bytes parsed, in one read: what a
/// certificate records about a split.
pub fn read_records_hashed(path: &Path) -> Result<(Vec<Record>, FileHash), DataError> {
    let mut reader = JsonlReader::open(path)?;
    let records = reader.by_ref().collect::<Result<Vec<_>, _>>()?;
    Ok((records, reader.hash()))
}
