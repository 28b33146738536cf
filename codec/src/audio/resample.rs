//! Sample-rate conversion with rubato's windowed-sinc resampler, streaming or one-shot.
//!
//! The output is time-aligned (output frame `j` is the band-limited input at time `j / to`)
//! and exactly `round(n * to / from)` frames long: the filter delay is dropped from the front
//! and the tail is flushed with zeros, so a stream of any chunking gives the same samples as one
//! call over the whole signal. Quality settings and measured response: docs/audio-io.md.

use rubato::audioadapter_buffers::direct::{SequentialSliceOfSlices, SequentialSliceOfVecs};
use rubato::{Async, FixedAsync, Indexing, Resampler as _, SincInterpolationParameters};
use tessera_core::{Error, Result};

use super::buffer::{AudioBuffer, check_planar, sample_rate_in_range, sample_rate_range_text};
use super::resample_plan::{WINDOW, plan};

/// Input frames per rubato call.
const ENGINE_CHUNK: usize = 1024;

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
    pub fn reset(&mut self) -> Result<()> {
        if let Some(engine) = &mut self.engine {
            engine.reset()?;
        }
        self.frames_in = 0;
        self.frames_out = 0;
        self.flushed = false;
        Ok(())
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
        let plan = plan(from, to);
        let params = SincInterpolationParameters::new(plan.sinc_len, WINDOW)
            .oversampling_factor(plan.phases)
            .interpolation(plan.interpolation);
        // A relative ratio range of 1.0: the ratio is fixed, so rubato sizes nothing for changes.
        let rubato = Async::<f32>::new_sinc(
            ratio,
            1.0,
            &params,
            ENGINE_CHUNK,
            channels,
            FixedAsync::Input,
        )
        .map_err(|e| Error::invalid(format!("cannot build the resampler: {e}")))?;
        let (lead_zeros, delay) = (plan.lead_zeros, plan.delay);
        let scratch = vec![vec![0.0; rubato.output_frames_max()]; channels];
        let mut engine = Engine {
            rubato,
            pending: vec![Vec::with_capacity(ENGINE_CHUNK); channels],
            scratch,
            to_skip: 0,
            lead_zeros,
            delay,
        };
        engine.reset()?;
        Ok(engine)
    }

    fn reset(&mut self) -> Result<()> {
        self.rubato.reset();
        self.pending.iter_mut().for_each(Vec::clear);
        self.to_skip = self.delay;
        let zeros = vec![0.0f32; self.lead_zeros];
        let lead: Vec<&[f32]> = vec![zeros.as_slice(); self.pending.len()];
        // The zeros come out within the delay that `to_skip` drops, so nothing is emitted.
        let out = self.push(&lead, zeros.len())?;
        debug_assert!(out[0].is_empty());
        Ok(())
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
