//! The certificate's trust layer: canonical JSON (RFC 8785), the in-toto Statement v1 that wraps
//! a report, the DSSE envelope that carries it, Ed25519 key files, and verification of all three.
//! A signed certificate must be checkable without the ML stack, so this module never imports
//! candle or any other lethe module except `crate::atomic`; it sees a report only as JSON.
//! Each submodule has its own small error type.

pub mod dsse;
pub mod jcs;
pub mod keys;
pub mod seal;
pub mod statement;

pub use dsse::{DsseError, Envelope};
pub use jcs::JcsError;
pub use keys::{keygen, load_signing_key, load_verifying_key, KeyError};
pub use seal::{open_envelope, sign_statement, SealError};
pub use statement::{Statement, StatementError, Subject};
