//! Text tokenizers from `tokenizer.json` (the Hugging Face `tokenizers` format).

use std::path::Path;

use tessera_core::{Error, Result};

/// A `tokenizer.json` larger than this is not a tokenizer (the largest real ones are ~35 MB).
const MAX_TOKENIZER_BYTES: u64 = 512 << 20;

/// Text <-> token ids.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl TextTokenizer {
    /// Read a `tokenizer.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let len = std::fs::metadata(path)
            .map_err(|e| Error::file(path, tessera_core::fsutil::io_reason(&e)))?
            .len();
        if len > MAX_TOKENIZER_BYTES {
            return Err(Error::file(
                path,
                format!("{len} bytes is too large for a tokenizer.json"),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::file(path, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| Error::file(path, format!("not a valid tokenizer.json: {e}")))?;
        Ok(TextTokenizer { inner })
    }

    /// The `tokenizer.json` of a checkpoint directory.
    pub fn from_checkpoint_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().join("tokenizer.json");
        if !path.is_file() {
            return Err(Error::file(
                dir.as_ref(),
                "no tokenizer.json here; pass token ids instead, or a directory that has one",
            ));
        }
        Self::from_file(path)
    }

    /// Token ids of `text`; `add_special_tokens` applies the tokenizer's template (e.g. BOS).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::invalid(format!("cannot tokenize the text: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`; `skip_special_tokens` leaves out tokens such as BOS/EOS.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::invalid(format!("cannot decode the token ids: {e}")))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
