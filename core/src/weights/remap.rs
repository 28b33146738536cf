//! Renaming checkpoint keys to the names a model asks for.
//!
//! Checkpoints of one architecture are published under several layouts (the authors' package vs
//! transformers, a `model.` prefix or not). A [`KeyMap`] is an ordered list of rules applied to
//! every checkpoint key once, when the store is opened, each rule to the result of the previous.

/// One rename rule.
#[derive(Debug, Clone)]
enum Rule {
    Prefix { from: String, to: String },
    Contains { from: String, to: String },
    Drop { prefix: String },
}

/// Ordered rename rules from checkpoint keys to model keys.
#[derive(Debug, Clone, Default)]
pub struct KeyMap {
    rules: Vec<Rule>,
}

impl KeyMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys starting with `from` start with `to` instead.
    pub fn prefix(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.rules.push(Rule::Prefix {
            from: from.into(),
            to: to.into(),
        });
        self
    }

    /// Every occurrence of `from` inside a key becomes `to`.
    pub fn replace(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.rules.push(Rule::Contains {
            from: from.into(),
            to: to.into(),
        });
        self
    }

    /// Keys starting with `prefix` are not offered to the model (e.g. training-only buffers).
    pub fn drop(mut self, prefix: impl Into<String>) -> Self {
        self.rules.push(Rule::Drop {
            prefix: prefix.into(),
        });
        self
    }

    /// The model key for a checkpoint key, or `None` when the key is dropped.
    pub fn apply(&self, key: &str) -> Option<String> {
        let mut key = key.to_string();
        for rule in &self.rules {
            match rule {
                Rule::Prefix { from, to } => {
                    if let Some(rest) = key.strip_prefix(from.as_str()) {
                        key = format!("{to}{rest}");
                    }
                }
                Rule::Contains { from, to } => {
                    if key.contains(from.as_str()) {
                        key = key.replace(from.as_str(), to);
                    }
                }
                Rule::Drop { prefix } => {
                    if key.starts_with(prefix.as_str()) {
                        return None;
                    }
                }
            }
        }
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::KeyMap;

    #[test]
    fn rules_apply_in_order() {
        let m = KeyMap::new()
            .drop("discriminator.")
            .prefix("model.", "")
            .replace(".conv.conv.", ".conv.");
        assert_eq!(
            m.apply("model.enc.conv.conv.weight").unwrap(),
            "enc.conv.weight"
        );
        assert_eq!(m.apply("dec.bias").unwrap(), "dec.bias");
        assert!(m.apply("discriminator.x").is_none());
    }
}
