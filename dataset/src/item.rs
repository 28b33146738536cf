//! One input of a dataset and the codes it becomes.

use std::path::PathBuf;

use tessera_core::Codes;

/// One input, as discovery found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Key of the item in every output format: unique within the dataset, without dots (the
    /// WebDataset convention), stable across runs.
    pub id: String,
    /// Where the audio comes from, as given (a path or a URL).
    pub source: String,
    /// The source's path relative to the input root it was found under (npy output mirrors
    /// this tree); for single files, the file name.
    pub rel_path: PathBuf,
    /// A transcript, from a JSONL manifest.
    pub text: Option<String>,
    /// Duration in seconds as a manifest states it (informational; the audio decides).
    pub duration: Option<f64>,
}

/// An item and its codes.
#[derive(Debug, Clone)]
pub struct EncodedItem {
    pub item: Item,
    /// Samples at the codec's rate (what `codes.meta().n_samples` also says).
    pub n_samples: u64,
    pub codes: Codes,
}
