//! The `.npy` file format (version 1.0), and the npy output format: one file per item and level in
//! a directory that mirrors the input tree.
//!
//! An npy file is a 6-byte magic, a version, a little-endian u16 header length, a Python dict
//! literal naming dtype, order and shape, padded with spaces and a newline so that the data
//! starts at a multiple of 64 bytes, then the raw array. Written here rather than through a crate
//! because two dtypes and one shape rank is all the dataset formats need.

use std::collections::HashSet;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Component, PathBuf};

use tessera_core::{Error, Result, WithPath};

use super::{CodeWidth, ShardTarget, ShardWriter, WriterContext, check_item, level_codes};
use crate::item::EncodedItem;

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// numpy aligns the data of the files it writes to 64 bytes; readers that memory-map rely on it.
const ALIGN: usize = 64;

/// The bytes of an npy v1.0 file holding `codes` (row-major, `shape[0] * shape[1]` values) as
/// `width` integers.
pub fn encode_npy(codes: &[u32], shape: [usize; 2], width: CodeWidth) -> Result<Vec<u8>> {
    if shape[0] * shape[1] != codes.len() {
        return Err(Error::invalid(format!(
            "npy: shape {shape:?} does not hold {} values",
            codes.len()
        )));
    }
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': ({}, {}), }}",
        width.npy_descr(),
        shape[0],
        shape[1]
    );
    // magic + version (2) + header length (2) + dict + padding + '\n'
    let unpadded = MAGIC.len() + 4 + dict.len() + 1;
    let header_len = dict.len() + 1 + (ALIGN - unpadded % ALIGN) % ALIGN;
    let bytes_per = match width {
        CodeWidth::U16 => 2,
        CodeWidth::U32 => 4,
    };
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header_len + codes.len() * bytes_per);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(MAGIC.len() + 4 + header_len - 1, b' ');
    out.push(b'\n');
    match width {
        CodeWidth::U16 => {
            for &c in codes {
                let c = u16::try_from(c)
                    .map_err(|_| Error::invalid(format!("npy: code {c} does not fit in u16")))?;
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        CodeWidth::U32 => {
            for &c in codes {
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
    }
    Ok(out)
}

/// A 2-D unsigned integer array read back from an npy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyArray {
    pub width: CodeWidth,
    pub shape: [usize; 2],
    /// Row-major values, widened to u32.
    pub data: Vec<u32>,
}

/// Parses an npy file of the kind [`encode_npy`] writes (v1.0, `<u2` or `<u4`, 2-D, C order).
/// Strict on purpose: it exists to check this crate's output, not to read arbitrary npy files.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray> {
    let bad = |why: &str| Error::invalid(format!("npy: {why}"));
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("missing magic"));
    }
    if bytes[6..8] != [1, 0] {
        return Err(bad("not version 1.0"));
    }
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let start = 10 + header_len;
    if bytes.len() < start || !start.is_multiple_of(ALIGN) {
        return Err(bad("header length out of range or unaligned"));
    }
    let header =
        std::str::from_utf8(&bytes[10..start]).map_err(|_| bad("header is not ASCII text"))?;
    if !header.ends_with('\n') || !header.contains("'fortran_order': False") {
        return Err(bad("header not terminated, or not C order"));
    }
    let width = if header.contains("'descr': '<u2'") {
        CodeWidth::U16
    } else if header.contains("'descr': '<u4'") {
        CodeWidth::U32
    } else {
        return Err(bad("dtype is neither <u2 nor <u4"));
    };
    let shape_at = header.find("'shape': (").ok_or_else(|| bad("no shape"))? + 10;
    let shape_end = header[shape_at..]
        .find(')')
        .ok_or_else(|| bad("unterminated shape"))?;
    let dims: Vec<usize> = header[shape_at..shape_at + shape_end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| bad("shape is not a tuple of integers"))
        })
        .collect::<Result<_>>()?;
    let [rows, cols] = dims[..] else {
        return Err(bad("array is not 2-D"));
    };
    let body = &bytes[start..];
    let data: Vec<u32> = match width {
        CodeWidth::U16 => body
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)
            .collect(),
        CodeWidth::U32 => body
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    };
    let bytes_per = if width == CodeWidth::U16 { 2 } else { 4 };
    if data.len() != rows * cols || body.len() != data.len() * bytes_per {
        return Err(bad("data length does not match the shape"));
    }
    Ok(NpyArray {
        width,
        shape: [rows, cols],
        data,
    })
}

/// The npy bytes of every level of an item, in level order.
pub(crate) fn item_level_files(
    context: &WriterContext,
    item: &EncodedItem,
) -> Result<Vec<Vec<u8>>> {
    let shapes = item.codes.shapes();
    (0..shapes.len())
        .map(|k| {
            let width = CodeWidth::for_codebook(context.layout.codebook_sizes[k]);
            encode_npy(&level_codes(item, k)?, shapes[k], width)
                .map_err(|e| e.with_path(&item.item.source))
        })
        .collect()
}

/// Writes `STEM/<rel_path without extension>.codes_{k}.npy` for every item and level.
pub struct NpyWriter {
    context: WriterContext,
    /// `staging/STEM`, created at once so that an empty shard is an empty directory.
    root: PathBuf,
    stem: String,
    /// Paths already written, to refuse two items that map to one file (`a.wav` and `a.flac`)
    /// instead of silently keeping the last.
    seen: HashSet<PathBuf>,
}

impl NpyWriter {
    pub fn create(target: &ShardTarget) -> Result<Self> {
        let stem = target.shard.stem();
        let root = target.staging.join(&stem);
        // A directory left by an interrupted attempt at this shard may hold files of items this
        // run will not write; start from nothing so that the finished tree is exactly this run's
        // (the file formats get the same from File::create's truncation).
        if root.exists() {
            fs::remove_dir_all(&root).with_path(&root)?;
        }
        fs::create_dir_all(&root).with_path(&root)?;
        Ok(Self {
            context: target.context.clone(),
            root,
            stem,
            seen: HashSet::new(),
        })
    }
}

/// `rel_path` without its extension, refused if it could leave the shard directory.
fn relative_stem(item: &EncodedItem) -> Result<PathBuf> {
    let rel = &item.item.rel_path;
    let safe =
        !rel.as_os_str().is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !safe {
        return Err(Error::file(
            &item.item.source,
            format!(
                "relative path {} is empty, absolute or leaves the input root",
                rel.display()
            ),
        ));
    }
    Ok(rel.with_extension(""))
}

impl ShardWriter for NpyWriter {
    fn write(&mut self, item: &EncodedItem) -> Result<()> {
        check_item(&self.context, item)?;
        let stem = relative_stem(item)?;
        if !self.seen.insert(stem.clone()) {
            return Err(Error::file(
                &item.item.source,
                format!(
                    "another item of this shard also maps to {}.codes_*.npy",
                    stem.display()
                ),
            ));
        }
        let files = item_level_files(&self.context, item)?;
        let base = self.root.join(&stem);
        if let Some(parent) = base.parent() {
            fs::create_dir_all(parent).with_path(parent)?;
        }
        let name = base
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (k, bytes) in files.iter().enumerate() {
            let path = base.with_file_name(format!("{name}.codes_{k}.npy"));
            let file = fs::File::create(&path).with_path(&path)?;
            let mut w = BufWriter::new(file);
            w.write_all(bytes).with_path(&path)?;
            w.flush().with_path(&path)?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Vec<PathBuf>> {
        Ok(vec![PathBuf::from(&self.stem)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_round_trips() {
        for (width, codes) in [
            (CodeWidth::U16, vec![0, 1, 65535, 7, 8, 9]),
            (CodeWidth::U32, vec![0, 1, 65536, 7, 8, u32::MAX]),
        ] {
            let bytes = encode_npy(&codes, [2, 3], width).unwrap();
            let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + header_len) % 64, 0);
            let back = parse_npy(&bytes).unwrap();
            assert_eq!(back.shape, [2, 3]);
            assert_eq!(back.width, width);
            assert_eq!(back.data, codes);
        }
    }

    #[test]
    fn exact_header_text() {
        let bytes = encode_npy(&[1, 2], [1, 2], CodeWidth::U16).unwrap();
        // The dict is 60 bytes: 10 + 60 + '\n' pads to 128.
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 118);
        let header = std::str::from_utf8(&bytes[10..128]).unwrap();
        assert!(header.starts_with("{'descr': '<u2', 'fortran_order': False, 'shape': (1, 2), }"));
        assert!(header.ends_with(" \n"));
        assert_eq!(&bytes[128..], &[1, 0, 2, 0]);
    }

    #[test]
    fn u16_overflow_and_bad_shapes_are_errors() {
        assert!(encode_npy(&[65536], [1, 1], CodeWidth::U16).is_err());
        assert!(encode_npy(&[1, 2, 3], [2, 2], CodeWidth::U32).is_err());
    }
}
