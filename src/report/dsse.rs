//! DSSE (Dead Simple Signing Envelope, secure-systems-lab/dsse, protocol v1): a payload, its
//! type, and Ed25519 signatures over the pre-authentication encoding (PAE) of both. This module
//! owns the envelope's JSON form, the PAE, signing and verification; it treats the payload as
//! opaque bytes and knows nothing of statements or key files.

use crate::report::jcs;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature as Ed25519Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error)]
pub enum DsseError {
    #[error("envelope is not a DSSE envelope: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("envelope `payloadType` is {found:?}, expected {expected:?}")]
    PayloadType { found: String, expected: String },
    #[error("envelope field `{field}` is not standard padded base64: {source}")]
    Base64 {
        field: &'static str,
        #[source]
        source: base64::DecodeError,
    },
    #[error("envelope has no signature from key {0}")]
    NoSignatureForKey(String),
    #[error("envelope signature from key {0} does not verify")]
    BadSignature(String),
}

/// A DSSE envelope as it is serialized: base64 and hex stay strings until [`verify`] decodes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Standard base64 (padded) of the payload bytes.
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

/// One signature in an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// [`key_id`] of the signing key.
    pub keyid: String,
    /// Standard base64 (padded) of the 64-byte Ed25519 signature.
    pub sig: String,
}

impl Envelope {
    /// Parses an envelope; unknown, missing, duplicate or mistyped fields are errors.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DsseError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The envelope as canonical (RFC 8785) JSON.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"payload\":");
        jcs::write_string(&mut out, &self.payload);
        out.push_str(",\"payloadType\":");
        jcs::write_string(&mut out, &self.payload_type);
        out.push_str(",\"signatures\":[");
        for (i, s) in self.signatures.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"keyid\":");
            jcs::write_string(&mut out, &s.keyid);
            out.push_str(",\"sig\":");
            jcs::write_string(&mut out, &s.sig);
            out.push('}');
        }
        out.push_str("]}");
        out
    }
}

/// The key id lethe writes: lower-case hex sha256 of the raw 32-byte Ed25519 public key.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal bytes.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let head = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    );
    let mut out = Vec::with_capacity(head.len() + payload.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Signs `payload` as `payload_type` with one Ed25519 key.
pub fn sign(payload: &[u8], payload_type: &str, key: &SigningKey) -> Envelope {
    let sig = key.sign(&pae(payload_type, payload));
    Envelope {
        payload: STANDARD.encode(payload),
        payload_type: payload_type.to_owned(),
        signatures: vec![Signature {
            keyid: key_id(&key.verifying_key()),
            sig: STANDARD.encode(sig.to_bytes()),
        }],
    }
}

/// Checks that `envelope` carries `expected_type` and a valid signature by `key` (found by
/// [`key_id`]; other keys' signatures are ignored) and returns the payload bytes.
pub fn verify(
    envelope: &Envelope,
    key: &VerifyingKey,
    expected_type: &str,
) -> Result<Vec<u8>, DsseError> {
    if envelope.payload_type != expected_type {
        let found = envelope.payload_type.clone();
        let expected = expected_type.to_owned();
        return Err(DsseError::PayloadType { found, expected });
    }
    let payload = decode("payload", &envelope.payload)?;
    let message = pae(&envelope.payload_type, &payload);
    let id = key_id(key);
    let mine: Vec<&Signature> = envelope
        .signatures
        .iter()
        .filter(|s| s.keyid == id)
        .collect();
    if mine.is_empty() {
        return Err(DsseError::NoSignatureForKey(id));
    }
    for s in mine {
        let bytes = decode("sig", &s.sig)?;
        let Ok(sig) = Ed25519Signature::from_slice(&bytes) else {
            continue;
        };
        if key.verify_strict(&message, &sig).is_ok() {
            return Ok(payload);
        }
    }
    Err(DsseError::BadSignature(id))
}

/// Standard base64 with padding; the base64 crate also refuses non-zero trailing bits, so each
/// byte string has exactly one accepted encoding.
fn decode(field: &'static str, text: &str) -> Result<Vec<u8>, DsseError> {
    STANDARD
        .decode(text)
        .map_err(|source| DsseError::Base64 { field, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// The worked PAE example of the DSSE protocol document (secure-systems-lab/dsse,
    /// protocol.md): type "http://example.com/HelloWorld", body "hello world".
    #[test]
    fn pae_matches_the_dsse_spec() {
        let got = pae("http://example.com/HelloWorld", b"hello world");
        assert_eq!(
            got,
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn to_json_is_canonical_and_reads_back() {
        let env = sign(b"{\"a\":1}", IN_TOTO_PAYLOAD_TYPE, &key(1));
        let text = env.to_json();
        let as_value = serde_json::to_value(&env).unwrap();
        assert_eq!(text, jcs::to_string(&as_value).unwrap());
        assert_eq!(Envelope::from_json(text.as_bytes()).unwrap(), env);
    }

    #[test]
    fn wrong_type_wrong_key_and_bad_fields_fail() {
        let env = sign(b"payload", "text/plain", &key(1));
        let vk = key(1).verifying_key();
        assert_eq!(verify(&env, &vk, "text/plain").unwrap(), b"payload");
        let err = verify(&env, &vk, IN_TOTO_PAYLOAD_TYPE).unwrap_err();
        assert!(matches!(err, DsseError::PayloadType { .. }), "{err}");
        // A valid signature made under another type does not carry over when the type is edited.
        let mut retyped = env.clone();
        retyped.payload_type = IN_TOTO_PAYLOAD_TYPE.to_owned();
        let err = verify(&retyped, &vk, IN_TOTO_PAYLOAD_TYPE).unwrap_err();
        assert!(matches!(err, DsseError::BadSignature(_)), "{err}");
        let err = verify(&env, &key(2).verifying_key(), "text/plain").unwrap_err();
        assert!(matches!(err, DsseError::NoSignatureForKey(_)), "{err}");
        // Another key's signature under this key's id.
        let mut forged = env.clone();
        forged.signatures[0].sig = sign(b"payload", "text/plain", &key(2)).signatures[0]
            .sig
            .clone();
        assert!(matches!(
            verify(&forged, &vk, "text/plain"),
            Err(DsseError::BadSignature(_))
        ));
        let mut unpadded = env.clone();
        unpadded.payload = unpadded.payload.trim_end_matches('=').to_owned();
        assert!(matches!(
            verify(&unpadded, &vk, "text/plain"),
            Err(DsseError::Base64 {
                field: "payload",
                ..
            })
        ));
        let extra = env
            .to_json()
            .replacen("{\"payload\"", "{\"x\":1,\"payload\"", 1);
        assert!(Envelope::from_json(extra.as_bytes()).is_err());
    }

    /// Every single-byte change of a serialized envelope, at every position and with every xor
    /// mask, is refused: by the parser, the type check, base64, the key id or the signature.
    #[test]
    fn every_byte_flip_is_refused() {
        let sk = key(3);
        let vk = sk.verifying_key();
        let bytes = sign(b"{\"k\":[1,2]}", IN_TOTO_PAYLOAD_TYPE, &sk)
            .to_json()
            .into_bytes();
        let check =
            |b: &[u8]| Envelope::from_json(b).and_then(|e| verify(&e, &vk, IN_TOTO_PAYLOAD_TYPE));
        assert!(check(&bytes).is_ok());
        for i in 0..bytes.len() {
            for mask in 1..=255u8 {
                let mut tampered = bytes.clone();
                tampered[i] ^= mask;
                assert!(
                    check(&tampered).is_err(),
                    "byte {i} ^ {mask:#04x} still verifies"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn prop_verify_sign_round_trips(payload in prop::collection::vec(any::<u8>(), 0..512),
                                        seed in any::<[u8; 32]>()) {
            let sk = SigningKey::from_bytes(&seed);
            let env = Envelope::from_json(sign(&payload, IN_TOTO_PAYLOAD_TYPE, &sk).to_json().as_bytes()).unwrap();
            prop_assert_eq!(verify(&env, &sk.verifying_key(), IN_TOTO_PAYLOAD_TYPE).unwrap(), payload);
        }

        #[test]
        fn prop_parse_and_verify_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(env) = Envelope::from_json(&bytes) {
                let _ = verify(&env, &key(1).verifying_key(), IN_TOTO_PAYLOAD_TYPE);
            }
        }

        #[test]
        fn prop_tampered_envelopes_never_panic(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let sk = key(4);
            let mut bytes = sign(b"{}", IN_TOTO_PAYLOAD_TYPE, &sk).to_json().into_bytes();
            for (at, byte) in edits {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            if let Ok(env) = Envelope::from_json(&bytes) {
                let _ = verify(&env, &sk.verifying_key(), IN_TOTO_PAYLOAD_TYPE);
            }
        }
    }
}
