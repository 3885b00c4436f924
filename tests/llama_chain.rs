//! The whole chain on the second bundled family: `lethe demo --family llama` unlearns forget05
//! from the Llama-family model trained on the bundled world (`fixtures/models/llama-full`,
//! bfloat16), certifies it against `specs/gdpr-art17.toml` with the Llama model retrained
//! without forget05 as reference, signs and verifies; the certificate then verifies again with
//! `lethe verify` as a third party runs it, and the saved model keeps the original's family and
//! storage dtype.

use crate::common::*;
use std::path::Path;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn demo_on_the_llama_world_unlearns_certifies_and_signs() {
    let out = scratch("llama-demo");
    let run = lethe(&["demo", "--family", "llama", "--out", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&run.stdout);
    eprintln!("{text}");
    // Exit 0: CERTIFIED, and the demo's own verification passed.
    assert_eq!(
        run.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // The unlearned model is still a Llama stored in bfloat16, and the log says how much of
    // the update the rounding to bfloat16 removed.
    let model = out.join("model");
    let cfg = json(&model.join("config.json"));
    assert_eq!(cfg["model_type"], "llama");
    assert_eq!(cfg["dtype"], "bfloat16");
    let log = json(&model.join("unlearn.json"));
    let lost = log["rounding"]["lost"].as_f64().unwrap();
    assert!((0.0..0.5).contains(&lost), "rounding lost {lost}");

    // Every verdict passed, including the attacks' power on the original model and every
    // two-sided attack requirement.
    let report = json(&out.join("report.json"));
    let verdicts = report["verdicts"].as_array().unwrap();
    assert!(verdicts.len() >= 10);
    for v in verdicts {
        assert_eq!(v["status"], "pass", "{v:#}");
    }

    // A third party's check: signature, statement and the model's digests.
    let check = lethe(&[
        "verify",
        out.join("certificate.dsse.json").to_str().unwrap(),
        "--key",
        out.join("signer.pub.pem").to_str().unwrap(),
        "--artifacts",
        model.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{text}");
    assert!(
        text.lines().next().unwrap().contains(" CERTIFIED (valid"),
        "{text}"
    );
}
