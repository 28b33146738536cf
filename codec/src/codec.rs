//! The interface every neural audio codec implements, and the glue between it and [`Codes`].
//!
//! A codec works on batched tensors: audio `[B, C, T]` f32 at its own sample rate and channel
//! count, codes as one u32 tensor `[B, n_q, T_k]` per *level*. Single-rate codecs (Mimi, EnCodec,
//! DAC) have one level; multi-scale ones (SNAC) one per temporal scale, coarse first. Everything a
//! caller needs to size buffers or describe a file comes from [`AudioCodec::levels`], so callers
//! never special-case a family.
//!
//! The free functions turn one clip into a [`Codes`] value (filling its metadata) and back
//! (refusing codes made by another tokenizer and trimming to the original length), and encode
//! many clips of different lengths in batches without changing any clip's codes.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use tessera_core::{Codes, CodesMeta, Error, Result};

use crate::audio::ChannelMode;

use crate::stream::{DecodeStream, EncodeStream, WholeDecodeStream, WholeEncodeStream};

/// What one level of codes looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelSpec {
    /// Most codebooks this level can have (the residual depth); encoders may emit fewer.
    pub n_q: usize,
    /// Every codebook of the level has this many entries.
    pub codebook_size: u32,
    /// Frames per second of the level.
    pub frame_rate: f64,
}

/// What a codec can do, so that callers ask instead of guessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Can encode and decode chunk by chunk with state, identically to whole-signal processing.
    pub streaming: bool,
    /// [`encode_batch`] gives every clip exactly the codes it gets when encoded alone.
    pub batch_exact: bool,
    /// The decoder draws random noise (see [`Noise`]).
    pub decoder_noise: bool,
}

/// Options for encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Codebooks to keep per level (the residual depth, e.g. the bandwidth of EnCodec);
    /// `None` uses the codec's default depth, which is what its reference does: all codebooks
    /// for SNAC and DAC, 8 of Mimi's 32 (Moshi's choice), EnCodec's first target bandwidth
    /// (1.5 kbps, 2 codebooks, for encodec_24khz). Must not exceed [`LevelSpec::n_q`].
    pub n_q: Option<usize>,
}

/// Random noise a decoder adds (SNAC's `NoiseBlock`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Noise {
    /// No noise: the decoder is a deterministic function of the codes.
    Off,
    /// Noise from a fixed seed: the same codes and seed give the same audio.
    Seeded(u64),
    /// Fresh noise on every call, as the reference implementation does.
    #[default]
    Random,
}

/// Options for decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Ignored by codecs whose decoder has no noise.
    pub noise: Noise,
}

/// A neural audio codec: audio to integer codes and back.
pub trait AudioCodec: Send + Sync {
    /// Registry id (`snac_24khz`) or the name of the local checkpoint directory; written into
    /// codes files so that they can be decoded without being told the codec.
    fn id(&self) -> &str;

    /// Free-form version of the weights (e.g. a hub revision); empty when unknown.
    fn version(&self) -> &str {
        ""
    }

    fn sample_rate(&self) -> u32;

    fn channels(&self) -> usize;

    /// One entry per level, coarse first.
    fn levels(&self) -> Vec<LevelSpec>;

    fn capabilities(&self) -> Capabilities;

    /// The length a clip of `n_samples` is padded to before encoding. Clips with the same padded
    /// length can share a batch (zero-padded to it) and get exactly the codes they get alone.
    /// The default (no padding) makes only clips of equal length share a batch.
    fn padded_len(&self, n_samples: usize) -> usize {
        n_samples
    }

    /// Audio `[B, C, T]` f32 -> codes, one `[B, n_q, T_k]` u32 tensor per level.
    fn encode(&self, audio: &Tensor, opts: &EncodeOptions) -> Result<Vec<Tensor>>;

    /// Codes (one `[B, n_q, T_k]` u32 tensor per level) -> audio `[B, C, T]` f32, `T` covering
    /// the padded input.
    fn decode(&self, levels: &[Tensor], opts: &DecodeOptions) -> Result<Tensor>;

    /// A stream encoding one clip piece by piece into exactly the codes of [`Self::encode`].
    /// The default collects the whole clip (see [`WholeEncodeStream`]); families that stream or
    /// window override it and keep memory bounded.
    fn encode_stream(&self, opts: &EncodeOptions) -> Result<Box<dyn EncodeStream + '_>> {
        Ok(Box::new(WholeEncodeStream::new(self, opts)))
    }

    /// A stream decoding one clip's codes piece by piece into exactly the audio of
    /// [`Self::decode`]. `total_frames`, the level-0 frames the whole stream will hold, is a hint
    /// for decoders whose output depends on it: SNAC lays its seeded noise out over the whole
    /// signal, and reproduces whole-signal decoding with noise only when told the length.
    fn decode_stream(
        &self,
        opts: &DecodeOptions,
        total_frames: Option<usize>,
    ) -> Result<Box<dyn DecodeStream + '_>> {
        let _ = total_frames;
        Ok(Box::new(WholeDecodeStream::new(self, opts)))
    }
}

/// Check audio handed to [`AudioCodec::encode`]: `[B, C, T]` with the codec's channel count,
/// at least one sample, a float dtype and finite values. Returns `(B, T)`.
pub fn check_audio(codec: &dyn AudioCodec, audio: &Tensor) -> Result<(usize, usize)> {
    let (b, c, t) = match audio.dims() {
        &[b, c, t] => (b, c, t),
        d => {
            return Err(Error::invalid(format!(
                "audio must be [batch, channels, samples], got shape {d:?}"
            )));
        }
    };
    if c != codec.channels() {
        return Err(Error::invalid(format!(
            "{} takes {} channel(s), the audio has {c}",
            codec.id(),
            codec.channels()
        )));
    }
    if b == 0 || t == 0 {
        return Err(Error::invalid("the audio is empty (no samples)"));
    }
    if !audio.dtype().is_float() {
        return Err(Error::invalid(format!(
            "audio samples must be floats, got {:?}",
            audio.dtype()
        )));
    }
    // x - x is NaN exactly where x is NaN or infinite, and 0 elsewhere.
    let x = audio.to_dtype(DType::F32)?;
    let bad = x.sub(&x)?.sum_all()?.to_scalar::<f32>()?;
    if bad.is_nan() {
        return Err(Error::invalid("the audio contains NaN or infinite samples"));
    }
    Ok((b, t))
}

/// Check codes handed to [`AudioCodec::decode`] against the codec's levels: the level count,
/// `[B, n_q, T_k]` u32 shapes with one batch size, `n_q` within the level's depth, and every code
/// within its codebook. Returns `B`.
pub fn check_levels(codec: &dyn AudioCodec, levels: &[Tensor]) -> Result<usize> {
    let specs = codec.levels();
    if levels.len() != specs.len() {
        return Err(Error::invalid(format!(
            "{} has {} code levels, got {}",
            codec.id(),
            specs.len(),
            levels.len()
        )));
    }
    let mut batch = None;
    for (k, (t, spec)) in levels.iter().zip(&specs).enumerate() {
        let (b, n_q, frames) = match t.dims() {
            &[b, n_q, f] => (b, n_q, f),
            d => {
                return Err(Error::invalid(format!(
                    "level {k} must be [batch, codebooks, frames], got shape {d:?}"
                )));
            }
        };
        if t.dtype() != DType::U32 {
            return Err(Error::invalid(format!(
                "level {k} has dtype {:?}, codes are u32",
                t.dtype()
            )));
        }
        if *batch.get_or_insert(b) != b {
            return Err(Error::invalid(format!(
                "level {k} has batch size {b}, level 0 has {}",
                batch.unwrap_or(0)
            )));
        }
        if n_q == 0 || n_q > spec.n_q {
            return Err(Error::invalid(format!(
                "level {k} has {n_q} codebooks; {} takes 1..={}",
                codec.id(),
                spec.n_q
            )));
        }
        if b == 0 || frames == 0 {
            return Err(Error::invalid(format!("level {k} holds no codes")));
        }
        let max = t.flatten_all()?.max(0)?.to_scalar::<u32>()?;
        if max >= spec.codebook_size {
            return Err(Error::invalid(format!(
                "level {k} holds code {max}, out of range for codebook size {}",
                spec.codebook_size
            )));
        }
    }
    Ok(batch.unwrap_or(0))
}

/// How to read a file for `codec`: mono codecs take the down-mix, others the file's channels
/// (then matched by [`clip_for_codec`]).
pub fn read_mode(codec: &dyn AudioCodec) -> ChannelMode {
    if codec.channels() == 1 {
        ChannelMode::Mono
    } else {
        ChannelMode::Keep
    }
}

/// Planar samples (`n` frames per channel, read with [`read_mode`]) as a `[C, n]` clip with the
/// codec's channel count: a mono file is duplicated for a multi-channel codec; any other
/// mismatch is refused.
pub fn clip_for_codec(
    codec: &dyn AudioCodec,
    mut channels: Vec<Vec<f32>>,
    n: usize,
) -> Result<Tensor> {
    let (have, want) = (channels.len(), codec.channels());
    if have == 1 && want > 1 {
        channels = vec![channels.swap_remove(0); want];
    } else if have != want {
        return Err(Error::invalid(format!(
            "the file has {have} channels and the codec takes {want}; mix it down first"
        )));
    }
    Ok(Tensor::from_vec(
        channels.concat(),
        (want, n),
        &candle_core::Device::Cpu,
    )?)
}

/// The metadata of codes that `codec` made from a clip of `n_samples` samples (at its rate), for
/// codes assembled from a stream.
pub fn codes_meta(codec: &dyn AudioCodec, n_samples: usize) -> CodesMeta {
    let specs = codec.levels();
    CodesMeta {
        tokenizer: codec.id().to_string(),
        tokenizer_version: codec.version().to_string(),
        sample_rate: Some(codec.sample_rate()),
        n_samples: Some(n_samples as u64),
        image_size: None,
        frame_rates: specs.iter().map(|s| s.frame_rate).collect(),
        codebook_sizes: specs.iter().map(|s| s.codebook_size).collect(),
        extra: BTreeMap::new(),
    }
}

fn check_rate(codec: &dyn AudioCodec, sample_rate: u32) -> Result<()> {
    if sample_rate != codec.sample_rate() {
        return Err(Error::invalid(format!(
            "the audio is at {sample_rate} Hz but {} works at {} Hz; resample it first",
            codec.id(),
            codec.sample_rate()
        )));
    }
    Ok(())
}

fn clip_dims(codec: &dyn AudioCodec, clip: &Tensor) -> Result<usize> {
    match clip.dims() {
        &[c, t] if c == codec.channels() => Ok(t),
        &[c, _] => Err(Error::invalid(format!(
            "{} takes {} channel(s), the audio has {c}",
            codec.id(),
            codec.channels()
        ))),
        d => Err(Error::invalid(format!(
            "a clip must be [channels, samples], got shape {d:?}"
        ))),
    }
}

/// Encode one clip `[C, T]` at `sample_rate` into [`Codes`] with full metadata.
pub fn encode_to_codes(
    codec: &dyn AudioCodec,
    samples: &Tensor,
    sample_rate: u32,
    opts: &EncodeOptions,
) -> Result<Codes> {
    check_rate(codec, sample_rate)?;
    let n = clip_dims(codec, samples)?;
    let levels = codec.encode(&samples.unsqueeze(0)?, opts)?;
    let levels = levels
        .iter()
        .map(|l| l.squeeze(0))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Codes::new(levels, codes_meta(codec, n))
}

/// Encode clips `[C, T_i]` of any lengths, `max_batch` at a time, giving each exactly the codes
/// [`encode_to_codes`] gives it alone: clips are grouped by [`AudioCodec::padded_len`] and only
/// zero-padded up to that length, which is what encoding alone does. Results keep input order.
pub fn encode_batch(
    codec: &dyn AudioCodec,
    clips: &[Tensor],
    sample_rate: u32,
    opts: &EncodeOptions,
    max_batch: usize,
) -> Result<Vec<Codes>> {
    check_rate(codec, sample_rate)?;
    if max_batch == 0 {
        return Err(Error::invalid("max_batch must be at least 1"));
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, clip) in clips.iter().enumerate() {
        let n = clip_dims(codec, clip)?;
        if n == 0 {
            return Err(Error::invalid(format!("clip {i} is empty (no samples)")));
        }
        groups.entry(codec.padded_len(n)).or_default().push(i);
    }
    let mut out: Vec<Option<Codes>> = vec![None; clips.len()];
    for (padded, members) in groups {
        for chunk in members.chunks(max_batch) {
            let padded_clips = chunk
                .iter()
                .map(|&i| {
                    let n = clips[i].dims()[1];
                    clips[i].pad_with_zeros(1, 0, padded - n)
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            let levels = codec.encode(&Tensor::stack(&padded_clips, 0)?, opts)?;
            for (row, &i) in chunk.iter().enumerate() {
                let mine = levels
                    .iter()
                    .map(|l| l.get(row))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                out[i] = Some(Codes::new(mine, codes_meta(codec, clips[i].dims()[1]))?);
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|c| c.expect("every clip is in one group"))
        .collect())
}

/// Decode [`Codes`] made by this codec into audio `[C, n_samples]`, trimmed to the original
/// length. Codes from another tokenizer, sample rate or codebook layout are refused.
pub fn decode_codes(codec: &dyn AudioCodec, codes: &Codes, opts: &DecodeOptions) -> Result<Tensor> {
    check_codes_match(codec, codes)?;
    let meta = codes.meta();
    let levels = codes
        .levels()
        .iter()
        .map(|l| l.unsqueeze(0))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let audio = codec.decode(&levels, opts)?.squeeze(0)?;
    let decoded = audio.dims()[1];
    match meta.n_samples {
        Some(n) if n as usize > decoded => Err(Error::invalid(format!(
            "the codes decode to {decoded} samples but the metadata says the audio had {n}"
        ))),
        Some(n) => Ok(audio.narrow(1, 0, n as usize)?),
        None => Ok(audio),
    }
}

/// Refuses [`Codes`] made by another tokenizer, for another sample rate or with other codebook
/// sizes than `codec`'s: what [`decode_codes`] checks before decoding (streams check the rest
/// as the codes arrive).
pub fn check_codes_match(codec: &dyn AudioCodec, codes: &Codes) -> Result<()> {
    let meta = codes.meta();
    if meta.tokenizer != codec.id() {
        return Err(Error::invalid(format!(
            "these codes were made by '{}', not by '{}'",
            meta.tokenizer,
            codec.id()
        )));
    }
    if let Some(sr) = meta.sample_rate
        && sr != codec.sample_rate()
    {
        return Err(Error::invalid(format!(
            "these codes describe {sr} Hz audio but {} works at {} Hz",
            codec.id(),
            codec.sample_rate()
        )));
    }
    let specs = codec.levels();
    let sizes: Vec<u32> = specs.iter().map(|s| s.codebook_size).collect();
    if meta.codebook_sizes != sizes {
        return Err(Error::invalid(format!(
            "these codes use codebook sizes {:?} but {} has {sizes:?}",
            meta.codebook_sizes,
            codec.id()
        )));
    }
    Ok(())
}

/// candle attaches a backtrace to its errors when `RUST_BACKTRACE` is set; errors leaving a codec
/// are one line (the reason), so drop it.
pub(crate) fn one_line(e: Error) -> Error {
    fn reason(e: &candle_core::Error) -> String {
        match e {
            candle_core::Error::WithBacktrace { inner, .. } => reason(inner),
            other => other.to_string(),
        }
    }
    match e {
        Error::Candle(c) => Error::invalid(reason(&c)),
        other => other,
    }
}
