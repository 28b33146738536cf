//! Parquet output: one row per item, codes of level k in a `codes_{k}` column of type
//! `list<list<uint16|uint32>>` (`[n_q][T]`), tokenizer metadata in the file's key-value metadata
//! (see `docs/dataset-formats.md`). Written through arrow's Parquet writer with zstd.
//!
//! Rows are buffered in arrow builders and written out as a row group every
//! [`RowGroupLimits::items`] items or [`RowGroupLimits::code_bytes`] bytes of codes, so memory is
//! bounded by one row group whatever the shard's size.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::builder::{
    Int64Builder, ListBuilder, StringBuilder, UInt16Builder, UInt32Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use tessera_core::{Error, Result, WithPath};

use super::{
    CodeWidth, ShardTarget, ShardWriter, WriterContext, check_item, level_codes, with_suffix,
};
use crate::item::EncodedItem;

/// Version of this file layout, in the `tessera.format_version` metadata key.
pub const PARQUET_FORMAT_VERSION: u32 = 1;
/// zstd level: 3 is zstd's own default, a good size/speed balance for small integers.
const ZSTD_LEVEL: i32 = 3;

/// When a row group is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroupLimits {
    pub items: usize,
    /// Bytes of codes (at their stored width) buffered.
    pub code_bytes: usize,
}

impl Default for RowGroupLimits {
    /// A few thousand clips or 64 MiB: large enough for efficient scans, small enough to keep a
    /// worker's memory flat.
    fn default() -> Self {
        Self {
            items: 4096,
            code_bytes: 64 << 20,
        }
    }
}

type Nested<B> = ListBuilder<ListBuilder<B>>;

/// The builder of one `codes_{k}` column.
enum LevelColumn {
    U16(Nested<UInt16Builder>),
    U32(Nested<UInt32Builder>),
}

/// `list<list<leaf>>` with non-null entries at every depth (arrow's default list field name,
/// `item`, which is what pyarrow and `datasets` expect).
fn nested_field_types(leaf: DataType) -> (Arc<Field>, Arc<Field>) {
    let inner = Arc::new(Field::new("item", leaf, false));
    let outer = Arc::new(Field::new("item", DataType::List(inner.clone()), false));
    (inner, outer)
}

impl LevelColumn {
    fn new(width: CodeWidth) -> Self {
        match width {
            CodeWidth::U16 => {
                let (inner, outer) = nested_field_types(DataType::UInt16);
                LevelColumn::U16(
                    ListBuilder::new(ListBuilder::new(UInt16Builder::new()).with_field(inner))
                        .with_field(outer),
                )
            }
            CodeWidth::U32 => {
                let (inner, outer) = nested_field_types(DataType::UInt32);
                LevelColumn::U32(
                    ListBuilder::new(ListBuilder::new(UInt32Builder::new()).with_field(inner))
                        .with_field(outer),
                )
            }
        }
    }

    fn data_type(width: CodeWidth) -> DataType {
        let leaf = match width {
            CodeWidth::U16 => DataType::UInt16,
            CodeWidth::U32 => DataType::UInt32,
        };
        let (_, outer) = nested_field_types(leaf);
        DataType::List(outer)
    }

    /// Appends one item's `[n_q, T]` codes (row-major). Codes are below the codebook size
    /// (`Codes` checks it, `check_item` matches the sizes), so the u16 narrowing is exact.
    fn append(&mut self, codes: &[u32], [n_q, frames]: [usize; 2]) {
        // Rows by index rather than `chunks`, so that T = 0 still gives n_q empty rows.
        let rows = (0..n_q).map(|q| &codes[q * frames..(q + 1) * frames]);
        match self {
            LevelColumn::U16(b) => {
                for row in rows {
                    for &c in row {
                        b.values().values().append_value(c as u16);
                    }
                    b.values().append(true);
                }
                b.append(true);
            }
            LevelColumn::U32(b) => {
                for row in rows {
                    b.values().values().append_slice(row);
                    b.values().append(true);
                }
                b.append(true);
            }
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            LevelColumn::U16(b) => Arc::new(b.finish()),
            LevelColumn::U32(b) => Arc::new(b.finish()),
        }
    }
}

pub struct ParquetWriter {
    context: WriterContext,
    path: PathBuf,
    file_name: PathBuf,
    schema: SchemaRef,
    widths: Vec<CodeWidth>,
    limits: RowGroupLimits,
    writer: ArrowWriter<BufWriter<File>>,
    ids: StringBuilder,
    sources: StringBuilder,
    sample_rates: UInt32Builder,
    n_samples: Int64Builder,
    texts: StringBuilder,
    codes: Vec<LevelColumn>,
    rows: usize,
    code_bytes: usize,
}

/// The file's key-value metadata: everything needed to decode the codes without being told which
/// tokenizer made them. Lists and the layout are JSON.
fn key_value_metadata(context: &WriterContext) -> Result<Vec<KeyValue>> {
    let layout = &context.layout;
    Ok(vec![
        KeyValue::new(
            "tessera.format".into(),
            "tessera.dataset.parquet".to_string(),
        ),
        KeyValue::new(
            "tessera.format_version".into(),
            PARQUET_FORMAT_VERSION.to_string(),
        ),
        KeyValue::new("tessera.tokenizer".into(), context.tokenizer.clone()),
        KeyValue::new(
            "tessera.sample_rate".into(),
            context.sample_rate.to_string(),
        ),
        KeyValue::new("tessera.frame_rates".into(), to_json(&context.frame_rates)?),
        KeyValue::new(
            "tessera.codebook_sizes".into(),
            to_json(&layout.codebook_sizes)?,
        ),
        KeyValue::new("tessera.n_q".into(), to_json(&layout.n_q)?),
        KeyValue::new("tessera.token_layout".into(), to_json(layout)?),
    ])
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::invalid(format!("parquet metadata: {e}")))
}

impl ParquetWriter {
    pub fn create(target: &ShardTarget) -> Result<Self> {
        Self::with_limits(target, RowGroupLimits::default())
    }

    /// A writer that starts a new row group at `limits` (tests use small ones).
    pub fn with_limits(target: &ShardTarget, limits: RowGroupLimits) -> Result<Self> {
        let context = target.context.clone();
        let stem = target.shard.stem();
        let path = with_suffix(target.staging, &stem, "parquet");
        let widths: Vec<CodeWidth> = context
            .layout
            .codebook_sizes
            .iter()
            .map(|&s| CodeWidth::for_codebook(s))
            .collect();
        let mut fields = vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("sample_rate", DataType::UInt32, false),
            Field::new("n_samples", DataType::Int64, false),
            Field::new("text", DataType::Utf8, true),
        ];
        for (k, &w) in widths.iter().enumerate() {
            fields.push(Field::new(
                format!("codes_{k}"),
                LevelColumn::data_type(w),
                false,
            ));
        }
        let schema = Arc::new(Schema::new(fields));
        let level = ZstdLevel::try_new(ZSTD_LEVEL).map_err(|e| Error::invalid(e.to_string()))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_key_value_metadata(Some(key_value_metadata(&context)?))
            // Row groups are cut by this writer (see RowGroupLimits), never by the library.
            .set_max_row_group_row_count(None)
            .set_max_row_group_bytes(None)
            .build();
        let file = File::create(&path).with_path(&path)?;
        let writer = ArrowWriter::try_new(BufWriter::new(file), schema.clone(), Some(props))
            .map_err(|e| Error::file(&path, e))?;
        let codes = widths.iter().map(|&w| LevelColumn::new(w)).collect();
        Ok(Self {
            context,
            file_name: PathBuf::from(format!("{stem}.parquet")),
            path,
            schema,
            widths,
            limits,
            writer,
            ids: StringBuilder::new(),
            sources: StringBuilder::new(),
            sample_rates: UInt32Builder::new(),
            n_samples: Int64Builder::new(),
            texts: StringBuilder::new(),
            codes,
            rows: 0,
            code_bytes: 0,
        })
    }

    /// Writes the buffered rows as one row group.
    fn flush_row_group(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.ids.finish()),
            Arc::new(self.sources.finish()),
            Arc::new(self.sample_rates.finish()),
            Arc::new(self.n_samples.finish()),
            Arc::new(self.texts.finish()),
        ];
        columns.extend(self.codes.iter_mut().map(LevelColumn::finish));
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::file(&self.path, e))?;
        self.writer
            .write(&batch)
            .map_err(|e| Error::file(&self.path, e))?;
        self.writer
            .flush()
            .map_err(|e| Error::file(&self.path, e))?;
        self.rows = 0;
        self.code_bytes = 0;
        Ok(())
    }
}

impl ShardWriter for ParquetWriter {
    fn write(&mut self, item: &EncodedItem) -> Result<()> {
        check_item(&self.context, item)?;
        let n_samples = i64::try_from(item.n_samples).map_err(|_| {
            Error::file(
                &item.item.source,
                format!("{} samples does not fit int64", item.n_samples),
            )
        })?;
        // Read every level before appending anything, so that a failure leaves no half row.
        let shapes = item.codes.shapes();
        let levels = (0..shapes.len())
            .map(|k| level_codes(item, k))
            .collect::<Result<Vec<_>>>()?;
        self.ids.append_value(&item.item.id);
        self.sources.append_value(&item.item.source);
        self.sample_rates.append_value(self.context.sample_rate);
        self.n_samples.append_value(n_samples);
        self.texts.append_option(item.item.text.as_deref());
        for (k, codes) in levels.iter().enumerate() {
            self.codes[k].append(codes, shapes[k]);
            let width = match self.widths[k] {
                CodeWidth::U16 => 2,
                CodeWidth::U32 => 4,
            };
            self.code_bytes += codes.len() * width;
        }
        self.rows += 1;
        if self.rows >= self.limits.items || self.code_bytes >= self.limits.code_bytes {
            self.flush_row_group()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<PathBuf>> {
        self.flush_row_group()?;
        let path = self.path.clone();
        let mut w = self
            .writer
            .into_inner()
            .map_err(|e| Error::file(&path, e))?;
        w.flush().with_path(&path)?;
        let file = w.into_inner().map_err(|e| Error::file(&path, e.error()))?;
        file.sync_all().with_path(&path)?;
        Ok(vec![self.file_name])
    }
}
