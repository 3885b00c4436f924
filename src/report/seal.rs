//! Sealing a certificate: a statement's canonical bytes signed into a DSSE envelope, and an
//! envelope opened back into a statement only after every check passes. This module owns the
//! order of those checks; the formats themselves belong to `jcs`, `statement` and `dsse`.

use crate::report::dsse::{self, DsseError, Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::report::statement::{Statement, StatementError};
use ed25519_dalek::{SigningKey, VerifyingKey};

/// Why a statement could not be sealed or an envelope opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Envelope(#[from] DsseError),
    #[error("signed payload: {0}")]
    Statement(#[from] StatementError),
    #[error("signed payload is not in canonical (RFC 8785) form")]
    NotCanonical,
}

/// Checks `statement`, canonicalizes it (RFC 8785) and signs it as an in-toto payload.
pub fn sign_statement(statement: &Statement, key: &SigningKey) -> Result<Envelope, SealError> {
    statement.validate()?;
    let payload = statement.to_jcs()?;
    Ok(dsse::sign(&payload, IN_TOTO_PAYLOAD_TYPE, key))
}

/// Opens a serialized envelope: strict envelope JSON, in-toto payload type, a valid signature by
/// `key`, then a well-formed lethe statement whose payload bytes are its own canonical form (so
/// one statement has exactly one signed byte string).
pub fn open_envelope(bytes: &[u8], key: &VerifyingKey) -> Result<Statement, SealError> {
    let envelope = Envelope::from_json(bytes)?;
    let payload = dsse::verify(&envelope, key, IN_TOTO_PAYLOAD_TYPE)?;
    let statement = Statement::from_json(&payload)?;
    if statement.to_jcs()? != payload {
        return Err(SealError::NotCanonical);
    }
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::statement::Subject;
    use proptest::prelude::*;
    use serde_json::json;

    fn statement() -> Statement {
        let subject = vec![
            Subject::new("config.json", [1; 32]),
            Subject::new("model.safetensors", [2; 32]),
        ];
        Statement::new(
            subject,
            json!({"schema_version": 1, "auc_upper": 0.5125, "seed": 7}),
        )
    }

    #[test]
    fn sealed_statement_opens() {
        let sk = SigningKey::from_bytes(&[9; 32]);
        let bytes = sign_statement(&statement(), &sk).unwrap().to_json();
        assert_eq!(
            open_envelope(bytes.as_bytes(), &sk.verifying_key()).unwrap(),
            statement()
        );
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(matches!(
            open_envelope(bytes.as_bytes(), &other),
            Err(SealError::Envelope(_))
        ));
    }

    #[test]
    fn a_malformed_signature_before_a_valid_one_opens() {
        let sk = SigningKey::from_bytes(&[9; 32]);
        let mut env = sign_statement(&statement(), &sk).unwrap();
        let mut broken = env.signatures[0].clone();
        broken.sig = "%%%".into();
        env.signatures.insert(0, broken);
        let opened = open_envelope(env.to_json().as_bytes(), &sk.verifying_key());
        assert_eq!(opened.unwrap(), statement());
        env.signatures.remove(1);
        assert!(matches!(
            open_envelope(env.to_json().as_bytes(), &sk.verifying_key()),
            Err(SealError::Envelope(DsseError::BadSignature { .. }))
        ));
    }

    #[test]
    fn signed_but_wrong_payloads_are_refused() {
        let sk = SigningKey::from_bytes(&[9; 32]);
        let vk = sk.verifying_key();
        let open = |payload: &[u8]| {
            let env = dsse::sign(payload, IN_TOTO_PAYLOAD_TYPE, &sk);
            open_envelope(env.to_json().as_bytes(), &vk)
        };
        let canonical = statement().to_jcs().unwrap();
        assert!(open(&canonical).is_ok());
        let pretty = serde_json::to_vec_pretty(&statement()).unwrap();
        assert!(matches!(open(&pretty), Err(SealError::NotCanonical)));
        let mut value = serde_json::to_value(statement()).unwrap();
        value["predicateType"] = json!("https://slsa.dev/provenance/v1");
        let foreign = serde_json::to_vec(&value).unwrap();
        assert!(matches!(open(&foreign), Err(SealError::Statement(_))));
        let duplicate = br#"{"_type":"https://in-toto.io/Statement/v1","_type":"x"}"#;
        assert!(matches!(open(duplicate), Err(SealError::Statement(_))));
        // A correct statement signed under another payload type.
        let env = dsse::sign(&canonical, "application/json", &sk);
        assert!(matches!(
            open_envelope(env.to_json().as_bytes(), &vk),
            Err(SealError::Envelope(_))
        ));
    }

    #[test]
    fn unsigned_statement_problems_stop_signing() {
        let sk = SigningKey::from_bytes(&[9; 32]);
        let mut s = statement();
        s.subject.clear();
        assert!(matches!(
            sign_statement(&s, &sk),
            Err(SealError::Statement(_))
        ));
        let mut s = statement();
        s.predicate = json!({"seed": u64::MAX});
        assert!(matches!(
            sign_statement(&s, &sk),
            Err(SealError::Statement(_))
        ));
    }

    proptest! {
        #[test]
        fn prop_open_envelope_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = open_envelope(&bytes, &SigningKey::from_bytes(&[9; 32]).verifying_key());
        }
    }
}
