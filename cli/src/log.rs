//! Human-facing messages on stderr, filtered by `-q` / `-v`.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Quiet = 0,
    Normal = 1,
    Verbose = 2,
    Debug = 3,
}

impl Level {
    pub fn from_verbosity(v: u8) -> Self {
        match v {
            0 => Level::Normal,
            1 => Level::Verbose,
            _ => Level::Debug,
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Normal as u8);

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    LEVEL.load(Ordering::Relaxed) >= level as u8
}

/// A message shown unless `-q`.
#[allow(unused_macros)]
macro_rules! note {
    ($($arg:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Normal) {
            eprintln!($($arg)*);
        }
    };
}

/// A message shown with `-v`.
macro_rules! verbose {
    ($($arg:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Verbose) {
            eprintln!($($arg)*);
        }
    };
}

#[allow(unused_imports)]
pub(crate) use {note, verbose};
