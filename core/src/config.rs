//! Checks on configuration values, applied before anything is allocated.
//!
//! Configs come from `config.json` files, which are user input: a hostile or broken one must
//! give an error naming the field, not an out-of-memory abort.

use crate::{Error, Result};

/// `value` must lie in `lo..=hi`.
pub fn check_range<T>(field: &str, value: T, lo: T, hi: T) -> Result<T>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if value < lo || value > hi {
        return Err(Error::config(format!(
            "{field} = {value} is out of range (expected {lo}..={hi})"
        )));
    }
    Ok(value)
}

/// A float field must be finite and lie in `lo..=hi`.
pub fn check_finite(field: &str, value: f64, lo: f64, hi: f64) -> Result<f64> {
    if !value.is_finite() {
        return Err(Error::config(format!(
            "{field} = {value} is not a finite number"
        )));
    }
    check_range(field, value, lo, hi)
}

/// The product of `dims` (e.g. a weight shape derived from a config) must not exceed
/// `max_elems`; catches overflow as well as merely huge shapes.
pub fn check_elems(what: &str, dims: &[usize], max_elems: u64) -> Result<u64> {
    let mut n: u64 = 1;
    for &d in dims {
        n = n
            .checked_mul(d as u64)
            .ok_or_else(|| Error::config(format!("{what} of shape {dims:?} overflows")))?;
    }
    if n > max_elems {
        return Err(Error::config(format!(
            "{what} of shape {dims:?} has {n} elements, more than the limit {max_elems}"
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_sizes() {
        assert_eq!(check_range("n_q", 8, 1, 32).unwrap(), 8);
        let e = check_range("n_q", 0, 1, 32).unwrap_err().to_string();
        assert!(e.contains("n_q = 0"), "{e}");
        assert!(check_finite("rate", f64::NAN, 0.0, 1.0).is_err());
        assert!(check_elems("w", &[1 << 20, 1 << 20, 1 << 30], u64::MAX).is_err());
        assert!(check_elems("w", &[1024, 1024], 1 << 19).is_err());
        assert_eq!(check_elems("w", &[4, 5], 100).unwrap(), 20);
    }
}
