//! Typed access to the fields of a `config.json` object, with errors that name the field.

use serde_json::{Map, Value};
use tessera_core::{Error, Result};

/// One JSON object of a config (the whole file, `text_config`, or a RoPE dict).
#[derive(Clone)]
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    /// Where the object sits in the file, e.g. `text_config.` or `rope_parameters.`.
    prefix: String,
}

impl<'a> Fields<'a> {
    pub fn new(value: &'a Value, prefix: &str) -> Result<Self> {
        let map = value.as_object().ok_or_else(|| {
            Error::config(format!(
                "{} must be a JSON object",
                if prefix.is_empty() {
                    "the config"
                } else {
                    prefix.trim_end_matches('.')
                }
            ))
        })?;
        Ok(Fields {
            map,
            prefix: prefix.to_string(),
        })
    }

    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The value of `key`, treating JSON `null` as absent.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// The key is present with the value `null`.
    pub fn is_null(&self, key: &str) -> bool {
        matches!(self.map.get(key), Some(Value::Null))
    }

    pub fn has(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    pub fn usize(&self, key: &str) -> Result<Option<usize>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    Error::config(format!(
                        "{} = {v} is not a non-negative integer",
                        self.name(key)
                    ))
                }),
        }
    }

    pub fn f64(&self, key: &str) -> Result<Option<f64>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| Error::config(format!("{} = {v} is not a number", self.name(key)))),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| {
                Error::config(format!("{} = {v} is not true or false", self.name(key)))
            }),
        }
    }

    pub fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| Error::config(format!("{} = {v} is not a string", self.name(key)))),
        }
    }

    pub fn object(&self, key: &str) -> Result<Option<Fields<'a>>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => match v.as_object() {
                Some(map) => Ok(Some(Fields {
                    map,
                    prefix: format!("{}.", self.name(key)),
                })),
                None => Err(Error::config(format!(
                    "{} must be a JSON object",
                    self.name(key)
                ))),
            },
        }
    }

    pub fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v
                .as_array()
                .map(Some)
                .ok_or_else(|| Error::config(format!("{} must be a JSON list", self.name(key)))),
        }
    }

    /// An integer or a list of integers (e.g. `eos_token_id`).
    pub fn ids(&self, key: &str) -> Result<Vec<u32>> {
        let bad = |v: &Value| {
            Error::config(format!(
                "{} = {v} is not a token id or a list of them",
                self.name(key)
            ))
        };
        let one = |v: &Value| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad(v))
        };
        match self.raw(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(one).collect(),
            Some(v) => Ok(vec![one(v)?]),
        }
    }

    /// A list of strings, e.g. `layer_types`.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<&'a str>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    Error::config(format!("{} holds {v}, not a string", self.name(key)))
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// A list of small integers, e.g. `hybrid_layer_pattern`.
    pub fn ints(&self, key: &str) -> Result<Option<Vec<u64>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| {
                v.as_u64().ok_or_else(|| {
                    Error::config(format!(
                        "{} holds {v}, not a non-negative integer",
                        self.name(key)
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}
