//! WebDataset output: one tar file per shard; per item, in order, `KEY.json` and then
//! `KEY.codes_{k}.npy` for each level k (WebDataset groups consecutive members by the part of the
//! name before the first dot, hence keys without dots).
//!
//! Headers are fixed (mtime 0, mode 0644, uid/gid 0, no user or group names) so that the same
//! items give the same bytes, which the resume test compares.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use serde::Serialize;
use tessera_core::{Error, Result, WithPath};

use super::npy::item_level_files;
use super::{ShardTarget, ShardWriter, WriterContext, check_item, with_suffix};
use crate::item::EncodedItem;

/// The `KEY.json` member: what a training loader needs besides the codes.
#[derive(Serialize)]
struct ItemJson<'a> {
    id: &'a str,
    source: &'a str,
    /// The codes' (codec's) sample rate.
    sample_rate: u32,
    n_samples: u64,
    text: Option<&'a str>,
    tokenizer: &'a str,
}

pub struct WebDatasetWriter {
    context: WriterContext,
    path: PathBuf,
    file_name: PathBuf,
    tar: tar::Builder<BufWriter<File>>,
}

impl WebDatasetWriter {
    pub fn create(target: &ShardTarget) -> Result<Self> {
        let file_name = PathBuf::from(format!("{}.tar", target.shard.stem()));
        let path = with_suffix(target.staging, &target.shard.stem(), "tar");
        let file = File::create(&path).with_path(&path)?;
        let mut tar = tar::Builder::new(BufWriter::new(file));
        // Members are regular files built from memory; nothing is read from the file system.
        tar.follow_symlinks(false);
        Ok(Self {
            context: target.context.clone(),
            path,
            file_name,
            tar,
        })
    }

    fn append(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        // append_data sets the name (with a GNU long-name member when it exceeds 100 bytes) and
        // the checksum.
        self.tar
            .append_data(&mut header, name, data)
            .map_err(|e| Error::file(&self.path, format!("cannot append {name}: {e}")))
    }
}

/// Refuses keys that WebDataset would split or misplace.
fn check_key(item: &EncodedItem) -> Result<&str> {
    let key = item.item.id.as_str();
    let why = if key.is_empty() {
        Some("the item id is empty")
    } else if key.contains('.') {
        Some("the item id contains a dot, which WebDataset reads as the start of the extension")
    } else if key.starts_with('/') || key.split('/').any(|p| p.is_empty() || p == "..") {
        Some("the item id is not a clean relative name")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::file(&item.item.source, format!("{why}: {key:?}"))),
        None => Ok(key),
    }
}

impl ShardWriter for WebDatasetWriter {
    fn write(&mut self, item: &EncodedItem) -> Result<()> {
        check_item(&self.context, item)?;
        let key = check_key(item)?.to_owned();
        let files = item_level_files(&self.context, item)?;
        let json = serde_json::to_vec(&ItemJson {
            id: &item.item.id,
            source: &item.item.source,
            sample_rate: self.context.sample_rate,
            n_samples: item.n_samples,
            text: item.item.text.as_deref(),
            tokenizer: &self.context.tokenizer,
        })
        .map_err(|e| Error::file(&item.item.source, e))?;
        self.append(&format!("{key}.json"), &json)?;
        for (k, bytes) in files.iter().enumerate() {
            self.append(&format!("{key}.codes_{k}.npy"), bytes)?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Vec<PathBuf>> {
        let path = self.path;
        // into_inner writes the two zero blocks that end a tar archive.
        let mut w = self.tar.into_inner().with_path(&path)?;
        w.flush().with_path(&path)?;
        let file = w.into_inner().map_err(|e| Error::file(&path, e.error()))?;
        file.sync_all().with_path(&path)?;
        Ok(vec![self.file_name])
    }
}
