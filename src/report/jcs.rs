//! RFC 8785 JSON Canonicalization Scheme (JCS): the one byte string that a JSON value signs as.
//! This module owns strict parsing (I-JSON: no duplicate keys) and canonical serialization of
//! `serde_json::Value` — keys sorted by UTF-16 code units, numbers written as ECMAScript writes
//! them, strings with the minimal escapes of RFC 8785 §3.2.2.2, no whitespace. It knows nothing
//! of statements, envelopes or keys.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Largest integer magnitude that every IEEE 754 double reader gets back exactly (I-JSON §2.2).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a JSON text or value has no canonical form.
#[derive(Debug, thiserror::Error)]
pub enum JcsError {
    /// The bytes are not one JSON value (the message carries line and column), or an object
    /// repeats a key.
    #[error("invalid JSON: {0}")]
    Parse(#[from] serde_json::Error),
    /// An integer value outside ±(2^53 − 1) would be rounded by canonicalization (JCS numbers
    /// are doubles); only values built in Rust can hold one, parsed text is read as doubles.
    #[error("integer {0} is outside ±(2^53 - 1) and would be rounded as a JSON number; store it as a string")]
    UnsafeInteger(String),
    /// NaN and the infinities have no JSON form.
    #[error("number {0} is not finite")]
    NonFinite(f64),
}

/// Parses `bytes` as one JSON value the way RFC 8785 §3.1 reads JSON (I-JSON): duplicate object
/// keys are refused (serde_json alone would keep the last), and integer literals outside
/// ±(2^53 − 1) are read as the nearest double, like every other number, so that canonical text
/// such as `295147905179352830000` reads back as the double it was written from.
pub fn parse(bytes: &[u8]) -> Result<Value, JcsError> {
    let StrictValue(value) = serde_json::from_slice(bytes)?;
    Ok(value)
}

/// Parses `bytes` strictly and returns their canonical form.
pub fn canonicalize(bytes: &[u8]) -> Result<Vec<u8>, JcsError> {
    to_vec(&parse(bytes)?)
}

/// The canonical UTF-8 bytes of `value`.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, JcsError> {
    to_string(value).map(String::into_bytes)
}

/// The canonical text of `value`.
pub fn to_string(value: &Value) -> Result<String, JcsError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), JcsError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map)?,
    }
    Ok(())
}

/// Members sorted by their keys' UTF-16 code units (RFC 8785 §3.2.3). This differs from the
/// UTF-8 byte order of serde_json's map for keys above U+FFFF against keys in U+E000..U+FFFF.
fn write_object(out: &mut String, map: &Map<String, Value>) -> Result<(), JcsError> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    out.push('{');
    for (i, (key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, value)?;
    }
    out.push('}');
    Ok(())
}

/// Writes `s` as a JSON string with RFC 8785 §3.2.2.2 escaping: `"` and `\`, the five short
/// control escapes, `\u00xx` (lower-case hex) for the other controls, everything else literal.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, n: &Number) -> Result<(), JcsError> {
    let value = if let Some(u) = n.as_u64() {
        safe_integer(u, false)?
    } else if let Some(i) = n.as_i64() {
        safe_integer(i.unsigned_abs(), true)?
    } else {
        n.as_f64().unwrap_or(f64::NAN)
    };
    out.push_str(&ecmascript_number(value)?);
    Ok(())
}

fn safe_integer(magnitude: u64, negative: bool) -> Result<f64, JcsError> {
    if magnitude > MAX_SAFE_INTEGER {
        let sign = if negative { "-" } else { "" };
        return Err(JcsError::UnsafeInteger(format!("{sign}{magnitude}")));
    }
    // Exact: the magnitude fits in a double's 53-bit significand.
    let value = magnitude as f64;
    Ok(if negative { -value } else { value })
}

/// `Number::prototype::toString` of ECMAScript (ECMA-262 §7.1.12.1, "Number::toString"), the
/// number form RFC 8785 §3.2.2.3 prescribes: shortest round-trip digits, plain notation for
/// decimal exponents in [-6, 21), `1e+21` style beyond, and `-0` written as `0`.
pub fn ecmascript_number(value: f64) -> Result<String, JcsError> {
    if !value.is_finite() {
        return Err(JcsError::NonFinite(value));
    }
    if value == 0.0 {
        return Ok("0".to_owned());
    }
    let sign = if value < 0.0 { "-" } else { "" };
    let (digits, n) = decimal_digits(&format!("{:e}", value.abs()));
    let digits = even_on_tie(value.abs(), digits, n);
    Ok(format!("{sign}{}", place_decimal_point(&digits, n)))
}

/// Splits Rust's `{:e}` text `d.ddde±x` into the digit string `s` and the exponent `n` with
/// `0.s × 10^n` equal to it (the `k` digits and `n` of ECMA-262). For `{:e}` without precision
/// the digits are the shortest that round-trip, the nearest to the value among those.
fn decimal_digits(scientific: &str) -> (String, i32) {
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // `{:e}` always writes a decimal exponent, so the fallback is never taken.
    let exponent: i32 = exponent.parse().unwrap_or(0);
    (digits, exponent + 1)
}

/// ECMA-262 breaks an exact tie between two equally near shortest candidates towards the even
/// last digit (RFC 8785 Appendix B, "Round to even"), where Rust's `{:e}` may round up. A tie
/// needs 16 or more digits (shorter lattices are too coarse to round-trip at half a step), and
/// the exact decimal value of the double then ends in a single 5 just past those digits.
fn even_on_tie(value: f64, digits: String, n: i32) -> String {
    let k = digits.len();
    if k < 16 || digits.ends_with(['0', '2', '4', '6', '8']) {
        return digits;
    }
    // 800 digits hold the exact decimal expansion of any double (at most 767 are significant).
    let (exact, exact_n) = decimal_digits(&format!("{value:.800e}"));
    let (lower, rest) = exact.split_at(k.min(exact.len()));
    if exact_n != n || rest.trim_end_matches('0') != "5" {
        return digits;
    }
    let even = if lower.ends_with(['0', '2', '4', '6', '8']) {
        lower.to_owned()
    } else {
        increment(lower)
    };
    let round_trips = format!("0.{even}e{n}").parse::<f64>() == Ok(value);
    if round_trips && even.len() == k {
        even.trim_end_matches('0').to_owned()
    } else {
        digits
    }
}

/// Adds one in the last place of a decimal digit string ("1299" → "1300"); all nines grow a digit.
fn increment(digits: &str) -> String {
    let mut bytes = digits.as_bytes().to_vec();
    for b in bytes.iter_mut().rev() {
        if *b == b'9' {
            *b = b'0';
        } else {
            *b += 1;
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    format!("1{}", String::from_utf8_lossy(&bytes))
}

fn place_decimal_point(digits: &str, n: i32) -> String {
    let k = digits.len() as i32;
    if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        format!("{int}.{frac}")
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() { "" } else { "." };
        let sign = if n >= 1 { "+" } else { "-" };
        format!("{first}{point}{rest}e{sign}{}", (n - 1).unsigned_abs())
    }
}

/// A `Value` deserialized without accepting duplicate object keys.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        if u <= MAX_SAFE_INTEGER {
            Ok(Value::from(u))
        } else {
            self.visit_f64(u as f64)
        }
    }
    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        if i.unsigned_abs() <= MAX_SAFE_INTEGER {
            Ok(Value::from(i))
        } else {
            self.visit_f64(i as f64)
        }
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("number {f} is not finite")))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let StrictValue(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(text: &str) -> String {
        String::from_utf8(canonicalize(text.as_bytes()).unwrap()).unwrap()
    }

    /// RFC 8785 Appendix B, "Number Serialization Samples": IEEE 754 bit patterns and their
    /// expected ECMAScript form, copied from the RFC's table (NaN and Infinity rows below).
    #[test]
    fn rfc8785_appendix_b_numbers() {
        let table: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for &(bits, want) in table {
            let got = ecmascript_number(f64::from_bits(bits)).unwrap();
            assert_eq!(got, want, "bits {bits:#018x}");
        }
        // The table's NaN (0x7fffffffffffffff) and Infinity (0x7ff0000000000000) rows: errors.
        assert!(ecmascript_number(f64::from_bits(0x7fffffffffffffff)).is_err());
        assert!(ecmascript_number(f64::from_bits(0x7ff0000000000000)).is_err());
    }

    /// Boundaries of ECMA-262 Number::toString's four cases (values checked against
    /// `String(x)` in ECMAScript: 1e21 is the first exponent form, 1e-7 the first small one).
    #[test]
    fn ecmascript_notation_boundaries() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (-42.0, "-42"),
            (4.5, "4.5"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.25e-7, "1.25e-7"),
            (0.1, "0.1"),
            (123.456, "123.456"),
        ];
        for &(x, want) in cases {
            assert_eq!(ecmascript_number(x).unwrap(), want, "{x:e}");
        }
    }

    /// RFC 8785 §3.2.2, the example of the whole transformation (input and expected output as
    /// printed there), and §3.2.4, the same output as the RFC's UTF-8 hex dump.
    #[test]
    fn rfc8785_section_3_2_2_example() {
        let input = r#"{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"#;
        let want = r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;
        assert_eq!(canon(input), want);
        let hex_dump =
            "7b226c69746572616c73223a5b6e756c6c2c747275652c66616c73655d2c226e756d62657273\
            223a5b3333333333333333332e333333333333332c31652b33302c342e352c302e3030322c31652d32375d\
            2c22737472696e67223a22e282ac245c75303030665c6e4127425c225c5c5c5c5c222f227d";
        assert_eq!(hex::encode(want), hex_dump);
    }

    /// RFC 8785 §3.2.3, "Sorting of Object Properties": its input, and its members in the order
    /// the RFC lists them (the emoji's surrogate D83D sorts before U+FB33).
    #[test]
    fn rfc8785_section_3_2_3_sorting() {
        let input = r#"{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"#;
        let want = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
            \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
            \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canon(input), want);
    }

    #[test]
    fn escapes_only_what_rfc8785_escapes() {
        let value = Value::String("\u{0}\u{8}\t\n\u{c}\r\u{1f}\u{7f}/\u{2028}".to_owned());
        assert_eq!(
            to_string(&value).unwrap(),
            "\"\\u0000\\b\\t\\n\\f\\r\\u001f\u{7f}/\u{2028}\""
        );
    }

    #[test]
    fn parsed_numbers_are_doubles() {
        assert_eq!(
            canon("[9007199254740991,-9007199254740991,0,-0,-0.0]"),
            "[9007199254740991,-9007199254740991,0,0,0]"
        );
        // Integer literals beyond 2^53 are read as the nearest double (values from ECMAScript:
        // `String(9007199254740993)`, `String(18446744073709551615)`).
        assert_eq!(canon("9007199254740993"), "9007199254740992");
        assert_eq!(canon("-18446744073709551615"), "-18446744073709552000");
        assert_eq!(canon("295147905179352830000"), "295147905179352830000");
        // Found by prop_canonical_form_is_a_fixed_point: a large integral double is written
        // as an integer literal and must read back as the same double.
        let big = Value::from(-2.663213309410976e16);
        let text = to_string(&big).unwrap();
        assert_eq!(text, "-26632133094109760");
        assert_eq!(canon(&text), text);
    }

    #[test]
    fn rust_integers_that_would_round_are_refused() {
        let err = to_vec(&Value::from(u64::MAX)).unwrap_err();
        assert!(
            matches!(&err, JcsError::UnsafeInteger(s) if s == "18446744073709551615"),
            "{err}"
        );
        assert!(matches!(
            to_vec(&Value::from(-(1i64 << 53))),
            Err(JcsError::UnsafeInteger(_))
        ));
        assert_eq!(
            to_string(&Value::from((1u64 << 53) - 1)).unwrap(),
            "9007199254740991"
        );
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let err = canonicalize(br#"{"a":{"b":1,"b":2}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate key \"b\""), "{err}");
        assert!(canonicalize(br#"{"a":1} x"#).is_err());
        assert!(canonicalize(b"\"\\ud800\"").is_err(), "lone surrogate");
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(MAX_SAFE_INTEGER as i64)..=MAX_SAFE_INTEGER as i64).prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn prop_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = canonicalize(&bytes);
        }

        #[test]
        fn prop_canonical_form_is_a_fixed_point(value in arb_json()) {
            let once = to_vec(&value).unwrap();
            prop_assert_eq!(canonicalize(&once).unwrap(), once);
        }

        #[test]
        fn prop_numbers_round_trip(bits in any::<u64>()) {
            let x = f64::from_bits(bits);
            prop_assume!(x.is_finite());
            let text = ecmascript_number(x).unwrap();
            let back: f64 = text.parse().unwrap();
            prop_assert_eq!(back, if x == 0.0 { 0.0 } else { x });
        }
    }
}
