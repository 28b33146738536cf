//! Encoding and decoding signals piece by piece, the same way for every codec family.
//!
//! An [`EncodeStream`] takes audio `[C, n]` in pieces of any size and returns codes frames as
//! soon as they are final (one `[n_q, k]` u32 tensor per level); a [`DecodeStream`] takes codes
//! in pieces and returns audio `[C, n]`. The pieces of a stream concatenate to exactly what
//! whole-signal [`AudioCodec::encode`] / [`AudioCodec::decode`] give for one clip. How each
//! family gets there is its own business: causal state (Mimi, EnCodec 24 kHz), or windows with
//! receptive-field margins (DAC, SNAC). A family that can do neither gets the whole-signal
//! fallbacks here, which are exact but hold the whole signal (see
//! [`crate::codec::Capabilities::streaming`]).
//!
//! The style follows moshi's streaming modules: `push` what arrives, `finish` at the end (which
//! also resets the stream, ready for the next signal), `reset` to drop a signal half-way.

use candle_core::{DType, Tensor};
use tessera_core::{Error, Result};

use crate::codec::{AudioCodec, DecodeOptions, EncodeOptions};

/// Audio in, codes out. Memory does not grow with the signal (except in the fallback).
pub trait EncodeStream {
    /// The next samples `[C, n]` (f32, the codec's rate and channels; `n` may be 0). Returns the
    /// codes that became final, one `[n_q, k]` u32 tensor per level with `k >= 1` on every
    /// level, or `None`.
    fn push(&mut self, samples: &Tensor) -> Result<Option<Vec<Tensor>>>;

    /// Ends the signal: the remaining codes, the end padded as whole-signal encoding pads it.
    /// Fails when nothing was pushed. The stream is then reset.
    fn finish(&mut self) -> Result<Option<Vec<Tensor>>>;

    /// Drops the signal pushed so far.
    fn reset(&mut self);
}

/// Codes in, audio out.
pub trait DecodeStream {
    /// The next codes, one `[n_q, k]` u32 tensor per level (the same `n_q` throughout; `k` may
    /// differ between levels and be 0). Returns the audio `[C, n]` that became final, or `None`.
    fn push(&mut self, levels: &[Tensor]) -> Result<Option<Tensor>>;

    /// Ends the codes: the remaining audio. All pieces together have the length whole-signal
    /// decoding gives. The stream is then reset.
    fn finish(&mut self) -> Result<Option<Tensor>>;

    /// Drops the codes pushed so far.
    fn reset(&mut self);
}

/// Checks one piece of audio for a stream: `[C, n]` with the codec's channel count, float, and
/// finite. Returns it as f32 `[1, C, n]`, the batch form the models take, or `None` when empty.
pub(crate) fn audio_piece<C: AudioCodec + ?Sized>(
    codec: &C,
    samples: &Tensor,
) -> Result<Option<Tensor>> {
    let (c, n) = match samples.dims() {
        &[c, n] => (c, n),
        d => {
            return Err(Error::invalid(format!(
                "a piece of audio must be [channels, samples], got shape {d:?}"
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
    if n == 0 {
        return Ok(None);
    }
    if !samples.dtype().is_float() {
        return Err(Error::invalid(format!(
            "audio samples must be floats, got {:?}",
            samples.dtype()
        )));
    }
    let x = samples.to_dtype(DType::F32)?;
    // x - x is NaN exactly where x is NaN or infinite, and 0 elsewhere.
    if x.sub(&x)?.sum_all()?.to_scalar::<f32>()?.is_nan() {
        return Err(Error::invalid("the audio contains NaN or infinite samples"));
    }
    Ok(Some(x.unsqueeze(0)?))
}

/// Checks one piece of codes for a stream: one `[n_q, k]` u32 tensor per level. Returns whether
/// it holds no frame at all.
pub(crate) fn codes_piece_is_empty(codec: &dyn AudioCodec, levels: &[Tensor]) -> Result<bool> {
    let specs = codec.levels();
    if levels.len() != specs.len() {
        return Err(Error::invalid(format!(
            "{} has {} code levels, got {}",
            codec.id(),
            specs.len(),
            levels.len()
        )));
    }
    for (k, l) in levels.iter().enumerate() {
        if l.rank() != 2 || l.dtype() != DType::U32 {
            return Err(Error::invalid(format!(
                "level {k} must be [codebooks, frames] u32, got {:?} {:?}",
                l.dims(),
                l.dtype()
            )));
        }
    }
    Ok(levels.iter().all(|l| l.dims()[1] == 0))
}

/// Drops the batch dimension of per-level codes `[1, n_q, k]`.
pub(crate) fn unbatch_levels(levels: Vec<Tensor>) -> Result<Vec<Tensor>> {
    Ok(levels
        .into_iter()
        .map(|l| l.squeeze(0))
        .collect::<candle_core::Result<_>>()?)
}

/// Concatenates pieces along time (the last dimension); `None` when there are none.
pub(crate) fn cat_time(parts: Vec<Tensor>) -> Result<Option<Tensor>> {
    Ok(match parts.len() {
        0 => None,
        1 => parts.into_iter().next(),
        _ => {
            let dim = parts[0].rank() - 1;
            Some(Tensor::cat(&parts, dim)?)
        }
    })
}

/// The fallback for codecs that can neither stream nor window: collects the whole signal and
/// encodes it at [`EncodeStream::finish`]. Exact, but memory grows with the signal.
pub struct WholeEncodeStream<'a, C: AudioCodec + ?Sized> {
    codec: &'a C,
    opts: EncodeOptions,
    pieces: Vec<Tensor>,
}

impl<'a, C: AudioCodec + ?Sized> WholeEncodeStream<'a, C> {
    pub fn new(codec: &'a C, opts: &EncodeOptions) -> Self {
        WholeEncodeStream {
            codec,
            opts: opts.clone(),
            pieces: Vec::new(),
        }
    }
}

impl<C: AudioCodec + ?Sized> EncodeStream for WholeEncodeStream<'_, C> {
    fn push(&mut self, samples: &Tensor) -> Result<Option<Vec<Tensor>>> {
        if let Some(x) = audio_piece(self.codec, samples)? {
            self.pieces.push(x.squeeze(0)?);
        }
        Ok(None)
    }

    fn finish(&mut self) -> Result<Option<Vec<Tensor>>> {
        let pieces = std::mem::take(&mut self.pieces);
        let Some(audio) = cat_time(pieces)? else {
            return Err(Error::invalid("the audio is empty (no samples)"));
        };
        let levels = self.codec.encode(&audio.unsqueeze(0)?, &self.opts)?;
        unbatch_levels(levels).map(Some)
    }

    fn reset(&mut self) {
        self.pieces.clear();
    }
}

/// The decoding fallback: collects all codes and decodes them at [`DecodeStream::finish`].
pub struct WholeDecodeStream<'a, C: AudioCodec + ?Sized> {
    codec: &'a C,
    opts: DecodeOptions,
    levels: Vec<Vec<Tensor>>,
}

impl<'a, C: AudioCodec + ?Sized> WholeDecodeStream<'a, C> {
    pub fn new(codec: &'a C, opts: &DecodeOptions) -> Self {
        WholeDecodeStream {
            codec,
            opts: opts.clone(),
            levels: Vec::new(),
        }
    }
}

impl<C: AudioCodec + ?Sized> DecodeStream for WholeDecodeStream<'_, C> {
    fn push(&mut self, levels: &[Tensor]) -> Result<Option<Tensor>> {
        let n_levels = self.codec.levels().len();
        if levels.len() != n_levels {
            return Err(Error::invalid(format!(
                "{} has {n_levels} code levels, got {}",
                self.codec.id(),
                levels.len()
            )));
        }
        self.levels.resize_with(n_levels, Vec::new);
        for (held, l) in self.levels.iter_mut().zip(levels) {
            if l.rank() != 2 {
                return Err(Error::invalid(format!(
                    "codes must be [codebooks, frames], got shape {:?}",
                    l.dims()
                )));
            }
            if l.dims()[1] > 0 {
                held.push(l.clone());
            }
        }
        Ok(None)
    }

    fn finish(&mut self) -> Result<Option<Tensor>> {
        let held = std::mem::take(&mut self.levels);
        let mut levels = Vec::with_capacity(held.len());
        for parts in held {
            match cat_time(parts)? {
                Some(l) => levels.push(l.unsqueeze(0)?),
                None => return Err(Error::invalid("no codes to decode")),
            }
        }
        if levels.is_empty() {
            return Err(Error::invalid("no codes to decode"));
        }
        let audio = self.codec.decode(&levels, &self.opts)?;
        Ok(Some(audio.squeeze(0)?))
    }

    fn reset(&mut self) {
        self.levels.clear();
    }
}

/// A family's stateful causal encoder or decoder on batched tensors (`[1, C, n]` audio,
/// `[1, n_q, k]` codes), as Mimi and EnCodec 24 kHz have them.
pub(crate) trait CausalSteps {
    fn codec(&self) -> &dyn AudioCodec;
    /// Input continuing the stream -> what became final, if anything.
    fn step(&mut self, x: &Tensor) -> Result<Option<Tensor>>;
    /// Ends the stream and resets it.
    fn finish(&mut self) -> Result<Option<Tensor>>;
    fn reset(&mut self);
}

/// Strips the batch dimension of a step's `[1, D, k]` output; `None` when `k` is 0.
fn unbatched(out: Option<Tensor>) -> Result<Option<Tensor>> {
    match out {
        Some(t) if t.dims()[2] > 0 => Ok(Some(t.squeeze(0)?)),
        _ => Ok(None),
    }
}

/// A single-level causal encoder as an [`EncodeStream`].
pub(crate) struct CausalEncode<S> {
    inner: S,
    pushed: bool,
}

impl<S: CausalSteps> CausalEncode<S> {
    pub(crate) fn new(inner: S) -> Self {
        CausalEncode {
            inner,
            pushed: false,
        }
    }
}

impl<S: CausalSteps> EncodeStream for CausalEncode<S> {
    fn push(&mut self, samples: &Tensor) -> Result<Option<Vec<Tensor>>> {
        let Some(x) = audio_piece(self.inner.codec(), samples)? else {
            return Ok(None);
        };
        self.pushed = true;
        Ok(unbatched(self.inner.step(&x)?)?.map(|c| vec![c]))
    }

    fn finish(&mut self) -> Result<Option<Vec<Tensor>>> {
        if !std::mem::take(&mut self.pushed) {
            self.inner.reset();
            return Err(Error::invalid("the audio is empty (no samples)"));
        }
        Ok(unbatched(self.inner.finish()?)?.map(|c| vec![c]))
    }

    fn reset(&mut self) {
        self.pushed = false;
        self.inner.reset();
    }
}

/// A single-level causal decoder as a [`DecodeStream`].
pub(crate) struct CausalDecode<S> {
    inner: S,
    pushed: bool,
}

impl<S: CausalSteps> CausalDecode<S> {
    pub(crate) fn new(inner: S) -> Self {
        CausalDecode {
            inner,
            pushed: false,
        }
    }
}

impl<S: CausalSteps> DecodeStream for CausalDecode<S> {
    fn push(&mut self, levels: &[Tensor]) -> Result<Option<Tensor>> {
        if codes_piece_is_empty(self.inner.codec(), levels)? {
            return Ok(None);
        }
        self.pushed = true;
        unbatched(self.inner.step(&levels[0].unsqueeze(0)?)?)
    }

    fn finish(&mut self) -> Result<Option<Tensor>> {
        if !std::mem::take(&mut self.pushed) {
            self.inner.reset();
            return Err(Error::invalid("no codes to decode"));
        }
        unbatched(self.inner.finish()?)
    }

    fn reset(&mut self) {
        self.pushed = false;
        self.inner.reset();
    }
}
