//! One module per subcommand.

pub mod codecs;
pub mod dataset;
pub mod decode;
pub mod encode;
pub mod info;
pub mod lm;
