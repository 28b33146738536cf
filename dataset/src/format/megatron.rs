//! Megatron-LM's indexed dataset (`megatron/core/datasets/indexed_dataset.py`): a `.bin` of raw
//! tokens and an `.idx` describing it. One item is one document of one sequence: its codes
//! flattened by [`TokenLayout::flatten`](crate::layout::TokenLayout::flatten).
//!
//! `.idx`, all little-endian:
//! ```text
//! b"MMIDIDX\x00\x00"      9 bytes
//! version                  u64 = 1
//! dtype code               u8  (uint16 = 8, int32 = 4)
//! sequence count S         u64
//! document count D         u64 (= S + 1 here: the indices start with 0)
//! sequence lengths         S x i32, in tokens
//! sequence pointers        S x i64, byte offsets into .bin
//! document indices         D x i64, 0 then the end (exclusive) sequence of each document
//! ```
//! The `.bin` is the tokens of every sequence back to back.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tessera_core::{Error, Result, WithPath};

use super::{ShardTarget, ShardWriter, WriterContext, check_item, with_suffix};
use crate::item::EncodedItem;

/// Megatron's `_INDEX_HEADER`.
pub const INDEX_MAGIC: &[u8; 9] = b"MMIDIDX\x00\x00";
pub const INDEX_VERSION: u64 = 1;
/// Bytes before the sequence lengths.
const HEADER_LEN: u64 = 9 + 8 + 1 + 8 + 8;

/// The token dtypes this crate writes, with Megatron's `DType` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenDtype {
    U16,
    I32,
}

impl TokenDtype {
    /// uint16 while every token id (`0..vocab_size`) fits, else int32 (Megatron's readers know
    /// no uint32).
    pub fn for_vocab(vocab_size: u64) -> Result<Self> {
        if vocab_size <= 1 << 16 {
            Ok(TokenDtype::U16)
        } else if vocab_size <= 1 << 31 {
            Ok(TokenDtype::I32)
        } else {
            Err(Error::invalid(format!(
                "a vocabulary of {vocab_size} token ids does not fit Megatron's int32 tokens"
            )))
        }
    }

    pub fn code(self) -> u8 {
        match self {
            TokenDtype::U16 => 8,
            TokenDtype::I32 => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            8 => Some(TokenDtype::U16),
            4 => Some(TokenDtype::I32),
            _ => None,
        }
    }

    pub fn size(self) -> u64 {
        match self {
            TokenDtype::U16 => 2,
            TokenDtype::I32 => 4,
        }
    }
}

/// `PREFIX.bin` and `PREFIX.idx`, keeping dots already in the prefix.
pub fn bin_path(prefix: &Path) -> PathBuf {
    suffixed(prefix, "bin")
}

pub fn idx_path(prefix: &Path) -> PathBuf {
    suffixed(prefix, "idx")
}

fn suffixed(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Streams the tokens to `.bin` as items arrive; the index (a few bytes per item) is held until
/// `finish` writes `.idx`.
pub struct MegatronWriter {
    context: WriterContext,
    dtype: TokenDtype,
    stem: String,
    bin_path: PathBuf,
    idx_path: PathBuf,
    bin: BufWriter<File>,
    lengths: Vec<i32>,
    scratch: Vec<u8>,
}

impl MegatronWriter {
    pub fn create(target: &ShardTarget) -> Result<Self> {
        let stem = target.shard.stem();
        let dtype = TokenDtype::for_vocab(target.context.layout.vocab_size)?;
        let bin_path = with_suffix(target.staging, &stem, "bin");
        let idx_path = with_suffix(target.staging, &stem, "idx");
        let bin = BufWriter::new(File::create(&bin_path).with_path(&bin_path)?);
        Ok(Self {
            context: target.context.clone(),
            dtype,
            stem,
            bin_path,
            idx_path,
            bin,
            lengths: Vec::new(),
            scratch: Vec::new(),
        })
    }
}

impl ShardWriter for MegatronWriter {
    fn write(&mut self, item: &EncodedItem) -> Result<()> {
        check_item(&self.context, item)?;
        let tokens = self
            .context
            .layout
            .flatten(&item.codes)
            .map_err(|e| e.with_path(&item.item.source))?;
        let len = i32::try_from(tokens.len()).map_err(|_| {
            Error::file(
                &item.item.source,
                format!(
                    "{} tokens, more than a Megatron sequence can hold",
                    tokens.len()
                ),
            )
        })?;
        self.scratch.clear();
        for &t in &tokens {
            // Cannot fail: flatten yields ids below vocab_size, and the dtype holds them all.
            match self.dtype {
                TokenDtype::U16 => self.scratch.extend_from_slice(&(t as u16).to_le_bytes()),
                TokenDtype::I32 => self.scratch.extend_from_slice(&(t as i32).to_le_bytes()),
            }
        }
        self.bin
            .write_all(&self.scratch)
            .with_path(&self.bin_path)?;
        self.lengths.push(len);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Vec<PathBuf>> {
        let bin = self
            .bin
            .into_inner()
            .map_err(|e| Error::file(&self.bin_path, e.error()))?;
        bin.sync_all().with_path(&self.bin_path)?;
        let n = self.lengths.len() as u64;
        let mut idx = IndexWriter::create(&self.idx_path, self.dtype, n, n + 1)?;
        idx.lengths(self.lengths.iter().copied())?;
        idx.pointers_from(self.lengths.iter().copied())?;
        idx.document_indices((0..=n).map(|d| d as i64))?;
        idx.finish()?;
        Ok(vec![
            PathBuf::from(format!("{}.bin", self.stem)),
            PathBuf::from(format!("{}.idx", self.stem)),
        ])
    }
}

/// Writes an `.idx` section by section, so that merging never holds a whole index.
struct IndexWriter {
    path: PathBuf,
    out: BufWriter<File>,
    dtype: TokenDtype,
}

impl IndexWriter {
    fn create(path: &Path, dtype: TokenDtype, sequences: u64, documents: u64) -> Result<Self> {
        let mut out = BufWriter::new(File::create(path).with_path(path)?);
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(INDEX_MAGIC);
        header.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        header.push(dtype.code());
        header.extend_from_slice(&sequences.to_le_bytes());
        header.extend_from_slice(&documents.to_le_bytes());
        out.write_all(&header).with_path(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            out,
            dtype,
        })
    }

    fn lengths(&mut self, lengths: impl Iterator<Item = i32>) -> Result<()> {
        for l in lengths {
            self.out.write_all(&l.to_le_bytes()).with_path(&self.path)?;
        }
        Ok(())
    }

    /// The byte offset of each sequence: the running sum of the lengths before it.
    fn pointers_from(&mut self, lengths: impl Iterator<Item = i32>) -> Result<i64> {
        let mut at = 0i64;
        for l in lengths {
            self.out
                .write_all(&at.to_le_bytes())
                .with_path(&self.path)?;
            at += l as i64 * self.dtype.size() as i64;
        }
        Ok(at)
    }

    fn document_indices(&mut self, indices: impl Iterator<Item = i64>) -> Result<()> {
        for d in indices {
            self.out.write_all(&d.to_le_bytes()).with_path(&self.path)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::file(&self.path, e.error()))?;
        file.sync_all().with_path(&self.path)
    }
}

/// The header of an `.idx`, checked against the file's size and its `.bin`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexHeader {
    dtype: TokenDtype,
    sequences: u64,
    documents: u64,
}

impl IndexHeader {
    fn lengths_at(&self) -> u64 {
        HEADER_LEN
    }
    fn pointers_at(&self) -> u64 {
        HEADER_LEN + 4 * self.sequences
    }
    fn documents_at(&self) -> u64 {
        self.pointers_at() + 8 * self.sequences
    }
    fn end(&self) -> u64 {
        self.documents_at() + 8 * self.documents
    }
}

fn read_header(path: &Path, r: &mut impl Read) -> Result<IndexHeader> {
    let mut b = [0u8; HEADER_LEN as usize];
    r.read_exact(&mut b)
        .map_err(|_| Error::file(path, "too short for a Megatron index header"))?;
    if &b[..9] != INDEX_MAGIC {
        return Err(Error::file(
            path,
            "not a Megatron index (no MMIDIDX header)",
        ));
    }
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let version = u64_at(9);
    if version != INDEX_VERSION {
        return Err(Error::file(
            path,
            format!("Megatron index version {version}, only 1 is known"),
        ));
    }
    let dtype = TokenDtype::from_code(b[17]).ok_or_else(|| {
        Error::file(
            path,
            format!(
                "token dtype code {} (only uint16 = 8 and int32 = 4 are written)",
                b[17]
            ),
        )
    })?;
    let header = IndexHeader {
        dtype,
        sequences: u64_at(18),
        documents: u64_at(26),
    };
    // Counts no file can hold would overflow the offsets computed from them.
    if header.sequences > u64::MAX / 32 || header.documents > u64::MAX / 32 {
        return Err(Error::file(
            path,
            format!(
                "absurd counts in the header ({} sequences, {} documents)",
                header.sequences, header.documents
            ),
        ));
    }
    if header.documents == 0 {
        return Err(Error::file(
            path,
            "document count 0 (the indices start with 0)",
        ));
    }
    Ok(header)
}

/// Reads `n` little-endian values of `N` bytes, in chunks, handing each to `f`.
fn for_each_le<const N: usize>(
    path: &Path,
    r: &mut impl Read,
    n: u64,
    mut f: impl FnMut([u8; N]) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; N * 8192];
    let mut left = n;
    while left > 0 {
        let take = left.min(8192) as usize;
        r.read_exact(&mut buf[..take * N])
            .map_err(|e| Error::file(path, format!("truncated index: {e}")))?;
        for chunk in buf[..take * N].chunks_exact(N) {
            f(chunk.try_into().expect("N bytes"))?;
        }
        left -= take as u64;
    }
    Ok(())
}

/// An `.idx` read whole (tests, checks and `status`; merging streams instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MegatronIndex {
    pub dtype: TokenDtype,
    pub sequence_lengths: Vec<i32>,
    pub sequence_pointers: Vec<i64>,
    pub document_indices: Vec<i64>,
}

impl MegatronIndex {
    /// Reads and checks an `.idx`: size, pointers consistent with the lengths, document indices
    /// rising from 0 to the sequence count.
    pub fn read(path: &Path) -> Result<Self> {
        let file = File::open(path).with_path(path)?;
        let size = file.metadata().with_path(path)?.len();
        let mut r = BufReader::new(file);
        let h = read_header(path, &mut r)?;
        if h.end() != size {
            return Err(Error::file(
                path,
                format!(
                    "{size} bytes, the header's counts need {} (sequence modes or truncation?)",
                    h.end()
                ),
            ));
        }
        let mut lengths = Vec::with_capacity(h.sequences as usize);
        for_each_le::<4>(path, &mut r, h.sequences, |b| {
            lengths.push(i32::from_le_bytes(b));
            Ok(())
        })?;
        let mut pointers = Vec::with_capacity(h.sequences as usize);
        for_each_le::<8>(path, &mut r, h.sequences, |b| {
            pointers.push(i64::from_le_bytes(b));
            Ok(())
        })?;
        let mut docs = Vec::with_capacity(h.documents as usize);
        for_each_le::<8>(path, &mut r, h.documents, |b| {
            docs.push(i64::from_le_bytes(b));
            Ok(())
        })?;
        let mut at = 0i64;
        for (i, (&l, &p)) in lengths.iter().zip(&pointers).enumerate() {
            if l < 0 || p != at {
                return Err(Error::file(
                    path,
                    format!("sequence {i}: length {l} at byte {p}, expected byte {at}"),
                ));
            }
            at += l as i64 * h.dtype.size() as i64;
        }
        if docs[0] != 0
            || docs.windows(2).any(|w| w[1] < w[0])
            || *docs.last().expect("documents > 0") != h.sequences as i64
        {
            return Err(Error::file(
                path,
                "document indices do not rise from 0 to the sequence count",
            ));
        }
        Ok(Self {
            dtype: h.dtype,
            sequence_lengths: lengths,
            sequence_pointers: pointers,
            document_indices: docs,
        })
    }

    /// Tokens of all sequences, in bytes of `.bin`.
    pub fn bin_len(&self) -> u64 {
        self.sequence_lengths
            .iter()
            .map(|&l| l as u64 * self.dtype.size())
            .sum()
    }
}

/// Concatenates the Megatron shards at `prefixes` (each `PREFIX.bin` + `PREFIX.idx`), in order,
/// into `out_prefix.bin` + `out_prefix.idx`: the same files one writer would have produced for
/// all their items (what Megatron's `IndexedDatasetBuilder.add_index` does). Streams: memory does
/// not grow with the shards' sizes. Returns the number of documents.
pub fn merge_megatron(prefixes: &[PathBuf], out_prefix: &Path) -> Result<u64> {
    // Creating the output truncates it: refuse to merge a shard into itself.
    if prefixes.iter().any(|p| p == out_prefix) {
        return Err(Error::file(
            idx_path(out_prefix),
            "the merged dataset would overwrite one of its shards",
        ));
    }
    // Pass 1: headers, checked against file sizes, so that a bad shard fails before writing.
    let mut headers = Vec::with_capacity(prefixes.len());
    for prefix in prefixes {
        let idx = idx_path(prefix);
        let file = File::open(&idx).with_path(&idx)?;
        let size = file.metadata().with_path(&idx)?.len();
        let h = read_header(&idx, &mut BufReader::new(file))?;
        if h.end() != size {
            return Err(Error::file(
                &idx,
                format!("{size} bytes, the header's counts need {}", h.end()),
            ));
        }
        if let Some(first) = headers
            .first()
            .map(|(_, h): &(PathBuf, IndexHeader)| h.dtype)
            && first != h.dtype
        {
            return Err(Error::file(
                &idx,
                format!(
                    "token dtype {:?} differs from the first shard's {first:?}",
                    h.dtype
                ),
            ));
        }
        headers.push((idx, h));
    }
    let dtype = match headers.first() {
        Some((_, h)) => h.dtype,
        None => return Err(Error::invalid("no Megatron shards to merge")),
    };
    let sequences: u64 = headers.iter().map(|(_, h)| h.sequences).sum();
    let documents: u64 = 1 + headers.iter().map(|(_, h)| h.documents - 1).sum::<u64>();

    let out_idx = idx_path(out_prefix);
    let mut idx = IndexWriter::create(&out_idx, dtype, sequences, documents)?;
    let open_at = |path: &Path, at: u64| -> Result<BufReader<File>> {
        let mut f = File::open(path).with_path(path)?;
        f.seek(SeekFrom::Start(at)).with_path(path)?;
        Ok(BufReader::new(f))
    };

    // Lengths: copied as they are; the byte total of each shard is checked against its .bin.
    let mut bin_sizes = Vec::with_capacity(headers.len());
    for ((path, h), prefix) in headers.iter().zip(prefixes) {
        let mut r = open_at(path, h.lengths_at())?;
        let mut bytes = 0u64;
        for_each_le::<4>(path, &mut r, h.sequences, |b| {
            let l = i32::from_le_bytes(b);
            if l < 0 {
                return Err(Error::file(path, format!("negative sequence length {l}")));
            }
            bytes += l as u64 * dtype.size();
            idx.lengths(std::iter::once(l))
        })?;
        let bin = bin_path(prefix);
        let actual = std::fs::metadata(&bin).with_path(&bin)?.len();
        if actual != bytes {
            return Err(Error::file(
                &bin,
                format!("{actual} bytes, its index describes {bytes}"),
            ));
        }
        bin_sizes.push(bytes);
    }
    // Pointers: recomputed over the concatenation.
    let mut at = 0i64;
    for (path, h) in &headers {
        let mut r = open_at(path, h.lengths_at())?;
        for_each_le::<4>(path, &mut r, h.sequences, |b| {
            idx.out.write_all(&at.to_le_bytes()).with_path(&idx.path)?;
            at += i32::from_le_bytes(b) as i64 * dtype.size() as i64;
            Ok(())
        })?;
    }
    // Document indices: one leading 0, then each shard's ends shifted by the sequences before it.
    idx.document_indices(std::iter::once(0))?;
    let mut offset = 0i64;
    for (path, h) in &headers {
        let mut r = open_at(path, h.documents_at())?;
        let mut first = true;
        for_each_le::<8>(path, &mut r, h.documents, |b| {
            let d = i64::from_le_bytes(b);
            if first {
                first = false;
                if d != 0 {
                    return Err(Error::file(path, "document indices do not start with 0"));
                }
                return Ok(());
            }
            if d < 0 || d as u64 > h.sequences {
                return Err(Error::file(
                    path,
                    format!("document index {d} outside 0..={}", h.sequences),
                ));
            }
            idx.document_indices(std::iter::once(offset + d))
        })?;
        offset += h.sequences as i64;
    }
    idx.finish()?;

    // Data: plain concatenation.
    let out_bin = bin_path(out_prefix);
    let mut out = BufWriter::new(File::create(&out_bin).with_path(&out_bin)?);
    for (prefix, &size) in prefixes.iter().zip(&bin_sizes) {
        let bin = bin_path(prefix);
        let copied = io::copy(&mut File::open(&bin).with_path(&bin)?.take(size), &mut out)
            .with_path(&bin)?;
        if copied != size {
            return Err(Error::file(&bin, "changed size while being merged"));
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| Error::file(&out_bin, e.error()))?;
    file.sync_all().with_path(&out_bin)?;
    Ok(documents - 1)
}
