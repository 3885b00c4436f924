//! Training a byte-level BPE tokenizer, GPT-2 style, on a corpus (the bundled world's texts):
//! the GPT-2 pre-tokenizer regex over bytes mapped to printable characters, all 256 byte symbols
//! in the vocabulary (so every string encodes), no prefix space, and `<|endoftext|>` as the one
//! special token (id 0). The same corpus and vocabulary size give a byte-identical
//! `tokenizer.json`. This module owns only training and writing that file; loading and encoding
//! records is `tokenize`.
//!
//! `add_prefix_space` is off, as in GPT-2: a text's first word is encoded without a leading
//! space. Question–answer records put the space at the start of the answer (`"…\nAnswer:"` +
//! `" 14 March 1983"`), and the GPT-2 regex never joins `:` with a following space, so the
//! tokens of `prompt + answer` are the prompt's tokens followed by the answer's.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper};
use tokenizers::{PreTokenizerWrapper, Tokenizer, TokenizerBuilder};

use crate::atomic::write_atomic;

/// GPT-2's end-of-text token, the only special token.
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// The vocabulary size used when none is given.
pub const DEFAULT_VOCAB_SIZE: usize = 2048;
/// Vocabulary sizes accepted: large enough for whole names and numbers to merge, small enough
/// for a 128-wide model to learn every embedding from the bundled world.
pub const VOCAB_SIZES: RangeInclusive<usize> = 2048..=4096;

#[derive(Debug, thiserror::Error)]
pub enum BpeError {
    #[error("vocabulary size {size} is outside the supported {min}..={max}")]
    VocabSize { size: usize, min: usize, max: usize },
    #[error("the training corpus is empty")]
    EmptyCorpus,
    #[error("training the BPE tokenizer: {0}")]
    Train(#[source] tokenizers::Error),
    #[error("serializing the tokenizer: {0}")]
    Serialize(#[source] tokenizers::Error),
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

type BpeTokenizer = tokenizers::TokenizerImpl<
    BPE,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// The untrained pipeline: GPT-2's byte-level pre-tokenizer, post-processor and decoder.
fn gpt2_pipeline() -> Result<BpeTokenizer, BpeError> {
    let byte_level = ByteLevel::new(false, false, true);
    TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(byte_level)))
        .with_post_processor(Some(PostProcessorWrapper::ByteLevel(byte_level)))
        .with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevelDecoder::new(
            false, false, true,
        ))))
        .build()
        .map_err(BpeError::Train)
}

/// Trains a byte-level BPE tokenizer with at most `vocab_size` entries (special token and the 256
/// byte symbols included) on `texts`. Only pairs seen at least twice are merged, so a small corpus
/// can stop short of `vocab_size` (the bundled world reaches 2048 but not 4096): a model must
/// take its vocabulary size from the trained tokenizer, not from the request.
pub fn train_bpe<S: AsRef<str> + Sync>(
    texts: &[S],
    vocab_size: usize,
) -> Result<Tokenizer, BpeError> {
    if !VOCAB_SIZES.contains(&vocab_size) {
        let (min, max) = (*VOCAB_SIZES.start(), *VOCAB_SIZES.end());
        return Err(BpeError::VocabSize {
            size: vocab_size,
            min,
            max,
        });
    }
    if texts.is_empty() {
        return Err(BpeError::EmptyCorpus);
    }
    let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .initial_alphabet(alphabet)
        .build();
    let mut tokenizer = gpt2_pipeline()?;
    let texts = texts.iter().map(|t| t.as_ref().to_string());
    tokenizer
        .train(&mut trainer, texts)
        .map_err(BpeError::Train)?;
    Ok(tokenizer.into())
}

/// The `tokenizer.json` text of `tokenizer` (pretty-printed, as Hugging Face saves it).
pub fn tokenizer_json(tokenizer: &Tokenizer) -> Result<String, BpeError> {
    tokenizer.to_string(true).map_err(BpeError::Serialize)
}

/// Writes `tokenizer` as a `tokenizer.json` at `path`, atomically.
pub fn write_tokenizer(tokenizer: &Tokenizer, path: &Path) -> Result<(), BpeError> {
    let json = tokenizer_json(tokenizer)?;
    write_atomic(path, json.as_bytes()).map_err(|source| BpeError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{generate, World, WorldConfig};
    use std::sync::OnceLock;

    fn world() -> &'static World {
        static WORLD: OnceLock<World> = OnceLock::new();
        WORLD.get_or_init(|| generate(&WorldConfig::default()).unwrap())
    }

    fn trained() -> &'static Tokenizer {
        static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
        TOKENIZER
            .get_or_init(|| train_bpe(&world().tokenizer_corpus(), DEFAULT_VOCAB_SIZE).unwrap())
    }

    fn ids(text: &str) -> Vec<u32> {
        trained().encode(text, false).unwrap().get_ids().to_vec()
    }

    #[test]
    fn training_twice_gives_identical_json() {
        let again = train_bpe(&world().tokenizer_corpus(), DEFAULT_VOCAB_SIZE).unwrap();
        assert!(tokenizer_json(trained()).unwrap() == tokenizer_json(&again).unwrap());
    }

    #[test]
    fn vocabulary_has_the_requested_size_and_end_of_text_first() {
        assert_eq!(trained().get_vocab_size(true), DEFAULT_VOCAB_SIZE);
        assert_eq!(trained().token_to_id(END_OF_TEXT), Some(0));
        assert_eq!(ids(&format!("a{END_OF_TEXT}")).last(), Some(&0));
    }

    #[test]
    fn every_text_round_trips() {
        let w = world();
        let texts = w
            .splits()
            .into_iter()
            .flat_map(|(_, records)| records.iter().map(|r| r.text.as_str()));
        for text in texts.chain(["naïve café — 東京 🙂", "  two  spaces\n\ttab"]) {
            let decoded = trained().decode(&ids(text), false).unwrap();
            assert_eq!(decoded, text);
        }
    }

    #[test]
    fn answers_tokenize_after_their_prompt() {
        let w = world();
        let qa = w
            .train_full
            .iter()
            .chain(&w.holdout)
            .chain(&w.canaries)
            .filter(|r| r.answer.is_some());
        for record in qa {
            let prompt = ids(record.prompt.as_deref().unwrap());
            for answer in record.perturbed.iter().chain(&record.answer) {
                let alone = ids(answer);
                assert!(!alone.is_empty(), "{}: {answer:?} has no tokens", record.id);
                let joined = ids(&format!("{}{answer}", record.prompt.as_deref().unwrap()));
                assert_eq!(
                    joined,
                    [prompt.clone(), alone].concat(),
                    "{}: {answer:?}",
                    record.id
                );
            }
        }
    }

    #[test]
    fn written_tokenizer_loads_back() {
        let dir = std::env::temp_dir().join(format!("lethe-bpe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokenizer.json");
        write_tokenizer(trained(), &path).unwrap();
        let loaded = Tokenizer::from_file(&path).unwrap();
        assert_eq!(
            tokenizer_json(&loaded).unwrap(),
            tokenizer_json(trained()).unwrap()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_inputs_are_refused() {
        let corpus = ["some text", "more text"];
        assert!(matches!(
            train_bpe(&corpus, 1000),
            Err(BpeError::VocabSize { size: 1000, .. })
        ));
        assert!(matches!(
            train_bpe(&corpus, 5000),
            Err(BpeError::VocabSize { size: 5000, .. })
        ));
        let empty: [&str; 0] = [];
        assert!(matches!(
            train_bpe(&empty, DEFAULT_VOCAB_SIZE),
            Err(BpeError::EmptyCorpus)
        ));
        let missing = Path::new("/nonexistent-lethe-dir/tokenizer.json");
        let err = write_tokenizer(trained(), missing).unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent-lethe-dir/tokenizer.json"),
            "{err}"
        );
    }
}
