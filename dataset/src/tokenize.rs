//! `tessera dataset tokenize`: encode the items of this process's shards and write them.
//!
//! Per shard, two stages run at once:
//! - a reader thread decodes and resamples items on a pool of `jobs` threads, a few at a time,
//!   and hands over windows of about `batch_seconds` of audio, in item order;
//! - the calling thread encodes each window with [`encode_batch`] (every clip gets exactly the
//!   codes it gets alone) and writes the results in order.
//!
//! The channel between them holds one window, so memory is bounded by about three windows
//! (one being read, one waiting, one being encoded) plus the writer's buffers, whatever the
//! size of the dataset. A failing item is recorded and skipped; only output errors stop a job.
//!
//! A shard is built in a staging directory, moved into `shards/`, then its failed items are
//! written to `errors/`, and last its done marker to `done/`. A shard with a done marker is
//! skipped on a re-run, so a killed job resumes where it stopped, and the result does not
//! depend on where that was.

use std::path::Path;
use std::sync::mpsc;

use candle_core::Tensor;
use rayon::prelude::*;
use tessera_codec::audio::{AudioBuffer, ResamplingReader};
use tessera_codec::codec::{
    AudioCodec, EncodeOptions, clip_for_codec, encode_batch, encode_to_codes, read_mode,
};
use tessera_core::{Codes, Error, Result};

use crate::format::{Format, ShardName, ShardTarget, WriterContext, open_writer};
use crate::item::{EncodedItem, Item};
use crate::layout::TokenLayout;
use crate::marker::{self, FailedItem, Plan, ShardDone};
use crate::remote::Buckets;
use crate::shard::{ShardAssignment, shard_range};
use crate::store::{Store, discard_staging, is_url};

/// How to tokenise.
#[derive(Debug, Clone)]
pub struct TokenizeOptions {
    pub format: Format,
    /// Codebooks to keep per level; `None`: the codec's default.
    pub n_q: Option<usize>,
    /// Seconds of audio per encoding window.
    pub batch_seconds: f64,
    /// Clips per forward pass of the model (within a window, clips of one padded length).
    pub max_batch: usize,
    /// Decoding threads.
    pub jobs: usize,
    /// Redo shards that are already done (and accept a different plan).
    pub overwrite: bool,
    /// Items shorter than this (after decoding) are recorded as failures; `None`: one frame of
    /// the codec's coarsest level.
    pub min_seconds: Option<f64>,
    /// Items longer than this are recorded as failures: one item is held whole in memory.
    pub max_seconds: f64,
}

impl Default for TokenizeOptions {
    fn default() -> Self {
        Self {
            format: Format::Parquet,
            n_q: None,
            batch_seconds: 60.0,
            max_batch: 16,
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            overwrite: false,
            min_seconds: None,
            max_seconds: 4.0 * 3600.0,
        }
    }
}

/// What happens, for progress displays. Called from the encoding thread.
pub trait Observer: Sync {
    /// The job is about to make these shards (`items` inputs in all of them).
    fn start(&self, _shards: &[usize], _items: usize) {}
    /// A shard was already done and is skipped.
    fn skipped(&self, _done: &ShardDone) {}
    /// One item was encoded (`Ok(seconds of audio)`) or failed.
    fn item(&self, _result: std::result::Result<f64, &FailedItem>) {}
    /// A shard is complete and in place.
    fn shard_done(&self, _done: &ShardDone) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

/// The totals of one `tokenize` call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub shards_done: usize,
    pub shards_skipped: usize,
    pub items: usize,
    pub encoded: usize,
    pub failed: usize,
    pub audio_seconds: f64,
    pub tokens: u64,
}

/// Everything a job needs.
pub struct Job<'a> {
    pub codec: &'a dyn AudioCodec,
    pub store: &'a dyn Store,
    /// All items of the dataset, sorted as discovery returns them.
    pub items: &'a [Item],
    pub shards: ShardAssignment,
    pub options: TokenizeOptions,
}

impl Job<'_> {
    /// Run the job: make this process's shards, skipping done ones.
    pub fn run(&self, observer: &dyn Observer) -> Result<Summary> {
        self.check_options()?;
        let context = self.writer_context()?;
        self.agree_on_plan(&context)?;
        let mine = self.shards.mine();
        let n_mine: usize = mine
            .iter()
            .map(|&k| shard_range(self.items.len(), self.shards.count, k).len())
            .sum();
        observer.start(&mine, n_mine);
        let mut summary = Summary::default();
        for k in mine {
            if !self.options.overwrite
                && let Some(done) = marker::read::<ShardDone>(self.store, &marker::done_key(k))?
            {
                observer.skipped(&done);
                summary.shards_skipped += 1;
                add(&mut summary, &done);
                continue;
            }
            let done = self.make_shard(k, &context, observer)?;
            observer.shard_done(&done);
            summary.shards_done += 1;
            add(&mut summary, &done);
        }
        if self.shards.index.is_none() {
            // This process made every shard: whatever is still staged is a killed run's.
            self.store.clear_staging()?;
        }
        Ok(summary)
    }

    fn check_options(&self) -> Result<()> {
        let o = &self.options;
        if !(o.batch_seconds.is_finite() && o.batch_seconds > 0.0 && o.batch_seconds <= 86_400.0) {
            return Err(Error::invalid(format!(
                "--batch-seconds must be between 0 and 86400, got {}",
                o.batch_seconds
            )));
        }
        if o.jobs == 0 || o.jobs > 1024 {
            return Err(Error::invalid(format!(
                "--jobs must be between 1 and 1024, got {}",
                o.jobs
            )));
        }
        if !(o.max_seconds.is_finite() && o.max_seconds > 0.0) {
            return Err(Error::invalid(format!(
                "--max-seconds must be a positive number, got {}",
                o.max_seconds
            )));
        }
        if let Some(m) = o.min_seconds
            && !(m.is_finite() && (0.0..o.max_seconds).contains(&m))
        {
            return Err(Error::invalid(format!(
                "--min-seconds must be between 0 and --max-seconds, got {m}"
            )));
        }
        if o.max_batch == 0 {
            return Err(Error::invalid("the batch size must be at least 1"));
        }
        if let Some(q) = o.n_q {
            let most = self.codec.levels().iter().map(|l| l.n_q).max().unwrap_or(0);
            if q == 0 || q > most {
                return Err(Error::invalid(format!(
                    "--n-q {q} is out of range: {} has at most {most} codebooks per level",
                    self.codec.id()
                )));
            }
        }
        Ok(())
    }

    /// The layout of this job's codes. The codebooks a codec keeps by default differ by family
    /// (Mimi 8 of 32, EnCodec its first bandwidth), so the layout is read off a real encode of
    /// a short silent clip rather than re-derived here.
    fn writer_context(&self) -> Result<WriterContext> {
        let c = self.codec;
        let n = c.padded_len((c.sample_rate() as usize / 10).max(1));
        let silence = Tensor::zeros(
            (c.channels(), n),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )?;
        let codes = encode_to_codes(c, &silence, c.sample_rate(), &self.encode_options())?;
        Ok(WriterContext {
            tokenizer: c.id().to_string(),
            sample_rate: c.sample_rate(),
            frame_rates: codes.meta().frame_rates.clone(),
            layout: TokenLayout::of(&codes)?,
        })
    }

    fn encode_options(&self) -> EncodeOptions {
        EncodeOptions {
            n_q: self.options.n_q,
        }
    }

    fn plan(&self, context: &WriterContext) -> Plan {
        Plan {
            version: marker::LAYOUT_VERSION,
            tokenizer: context.tokenizer.clone(),
            sample_rate: context.sample_rate,
            channels: self.codec.channels(),
            frame_rates: context.frame_rates.clone(),
            layout: context.layout.clone(),
            format: self.options.format.name().to_string(),
            num_shards: self.shards.count,
            n_items: self.items.len(),
            inputs_digest: marker::digest(self.items),
        }
    }

    /// Write plan.json, or check that the one there describes the same job: shards of
    /// different jobs must never be mixed in one output.
    fn agree_on_plan(&self, context: &WriterContext) -> Result<()> {
        let plan = self.plan(context);
        let existing = marker::read::<Plan>(self.store, marker::PLAN_KEY)?;
        match existing {
            Some(old) if old == plan => Ok(()),
            Some(old) if !self.options.overwrite => Err(Error::invalid(format!(
                "{} holds the output of a different job ({}); use another --out, or --overwrite to replace it",
                self.store.describe(),
                plan_difference(&old, &plan)
            ))),
            _ => {
                if existing.is_some() {
                    // The old shards belong to another plan: none of them may survive.
                    for dir in ["done", "errors", "shards"] {
                        self.store.remove(dir)?;
                    }
                    self.store.remove(marker::MANIFEST_KEY)?;
                }
                self.store
                    .put_bytes(marker::PLAN_KEY, &marker::to_json(&plan))
            }
        }
    }

    fn make_shard(
        &self,
        k: usize,
        context: &WriterContext,
        observer: &dyn Observer,
    ) -> Result<ShardDone> {
        let items = &self.items[shard_range(self.items.len(), self.shards.count, k)];
        let staging = self.store.staging_dir()?;
        let shard = ShardName {
            index: k,
            count: self.shards.count,
        };
        let result = self.encode_shard(items, shard, context, &staging, observer);
        let (files, failures, mut done) = match result {
            Ok(r) => r,
            Err(e) => {
                discard_staging(&staging);
                return Err(e);
            }
        };
        let mut keys = Vec::with_capacity(files.len());
        for rel in &files {
            let name = rel.to_string_lossy().replace('\\', "/");
            let key = format!("shards/{name}");
            self.store.put_path(&key, &staging.join(rel))?;
            keys.push(key);
        }
        discard_staging(&staging);
        let errors_key = marker::errors_key(k);
        if failures.is_empty() {
            self.store.remove(&errors_key)?;
        } else {
            let mut lines = Vec::new();
            for f in &failures {
                lines.extend(serde_json::to_vec(f).expect("records serialise"));
                lines.push(b'\n');
            }
            self.store.put_bytes(&errors_key, &lines)?;
        }
        done.files = keys;
        self.store
            .put_bytes(&marker::done_key(k), &marker::to_json(&done))?;
        Ok(done)
    }

    #[allow(clippy::type_complexity)]
    fn encode_shard(
        &self,
        items: &[Item],
        shard: ShardName,
        context: &WriterContext,
        staging: &Path,
        observer: &dyn Observer,
    ) -> Result<(Vec<std::path::PathBuf>, Vec<FailedItem>, ShardDone)> {
        let target = ShardTarget {
            staging,
            shard,
            context,
        };
        let mut writer = open_writer(self.options.format, &target)?;
        let mut failures = Vec::new();
        let mut done = ShardDone {
            shard: shard.index,
            num_shards: shard.count,
            files: Vec::new(),
            items: items.len(),
            encoded: 0,
            failed: 0,
            audio_seconds: 0.0,
            tokens: 0,
        };
        let buckets = Buckets::default();
        let reader = WindowReader {
            codec: self.codec,
            options: &self.options,
            buckets: &buckets,
            fetch_dir: staging,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.options.jobs)
            .thread_name(|i| format!("tessera-decode-{i}"))
            .build()
            .map_err(|e| Error::invalid(format!("cannot start decoding threads: {e}")))?;
        let (tx, rx) = mpsc::sync_channel::<Vec<(usize, Decoded)>>(1);
        let encode_options = self.encode_options();
        std::thread::scope(|scope| -> Result<()> {
            let reader_thread = scope.spawn(|| reader.run(items, &pool, tx));
            for window in rx.iter() {
                let encoded = self.encode_window(items, window, &encode_options);
                for (i, result) in encoded {
                    match result {
                        Ok(codes) => {
                            let item = EncodedItem {
                                item: items[i].clone(),
                                n_samples: codes.meta().n_samples.unwrap_or(0),
                                codes,
                            };
                            if let Err(e) = writer.write(&item) {
                                // The layout check of a writer is about the item, not the
                                // output: record it and go on.
                                record(&mut failures, &mut done, observer, &items[i], e);
                                continue;
                            }
                            let seconds = item.n_samples as f64 / context.sample_rate as f64;
                            done.encoded += 1;
                            done.audio_seconds += seconds;
                            done.tokens += item
                                .codes
                                .shapes()
                                .iter()
                                .map(|s| (s[0] * s[1]) as u64)
                                .sum::<u64>();
                            observer.item(Ok(seconds));
                        }
                        Err(e) => record(&mut failures, &mut done, observer, &items[i], e),
                    }
                }
            }
            reader_thread
                .join()
                .map_err(|_| Error::invalid("the decoding thread panicked"))
        })?;
        let files = writer.finish()?;
        Ok((files, failures, done))
    }

    /// Encode one window's decoded clips; results in item order.
    fn encode_window(
        &self,
        items: &[Item],
        window: Vec<(usize, Decoded)>,
        opts: &EncodeOptions,
    ) -> Vec<(usize, Result<Codes>)> {
        let rate = self.codec.sample_rate();
        let mut out: Vec<(usize, Result<Codes>)> = Vec::with_capacity(window.len());
        let mut clips = Vec::new();
        let mut slots = Vec::new();
        for (i, decoded) in window {
            match decoded {
                Ok(clip) => {
                    slots.push(out.len());
                    clips.push(clip);
                    out.push((i, Err(Error::invalid("not encoded"))));
                }
                Err(e) => out.push((i, Err(e))),
            }
        }
        match encode_batch(self.codec, &clips, rate, opts, self.options.max_batch) {
            Ok(codes) => {
                for (slot, c) in slots.into_iter().zip(codes) {
                    out[slot].1 = Ok(c);
                }
            }
            // One bad clip fails its whole batch: encode each alone to find which.
            Err(_) => {
                for (slot, clip) in slots.into_iter().zip(&clips) {
                    out[slot].1 = encode_to_codes(self.codec, clip, rate, opts)
                        .map_err(|e| e.with_path(&items[out[slot].0].source));
                }
            }
        }
        out
    }
}

fn record(
    failures: &mut Vec<FailedItem>,
    done: &mut ShardDone,
    observer: &dyn Observer,
    item: &Item,
    e: Error,
) {
    let reason = match e {
        Error::File { reason, .. } => reason,
        other => other.to_string(),
    };
    let f = FailedItem {
        id: item.id.clone(),
        path: item.source.clone(),
        reason: reason.replace('\n', " "),
    };
    done.failed += 1;
    observer.item(Err(&f));
    failures.push(f);
}

fn add(summary: &mut Summary, done: &ShardDone) {
    summary.items += done.items;
    summary.encoded += done.encoded;
    summary.failed += done.failed;
    summary.audio_seconds += done.audio_seconds;
    summary.tokens += done.tokens;
}

fn plan_difference(old: &Plan, new: &Plan) -> String {
    if old.tokenizer != new.tokenizer {
        format!("tokenizer {} there, {} now", old.tokenizer, new.tokenizer)
    } else if old.format != new.format {
        format!("format {} there, {} now", old.format, new.format)
    } else if old.num_shards != new.num_shards {
        format!("{} shards there, {} now", old.num_shards, new.num_shards)
    } else if old.layout != new.layout {
        "another codebook layout (--n-q?)".to_string()
    } else if old.n_items != new.n_items || old.inputs_digest != new.inputs_digest {
        format!(
            "other inputs: {} items there, {} now",
            old.n_items, new.n_items
        )
    } else {
        "another plan version".to_string()
    }
}

fn too_long(item: &Item, seconds: f64, max: f64) -> Error {
    Error::file(
        &item.source,
        format!("too long: {seconds:.0} s, the maximum is {max:.0} s (--max-seconds)"),
    )
}

/// A decoded clip `[C, T]` at the codec's rate, or why not.
type Decoded = Result<Tensor>;

struct WindowReader<'a> {
    codec: &'a dyn AudioCodec,
    options: &'a TokenizeOptions,
    /// Object stores of URL inputs, and where their objects are fetched to.
    buckets: &'a Buckets,
    fetch_dir: &'a Path,
}

/// Deletes a fetched input when decoding is done with it.
struct Fetched(std::path::PathBuf);
impl Drop for Fetched {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl WindowReader<'_> {
    fn run(
        &self,
        items: &[Item],
        pool: &rayon::ThreadPool,
        tx: mpsc::SyncSender<Vec<(usize, Decoded)>>,
    ) {
        let rate = self.codec.sample_rate() as f64;
        let group = self.options.jobs.max(1);
        // Cap the clip count too, so that a window of tiny clips stays a sensible batch.
        let max_clips = (self.options.max_batch * 4).max(group);
        let mut window: Vec<(usize, Decoded)> = Vec::new();
        let mut seconds = 0.0;
        let mut start = 0;
        while start < items.len() {
            let end = (start + group).min(items.len());
            let decoded: Vec<Decoded> = pool.install(|| {
                items[start..end]
                    .par_iter()
                    .enumerate()
                    .map(|(i, it)| self.load(it, start + i))
                    .collect()
            });
            for (offset, d) in decoded.into_iter().enumerate() {
                if let Ok(clip) = &d {
                    seconds += clip.dims()[1] as f64 / rate;
                }
                window.push((start + offset, d));
            }
            start = end;
            if seconds >= self.options.batch_seconds || window.len() >= max_clips {
                if tx.send(std::mem::take(&mut window)).is_err() {
                    return;
                }
                seconds = 0.0;
            }
        }
        if !window.is_empty() {
            let _ = tx.send(window);
        }
    }

    fn load(&self, item: &Item, index: usize) -> Decoded {
        if !is_url(&item.source) {
            return self.load_path(item, Path::new(&item.source));
        }
        let local = Fetched(self.buckets.fetch(
            &item.source,
            self.fetch_dir,
            &format!("input{index}"),
        )?);
        // Errors name the object, not the temporary copy.
        self.load_path(item, &local.0).map_err(|e| match e {
            Error::File { reason, .. } => Error::file(&item.source, reason),
            other => other.with_path(&item.source),
        })
    }

    fn load_path(&self, item: &Item, path: &Path) -> Decoded {
        let codec = self.codec;
        let mut reader = ResamplingReader::open(path, codec.sample_rate(), read_mode(codec))?;
        // Refuse over-long items before holding them: the header's duration is enough to know.
        if let Some(seconds) = reader.info().duration_s
            && seconds > self.options.max_seconds
        {
            return Err(too_long(item, seconds, self.options.max_seconds));
        }
        let mut channels = vec![Vec::new(); reader.n_channels()];
        let limit = (self.options.max_seconds * codec.sample_rate() as f64) as usize;
        while let Some(chunk) = reader.next_chunk()? {
            for (dst, src) in channels.iter_mut().zip(chunk.channels) {
                dst.extend(src);
            }
            if channels[0].len() > limit {
                let seconds = channels[0].len() as f64 / codec.sample_rate() as f64;
                return Err(too_long(item, seconds, self.options.max_seconds));
            }
        }
        let audio = AudioBuffer::new(codec.sample_rate(), channels)
            .map_err(|e| e.with_path(&item.source))?;
        let n = audio.n_frames();
        let seconds = audio.duration_s();
        let min = self
            .options
            .min_seconds
            .unwrap_or_else(|| 1.0 / codec.levels().first().map_or(1.0, |l| l.frame_rate));
        if seconds < min {
            return Err(Error::file(
                &item.source,
                format!("too short: {seconds:.3} s, the minimum is {min:.3} s"),
            ));
        }
        clip_for_codec(codec, audio.into_channels(), n).map_err(|e| e.with_path(&item.source))
    }
}
