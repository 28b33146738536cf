//! SNAC on long signals, window by window, in memory that does not grow with them.
//!
//! SNAC is not causal: every code depends on audio on both sides of its frames, and every
//! decoded sample on codes on both sides. As for DAC (see `dac/chunked.rs`), a window of latent
//! frames is processed with margins of at least the receptive field on each side
//! ([`super::context`]) and only its centre is kept:
//!
//! ```text
//!   input   |--margin--|======= window =======|--margin--|
//!   kept               |======= window =======|
//!   next                                      |======= window =======| ...
//! ```
//!
//! What SNAC adds: windows and margins are whole attention windows (the local attention of the
//! 32/44 kHz models restarts every `W` latent frames from the signal's start) and whole coarse
//! code frames; the encoder's last window ends at the signal's padded length (a multiple of
//! `hop * lcm(vq_strides[0], W)`, zeros after the audio), as whole-signal encoding pads. Every
//! kept value is then computed from the same inputs in the same order as in the whole pass:
//! codes are identical and decoded audio equal to the last bit.
//!
//! The decoder's noise ([`Noise`]): `Off` is exact. `Seeded` is exact when the stream is told the
//! signal's length (the whole pass lays its noise out block after block over the whole signal;
//! [`PositionalNoise`] jumps to the same values); without the length it is still a fixed function
//! of the seed and the position, i.e. the same for any window size, and statistically the same
//! noise. `Random` draws a fresh seed per stream.

use candle_core::{DType, Tensor};
use tessera_core::nn::NormalRng;
use tessera_core::{Error, Result};

use super::Snac;
use super::context::{Margins, decoder_margins, encoder_margins};
use super::noise::{NoiseSource, PositionalNoise};
use crate::codec::{AudioCodec, Noise, one_line};
use crate::stream::{DecodeStream, EncodeStream, audio_piece, codes_piece_is_empty};

/// Latent frames one window delivers by default (about 11 s at 24 kHz, 6 s at 44.1 kHz),
/// rounded up to whole code frames and attention windows. The attention models' margins are
/// 64 frames a side, so this spends 25% more work than a whole-signal pass (24 kHz: 5%).
pub const DEFAULT_WINDOW_FRAMES: usize = 512;

/// Windows beyond this many latent frames defeat the purpose.
const MAX_WINDOW_FRAMES: usize = 1 << 20;

/// A model error as a one-line error.
fn model_error(e: candle_core::Error) -> Error {
    one_line(e.into())
}

fn window_frames(model: &Snac, frames: usize) -> Result<usize> {
    if frames == 0 || frames > MAX_WINDOW_FRAMES {
        return Err(Error::invalid(format!(
            "window of {frames} latent frames is out of range (1..={MAX_WINDOW_FRAMES})"
        )));
    }
    let m = model.config.latent_multiple();
    Ok(frames.div_ceil(m) * m)
}

/// Encodes a signal pushed piece by piece; codes come out as soon as they are final.
///
/// Holds at most `window + margins` latent frames of audio, whatever the length of the signal.
#[derive(Debug)]
pub struct SnacChunkedEncoder<'a> {
    model: &'a Snac,
    window: usize,
    margins: Margins,
    /// Samples from sample index `buf_start` (a frame boundary) up to `pushed`.
    buf: Vec<f32>,
    buf_start: usize,
    pushed: usize,
    /// First latent frame whose codes have not been returned yet.
    next: usize,
}

impl<'a> SnacChunkedEncoder<'a> {
    /// An encoder delivering `window_frames` latent frames per window (rounded up to whole code
    /// frames and attention windows).
    pub fn new(model: &'a Snac, window_frames: usize) -> Result<Self> {
        Ok(SnacChunkedEncoder {
            window: self::window_frames(model, window_frames)?,
            margins: encoder_margins(&model.config),
            model,
            buf: Vec::new(),
            buf_start: 0,
            pushed: 0,
            next: 0,
        })
    }

    /// The receptive-field margins used, in latent frames.
    pub fn margins(&self) -> Margins {
        self.margins
    }

    /// Samples held for windows still to come.
    pub fn buffered_samples(&self) -> usize {
        self.buf.len()
    }

    /// Codes `[1, k]` per level of latent frames `next..end`.
    fn run_window(&mut self, end: usize, padded_end: Option<usize>) -> Result<Vec<Tensor>> {
        let hop = self.model.config.hop_length();
        let start = self.next.saturating_sub(self.margins.left);
        let stop = padded_end.unwrap_or(end + self.margins.right);
        let (s0, s1) = (start * hop, stop * hop);
        let have = s1.min(self.pushed);
        let samples = &self.buf[s0 - self.buf_start..have - self.buf_start];
        let dev = &self.model.device;
        let x = Tensor::from_slice(samples, (1, 1, samples.len()), dev)?;
        // Only the last window reaches beyond the audio: the zeros of the whole signal's padding.
        let x = x.pad_with_zeros(2, 0, s1 - have)?;
        let z = self.model.encoder.forward(&x).map_err(model_error)?;
        let z = z.narrow(2, self.next - start, end - self.next)?;
        let codes = self.model.quantizer.encode(&z).map_err(model_error)?;
        self.next = end;
        let keep_from = (self.next.saturating_sub(self.margins.left) * hop).min(self.pushed);
        self.buf.drain(..keep_from - self.buf_start);
        self.buf_start = keep_from;
        Ok(codes)
    }
}

impl EncodeStream for SnacChunkedEncoder<'_> {
    fn push(&mut self, samples: &Tensor) -> Result<Option<Vec<Tensor>>> {
        let Some(x) = audio_piece(self.model, samples)? else {
            return Ok(None);
        };
        let samples: Vec<f32> = x.flatten_all()?.to_vec1()?;
        self.buf.extend_from_slice(&samples);
        self.pushed += samples.len();
        let hop = self.model.config.hop_length();
        let mut out: Vec<Vec<Tensor>> = Vec::new();
        while (self.next + self.window + self.margins.right) * hop <= self.pushed {
            out.push(self.run_window(self.next + self.window, None)?);
        }
        cat_levels(out)
    }

    fn finish(&mut self) -> Result<Option<Vec<Tensor>>> {
        if self.pushed == 0 {
            return Err(Error::invalid("the audio is empty (no samples)"));
        }
        let total = self.model.config.padded_len(self.pushed) / self.model.config.hop_length();
        let out = if self.next < total {
            self.run_window(total, Some(total)).map(Some)
        } else {
            Ok(None)
        };
        self.reset();
        out
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.buf_start = 0;
        self.pushed = 0;
        self.next = 0;
    }
}

/// Windows' codes, level by level, along time.
fn cat_levels(windows: Vec<Vec<Tensor>>) -> Result<Option<Vec<Tensor>>> {
    let Some(first) = windows.first() else {
        return Ok(None);
    };
    let mut levels = Vec::with_capacity(first.len());
    for k in 0..first.len() {
        let parts: Vec<&Tensor> = windows.iter().map(|w| &w[k]).collect();
        levels.push(Tensor::cat(&parts, 1)?);
    }
    Ok(Some(levels))
}

/// Decodes codes pushed piece by piece (levels may arrive unevenly); audio comes out as soon
/// as it is final.
///
/// Holds at most `window + margins` latent frames of codes (plus what one push brings).
#[derive(Debug)]
pub struct SnacChunkedDecoder<'a> {
    model: &'a Snac,
    window: usize,
    margins: Margins,
    noise: Option<PositionalNoise>,
    /// Codes of each level from latent frame `buf_start` on.
    bufs: Vec<Vec<u32>>,
    buf_start: usize,
    /// First latent frame whose audio has not been returned yet.
    next: usize,
}

impl<'a> SnacChunkedDecoder<'a> {
    /// A decoder delivering `window_frames` latent frames per window. `total_frames` (level-0
    /// frames of the whole signal), when known, makes seeded noise identical to whole-signal
    /// decoding (see the module's notes).
    pub fn new(
        model: &'a Snac,
        noise: Noise,
        total_frames: Option<usize>,
        window_frames: usize,
    ) -> Result<Self> {
        let cfg = &model.config;
        let seed = match noise {
            _ if !cfg.noise => None,
            Noise::Off => None,
            Noise::Seeded(seed) => Some(seed),
            Noise::Random => Some(NormalRng::from_entropy().next_u64()),
        };
        let total_latent = total_frames.map(|f| f.saturating_mul(cfg.vq_strides[0]));
        Ok(SnacChunkedDecoder {
            window: self::window_frames(model, window_frames)?,
            margins: decoder_margins(cfg),
            noise: seed.map(|s| PositionalNoise::new(s, total_latent, &cfg.decoder_rates)),
            bufs: vec![Vec::new(); cfg.vq_strides.len()],
            buf_start: 0,
            next: 0,
            model,
        })
    }

    /// The receptive-field margins used, in latent frames.
    pub fn margins(&self) -> Margins {
        self.margins
    }

    /// Latent frames that all levels' codes cover so far.
    fn covered(&self) -> usize {
        let strides = &self.model.config.vq_strides;
        let span = self
            .bufs
            .iter()
            .zip(strides)
            .map(|(b, &s)| self.buf_start + b.len() * s)
            .min()
            .unwrap_or(0);
        let m = self.model.config.latent_multiple();
        span / m * m
    }

    /// Audio `[1, samples]` of latent frames `next..end`.
    fn run_window(&mut self, end: usize, last_end: Option<usize>) -> Result<Tensor> {
        let cfg = &self.model.config;
        let hop = cfg.hop_length();
        let start = self.next.saturating_sub(self.margins.left);
        let stop = last_end.unwrap_or(end + self.margins.right);
        let dev = &self.model.device;
        let mut codes = Vec::with_capacity(self.bufs.len());
        for (buf, &s) in self.bufs.iter().zip(&cfg.vq_strides) {
            let (a, b) = ((start - self.buf_start) / s, (stop - self.buf_start) / s);
            codes.push(Tensor::from_slice(&buf[a..b], (1, b - a), dev)?);
        }
        let z = self.model.quantizer.decode(&codes).map_err(model_error)?;
        if let Some(noise) = &mut self.noise {
            noise.set_start(start);
        }
        let noise = self.noise.as_mut().map(|n| n as &mut dyn NoiseSource);
        let audio = self.model.decoder.forward(&z, noise).map_err(model_error)?;
        let audio =
            audio
                .squeeze(0)?
                .narrow(1, (self.next - start) * hop, (end - self.next) * hop)?;
        self.next = end;
        let keep_from = self.next.saturating_sub(self.margins.left);
        for (buf, &s) in self.bufs.iter_mut().zip(&cfg.vq_strides) {
            buf.drain(..(keep_from - self.buf_start) / s);
        }
        self.buf_start = keep_from;
        Ok(audio)
    }

    /// Refuses codes that the model cannot decode, before anything is kept.
    fn check_piece(&self, levels: &[Tensor]) -> Result<()> {
        let cfg = &self.model.config;
        for (k, l) in levels.iter().enumerate() {
            let (n_q, frames) = l.dims2()?;
            if n_q != 1 {
                return Err(Error::invalid(format!(
                    "level {k} has {n_q} codebooks; SNAC has one per level"
                )));
            }
            if frames == 0 {
                continue;
            }
            let max = l.flatten_all()?.max(0)?.to_scalar::<u32>()?;
            if max as usize >= cfg.codebook_size {
                return Err(Error::invalid(format!(
                    "level {k} holds code {max}, out of range for codebook size {}",
                    cfg.codebook_size
                )));
            }
        }
        Ok(())
    }
}

impl DecodeStream for SnacChunkedDecoder<'_> {
    fn push(&mut self, levels: &[Tensor]) -> Result<Option<Tensor>> {
        if codes_piece_is_empty(self.model, levels)? {
            return Ok(None);
        }
        self.check_piece(levels)?;
        for (buf, l) in self.bufs.iter_mut().zip(levels) {
            buf.extend(l.flatten_all()?.to_vec1::<u32>()?);
        }
        let mut out = Vec::new();
        while self.next + self.window + self.margins.right <= self.covered() {
            out.push(self.run_window(self.next + self.window, None)?);
        }
        crate::stream::cat_time(out)
    }

    fn finish(&mut self) -> Result<Option<Tensor>> {
        let out = self.finish_inner();
        self.reset();
        out
    }

    fn reset(&mut self) {
        self.bufs.iter_mut().for_each(Vec::clear);
        self.buf_start = 0;
        self.next = 0;
    }
}

impl SnacChunkedDecoder<'_> {
    fn finish_inner(&mut self) -> Result<Option<Tensor>> {
        let cfg = &self.model.config;
        let spans: Vec<usize> = self
            .bufs
            .iter()
            .zip(&cfg.vq_strides)
            .map(|(b, &s)| self.buf_start + b.len() * s)
            .collect();
        let total = spans[0];
        if total == 0 {
            return Err(Error::invalid("no codes to decode"));
        }
        if let Some(k) = spans.iter().position(|&s| s != total) {
            return Err(Error::invalid(format!(
                "level {k} covers {} latent frames but level 0 covers {total}; every level must \
                 cover the same time",
                spans[k]
            )));
        }
        if !total.is_multiple_of(cfg.latent_multiple()) {
            return Err(Error::invalid(format!(
                "the codes span {total} latent frames; {} needs a multiple of {}",
                self.model.id(),
                cfg.latent_multiple()
            )));
        }
        if self.next >= total {
            return Ok(None);
        }
        self.run_window(total, Some(total)).map(Some)
    }
}

impl Snac {
    /// [`Snac::encode`] window by window (identical codes): audio `[1, 1, T]`.
    pub fn encode_chunked(&self, audio: &Tensor, window_frames: usize) -> Result<Vec<Tensor>> {
        let mut enc = SnacChunkedEncoder::new(self, window_frames)?;
        let samples = audio.squeeze(0)?;
        let piece = window_frames
            .saturating_mul(self.config.hop_length())
            .max(1);
        let n = samples.dims().get(1).copied().unwrap_or(0);
        let mut parts = Vec::new();
        let mut at = 0;
        while at < n {
            let len = piece.min(n - at);
            parts.extend(enc.push(&samples.narrow(1, at, len)?)?);
            at += len;
        }
        parts.extend(enc.finish()?);
        cat_levels(parts)?.ok_or_else(|| Error::invalid("the audio is empty (no samples)"))
    }

    /// [`Snac::decode`] window by window: codes per level `[1, T_k]` -> audio `[1, 1, T]`,
    /// identical with `Noise::Off` or `Noise::Seeded`.
    pub fn decode_chunked(
        &self,
        codes: &[Tensor],
        noise: Noise,
        window_frames: usize,
    ) -> Result<Tensor> {
        self.check_codes(codes)?;
        let frames = codes[0].dims()[1];
        let mut dec = SnacChunkedDecoder::new(self, noise, Some(frames), window_frames)?;
        let step = window_frames.div_ceil(self.config.vq_strides[0]).max(1);
        let mut parts = Vec::new();
        let mut at = 0;
        while at < frames {
            let n = step.min(frames - at);
            let piece = codes
                .iter()
                .zip(&self.config.vq_strides)
                .map(|(c, &s)| {
                    let r = self.config.vq_strides[0] / s;
                    c.narrow(1, at * r, n * r)
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            parts.extend(dec.push(&piece)?);
            at += n;
        }
        parts.extend(dec.finish()?);
        let audio =
            crate::stream::cat_time(parts)?.ok_or_else(|| Error::invalid("no codes to decode"))?;
        Ok(audio.to_dtype(DType::F32)?.unsqueeze(0)?)
    }
}
