//! The GPT-2 tokenizer through lethe's `TextTokenizer` gives exactly the ids in
//! tests/oracles/gpt2-tokenizer/expected.json (made with Hugging Face tokenizers 0.23.3 from
//! GPT-2's own BPE files, and agreeing with the JavaScript GPT-3 encoder on every case).

use crate::common::oracle;
use lethe::data::TextTokenizer;

#[test]
fn gpt2_token_ids_match_exactly() {
    let tok = TextTokenizer::load(&oracle("gpt2-tokenizer/tokenizer.json")).unwrap();
    let ex: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oracle("gpt2-tokenizer/expected.json")).unwrap())
            .unwrap();
    assert_eq!(tok.eos_id, ex["end_of_text_id"].as_u64().map(|x| x as u32));
    let cases = ex["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tok.encode_text(text).unwrap(), want, "ids of {text:?}");
        assert_eq!(tok.decode(&want).unwrap(), text, "decoding {text:?}");
    }
}
