//! DSSE (Dead Simple Signing Envelope, secure-systems-lab/dsse, protocol v1): a payload, its
//! type, and Ed25519 signatures over the pre-authentication encoding (PAE) of both. This module
//! owns the envelope's JSON form (objects only, at every level), the PAE, signing and
//! verification (any one valid signature by the given key suffices, whatever else the list
//! holds); it treats the payload as opaque bytes and knows nothing of statements or key files.

use crate::report::jcs;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature as Ed25519Signature, Signer as _, SigningKey, VerifyingKey};
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::marker::PhantomData;

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
    #[error("no envelope signature from key {key} verifies{}", skipped_note(.malformed))]
    BadSignature {
        key: String,
        /// The signatures under the key's id that could not even be read, as
        /// [`Verified::malformed`] lists them.
        malformed: Vec<String>,
    },
}

fn skipped_note(malformed: &[String]) -> String {
    if malformed.is_empty() {
        String::new()
    } else {
        format!(" ({} malformed: {})", malformed.len(), malformed.join("; "))
    }
}

/// A DSSE envelope as it is serialized: base64 and hex stay strings until [`verify`] decodes them.
/// It reads from a JSON object only (see [`ObjectOnly`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Envelope {
    /// Standard base64 (padded) of the payload bytes.
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

/// One signature in an envelope. It reads from a JSON object only (see [`ObjectOnly`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    /// [`key_id`] of the signing key.
    pub keyid: String,
    /// Standard base64 (padded) of the 64-byte Ed25519 signature.
    pub sig: String,
}

/// [`Envelope`]'s fields as read: unknown, missing and duplicate fields are errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeFields {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<Signature>,
}

/// [`Signature`]'s fields as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFields {
    keyid: String,
    sig: String,
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f: EnvelopeFields = d.deserialize_map(ObjectOnly(PhantomData))?;
        Ok(Envelope {
            payload: f.payload,
            payload_type: f.payload_type,
            signatures: f.signatures,
        })
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f: SignatureFields = d.deserialize_map(ObjectOnly(PhantomData))?;
        Ok(Signature {
            keyid: f.keyid,
            sig: f.sig,
        })
    }
}

/// Reads a derived struct `T` from a map and from nothing else. serde's derive also accepts a
/// sequence of the fields in order (`[payload, type, [[keyid, sig]]]`), which is no DSSE
/// envelope; asking the deserializer for a map refuses it, and the map is then handed to the
/// derived code, which keeps its checks for unknown, missing and duplicate fields.
struct ObjectOnly<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
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

/// A verified envelope's payload, and what verification passed over on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub payload: Vec<u8>,
    /// Signatures under the key's id that could not be read (not standard base64, not 64
    /// bytes), as `signature N: reason` with N the position in the list; they were skipped.
    pub malformed: Vec<String>,
}

/// Checks that `envelope` carries `expected_type` and a valid signature by `key` and returns the
/// payload bytes; see [`verify_signatures`].
pub fn verify(
    envelope: &Envelope,
    key: &VerifyingKey,
    expected_type: &str,
) -> Result<Vec<u8>, DsseError> {
    verify_signatures(envelope, key, expected_type).map(|v| v.payload)
}

/// Checks that `envelope` carries `expected_type` and at least one valid signature by `key`.
/// Every signature under the key's [`key_id`] is tried, so their order never matters; other
/// keys' signatures are ignored, and malformed ones under this id are listed, not fatal. With
/// no valid one the envelope fails, and the error lists the malformed ones.
pub fn verify_signatures(
    envelope: &Envelope,
    key: &VerifyingKey,
    expected_type: &str,
) -> Result<Verified, DsseError> {
    if envelope.payload_type != expected_type {
        let found = envelope.payload_type.clone();
        let expected = expected_type.to_owned();
        return Err(DsseError::PayloadType { found, expected });
    }
    let payload = decode("payload", &envelope.payload)?;
    let message = pae(&envelope.payload_type, &payload);
    let id = key_id(key);
    let mut mine = 0;
    let mut valid = false;
    let mut malformed = Vec::new();
    for (i, s) in envelope.signatures.iter().enumerate() {
        if s.keyid != id {
            continue;
        }
        mine += 1;
        match signature_bytes(&s.sig) {
            Err(reason) => malformed.push(format!("signature {i}: {reason}")),
            // Verified until one holds; the rest are only read, to list the malformed ones.
            Ok(sig) if !valid => valid = key.verify_strict(&message, &sig).is_ok(),
            Ok(_) => {}
        }
    }
    match (mine, valid) {
        (0, _) => Err(DsseError::NoSignatureForKey(id)),
        (_, true) => Ok(Verified { payload, malformed }),
        (_, false) => Err(DsseError::BadSignature { key: id, malformed }),
    }
}

/// A signature field's 64 bytes, or why it has none.
fn signature_bytes(text: &str) -> Result<Ed25519Signature, String> {
    let bytes = decode("sig", text).map_err(|e| e.to_string())?;
    Ed25519Signature::from_slice(&bytes)
        .map_err(|_| format!("{} bytes, not an Ed25519 signature's 64", bytes.len()))
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
        assert!(matches!(err, DsseError::BadSignature { .. }), "{err}");
        let err = verify(&env, &key(2).verifying_key(), "text/plain").unwrap_err();
        assert!(matches!(err, DsseError::NoSignatureForKey(_)), "{err}");
        // Another key's signature under this key's id.
        let mut forged = env.clone();
        forged.signatures[0].sig = sign(b"payload", "text/plain", &key(2)).signatures[0]
            .sig
            .clone();
        assert!(matches!(
            verify(&forged, &vk, "text/plain"),
            Err(DsseError::BadSignature { .. })
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

    /// serde's derive reads a struct from a sequence of its fields too; DSSE is objects only, at
    /// every level.
    #[test]
    fn array_forms_are_refused() {
        let env = sign(b"payload", "text/plain", &key(1));
        let (p, t) = (&env.payload, &env.payload_type);
        let (k, sig) = (&env.signatures[0].keyid, &env.signatures[0].sig);
        let object = format!(
            r#"{{"payload":"{p}","payloadType":"{t}","signatures":[{{"keyid":"{k}","sig":"{sig}"}}]}}"#
        );
        assert_eq!(Envelope::from_json(object.as_bytes()).unwrap(), env);
        for text in [
            format!(r#"["{p}","{t}",[["{k}","{sig}"]]]"#),
            format!(r#"["{p}","{t}",[{{"keyid":"{k}","sig":"{sig}"}}]]"#),
            format!(r#"{{"payload":"{p}","payloadType":"{t}","signatures":[["{k}","{sig}"]]}}"#),
            format!(
                r#"{{"payload":"{p}","payloadType":"{t}","signatures":[{{"keyid":"{k}","sig":"{sig}"}},["{k}","{sig}"]]}}"#
            ),
        ] {
            let err = Envelope::from_json(text.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("a JSON object"), "{text}: {err}");
        }
        // The derived checks still hold under the object-only reader.
        let dup = object.replacen(r#""keyid""#, r#""keyid":"x","keyid""#, 1);
        let err = Envelope::from_json(dup.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("duplicate field"), "{err}");
        let missing = object.replacen(r#","sig":"#, r#","other":"#, 1);
        assert!(Envelope::from_json(missing.as_bytes()).is_err());
        assert!(Envelope::from_json(b"{}").is_err());
    }

    /// A malformed or failing signature anywhere in the list does not hide a valid one, and is
    /// reported; with no valid signature the envelope fails and says which were malformed.
    #[test]
    fn signature_order_does_not_matter() {
        let sk = key(5);
        let vk = sk.verifying_key();
        let good = sign(b"body", "text/plain", &sk);
        let id = good.signatures[0].keyid.clone();
        let bad = |sig: &str| Signature {
            keyid: id.clone(),
            sig: sig.to_owned(),
        };
        let forged = sign(b"other", "text/plain", &sk).signatures[0].sig.clone();
        let others = [
            (bad("not base64!"), true),
            (bad("AAAA"), true),
            (bad(&forged), false),
            (
                sign(b"body", "text/plain", &key(6)).signatures[0].clone(),
                false,
            ),
        ];
        for (other, is_malformed) in &others {
            for valid_first in [false, true] {
                let mut env = good.clone();
                if valid_first {
                    env.signatures.push(other.clone());
                } else {
                    env.signatures.insert(0, other.clone());
                }
                let env = Envelope::from_json(env.to_json().as_bytes()).unwrap();
                let v = verify_signatures(&env, &vk, "text/plain").unwrap();
                assert_eq!(v.payload, b"body");
                assert_eq!(v.malformed.len(), usize::from(*is_malformed), "{other:?}");
                let at = if valid_first { 1 } else { 0 };
                if *is_malformed {
                    assert!(v.malformed[0].starts_with(&format!("signature {at}: ")));
                }
            }
        }
        let mut env = good.clone();
        env.signatures = vec![bad("AAAA"), bad(&forged)];
        let err = verify(&env, &vk, "text/plain").unwrap_err();
        match &err {
            DsseError::BadSignature { malformed, .. } => assert_eq!(malformed.len(), 1),
            _ => panic!("{err}"),
        }
        assert!(err.to_string().contains("signature 0: 3 bytes"), "{err}");
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
