//! The error type shared by the tessera libraries.
//!
//! Errors that concern a file carry its path so that the CLI can print `error: PATH: REASON`
//! without guessing which input was at fault.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something is wrong with one file (missing, unreadable, corrupt, inconsistent).
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },

    /// A configuration value is out of its sensible range (checked before allocating).
    #[error("invalid config: {0}")]
    Config(String),

    /// The caller passed an argument that cannot work (shape, range, option).
    #[error("{0}")]
    Invalid(String),

    /// Weights are not available locally and cannot be fetched.
    #[error("{0}")]
    MissingWeights(String),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// An error about `path`, with a human-readable reason.
    pub fn file(path: impl AsRef<Path>, reason: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.as_ref().to_path_buf(),
            reason: reason.to_string(),
        }
    }

    pub fn invalid(reason: impl std::fmt::Display) -> Self {
        Error::Invalid(reason.to_string())
    }

    pub fn config(reason: impl std::fmt::Display) -> Self {
        Error::Config(reason.to_string())
    }

    /// Attach a path to an error that does not carry one yet.
    pub fn with_path(self, path: impl AsRef<Path>) -> Self {
        match self {
            Error::File { .. } => self,
            other => Error::file(path, other),
        }
    }
}

/// Adds a path to errors from lower layers (I/O, candle, parsers).
pub trait WithPath<T> {
    fn with_path(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T, E: std::fmt::Display> WithPath<T> for std::result::Result<T, E> {
    fn with_path(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::file(path, e))
    }
}
