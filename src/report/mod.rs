//! The certificate and everything made from it: the report schema, canonical JSON (RFC 8785), the
//! in-toto Statement v1 that wraps a report, the DSSE envelope that carries it, Ed25519 key
//! files, verification as a list of checks, HTML and Markdown pages for people, and diffs between
//! two reports. A signed certificate must be checkable without the ML stack, so this module never
//! imports candle, `model`, `unlearn` or the evidence producer: besides `crate::atomic` it uses
//! only `judge`'s plain-data types (verdicts, metric directions, specs) and its float64
//! derivation of the statistics from per-record values (`figures` checks a signed file with
//! it), and it sees method and trajectory as JSON. Each submodule has its own small error type.

pub mod certificate;
pub mod diff;
pub mod dsse;
pub mod figures;
pub mod html;
pub mod jcs;
pub mod keys;
pub mod markdown;
pub mod schema;
pub mod seal;
pub mod statement;
pub mod verify;

pub use certificate::{write_certificate, CertificateError, CERTIFICATE_FILE};
pub use diff::{diff, Diff};
pub use dsse::{DsseError, Envelope};
pub use jcs::JcsError;
pub use keys::{keygen, load_signing_key, load_verifying_key, KeyError};
pub use schema::{Report, ReportError};
pub use seal::{open_envelope, sign_statement, SealError};
pub use statement::{Statement, StatementError, Subject};
pub use verify::{verify, Check, Outcome, Verification};
