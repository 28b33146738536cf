//! Sample-rate conversion with rubato's windowed-sinc resampler, streaming or one-shot.
//!
//! The output is time-aligned (output frame `j` is the band-limited input at time `j / to`)
//! and exactly `round(n * to / from)` frames long: the filter delay is dropped from the front
//! and the tail is flushed with zeros, so a stream of any chunking gives the same samples as one
//! call over the whole signal. Quality settings and measured response: docs/audio-io.md.

use rubato::audioadapter_buffers::direct::{SequentialSliceOfSlices, SequentialSliceOfVecs};
use rubato::{
    Async, FixedAsync, Indexing, Resampler as _, SincInterpolationParameters,
    SincInterpolationType, WindowFunction,
};
use tessera_core::{Error, Result};

use super::buffer::{AudioBuffer, check_planar, sample_rate_in_range, sample_rate_range_text};

/// Sinc length (taps at the input rate) when upsampling. When downsampling it grows by
/// `from / to` so that the transition band, measured at the output rate, stays as narrow.
pub const SINC_LEN: usize = 256;
/// Cap on the grown sinc length (reached only beyond 8x downsampling).
pub const MAX_SINC_LEN: usize = 2048;
/// Sub-sample positions tabulated between input samples (cubic interpolation between them).
pub const OVERSAMPLING: usize = 256;
/// The window of the sinc. The squared Blackman-Harris has very low side lobes.
pub const WINDOW: WindowFunction = WindowFunction::BlackmanHarris2;
/// Input frames per rubato call.
const ENGINE_CHUNK: usize = 1024;
/// Longest run of leading zeros tried when aligning the filter delay to a whole output frame.
const MAX_ALIGN_ZEROS: u64 = 4096;

/// Output length for `n` input frames: `round(n * to / from)`, halves rounded up.
pub fn resampled_len(n: u64, from: u32, to: u32) -> u64 {
    let (n, from, to) = (u128::from(n), u128::from(from.max(1)), u128::from(to));
    ((n * to + from / 2) / from) as u64
}

/// A streaming resampler: push planar chunks with [`process`](Resampler::process), then call
/// [`flush`](Resampler::flush) once at the end of the signal.
pub struct Resampler {
    from: u32,
    to: u32,
    channels: usize,
    /// `None` when the rates are equal: samples pass through untouched.
    engine: Option<Engine>,
    frames_in: u64,
    frames_out: u64,
    flushed: bool,
}

struct Engine {
    rubato: Async<f32>,
    /// Input frames waiting for a whole engine chunk (fewer than one chunk).
    pending: Vec<Vec<f32>>,
    scratch: Vec<Vec<f32>>,
    /// Leading output frames still to drop (the filter delay).
    to_skip: usize,
    /// Leading zeros fed at the start, and the delay they make, in output frames.
    lead_zeros: usize,
    delay: usize,
}

impl Resampler {
    pub fn new(from: u32, to: u32, channels: usize) -> Result<Self> {
        for (what, rate) in [("source", from), ("target", to)] {
            if !sample_rate_in_range(rate) {
                return Err(Error::invalid(format!(
                    "{what} sample rate {rate} Hz is outside {}",
                    sample_rate_range_text()
                )));
            }
        }
        if channels == 0 {
            return Err(Error::invalid("the resampler needs at least one channel"));
        }
        let engine = if from == to {
            None
        } else {
            Some(Engine::new(from, to, channels)?)
        };
        Ok(Resampler {
            from,
            to,
            channels,
            engine,
            frames_in: 0,
            frames_out: 0,
            flushed: false,
        })
    }

    pub fn from_rate(&self) -> u32 {
        self.from
    }

    pub fn to_rate(&self) -> u32 {
        self.to
    }

    pub fn n_channels(&self) -> usize {
        self.channels
    }

    /// The sinc filter's cutoff relative to the lower of the two Nyquist frequencies
    /// (`None` for the identity).
    pub fn cutoff(&self) -> Option<f32> {
        let engine = self.engine.as_ref()?;
        let ratio = f64::from(self.to) / f64::from(self.from);
        // rubato reports it relative to the input Nyquist.
        engine.rubato.cutoff().map(|c| c / ratio.min(1.0) as f32)
    }

    /// Input frames pushed so far.
    pub fn frames_in(&self) -> u64 {
        self.frames_in
    }

    /// Output frames returned so far.
    pub fn frames_out(&self) -> u64 {
        self.frames_out
    }

    /// Pushes a planar chunk (one slice per channel, equal lengths, any length including 0) and
    /// returns the output frames that are ready. Output lags input by about half the filter.
    pub fn process<S: AsRef<[f32]>>(&mut self, input: &[S]) -> Result<Vec<Vec<f32>>> {
        if self.flushed {
            return Err(Error::invalid(
                "the resampler was flushed; call reset() to reuse it",
            ));
        }
        if input.len() != self.channels {
            return Err(Error::invalid(format!(
                "the resampler has {} channels but got {}",
                self.channels,
                input.len()
            )));
        }
        let n = check_planar(input)?;
        self.frames_in += n as u64;
        let out = match &mut self.engine {
            None => input.iter().map(|c| c.as_ref().to_vec()).collect(),
            Some(engine) => engine.push(input, n)?,
        };
        self.frames_out += out[0].len() as u64;
        Ok(out)
    }

    /// Ends the signal: returns the remaining output, so that the total is exactly
    /// `resampled_len(frames_in, from, to)`.
    pub fn flush(&mut self) -> Result<Vec<Vec<f32>>> {
        if self.flushed {
            return Ok(vec![Vec::new(); self.channels]);
        }
        self.flushed = true;
        let target = resampled_len(self.frames_in, self.from, self.to);
        let remaining = target.saturating_sub(self.frames_out) as usize;
        let out = match &mut self.engine {
            None => vec![Vec::new(); self.channels],
            Some(engine) => engine.finish(remaining)?,
        };
        self.frames_out += out[0].len() as u64;
        Ok(out)
    }

    /// Forgets the signal so far; the next `process` starts a new one.
    pub fn reset(&mut self) {
        if let Some(engine) = &mut self.engine {
            engine.reset();
        }
        self.frames_in = 0;
        self.frames_out = 0;
        self.flushed = false;
    }
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("channels", &self.channels)
            .field("frames_in", &self.frames_in)
            .field("frames_out", &self.frames_out)
            .field("flushed", &self.flushed)
            .finish()
    }
}

impl Engine {
    fn new(from: u32, to: u32, channels: usize) -> Result<Self> {
        let ratio = f64::from(to) / f64::from(from);
        let sinc_len = sinc_len_for(ratio);
        let params = SincInterpolationParameters::new(sinc_len, WINDOW)
            .oversampling_factor(OVERSAMPLING)
            .interpolation(SincInterpolationType::Cubic);
        let rubato = Async::<f32>::new_sinc(
            ratio,
            1.0,
            &params,
            ENGINE_CHUNK,
            channels,
            FixedAsync::Input,
        )
        .map_err(|e| Error::invalid(format!("cannot build the resampler: {e}")))?;
        let (lead_zeros, delay) = alignment(from, to, sinc_len.next_multiple_of(8));
        let scratch = vec![vec![0.0; rubato.output_frames_max()]; channels];
        let mut engine = Engine {
            rubato,
            pending: vec![Vec::with_capacity(ENGINE_CHUNK); channels],
            scratch,
            to_skip: 0,
            lead_zeros,
            delay,
        };
        engine.reset();
        Ok(engine)
    }

    fn reset(&mut self) {
        self.rubato.reset();
        for pending in &mut self.pending {
            pending.clear();
            pending.resize(self.lead_zeros, 0.0);
        }
        self.to_skip = self.delay;
    }

    fn pending_len(&self) -> usize {
        self.pending[0].len()
    }

    fn push<S: AsRef<[f32]>>(&mut self, input: &[S], n: usize) -> Result<Vec<Vec<f32>>> {
        let ratio = self.rubato.resample_ratio();
        let estimate = (n as f64 * ratio) as usize + 16;
        let mut out = vec![Vec::with_capacity(estimate); input.len()];
        let mut offset = 0;

        // Complete a chunk that earlier calls left unfinished.
        while self.pending_len() > 0 && offset < n {
            let need = self.rubato.input_frames_next();
            let take = (need - self.pending_len()).min(n - offset);
            for (pending, channel) in self.pending.iter_mut().zip(input) {
                pending.extend_from_slice(&channel.as_ref()[offset..offset + take]);
            }
            offset += take;
            if self.pending_len() == need {
                let slices: Vec<&[f32]> = self.pending.iter().map(Vec::as_slice).collect();
                let produced = run(&mut self.rubato, &slices, 0, None, &mut self.scratch)?;
                self.pending.iter_mut().for_each(Vec::clear);
                self.emit(produced, usize::MAX, &mut out);
            }
        }
        // Whole chunks straight from the caller's buffers.
        let slices: Vec<&[f32]> = input.iter().map(AsRef::as_ref).collect();
        while n - offset >= self.rubato.input_frames_next() {
            let need = self.rubato.input_frames_next();
            let produced = run(&mut self.rubato, &slices, offset, None, &mut self.scratch)?;
            offset += need;
            self.emit(produced, usize::MAX, &mut out);
        }
        // Keep the tail for the next call.
        for (pending, channel) in self.pending.iter_mut().zip(&slices) {
            pending.extend_from_slice(&channel[offset..]);
        }
        Ok(out)
    }

    /// Feeds what is pending, then zeros, until `remaining` more output frames are out.
    fn finish(&mut self, remaining: usize) -> Result<Vec<Vec<f32>>> {
        let mut out = vec![Vec::with_capacity(remaining); self.pending.len()];
        let mut left = remaining;
        while left > 0 {
            let partial = self.pending_len();
            let slices: Vec<&[f32]> = self.pending.iter().map(Vec::as_slice).collect();
            let produced = run(
                &mut self.rubato,
                &slices,
                0,
                Some(partial),
                &mut self.scratch,
            )?;
            self.pending.iter_mut().for_each(Vec::clear);
            left -= self.emit(produced, left, &mut out);
        }
        Ok(out)
    }

    /// Moves up to `limit` of the `produced` scratch frames to `out`, after dropping what is
    /// left of the filter delay. Returns the number moved.
    fn emit(&mut self, produced: usize, limit: usize, out: &mut [Vec<f32>]) -> usize {
        let skip = self.to_skip.min(produced);
        self.to_skip -= skip;
        let take = (produced - skip).min(limit);
        for (dst, src) in out.iter_mut().zip(&self.scratch) {
            dst.extend_from_slice(&src[skip..skip + take]);
        }
        take
    }
}

/// One rubato call: reads its input chunk at `offset` (or `partial` frames there, the rest
/// zeros) and writes into `scratch`; returns the frames written.
fn run(
    rubato: &mut Async<f32>,
    input: &[&[f32]],
    offset: usize,
    partial: Option<usize>,
    scratch: &mut [Vec<f32>],
) -> Result<usize> {
    let channels = input.len();
    let available = input[0].len();
    let input = SequentialSliceOfSlices::new(input, channels, available)
        .map_err(|e| Error::invalid(format!("resampler input: {e}")))?;
    let frames_out = scratch[0].len();
    let mut output = SequentialSliceOfVecs::new_mut(scratch, channels, frames_out)
        .map_err(|e| Error::invalid(format!("resampler output: {e}")))?;
    let indexing = Indexing {
        input_offset: offset,
        partial_len: partial,
        ..Indexing::default()
    };
    let (_, produced) = rubato
        .process_into_buffer(&input, &mut output, Some(&indexing))
        .map_err(|e| Error::invalid(format!("resampler: {e}")))?;
    Ok(produced)
}

fn sinc_len_for(ratio: f64) -> usize {
    if ratio >= 1.0 {
        SINC_LEN
    } else {
        ((SINC_LEN as f64 / ratio).ceil() as usize).min(MAX_SINC_LEN)
    }
}

/// How many zeros to feed first, and how many output frames to drop, so that output frame
/// `j` lands on input time `j / ratio`.
///
/// rubato's sinc resampler puts its first output (k = 0) at input time
/// `1/r - N/2 + 1/F` (r = to/from, N = sinc length, F = oversampling): the filter is centred
/// half a sinc behind, the first step is taken before the first output, and the tabulated sinc
/// phases sit one table step early. With `z` leading zeros, output `j + D` is aligned for
/// `D = r (N/2 + z - 1/F) - 1`. `z` is chosen so that `D` is as close to a whole number as the
/// ratio allows; the residual is below 1% of an output frame for the common rates.
fn alignment(from: u32, to: u32, sinc_len: usize) -> (usize, usize) {
    let ratio = f64::from(to) / f64::from(from);
    let period = u64::from(from / gcd(from, to)).min(MAX_ALIGN_ZEROS);
    let delay_for =
        |z: u64| ratio * (sinc_len as f64 / 2.0 + z as f64 - 1.0 / OVERSAMPLING as f64) - 1.0;
    let mut best = (0u64, f64::INFINITY);
    for z in 0..period {
        let d = delay_for(z);
        let miss = (d - d.round()).abs();
        if miss < best.1 - 1e-9 {
            best = (z, miss);
        }
    }
    let delay = delay_for(best.0).round().max(0.0) as usize;
    (best.0 as usize, delay)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Resamples one channel in one call (same result as streaming it).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    let mut resampler = Resampler::new(from, to, 1)?;
    let mut out = resampler.process(&[samples])?.remove(0);
    out.extend(resampler.flush()?.remove(0));
    Ok(out)
}

/// Resamples every channel of `buffer` to `to` Hz.
pub fn resample_buffer(buffer: &AudioBuffer, to: u32) -> Result<AudioBuffer> {
    let mut resampler = Resampler::new(buffer.sample_rate(), to, buffer.n_channels())?;
    let mut out = resampler.process(buffer.channels())?;
    for (dst, tail) in out.iter_mut().zip(resampler.flush()?) {
        dst.extend(tail);
    }
    AudioBuffer::new(to, out)
}
