//! Shared helpers for the criterion benches and the side-by-side comparison harnesses.

pub mod lm;
