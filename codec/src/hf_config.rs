//! Reading transformers-style `config.json` objects: typed fields with defaults, `null` for
//! optional ones, errors that name the key.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tessera_core::{Error, Result};

pub(crate) type Object = Map<String, Value>;

/// The config as a JSON object whose `model_type`, when present, is `model_type`.
pub(crate) fn object<'a>(value: &'a Value, model_type: &str) -> Result<&'a Object> {
    let obj = value.as_object().ok_or_else(|| {
        Error::config(format!(
            "a {model_type} config is a JSON object of its fields"
        ))
    })?;
    if let Some(t) = obj.get("model_type")
        && t.as_str() != Some(model_type)
    {
        return Err(Error::config(format!(
            "model_type = {t}, expected \"{model_type}\""
        )));
    }
    Ok(obj)
}

/// `obj[key]` as a `T`, or `default` when absent.
pub(crate) fn field<T: DeserializeOwned>(obj: &Object, key: &str, default: T) -> Result<T> {
    match obj.get(key) {
        None => Ok(default),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| Error::config(format!("{key} = {v}: {e}"))),
    }
}

/// `obj[key]` as a `T`; absent or `null` give `None`.
pub(crate) fn optional<T: DeserializeOwned>(obj: &Object, key: &str) -> Result<Option<T>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| Error::config(format!("{key} = {v}: {e}"))),
    }
}

/// Python's float floor division `a // b` (b > 0): `(a - fmod(a, b)) / b`, rounded to the
/// nearest integer the way CPython's `float_floor_div` does it.
pub(crate) fn py_floordiv(a: f64, b: f64) -> f64 {
    let m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && (b < 0.0) != (m < 0.0) {
        div -= 1.0;
    }
    if div == 0.0 {
        return 0.0f64.copysign(a / b);
    }
    let floor = div.floor();
    if div - floor > 0.5 {
        floor + 1.0
    } else {
        floor
    }
}
