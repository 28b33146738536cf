//! Encoding and decoding long signals window by window, in memory that does not grow with them.
//!
//! DAC has no streaming form: it is not causal, and every code depends on audio on both sides of
//! its frame (every decoded sample on codes on both sides). Its reach is finite, though
//! ([`Dac::encoder_context`], [`Dac::decoder_context`], computed from the conv geometry). So a
//! window is processed with `margin` frames of context on each side, only its centre is kept,
//! and the next window starts where the kept part ended:
//!
//! ```text
//!   input   |--margin--|======= window =======|--margin--|
//!   kept               |======= window =======|
//!   next                                      |======= window =======| ...
//! ```
//!
//! Windows start on frame boundaries (multiples of the hop), so the strided convs see the same
//! grid as in a whole-signal pass; the first window starts at the signal's start and the last one
//! ends at its (padded) end, exactly as the whole signal does. Each window passes its first
//! frame down to the 7-tap convs, which compute tiles of outputs anchored to absolute positions
//! (`Conv1d::with_winograd`), so they tile a window as they tile the whole signal. With margins
//! of at least the receptive field (the default, `margin_frames: None`), every kept value is
//! computed from exactly the same inputs, in the same order, as in the whole-signal pass: codes
//! are identical and decoded audio equal to the last bit. Smaller margins trade that for less
//! work; the tests measure what they cost.

use candle_core::{DType, Tensor};
use tessera_core::{Error, Result};

use super::Dac;
use super::context::Context;
use crate::codec::{check_levels, one_line};

/// How a long signal is cut into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPolicy {
    /// Frames whose results one window delivers.
    pub window_frames: usize,
    /// Frames of context processed and thrown away on each side of a window. `None` takes the
    /// model's receptive field ([`Context`]), which makes the results identical to a
    /// whole-signal pass.
    pub margin_frames: Option<usize>,
}

impl Default for ChunkPolicy {
    /// 256 frames (about 5 s at 16 kHz, 3 s at 44.1 kHz) with exact margins, which add about 12%
    /// work to encoding and 16% to decoding for the real configs.
    fn default() -> Self {
        ChunkPolicy {
            window_frames: 256,
            margin_frames: None,
        }
    }
}

/// Windows beyond this many frames defeat the purpose; it also bounds the buffers.
const MAX_WINDOW_FRAMES: usize = 1 << 20;
const MAX_MARGIN_FRAMES: usize = 1 << 12;

impl ChunkPolicy {
    /// Left and right margins in frames for a model with receptive field `exact`.
    fn margins(&self, exact: Context) -> Result<(usize, usize)> {
        if self.window_frames == 0 || self.window_frames > MAX_WINDOW_FRAMES {
            return Err(Error::invalid(format!(
                "window_frames = {} is out of range (1..={MAX_WINDOW_FRAMES})",
                self.window_frames
            )));
        }
        match self.margin_frames {
            None => Ok((exact.left_frames, exact.right_frames)),
            Some(m) if m <= MAX_MARGIN_FRAMES => Ok((m, m)),
            Some(m) => Err(Error::invalid(format!(
                "margin_frames = {m} is out of range (0..={MAX_MARGIN_FRAMES})"
            ))),
        }
    }
}

/// Encodes a mono signal pushed piece by piece; codes come out as soon as they are final.
///
/// Holds at most `window + margins` frames of audio, whatever the length of the signal.
#[derive(Debug)]
pub struct ChunkedEncoder<'a> {
    model: &'a Dac,
    n_q: usize,
    window: usize,
    left: usize,
    right: usize,
    /// Samples from sample index `buf_start` (a frame boundary) up to `pushed`.
    buf: Vec<f32>,
    buf_start: usize,
    pushed: usize,
    /// First frame whose codes have not been returned yet.
    next_frame: usize,
}

impl<'a> ChunkedEncoder<'a> {
    /// An encoder keeping the first `n_q` codebooks (all when `None`).
    pub fn new(model: &'a Dac, n_q: Option<usize>, policy: &ChunkPolicy) -> Result<Self> {
        let (left, right) = policy.margins(model.encoder_context())?;
        Ok(ChunkedEncoder {
            n_q: model.check_n_q(n_q)?,
            model,
            window: policy.window_frames,
            left,
            right,
            buf: Vec::new(),
            buf_start: 0,
            pushed: 0,
            next_frame: 0,
        })
    }

    /// Frames whose codes have been returned.
    pub fn frames_done(&self) -> usize {
        self.next_frame
    }

    /// Samples held for windows still to come; never more than
    /// `(window + left + right + 1) * hop` whatever has been pushed.
    pub fn buffered_samples(&self) -> usize {
        self.buf.len()
    }

    /// Samples at the model's rate, continuing the signal. Returns the codes `[n_q, k]` u32 of the
    /// frames that became final (`None` when none did).
    pub fn push(&mut self, samples: &[f32]) -> Result<Option<Tensor>> {
        if let Some(i) = samples.iter().position(|x| !x.is_finite()) {
            return Err(Error::invalid(format!(
                "the audio contains NaN or infinite samples (sample {})",
                self.pushed + i
            )));
        }
        self.buf.extend_from_slice(samples);
        self.pushed += samples.len();
        let hop = self.model.config.hop_length();
        let mut out = Vec::new();
        // Strictly less: a window that reaches the end so far may be the last one, which
        // ends differently (padding, odd-stride tail); only `finish` knows.
        while (self.next_frame + self.window + self.right) * hop < self.pushed {
            out.push(self.run_window(self.next_frame + self.window, false)?);
        }
        cat_frames(out)
    }

    /// The codes of the remaining frames, the signal's end zero-padded to a frame as
    /// [`Dac::encode`] pads it.
    pub fn finish(mut self) -> Result<Option<Tensor>> {
        if self.pushed == 0 {
            return Err(Error::invalid("the audio is empty (no samples)"));
        }
        let frames = self.pushed.div_ceil(self.model.config.hop_length());
        if self.next_frame >= frames {
            return Ok(None);
        }
        self.run_window(frames, true).map(Some)
    }

    /// Codes of frames `next_frame..end_frame`, from a window with the margins around them.
    fn run_window(&mut self, end_frame: usize, last: bool) -> Result<Tensor> {
        let hop = self.model.config.hop_length();
        let start_frame = self.next_frame.saturating_sub(self.left);
        let s0 = start_frame * hop;
        let s1 = if last {
            self.pushed
        } else {
            (end_frame + self.right) * hop
        };
        let samples = &self.buf[s0 - self.buf_start..s1 - self.buf_start];
        let dev = self.model.device();
        let x = Tensor::from_slice(samples, (1, 1, samples.len()), dev)?;
        let x = x.pad_with_zeros(
            2,
            0,
            self.model.config.padded_len(samples.len()) - samples.len(),
        )?;
        let codes = self
            .model
            .encode_padded(&x, self.n_q, start_frame)
            .map_err(one_line)?
            .squeeze(0)?
            .narrow(
                1,
                self.next_frame - start_frame,
                end_frame - self.next_frame,
            )?;
        self.next_frame = end_frame;
        let keep_from = self.next_frame.saturating_sub(self.left) * hop;
        self.buf
            .drain(..keep_from.min(self.pushed) - self.buf_start);
        self.buf_start = keep_from.min(self.pushed);
        Ok(codes)
    }
}

/// Decodes codes pushed piece by piece; audio comes out as soon as it is final.
///
/// Holds at most `window + margins` frames of codes, whatever the length of the signal.
#[derive(Debug)]
pub struct ChunkedDecoder<'a> {
    model: &'a Dac,
    window: usize,
    left: usize,
    right: usize,
    /// Codes `[n_q, frames]` from frame `buf_start` up to `pushed`.
    buf: Option<Tensor>,
    buf_start: usize,
    pushed: usize,
    next_frame: usize,
}

impl<'a> ChunkedDecoder<'a> {
    pub fn new(model: &'a Dac, policy: &ChunkPolicy) -> Result<Self> {
        let (left, right) = policy.margins(model.decoder_context())?;
        Ok(ChunkedDecoder {
            model,
            window: policy.window_frames,
            left,
            right,
            buf: None,
            buf_start: 0,
            pushed: 0,
            next_frame: 0,
        })
    }

    /// Frames whose audio has been returned.
    pub fn frames_done(&self) -> usize {
        self.next_frame
    }

    /// Code frames held for windows still to come; bounded like
    /// [`ChunkedEncoder::buffered_samples`] (plus what one push brings).
    pub fn buffered_frames(&self) -> usize {
        self.pushed - self.buf_start
    }

    /// Codes `[n_q, k]` u32 continuing the signal (the same `n_q` every time). Returns the audio
    /// `[1, samples]` that became final, `hop` samples per frame (`None` when none did).
    pub fn push(&mut self, codes: &Tensor) -> Result<Option<Tensor>> {
        let codes = match codes.dims() {
            &[_, _] => codes.to_device(self.model.device())?,
            d => {
                return Err(Error::invalid(format!(
                    "codes must be [codebooks, frames], got shape {d:?}"
                )));
            }
        };
        if codes.dims()[1] == 0 && codes.dtype() == DType::U32 {
            // Nothing new, as an empty push of samples to the encoder.
            return Ok(None);
        }
        check_levels(self.model, &[codes.unsqueeze(0)?])?;
        // Check everything before touching the state, so that a refused push changes nothing.
        if let Some(buf) = &self.buf
            && buf.dims()[0] != codes.dims()[0]
        {
            return Err(Error::invalid(format!(
                "codes with {} codebooks follow codes with {}",
                codes.dims()[0],
                buf.dims()[0]
            )));
        }
        let buf = match &self.buf {
            None => codes.clone(),
            Some(buf) => Tensor::cat(&[buf, &codes], 1)?,
        };
        self.buf = Some(buf);
        self.pushed += codes.dims()[1];
        let mut out = Vec::new();
        while self.next_frame + self.window + self.right < self.pushed {
            out.push(self.run_window(self.next_frame + self.window, false)?);
        }
        cat_frames(out)
    }

    /// The audio of the remaining frames; the whole output then has the length that
    /// [`Dac::decode`] gives (`DacConfig::decoded_len`).
    pub fn finish(mut self) -> Result<Option<Tensor>> {
        if self.pushed == 0 {
            return Err(Error::invalid("no codes to decode"));
        }
        if self.next_frame >= self.pushed {
            return Ok(None);
        }
        self.run_window(self.pushed, true).map(Some)
    }

    fn run_window(&mut self, end_frame: usize, last: bool) -> Result<Tensor> {
        let hop = self.model.config.hop_length();
        let start_frame = self.next_frame.saturating_sub(self.left);
        let win_end = if last {
            self.pushed
        } else {
            end_frame + self.right
        };
        let buf = self.buf.as_ref().expect("codes were pushed");
        let codes = buf.narrow(1, start_frame - self.buf_start, win_end - start_frame)?;
        let audio = self
            .model
            .decode_window(&codes.unsqueeze(0)?, start_frame)
            .map_err(one_line)?
            .squeeze(0)?;
        let from = (self.next_frame - start_frame) * hop;
        let want = (end_frame - start_frame) * hop;
        let have = audio.dims()[1];
        let audio = if last {
            audio.narrow(1, from, have.min(want) - from)?
        } else {
            // Only without a right margin does a window end short of its last frame (odd strides
            // lose samples at the end); zeros keep the frames aligned.
            audio
                .pad_with_zeros(1, 0, want.saturating_sub(have))?
                .narrow(1, from, want - from)?
        };
        self.next_frame = end_frame;
        let keep_from = self.next_frame.saturating_sub(self.left);
        let buf = buf.narrow(1, keep_from - self.buf_start, self.pushed - keep_from)?;
        // A copy, so that the dropped frames' storage is freed.
        self.buf = Some(buf.contiguous()?.copy()?);
        self.buf_start = keep_from;
        Ok(audio)
    }
}

fn cat_frames(parts: Vec<Tensor>) -> Result<Option<Tensor>> {
    Ok(match parts.len() {
        0 => None,
        1 => parts.into_iter().next(),
        _ => Some(Tensor::cat(&parts, 1)?),
    })
}

impl Dac {
    /// [`Dac::encode`] window by window (see [`ChunkPolicy`]); with the default margins the codes
    /// are identical. Audio `[B, 1, T]` -> codes `[B, n_q, ceil(T / hop)]`.
    pub fn encode_chunked(
        &self,
        audio: &Tensor,
        n_q: Option<usize>,
        policy: &ChunkPolicy,
    ) -> Result<Tensor> {
        let (b, _) = crate::codec::check_audio(self, audio)?;
        let hop = self.config.hop_length();
        let piece = policy.window_frames.saturating_mul(hop).max(1);
        let mut rows = Vec::with_capacity(b);
        for row in 0..b {
            let samples: Vec<f32> = audio.get(row)?.get(0)?.to_dtype(DType::F32)?.to_vec1()?;
            let mut enc = ChunkedEncoder::new(self, n_q, policy)?;
            let mut parts = Vec::new();
            for chunk in samples.chunks(piece) {
                parts.extend(enc.push(chunk)?);
            }
            parts.extend(enc.finish()?);
            rows.push(Tensor::cat(&parts, 1)?);
        }
        Ok(Tensor::stack(&rows, 0)?)
    }

    /// [`Dac::decode`] window by window (see [`ChunkPolicy`]); with the default margins the audio
    /// is identical. Codes `[B, n, F]` -> audio `[B, 1, decoded_len(F)]`.
    pub fn decode_chunked(&self, codes: &Tensor, policy: &ChunkPolicy) -> Result<Tensor> {
        let b = check_levels(self, std::slice::from_ref(codes))?;
        let frames = codes.dims()[2];
        let piece = policy.window_frames.max(1);
        let mut rows = Vec::with_capacity(b);
        for row in 0..b {
            let row_codes = codes.get(row)?;
            let mut dec = ChunkedDecoder::new(self, policy)?;
            let mut parts = Vec::new();
            let mut at = 0;
            while at < frames {
                let n = piece.min(frames - at);
                parts.extend(dec.push(&row_codes.narrow(1, at, n)?)?);
                at += n;
            }
            parts.extend(dec.finish()?);
            rows.push(Tensor::cat(&parts, 1)?);
        }
        Ok(Tensor::stack(&rows, 0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_bounds() {
        let exact = Context {
            left_frames: 3,
            right_frames: 4,
        };
        assert_eq!(ChunkPolicy::default().margins(exact).unwrap(), (3, 4));
        let p = ChunkPolicy {
            window_frames: 10,
            margin_frames: Some(0),
        };
        assert_eq!(p.margins(exact).unwrap(), (0, 0));
        for bad in [
            ChunkPolicy {
                window_frames: 0,
                margin_frames: None,
            },
            ChunkPolicy {
                window_frames: 10,
                margin_frames: Some(usize::MAX),
            },
        ] {
            assert!(bad.margins(exact).is_err());
        }
    }
}
