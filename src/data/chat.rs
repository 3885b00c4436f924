//! A model's chat template: the Jinja program a Hugging Face directory ships (`chat_template.jinja`,
//! or `chat_template` in `tokenizer_config.json`) that turns a conversation into the text the
//! model was tuned on. lethe renders a question–answer record's prompt through it as one user
//! turn followed by the assistant's turn header (`add_generation_prompt`), as transformers'
//! `apply_chat_template` does, so that the answer is scored and generated where the model expects
//! it. Rendering is minijinja's (a maintained Jinja engine, sandboxed: no file or network access)
//! with Python's string methods (`minijinja-contrib`'s pycompat) and `raise_exception`, with a
//! fuel limit and the output capped: a template is data from whoever shipped the model. This
//! module reads and renders templates; it tokenizes nothing.

use super::jsonl::DataError;
use crate::untrusted::{read_regular_file_capped, StrictJson};
use minijinja::{context, Environment, Error, ErrorKind};
use std::path::{Path, PathBuf};

/// `tokenizer_config.json` and `chat_template.jinja` larger than this are refused (real ones are
/// a few kB; tokenizer configs with large added-token tables stay under 4 MB).
pub const MAX_TEMPLATE_FILE_BYTES: u64 = 16 << 20;

/// The work one rendering may do (minijinja's fuel: about one unit per instruction). Real chat
/// templates render a one-turn conversation in a few thousand; a loop over a huge range runs out.
const FUEL: u64 = 1_000_000;

/// The longest rendered prompt accepted (a prompt is tokenized under the same cap as a record).
const MAX_RENDERED_BYTES: usize = super::tokenize::MAX_TEXT_BYTES;

/// The file beside `tokenizer.json` a chat template is read from, when it has its own file
/// (transformers 4.43 and later); otherwise it is `tokenizer_config.json`'s `chat_template`.
pub const TEMPLATE_FILE: &str = "chat_template.jinja";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

pub struct ChatTemplate {
    /// The file the template came from.
    pub path: PathBuf,
    /// The bytes of that file (to copy beside a saved model).
    pub bytes: Vec<u8>,
    /// The template's source as read from the file (digests and evidence name the file's).
    source: String,
    bos_token: String,
    eos_token: String,
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// The chat template in `dir` (the folder holding `tokenizer.json`): `chat_template.jinja`
    /// if present, else `tokenizer_config.json`'s `chat_template` (a string, or a list of named
    /// templates of which `default` is taken). `None` when neither has one. Special tokens the
    /// template refers to (`bos_token`, `eos_token`) come from `tokenizer_config.json`.
    pub fn find(dir: &Path) -> Result<Option<Self>, DataError> {
        let config_path = dir.join(TOKENIZER_CONFIG_FILE);
        let config = match config_path.exists() {
            true => Some(read_config(&config_path)?),
            false => None,
        };
        let token = |key: &str| config.as_ref().and_then(|(_, c)| token_of(&c[key]));
        let (bos, eos) = (token("bos_token"), token("eos_token"));
        let file = dir.join(TEMPLATE_FILE);
        let (path, bytes, source) = if file.exists() {
            let bytes = read_regular_file_capped(&file, MAX_TEMPLATE_FILE_BYTES, TEMPLATE_FILE)?;
            let source = String::from_utf8(bytes.clone()).map_err(|_| DataError::Tokenizer {
                path: file.clone(),
                msg: "not UTF-8".into(),
            })?;
            (file, bytes, source)
        } else {
            let Some((bytes, config)) = config else {
                return Ok(None);
            };
            let Some(source) = template_in_config(&config_path, &config)? else {
                return Ok(None);
            };
            (config_path, bytes, source)
        };
        Self::new(path, bytes, source, bos, eos).map(Some)
    }

    fn new(
        path: PathBuf,
        bytes: Vec<u8>,
        source: String,
        bos: Option<String>,
        eos: Option<String>,
    ) -> Result<Self, DataError> {
        let mut env = Environment::new();
        // As transformers' ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| template_error(&path, &e))?;
        env.set_syntax(syntax);
        env.set_fuel(Some(FUEL));
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", source.clone())
            .map_err(|e| template_error(&path, &e))?;
        Ok(ChatTemplate {
            path,
            bytes,
            source,
            bos_token: bos.unwrap_or_default(),
            eos_token: eos.unwrap_or_default(),
            env,
        })
    }

    /// A template from its source alone, no special tokens (for tests and callers that hold
    /// the text).
    pub fn from_source(path: &Path, source: &str) -> Result<Self, DataError> {
        Self::new(
            path.to_path_buf(),
            source.as_bytes().to_vec(),
            source.to_string(),
            None,
            None,
        )
    }

    /// The template's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The name of the file the template came from (`chat_template.jinja` or
    /// `tokenizer_config.json`): what a saved model writes it as, and what the evidence names.
    pub fn file_name(&self) -> &str {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    }

    /// What decides the rendering: the source and the special tokens it is given.
    pub fn rendering(&self) -> (&str, &str, &str) {
        (&self.source, &self.bos_token, &self.eos_token)
    }

    /// The text of a conversation of one user turn, `prompt`, followed by the assistant turn's
    /// header: where the model's answer starts.
    pub fn render_prompt(&self, prompt: &str) -> Result<String, DataError> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| template_error(&self.path, &e))?;
        let out = tmpl
            .render(context! {
                messages => vec![context! { role => "user", content => prompt }],
                add_generation_prompt => true,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| template_error(&self.path, &e))?;
        if out.len() > MAX_RENDERED_BYTES {
            return Err(DataError::Tokenizer {
                path: self.path.clone(),
                msg: format!(
                    "the chat template renders a prompt of {} bytes into {} bytes, more than the {MAX_RENDERED_BYTES}-byte limit",
                    prompt.len(),
                    out.len()
                ),
            });
        }
        Ok(out)
    }
}

fn template_error(path: &Path, e: &Error) -> DataError {
    let msg = match e.kind() {
        ErrorKind::OutOfFuel => format!(
            "the chat template did more than {FUEL} steps of work rendering one prompt (refused: a real one needs a few thousand)"
        ),
        _ => format!("chat template: {e}"),
    };
    DataError::Tokenizer {
        path: path.to_path_buf(),
        msg,
    }
}

/// `tokenizer_config.json`'s bytes and JSON, read as untrusted data.
fn read_config(path: &Path) -> Result<(Vec<u8>, serde_json::Value), DataError> {
    let bytes = read_regular_file_capped(path, MAX_TEMPLATE_FILE_BYTES, TOKENIZER_CONFIG_FILE)?;
    let (_, json) = StrictJson::of_file(&bytes).map_err(|msg| DataError::Tokenizer {
        path: path.to_path_buf(),
        msg,
    })?;
    Ok((bytes, json))
}

/// The `chat_template` field: a string, or `[{"name": ..., "template": ...}]` of which the one
/// named `default` is used; absent or null is `None`; anything else is an error naming the field.
fn template_in_config(
    path: &Path,
    config: &serde_json::Value,
) -> Result<Option<String>, DataError> {
    let bad = |msg: &str| DataError::Tokenizer {
        path: path.to_path_buf(),
        msg: format!("field chat_template: {msg}"),
    };
    match &config["chat_template"] {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s.clone())),
        serde_json::Value::Array(named) => {
            let default = named
                .iter()
                .find(|t| t["name"] == "default")
                .ok_or_else(|| bad("a list of named templates without one named \"default\""))?;
            default["template"]
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| bad("the \"default\" entry has no string \"template\""))
        }
        _ => Err(bad("neither a string nor a list of named templates")),
    }
}

/// A special token as `tokenizer_config.json` gives it: a string, or `{"content": ...}`.
fn token_of(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}
